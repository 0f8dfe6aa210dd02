"""A coarse guard on memory: no service's PSS grows past its recorded figure plus a margin.

Runs bench/memory.py's measurement (the whole stack as ``homesec run`` starts it, armed, after
an alert and its clip) and compares each process's proportional set size with
``bench/memory_budget.json``, the figures recorded in docs/performance.md. Memory is not time:
the figures repeat within a few MB from run to run, so a margin catches a real regression (a
module imported where it is not used, a buffer that is not bounded) without flaking. After a
change that costs memory on purpose, measure again and update the file with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
BUDGET = json.loads((BENCH / "memory_budget.json").read_text())
MB = 2**20


@pytest.fixture(scope="module")
def measured() -> dict[str, dict[str, int]]:
    sys.path.insert(0, str(BENCH))
    try:
        import memory  # bench/memory.py
    finally:
        sys.path.remove(str(BENCH))
    result = memory.measure()
    steady: dict[str, dict[str, int]] = result["steady"]
    return steady


def allowed(recorded_mb: float) -> float:
    return recorded_mb * (1 + BUDGET["margin"]) + BUDGET["slack_mb"]


def test_every_process_of_the_stack_was_measured(measured):
    assert set(measured) == set(BUDGET["pss_mb"]), sorted(measured)


@pytest.mark.parametrize("name", sorted(BUDGET["pss_mb"]))
def test_pss_within_the_recorded_figure_and_margin(measured, name):
    pss = measured[name]["pss_bytes"] / MB
    recorded = BUDGET["pss_mb"][name]
    assert pss <= allowed(recorded), (
        f"{name}: {pss:.1f} MB PSS, recorded {recorded} MB (allowed {allowed(recorded):.1f})"
    )


def test_total_within_the_recorded_figure_and_margin(measured):
    total = sum(m["pss_bytes"] for m in measured.values()) / MB
    recorded = sum(BUDGET["pss_mb"].values())
    limit = recorded * (1 + BUDGET["total_margin"])
    assert total <= limit, (
        f"stack: {total:.1f} MB PSS, recorded {recorded:.1f} (allowed {limit:.1f})"
    )
