"""A bad configuration stops mitmdump at start-up with one message naming file, backend and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.devservers import toml_backend
from tests.support.proxies import run_to_exit

GOOD = {
    "name": "billing",
    "hosts": ["billing.test"],
    "token_url": "https://login.test/token",
    "client_id": "proxy",
    "client_secret": "hunter2:with%stuff",
}


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        ({**GOOD, "client_secert": "typo"}, "client_secert", "unknown key"),
        ({**GOOD, "token_url": "http://login.test/token"}, "token_url", "https"),
        ({k: v for k, v in GOOD.items() if k != "client_id"}, "client_id", "missing"),
        ({**GOOD, "max_token_age": "1h"}, "max_token_age", "number"),
    ],
)
def test_bad_config_exits_non_zero_naming_file_backend_and_key(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]],
    fields: dict[str, object],
    key: str,
    words: str,
) -> None:
    returncode, output = run_mitmdump_expect_exit(toml_backend(**fields))
    assert returncode != 0
    line = the_one_line(output, "expect-exit-1.toml")
    assert "backend 'billing'" in line
    assert f"key '{key}'" in line
    assert words in line
    assert "hunter2" not in output


def the_one_line(output: str, words: str) -> str:
    """What a user sees of a start-up error: one line, no traceback, and the proxy never
    listened."""
    assert "Traceback" not in output
    assert "listening at" not in output
    lines = [line for line in output.splitlines() if words in line]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("secret_key", "words", "advice"),
    [
        ("client_secert_env", "key 'client_secert_env'", "did you mean 'client_secret_env'?"),
        (
            "client_secret_env",
            "environment variable OAUTH2_TEST_SURELY_UNSET is not set",
            "or give client_secret_file instead",
        ),
    ],
    ids=["misspelt-key", "unset-variable"],
)
def test_the_line_says_what_to_do(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]],
    secret_key: str,
    words: str,
    advice: str,
) -> None:
    fields = {k: v for k, v in GOOD.items() if k != "client_secret"}
    text = toml_backend(**fields, **{secret_key: "OAUTH2_TEST_SURELY_UNSET"})
    returncode, output = run_mitmdump_expect_exit(text)
    assert returncode != 0
    line = the_one_line(output, words)
    assert f"backend 'billing': key '{secret_key}'" in line
    assert advice in line


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["oauth2_conifg=x.toml"], "'oauth2_conifg' (did you mean 'oauth2_config'?)"),
        (
            ["oauth2_cache_dri=/tmp/c", "oauth_store=redis://127.0.0.1"],
            "'oauth2_cache_dri' (did you mean 'oauth2_cache_dir'?), 'oauth_store' (did you mean",
        ),
    ],
)
def test_misspelt_option_stops_the_proxy_with_a_suggestion(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]], options: list[str], words: str
) -> None:
    extra = [arg for option in options for arg in ("--set", option)]
    returncode, output = run_mitmdump_expect_exit(toml_backend(**GOOD), *extra)
    assert returncode != 0
    line = the_one_line(output, "unknown option")
    assert words in line


def test_toml_syntax_error_names_the_line(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]],
) -> None:
    returncode, output = run_mitmdump_expect_exit("[[backend]]\nname = \nhosts = []\n")
    assert returncode != 0
    assert "line 2" in the_one_line(output, "invalid TOML")


def test_missing_config_file(tmp_path: Path, mitm_confdir: Path) -> None:
    missing = tmp_path / "nope.toml"
    returncode, output = run_to_exit(
        None, config_path=missing, confdir=mitm_confdir, upstream_ca=None
    )
    assert returncode != 0
    the_one_line(output, f"{missing}: cannot read the configuration file")
