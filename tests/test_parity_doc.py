"""docs/parity.md names its checks: every row of a table with a "checked by" column names a test, and every test it
names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARITY = (ROOT / "docs" / "parity.md").read_text(encoding="utf-8")
NAMED_TEST = re.compile(r"`(test_\w+\.py)::(test_\w+)`")


def checked_tables() -> list[list[list[str]]]:
    """The tables whose header has a "checked by" column, as rows of cells (header and rule left out)."""
    tables, rows = [], None
    for line in PARITY.splitlines() + [""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if rows:
                tables.append(rows)
            rows = None
        elif rows is None and "checked by" in cells:
            rows = []
        elif rows is not None and not set(line) <= set("|- "):
            rows.append(cells)
    return tables


def test_every_row_names_its_check() -> None:
    tables = checked_tables()
    assert len(tables) >= 2 and sum(len(t) for t in tables) > 40
    for row in (r for t in tables for r in t):
        named = NAMED_TEST.findall(row[-1])
        assert named, f"no test named in: {row}"
        if " only)" in row[-1]:  # a test of asgl's own rule does not check parity
            assert any("not checked" in cell for cell in row), row


def test_named_tests_exist() -> None:
    named = set(NAMED_TEST.findall(PARITY))
    assert len(named) > 20
    missing = []
    for file, test in sorted(named):
        path = ROOT / "tests" / file
        if not path.is_file() or not re.search(rf"^def {test}\(", path.read_text(encoding="utf-8"), re.M):
            missing.append(f"{file}::{test}")
    assert not missing, f"docs/parity.md names tests that do not exist: {missing}"
