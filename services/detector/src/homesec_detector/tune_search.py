"""The search of ``homesec tune``: pure functions over replay outcomes.

* :func:`score` — the original's 2x2 table (motion model, person check, actual) with the alert
  decision's confusion counts, precision and recall;
* :func:`knob_values` — the settings that matter and the values tried for each (motion threshold
  and minimum area, the event window, person thresholds and filters) and :func:`mask_values`,
  masks around where the false alerts cluster;
* :func:`search` — steepest descent from the current settings: each round tries every value of
  every knob on top of the best setting so far and keeps the one with the fewest false alerts
  that still alerts on **every occupied event the current settings alert on** (fail secure:
  never lose an alert the owner confirmed); ties go to more occupied events caught, then to
  fewer changes. Deterministic: knobs and values are tried in a fixed order;
* :func:`env_diff` and :func:`apply_env` — the proposal as ``HOMESEC_DETECTOR_*`` variables,
  and written into an env file (other lines kept).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homesec_detector.settings import DetectorSettings
from homesec_detector.tune_replay import Bound, EventOutcome, Stopped

ENV_PREFIX = "HOMESEC_DETECTOR_"
BLOCKS = ("motion", "events", "evidence")
"""The settings blocks a proposal may change."""
MASK_MARGIN = 0.03
"""A proposed mask reaches this far (fraction of the frame) beyond the false alerts' boxes."""


@dataclass(frozen=True)
class Knob:
    """One setting and a value to try: ``block.field = value``."""

    block: str
    field: str
    value: Any

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.block.upper()}__{self.field.upper()}"


def score(outcomes: Sequence[EventOutcome]) -> dict[str, Any]:
    """The original's 2x2 table and the alert decision's figures against the labels."""
    table: dict[tuple[int, int, int], int] = {}
    for o in outcomes:
        key = (int(o.motion), int(o.alert), int(o.occupied))
        table[key] = table.get(key, 0) + 1
    tp = sum(1 for o in outcomes if o.alert and o.occupied)
    fp = sum(1 for o in outcomes if o.alert and not o.occupied)
    fn = sum(1 for o in outcomes if not o.alert and o.occupied)
    tn = sum(1 for o in outcomes if not o.alert and not o.occupied)
    return {
        "events": len(outcomes),
        "original_table": [
            {"motion_model": m, "person": p, "actual": a, "count": c}
            for (m, p, a), c in sorted(table.items())
        ],
        "alert": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "false_alerts": sorted(o.key for o in outcomes if o.alert and not o.occupied),
        "missed": sorted(o.key for o in outcomes if o.occupied and not o.alert),
    }


def _clamp(value: float, low: float, high: float) -> float:
    return round(min(high, max(low, value)), 4)


def knob_values(s: DetectorSettings) -> list[Knob]:
    """Every knob value tried, in a fixed order (duplicates of the current value left out)."""
    m, e, v = s.motion, s.events, s.evidence
    tried: list[Knob] = []
    for value in (m.delta_thresh + 2, m.delta_thresh + 4, m.delta_thresh + 8, m.delta_thresh - 2):
        tried.append(Knob("motion", "delta_thresh", int(min(254, max(1, value)))))
    for factor in (1.5, 2.0, 3.0, 0.6):
        tried.append(
            Knob("motion", "min_area_fraction", _clamp(m.min_area_fraction * factor, 0, 1))
        )
    for value in (0.8, 1.0, 0.4):
        tried.append(Knob("events", "min_occupied_fraction", value))
    for value in (e.window_frames * 2, max(1, e.window_frames // 2)):
        tried.append(Knob("events", "window_frames", int(min(1000, value))))
    for step in (0.1, 0.2, 0.3):
        tried.append(Knob("evidence", "confirm_median", _clamp(v.confirm_median + step, 0, 1)))
    for step in (0.1, 0.15):
        tried.append(Knob("evidence", "confirm_single", _clamp(v.confirm_single + step, 0, 1)))
    tried.append(Knob("evidence", "min_checks", min(100, v.min_checks + 2)))
    tried.append(Knob("evidence", "min_score", _clamp(v.min_score + 0.1, 0, 1)))
    tried.append(Knob("evidence", "min_aspect", _clamp(max(v.min_aspect, 1.0), 0, 100)))
    tried.append(
        Knob(
            "evidence", "min_area_fraction", _clamp(v.min_area_fraction * 3, 0, v.max_area_fraction)
        )
    )
    current = {(k.block, k.field): getattr(getattr(s, k.block), k.field) for k in tried}
    seen: set[tuple[str, str, str]] = set()
    out = []
    for k in tried:
        mark = (k.block, k.field, json.dumps(k.value))
        if k.value == current[(k.block, k.field)] or mark in seen:
            continue
        seen.add(mark)
        out.append(k)
    return out


def mask_values(s: DetectorSettings, outcomes: Sequence[EventOutcome]) -> list[Knob]:
    """Masks to try: a rectangle around each false alert's box (merged where they overlap),
    then one around all of them; each added to the masks already configured."""
    boxes = [b for o in outcomes if o.alert and not o.occupied for b in o.boxes]
    if not boxes:
        return []
    rects = _merge([_grow(b) for b in boxes])
    if len(rects) > 1:
        rects.append(_union(rects))
    knobs = []
    for x0, y0, x1, y1 in rects:
        polygon = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        knobs.append(Knob("motion", "masks", [*s.motion.masks, polygon]))
    return knobs


Rect = tuple[float, float, float, float]


def _grow(box: tuple[float, float, float, float]) -> Rect:
    x, y, w, h = box
    return (
        _clamp(x - MASK_MARGIN, 0, 1),
        _clamp(y - MASK_MARGIN, 0, 1),
        _clamp(x + w + MASK_MARGIN, 0, 1),
        _clamp(y + h + MASK_MARGIN, 0, 1),
    )


def _union(rects: Iterable[Rect]) -> Rect:
    rs = list(rects)
    return (
        min(r[0] for r in rs),
        min(r[1] for r in rs),
        max(r[2] for r in rs),
        max(r[3] for r in rs),
    )


def _merge(rects: list[Rect]) -> list[Rect]:
    """Overlapping rectangles merged into their union, until none overlap (sorted)."""
    rects = sorted(rects)
    merged = True
    while merged:
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]:
                    rects[i] = _union((a, b))
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(rects)


def with_knob(s: DetectorSettings, knob: Knob) -> DetectorSettings:
    """``s`` with one knob changed (validated like settings read from the environment)."""
    block = getattr(s, knob.block)
    data = block.model_dump()
    data[knob.field] = knob.value
    return s.model_copy(update={knob.block: type(block).model_validate(data)})


@dataclass(frozen=True)
class Proposal:
    settings: DetectorSettings
    outcomes: list[EventOutcome]
    knobs: list[Knob]
    """The changes, in the order they were accepted."""
    tried: int


Evaluate = Callable[[DetectorSettings, Bound], list[EventOutcome] | Stopped]
"""Replays every event under a setting; :class:`Stopped` as soon as it cannot meet the bound."""


def _rank(outcomes: Sequence[EventOutcome], changes: int) -> tuple[int, int, int]:
    fp = sum(1 for o in outcomes if o.alert and not o.occupied)
    tp = sum(1 for o in outcomes if o.alert and o.occupied)
    return (fp, -tp, changes)


def keeps(outcomes: Sequence[EventOutcome], must_alert: set[str] | frozenset[str]) -> bool:
    """Every event of ``must_alert`` still alerts."""
    alerted = {o.key for o in outcomes if o.alert}
    return must_alert <= alerted


def replay_order(outcomes: Sequence[EventOutcome], lost: dict[str, int]) -> tuple[str, ...]:
    """The order that stops a losing candidate soonest: the best setting's false alerts (they
    decide the score), its missed occupied events (a candidate may win by catching one), the
    occupied events candidates lost most often so far, then the rest. Only speed depends on
    it: a candidate's result, when complete, is the same in any order."""
    index = {o.key: i for i, o in enumerate(outcomes)}

    def group(o: EventOutcome) -> tuple[int, int, int]:
        if o.alert and not o.occupied:
            kind = 0
        elif o.occupied and not o.alert:
            kind = 1
        elif o.occupied:
            kind = 2
        else:
            kind = 3
        return (kind, -lost.get(o.key, 0), index[o.key])

    return tuple(o.key for o in sorted(outcomes, key=group))


def search(
    base: DetectorSettings,
    baseline: list[EventOutcome],
    evaluate: Evaluate,
    *,
    rounds: int = 3,
    masks: bool = True,
    on_candidate: Callable[[], None] | None = None,
) -> Proposal:
    """The setting with the fewest false alerts that keeps every occupied event the current
    settings alert on (see the module doc); ``baseline`` is ``evaluate(base)``. Each candidate
    is evaluated against a :class:`Bound` (the events it must keep, the best rank so far): a
    replay that can no longer win stops early, which changes no result."""
    must_alert = frozenset(o.key for o in baseline if o.alert and o.occupied)
    best, best_outcomes, knobs, tried = base, baseline, [], 0
    lost: dict[str, int] = {}
    for _ in range(rounds):
        if _rank(best_outcomes, 0)[0] == 0 and all(o.alert for o in best_outcomes if o.occupied):
            break  # nothing left to win
        candidates = knob_values(best)
        if masks:
            candidates += mask_values(best, best_outcomes)
        round_best: tuple[tuple[int, int, int], Knob, DetectorSettings, list[EventOutcome]] | None
        round_best = None
        current_rank = _rank(best_outcomes, len(knobs))
        for knob in candidates:
            settings = with_knob(best, knob)
            beat = round_best[0][:2] if round_best is not None else current_rank[:2]
            order = replay_order(best_outcomes, lost)
            outcomes = evaluate(settings, Bound(must_alert, (beat[0], beat[1]), order))
            tried += 1
            if on_candidate is not None:
                on_candidate()
            if isinstance(outcomes, Stopped):
                if outcomes.lost:
                    lost[outcomes.key] = lost.get(outcomes.key, 0) + 1
                continue
            if not keeps(outcomes, must_alert):
                continue
            rank = _rank(outcomes, len(knobs) + 1)
            if rank[:2] < current_rank[:2] and (round_best is None or rank < round_best[0]):
                round_best = (rank, knob, settings, outcomes)
        if round_best is None:
            break
        _, knob, best, best_outcomes = round_best
        knobs = [k for k in knobs if (k.block, k.field) != (knob.block, knob.field)] + [knob]
    return Proposal(best, best_outcomes, knobs, tried)


def env_value(value: Any) -> str:
    """A setting's value as pydantic-settings reads it from the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        return format(value, "g") if abs(value) >= 1e-4 or value == 0 else repr(value)
    return str(value)


def env_diff(base: DetectorSettings, proposal: DetectorSettings) -> dict[str, tuple[str, str]]:
    """``{VARIABLE: (current, proposed)}`` for every field the proposal changes."""
    diff: dict[str, tuple[str, str]] = {}
    for block in BLOCKS:
        old, new = getattr(base, block).model_dump(), getattr(proposal, block).model_dump()
        for name in sorted(new):
            if old[name] != new[name]:
                knob = Knob(block, name, new[name])
                diff[knob.env] = (env_value(old[name]), env_value(new[name]))
    return diff


def apply_env(text: str, values: dict[str, str]) -> str:
    """An env file's text with ``values`` set: a variable's existing line is replaced in place,
    new ones are appended under a comment; every other line is kept as it was."""
    lines = text.splitlines()
    left = dict(values)
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip()
        if name.startswith("export "):
            name = name[len("export ") :].strip()
        if "=" in line and not line.lstrip().startswith("#") and name in left:
            out.append(f"{name}={left.pop(name)}")
        else:
            out.append(line)
    if left:
        if out and out[-1].strip():
            out.append("")
        out.append("# proposed by homesec tune")
        out.extend(f"{name}={value}" for name, value in left.items())
    return "\n".join(out) + "\n"
