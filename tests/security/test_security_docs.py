"""docs/security.md and docs/faults.md: every test they name exists (so a claim cannot lose its
proof silently when a test is renamed or deleted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REF = re.compile(r"`(tests/[A-Za-z0-9_/]+\.py)(?:::([A-Za-z0-9_]+))?`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


@pytest.mark.parametrize("doc", ["docs/security.md", "docs/faults.md"])
def test_every_named_test_exists(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    refs = REF.findall(text)
    assert len(refs) >= 10, f"{doc} names almost no tests"
    missing = []
    for file, name in refs:
        path = REPO / file
        if not path.is_file():
            missing.append(file)
        elif name and name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc} names tests that do not exist: {sorted(set(missing))}"


def test_every_security_table_row_names_a_test() -> None:
    text = (REPO / "docs/security.md").read_text(encoding="utf-8")
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith(("| threat", "| asset", "| actor"))
    ]
    in_measures = text.split("## Measures", 1)[1].split("## Findings", 1)[0]
    measure_rows = [r for r in rows if r in in_measures and not set(r) <= set("|- ")]
    assert len(measure_rows) >= 25
    bare = [r[:80] for r in measure_rows if not REF.search(r)]
    assert not bare, f"rows without a test: {bare}"
