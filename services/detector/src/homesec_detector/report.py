"""``homesec eval --report``: one row per labelled clip, the totals, the original's 2x2 table.

Each clip runs through exactly the detector's pipeline (:class:`Evaluation`, shipped defaults
unless the environment says otherwise). For a person clip the report also finds the frame from
which the person is *visible to the model*: the first frame where the model, shown a square
crop around the person's labelled box, scores a box lying on the person at ``VISIBLE_SCORE`` or
more. The alert delay is counted from there.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from homesec_detector.evalset import Clip
from homesec_detector.evaluate import DEFAULT_CHECK_MS, Evaluation
from homesec_detector.motion import BoxXYWH
from homesec_detector.person import PersonDetector
from homesec_detector.settings import DetectorSettings

VISIBLE_SCORE = 0.5
TARGET_DELAY_SECONDS = 0.8


@dataclass(frozen=True)
class ClipResult:
    """What the detector made of one clip."""

    name: str
    kind: str
    frames: int
    fps: float
    events: int
    alerts: int
    first_alert: int | None
    """Frame of the first alert of the clip (any event)."""
    visible: int | None
    """Person clips: first frame the model scores the person at VISIBLE_SCORE."""
    person_frames: int
    recall: float | None
    """Person clips: share of the person's frames inside an alerted event, from its alert on."""
    false_alerts: int
    """Alerted events with no labelled person in them (every alert of a clip without one)."""
    twin: str | None
    lit_twin: str | None
    person_checks: int

    @property
    def delay(self) -> float | None:
        """Seconds from visible to the first alert (negative: alerted before the model's own
        single-frame score reached VISIBLE_SCORE)."""
        if self.first_alert is None or self.visible is None:
            return None
        return (self.first_alert - self.visible) / self.fps


def _overlap(box: BoxXYWH, on: BoxXYWH) -> float:
    """Fraction of ``box`` inside ``on``."""
    x0, y0 = max(box[0], on[0]), max(box[1], on[1])
    x1, y1 = min(box[0] + box[2], on[0] + on[2]), min(box[1] + box[3], on[1] + on[3])
    return max(0, x1 - x0) * max(0, y1 - y0) / max(1, box[2] * box[3])


def visible_frame(clip: Clip, detector: PersonDetector) -> int | None:
    """First frame where the model scores a box on the labelled person >= VISIBLE_SCORE."""
    for i, box in enumerate(clip.person_boxes):
        if box is None:
            continue
        image = cv2.imdecode(np.frombuffer(clip.frames[i], np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            continue
        for det in detector.detect(image, box):
            if det.score >= VISIBLE_SCORE and _overlap(det.box, box) >= 0.5:
                return i
    return None


def run_clip(
    clip: Clip,
    settings: DetectorSettings,
    detector: PersonDetector | None = None,
    check_ms: float | None = DEFAULT_CHECK_MS,
) -> ClipResult:
    """Run ``clip`` through the pipeline and score the outcome against its labels."""
    ev = Evaluation(settings, camera="report", check_ms=check_ms)
    for i, data in enumerate(clip.frames):
        ev.feed(i, data, clip.size[0], clip.size[1], clip.fps)
    last = len(clip.frames) - 1
    person = set(clip.person_frames)
    alert_frames = [e["alert_frame"] for e in ev.events.values() if "alert_frame" in e]
    covered: set[int] = set()
    false_alerts = 0
    for event in ev.events.values():
        if "alert_frame" not in event:
            continue
        span = set(range(event["start_frame"], event.get("end_frame", last) + 1))
        if not span & person:
            false_alerts += 1
        covered |= set(range(event["alert_frame"], event.get("end_frame", last) + 1))
    visible = None
    if person and detector is not None:
        visible = visible_frame(clip, detector)
    return ClipResult(
        name=clip.name,
        kind=clip.kind,
        frames=len(clip.frames),
        fps=clip.fps,
        events=len(ev.events),
        alerts=len(alert_frames),
        first_alert=min(alert_frames) if alert_frames else None,
        visible=visible,
        person_frames=len(person),
        recall=round(len(person & covered) / len(person), 3) if person else None,
        false_alerts=false_alerts,
        twin=clip.twin,
        lit_twin=clip.lit_twin,
        person_checks=ev.person_checks,
    )


def run_report(
    clips: Iterable[Clip],
    settings: DetectorSettings,
    progress: Callable[[ClipResult], None] | None = None,
    check_ms: float | None = DEFAULT_CHECK_MS,
) -> list[ClipResult]:
    """Every clip's result (the model for visibility is the configured one, at 0.5)."""
    detector = PersonDetector(settings.person.model_copy(update={"score_threshold": VISIBLE_SCORE}))
    results = []
    for clip in clips:
        result = run_clip(clip, settings, detector, check_ms)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def totals(results: list[ClipResult]) -> dict[str, Any]:
    """The issue's "done when" figures and the original's 2x2 table (one sample per clip)."""
    people = [r for r in results if r.kind == "person"]
    negatives = [r for r in results if r.kind != "person"]
    delays = [r.delay for r in people if r.delay is not None]
    by_name = {r.name: r for r in results}

    def slower(twin_of: Callable[[ClipResult], str | None]) -> list[str]:
        out = []
        for r in people:
            twin = by_name.get(twin_of(r) or "")
            if twin is None:
                continue
            if r.first_alert is None or (
                twin.first_alert is not None and r.first_alert > twin.first_alert
            ):
                late = (
                    "never"
                    if r.first_alert is None
                    else f"+{r.first_alert - (twin.first_alert or 0)}"
                )
                out.append(f"{r.name} ({late} frames)")
        return out

    table: dict[tuple[int, int, int], int] = {}
    for r in results:
        key = (int(r.events > 0), int(r.alerts > 0), int(r.kind == "person"))
        table[key] = table.get(key, 0) + 1
    return {
        "clips": len(results),
        "person_clips": len(people),
        "person_clips_alerted": sum(1 for r in people if r.alerts),
        "negative_clips": len(negatives),
        "alerts_on_negatives": sum(r.alerts for r in negatives),
        "alerts_by_kind": {
            kind: sum(r.alerts for r in negatives if r.kind == kind)
            for kind in sorted({r.kind for r in negatives})
        },
        "false_alerts": sum(r.false_alerts for r in results),
        "median_delay_s": round(statistics.median(delays), 3) if delays else None,
        "max_delay_s": round(max(delays), 3) if delays else None,
        "light_clips": sum(1 for r in people if r.twin),
        "light_slower_than_twin": slower(lambda r: r.twin),
        "light_slower_than_lit_twin": slower(lambda r: r.lit_twin),
        "median_recall": statistics.median(r.recall for r in people if r.recall is not None)
        if people
        else None,
        "original_table": [
            {"motion_model": m, "person": p, "actual": a, "count": c}
            for (m, p, a), c in sorted(table.items())
        ],
    }


def as_json(results: list[ClipResult]) -> dict[str, Any]:
    return {
        "clips": [asdict(r) | {"delay_s": r.delay} for r in results],
        "totals": totals(results),
    }


def format_row(r: ClipResult) -> str:
    def opt(v: object, fmt: str = "") -> str:
        return "-" if v is None else format(v, fmt)

    return (
        f"{r.name:44} {r.kind:7} {r.frames:>6} {r.events:>6} {r.alerts:>6} "
        f"{opt(r.first_alert):>7} {opt(r.visible):>7} {opt(r.delay, '+.1f'):>7} "
        f"{opt(r.recall, '.2f'):>6} {r.false_alerts:>6}"
    )


HEADER = (
    f"{'clip':44} {'kind':7} {'frames':>6} {'events':>6} {'alerts':>6} "
    f"{'1st_alrt':>7} {'visible':>7} {'delay_s':>7} {'recall':>6} {'false':>6}"
)


def format_totals(t: dict[str, Any]) -> str:
    lines = [
        "",
        f"person clips alerted   {t['person_clips_alerted']} of {t['person_clips']}",
        f"alerts on negatives    {t['alerts_on_negatives']} of {t['negative_clips']} clips "
        f"{t['alerts_by_kind']}",
        f"false alerts           {t['false_alerts']}",
        f"median / max delay     {t['median_delay_s']} / {t['max_delay_s']} s after visible "
        f"(target <= {TARGET_DELAY_SECONDS})",
        f"median recall          {t['median_recall']}",
        f"light change clips     {t['light_clips']}; slower than the same entry in the light "
        f"before: {t['light_slower_than_twin'] or 'none'}; in the light after: "
        f"{t['light_slower_than_lit_twin'] or 'none'}",
        "",
        "original's table (one sample per clip): motion_model person actual count",
    ]
    for row in t["original_table"]:
        lines.append(
            f"  {row['motion_model']:>12} {row['person']:>6} {row['actual']:>6} {row['count']:>5}"
        )
    return "\n".join(lines)
