"""Person evidence: candidate boxes tracked across person checks; a pure accumulator.

The pipeline feeds every person check (:meth:`PersonEvidence.add`) and asks for the
:class:`Verdict`; asking never changes anything. The verdict is computed from the checks kept, in
frame order, so a pre-roll frame checked late lands where it belongs.

* **Filters**: a candidate box must look like a person (height/width between ``min_aspect`` and
  ``max_aspect``; area between ``min_area_fraction`` and ``max_area_fraction`` of the frame) and
  score at least ``min_score``.
* **Tracks**: each candidate joins the live track whose last box overlaps it most (IoU at least
  ``match_iou``), or after missed checks the nearest one within ``max_speed`` box heights per
  second, else starts a track; a weaker candidate overlapping a better one of the same
  check as much is the same thing seen twice and is dropped. A track not seen for ``max_gap_seconds`` ends.
* **Stationary**: a box that stays where it settled (every edge within ``stationary_shift`` of
  the box height) for more than ``stationary_checks`` checks adds no
  more evidence (a poster, a coat, a parked car) until it moves.
* **Confirmed** when a track that has moved (its box left where it settled, or it first
  showed up lying on a motion region) has a median over its last ``history`` counted scores of
  ``confirm_median`` with at least ``min_checks`` of them, or one counted score of
  ``confirm_single``. A poster beside a moving curtain may score 0.9 on every check: it never
  moves.
  (Frigate decides on a tracked object's median score the same way.)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

BoxXYWH = tuple[int, int, int, int]

MAX_CHECKS = 200
"""Checks kept per event: older ones were judged when they were new."""


class EvidenceSettings(BaseModel):
    """How person checks add up to a confirmed person (``HOMESEC_DETECTOR_EVIDENCE__*``)."""

    min_score: float = Field(
        0.45, ge=0, le=1, description="A candidate scoring less is no evidence at all"
    )
    confirm_median: float = Field(
        0.6, ge=0, le=1, description="Confirm when a track's median counted score reaches this"
    )
    min_checks: int = Field(
        3, ge=1, le=100, description="... over at least this many counted checks of the track"
    )
    history: int = Field(
        10, ge=1, le=100, description="The median is taken over a track's last this many scores"
    )
    confirm_single: float = Field(
        0.8, ge=0, le=1, description="One counted check scoring this much confirms on its own"
    )
    match_iou: float = Field(
        0.25, ge=0, le=1, description="IoU with a track's last box for a candidate to join it"
    )
    max_speed: float = Field(
        1.5,
        ge=0,
        le=20,
        description="After missed checks a candidate continues a track whose last box is within "
        "this many box heights per second (a person walks ~0.8, runs ~2)",
    )
    max_gap_seconds: float = Field(
        1.5, gt=0, le=60, description="A track not seen for this long ends"
    )
    keep_seconds: float = Field(
        4.0, gt=0, le=600, description="Outside an event, checks older than this are forgotten"
    )
    min_aspect: float = Field(
        0.5, ge=0, le=100, description="Smallest box height/width of a person candidate"
    )
    max_aspect: float = Field(
        6.0, ge=0, le=100, description="Largest box height/width of a person candidate"
    )
    min_area_fraction: float = Field(
        0.002, ge=0, le=1, description="Smallest person box, as a fraction of the frame"
    )
    max_area_fraction: float = Field(
        0.9, ge=0, le=1, description="Largest person box, as a fraction of the frame"
    )
    stationary_checks: int = Field(
        2,
        ge=1,
        le=1000,
        description="A box that stays put for more than this many checks adds no evidence",
    )
    stationary_shift: float = Field(
        0.1,
        ge=0,
        le=10,
        description="A box none of whose edges moved more than this fraction of its height "
        "has not moved",
    )


@dataclass(frozen=True)
class Candidate:
    """One person box the model found in a check."""

    score: float
    box: BoxXYWH


@dataclass(frozen=True)
class Check:
    """One run of the person model on one frame."""

    seq: int
    at: float
    """Capture time of the frame (seconds)."""
    frame_size: tuple[int, int]
    candidates: tuple[Candidate, ...] = ()
    motion: tuple[BoxXYWH, ...] = ()
    """Where the frame changed (motion regions): a candidate lying on one is moving."""


@dataclass(frozen=True)
class Verdict:
    """What the checks so far add up to."""

    confirmed: bool = False
    score: float = 0.0
    """The confirming track's median (or single score); else the best counted score, else the
    best score of any candidate (for people to read)."""
    box: BoxXYWH | None = None
    """The newest box of the confirming (else best) track."""
    reason: str = "no check"
    checks: int = 0
    tracks: int = 0


@dataclass
class _Track:
    boxes: list[BoxXYWH] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    """Counted scores (stationary checks are not counted)."""
    last_at: float = 0.0
    anchor: BoxXYWH | None = None
    still: int = 0
    """Checks since the box settled at ``anchor``."""
    moved: bool = False
    """The box left a place it had settled at, or first showed up on a motion region."""


def iou(a: BoxXYWH, b: BoxXYWH) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def inside(box: BoxXYWH, region: BoxXYWH) -> float:
    """Fraction of ``box`` inside ``region``."""
    x0, y0 = max(box[0], region[0]), max(box[1], region[1])
    x1 = min(box[0] + box[2], region[0] + region[2])
    y1 = min(box[1] + box[3], region[1] + region[3])
    return max(0, x1 - x0) * max(0, y1 - y0) / max(1, box[2] * box[3])


def moved(a: BoxXYWH, b: BoxXYWH, shift: float) -> bool:
    """Box ``b`` is not where ``a`` was: one of its edges moved by more than ``shift`` x the
    height. Edges, not the centre: a person entering from the frame edge keeps one edge on it
    while the other runs. (Boxes on a still poster jitter by up to 4 % of their height.)"""
    h = max(a[3], b[3], 1)
    edges = (
        abs(a[0] - b[0]),
        abs(a[1] - b[1]),
        abs(a[0] + a[2] - b[0] - b[2]),
        abs(a[1] + a[3] - b[1] - b[3]),
    )
    return max(edges) > shift * h


def plausible(box: BoxXYWH, frame_size: tuple[int, int], s: EvidenceSettings) -> bool:
    """The box has a person's shape and size."""
    _, _, w, h = box
    if w <= 0 or h <= 0:
        return False
    area = w * h / max(1, frame_size[0] * frame_size[1])
    return (
        s.min_aspect <= h / w <= s.max_aspect and s.min_area_fraction <= area <= s.max_area_fraction
    )


def _tracks(checks: Iterable[Check], s: EvidenceSettings) -> list[_Track]:
    tracks: list[_Track] = []
    for check in sorted(checks, key=lambda c: (c.at, c.seq)):
        live = [t for t in tracks if check.at - t.last_at <= s.max_gap_seconds]
        found = sorted(
            (c for c in check.candidates if c.score >= s.min_score),
            key=lambda c: c.score,
            reverse=True,
        )
        taken: list[BoxXYWH] = []
        for cand in found:
            if not plausible(cand.box, check.frame_size, s):
                continue
            if any(iou(cand.box, box) >= s.match_iou for box in taken):
                continue  # a second, weaker box on the same thing
            taken.append(cand.box)
            on_motion = any(inside(cand.box, m) >= 0.5 for m in check.motion)
            best = _match(live, cand.box, check.at, s)
            if best is None:
                best = _Track(moved=on_motion)
                tracks.append(best)
            else:
                live.remove(best)  # one candidate per track and check
            _extend(best, cand, check.at, s)
    return tracks


def _centre_distance(a: BoxXYWH, b: BoxXYWH) -> float:
    return math.hypot((a[0] + a[2] / 2) - (b[0] + b[2] / 2), (a[1] + a[3] / 2) - (b[1] + b[3] / 2))


def _match(live: list[_Track], box: BoxXYWH, at: float, s: EvidenceSettings) -> _Track | None:
    """The live track ``box`` continues: the best IoU of at least ``match_iou``; else, after
    checks were missed, the nearest whose last box is within what a person covers in the
    time (``max_speed`` heights per second)."""
    best, best_iou = None, s.match_iou
    for track in live:
        overlap = iou(track.boxes[-1], box)
        if overlap >= best_iou and (best is None or overlap > best_iou):
            best, best_iou = track, overlap
    if best is not None:
        return best
    nearest, nearest_d = None, math.inf
    for track in live:
        last = track.boxes[-1]
        reach = s.max_speed * (at - track.last_at) * max(last[3], box[3])
        d = _centre_distance(last, box)
        if d <= reach and d < nearest_d:
            nearest, nearest_d = track, d
    return nearest


def _extend(track: _Track, cand: Candidate, at: float, s: EvidenceSettings) -> None:
    track.boxes.append(cand.box)
    track.last_at = at
    if track.anchor is None:
        track.anchor = cand.box
    elif moved(track.anchor, cand.box, s.stationary_shift):
        track.anchor, track.still, track.moved = cand.box, 0, True
    else:
        track.still += 1
    if track.still < s.stationary_checks:
        track.scores.append(cand.score)


def judge(checks: Sequence[Check], s: EvidenceSettings) -> Verdict:
    """The verdict of ``checks`` (any order) under settings ``s``. Pure."""
    if not checks:
        return Verdict()
    tracks = [t for t in _tracks(checks, s) if t.scores]
    best: tuple[float, _Track] | None = None
    for track in tracks:
        recent = track.scores[-s.history :]
        median = statistics.median(recent)
        top = max(track.scores)
        if track.moved:  # a track never seen moving (a poster, a coat) never confirms
            if len(recent) >= s.min_checks and median >= s.confirm_median:
                reason = f"median {median:.2f} over {len(recent)} checks"
                return Verdict(True, median, track.boxes[-1], reason, len(checks), len(tracks))
            if top >= s.confirm_single:
                reason = f"one check {top:.2f}"
                return Verdict(True, top, track.boxes[-1], reason, len(checks), len(tracks))
        if best is None or top > best[0]:
            best = (top, track)
    if best is None:
        raw = max((c.score for check in checks for c in check.candidates), default=0.0)
        return Verdict(score=raw, reason="no person-like box", checks=len(checks))
    top, track = best
    median = statistics.median(track.scores[-s.history :])
    return Verdict(
        False,
        top,
        track.boxes[-1],
        f"best {top:.2f}, median {median:.2f} over {len(track.scores)} checks",
        len(checks),
        len(tracks),
    )


class PersonEvidence:
    """Accumulates person checks for one camera's open or coming event."""

    def __init__(self, settings: EvidenceSettings | None = None) -> None:
        self.settings = settings or EvidenceSettings()
        self._checks: list[Check] = []
        self._verdict: Verdict | None = Verdict()

    @property
    def checks(self) -> int:
        return len(self._checks)

    def add(self, check: Check) -> None:
        """Feed one person check."""
        self._checks.append(check)
        if len(self._checks) > MAX_CHECKS:
            del self._checks[: len(self._checks) - MAX_CHECKS]
        self._verdict = None

    def forget_before(self, at: float) -> None:
        """Drop checks of frames captured before ``at`` (no event open: they are stale)."""
        kept = [c for c in self._checks if c.at >= at]
        if len(kept) != len(self._checks):
            self._checks = kept
            self._verdict = None

    def clear(self) -> None:
        """Forget everything (the event ended)."""
        self._checks.clear()
        self._verdict = Verdict()

    @property
    def verdict(self) -> Verdict:
        """What the checks kept add up to (computed once per change)."""
        if self._verdict is None:
            self._verdict = judge(self._checks, self.settings)
        return self._verdict
