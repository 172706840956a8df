"""The figures docs/operations.md gives for this suite are the suite's own: the sizes of its
tables, each case of which a parametrized test here runs ("0 leaks" is test_secret_hygiene's
assertion)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE.parents[1] / "docs" / "operations.md"
FIGURES = re.compile(r"(\d+) bad inputs tried, (\d+) faults survived, 0 leaks")


def table_sizes() -> tuple[int, int]:
    """(len of every BAD_INPUTS, len of every FAULTS) over tests/hardening/test_*.py."""
    bad_inputs = faults = 0
    for path in sorted(HERE.glob("test_*.py")):
        module = importlib.import_module(f"tests.hardening.{path.stem}")
        bad_inputs += len(getattr(module, "BAD_INPUTS", ()))
        faults += len(getattr(module, "FAULTS", ()))
    return bad_inputs, faults


def test_the_docs_report_the_tables_as_they_are() -> None:
    bad_inputs, faults = table_sizes()
    found = FIGURES.findall(PAGE.read_text(encoding="utf-8"))
    assert found == [(str(bad_inputs), str(faults))]
    assert bad_inputs >= 40  # what the hardening issue asks for at least
