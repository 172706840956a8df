"""A bad configuration stops mitmdump at start-up with one message naming file, backend and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import toml_backend
from proxies import mitmdump_args
from proxies import run_mitmdump

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
    assert "expect-exit-1.toml" in output
    assert "backend 'billing'" in output
    assert f"key '{key}'" in output
    assert words in output
    assert "hunter2" not in output


def test_toml_syntax_error_names_the_line(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]],
) -> None:
    returncode, output = run_mitmdump_expect_exit("[[backend]]\nname = 'x\n")
    assert returncode != 0
    assert "invalid TOML" in output
    assert "line 2" in output


def test_unset_secret_variable(
    run_mitmdump_expect_exit: Callable[..., tuple[int, str]],
) -> None:
    fields = {k: v for k, v in GOOD.items() if k != "client_secret"}
    text = toml_backend(**fields, client_secret_env="OAUTH2_TEST_SURELY_UNSET")
    returncode, output = run_mitmdump_expect_exit(text)
    assert returncode != 0
    assert "environment variable OAUTH2_TEST_SURELY_UNSET is not set" in output


def test_missing_config_file(tmp_path: Path, mitm_confdir: Path) -> None:
    missing = tmp_path / "nope.toml"
    args = mitmdump_args(
        config=missing,
        confdir=mitm_confdir,
        cache_dir=tmp_path / "cache",
        upstream_ca=None,
        lazy=True,
        mode=None,
    )
    returncode, output = run_mitmdump(args, cwd=tmp_path)
    assert returncode != 0
    assert f"{missing}: cannot read the configuration file" in output
