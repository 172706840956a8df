"""The documentation against the code: docs/configuration.md lists every `[[backend]]` key and
every option the addon declares (with its help text as declared), and no more; every relative
link in README.md and docs/*.md points to a file or folder of the repository."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from mitmproxy.test import taddons

from mitm_oauth2.addon import OAuth2Backend
from mitm_oauth2.config import backend as config_backend

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

KEYS_HEADING = "## Backend keys"
OPTIONS_HEADING = "## mitmproxy options"
OPTION_HEADING = re.compile(r"^### `([A-Za-z0-9_]+)`$", flags=re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`]+)`")
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^ *```.*?^ *```", flags=re.MULTILINE | re.DOTALL)


def normalised(text: str) -> str:
    return " ".join(text.split())


def section(text: str, heading: str) -> str:
    """The text after the line `heading` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.compile(rf"^#{{1,{level}}} ", flags=re.MULTILINE)
    end = following.search(FENCE.sub(lambda m: " " * len(m.group()), text), start)
    return text[start : end.start() if end else len(text)]


def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def declared_options() -> dict[str, str]:
    """Name -> help text of every option the addon and its nested addons declare."""
    with taddons.context() as bare:
        mitmproxy_own = set(bare.options._options)
    with taddons.context(OAuth2Backend()) as tctx:
        options = tctx.options._options
        return {name: o.help for name, o in options.items() if name not in mitmproxy_own}


def documented_keys() -> list[str]:
    """The keys named by code spans in the first cell of the key table's rows."""
    keys = []
    for line in section(reference(), KEYS_HEADING).splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first_cell = line.split("|")[1]
            keys += CODE_SPAN.findall(first_cell)
    return keys


def test_every_backend_key_is_documented_once_and_no_other() -> None:
    keys = documented_keys()
    assert sorted(set(keys)) == sorted(keys), "a key is documented twice"
    assert not config_backend.KEYS - set(keys), "keys the reference does not document"
    assert not set(keys) - config_backend.KEYS, "documented keys the code does not have"


def test_the_addon_declares_options() -> None:
    options = declared_options()
    assert "oauth2_config" in options
    assert "oauth2_store" in options  # from a nested addon
    assert "oauth2_metrics_port" in options  # from another


def test_every_option_is_documented_and_no_other() -> None:
    headings = OPTION_HEADING.findall(section(reference(), OPTIONS_HEADING))
    assert sorted(set(headings)) == sorted(headings), "an option is documented twice"
    assert sorted(headings) == sorted(declared_options())


@pytest.mark.parametrize(("name", "help_text"), sorted(declared_options().items()))
def test_option_help_is_quoted_as_declared(name: str, help_text: str) -> None:
    text = section(reference(), f"### `{name}`")
    assert normalised(help_text), f"{name} declares no help text"
    assert normalised(help_text) in normalised(text), f"{name}'s help text differs from the code"


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = [target for target in LINK.findall(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_paths(page: Path) -> None:
    links = relative_links(page)
    missing = [
        link
        for link in links
        if not (page.parent / unquote(link.split("#", 1)[0])).resolve().exists()
    ]
    assert not missing


def test_the_docs_pages_are_there_and_linked_from_the_readme() -> None:
    readme_links = {link.split("#", 1)[0] for link in relative_links(ROOT / "README.md")}
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in readme_links
        first_lines = page.read_text(encoding="utf-8").splitlines()
        assert first_lines[0].startswith("# ")
        titles = [line for line in FENCE.sub("", "\n".join(first_lines)).splitlines()]
        assert sum(1 for line in titles if line.startswith("# ")) == 1, page.name
