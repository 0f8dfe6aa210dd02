"""Replay training events through the detector's own code path, with caches between settings.

Each event (pre-roll, then its frames) runs through :class:`~homesec_detector.evaluate.Evaluation`
— the :class:`~homesec_detector.pipeline.CameraPipeline` of the service — armed, notifications on,
on the simulated frame clock. Two caches make trying many settings cheap without a second
pipeline:

* **motion**: the :class:`~homesec_detector.motion.MotionDetector` results of an event under one
  motion setting are kept; a later replay with the same motion setting skips decoding and the
  background maths (:class:`ReplayMotion` hands the kept results to the pipeline in order);
* **person**: a person check is the model's answer for (event, frame, region, relight); the
  answer is kept and served again (:class:`CachedPersonChecker`: the CPU budget is charged the
  same nominal time, so a cached replay decides exactly as an uncached one). Thresholds and
  filters (the evidence rule) are applied after the model and so stay free to change.

An event stops replaying once it alerted: an alerted event stays alerted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from homesec_detector.evaluate import DEFAULT_CHECK_MS, Evaluation
from homesec_detector.evidence import Candidate
from homesec_detector.media_writer import BufferedFrame
from homesec_detector.motion import BoxXYWH, MotionDetector, MotionResult, MotionSettings
from homesec_detector.person import CpuBudget
from homesec_detector.person_verify import Detects
from homesec_detector.pipeline import PersonChecker, load_person_model
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent

_PLACEHOLDER = np.zeros((1, 1), np.uint8)


@dataclass(frozen=True)
class EventOutcome:
    """What the detector made of one training event under one setting."""

    key: str
    occupied: bool
    motion: bool
    """A motion event started (the original's ``motion_model``)."""
    alert: bool
    """An event alerted (motion confirmed by the person check where required)."""
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    """Alerted events' boxes (person box, else motion box), as fractions of the frame."""


class ReplayMotion(MotionDetector):
    """A motion detector that records its results per frame, or plays recorded ones back."""

    def __init__(self, settings: MotionSettings, recorded: list[MotionResult] | None) -> None:
        super().__init__(settings)
        self.recorded = recorded
        self.results: list[MotionResult] = []
        self._at = 0

    def decode(self, jpeg: bytes, width: int) -> np.ndarray | None:
        if self.recorded is not None:
            return _PLACEHOLDER  # played back: nothing to decode
        return super().decode(jpeg, width)

    def process_gray(self, gray: np.ndarray, full_size: tuple[int, int]) -> MotionResult:
        if self.recorded is not None:
            result = self.recorded[self._at]
            self._at += 1
            return result
        result = super().process_gray(gray, full_size)
        self.results.append(result)
        return result


class CachedPersonChecker(PersonChecker):
    """The configured person check, answering repeated (frame, region) checks from a cache."""

    def __init__(
        self,
        detector: Detects,
        budget: CpuBudget,
        settings: DetectorSettings,
        nominal_seconds: float,
        cache: dict[tuple[Any, ...], list[Candidate]],
        scope: str,
    ) -> None:
        super().__init__(
            detector,
            budget,
            settings.person_decode_width,
            settings.person_min_overlap,
            nominal_seconds,
        )
        self.cache = cache
        self.scope = scope
        self.misses = 0

    def check(
        self,
        frame: BufferedFrame,
        roi: BoxXYWH | None,
        relight: tuple[float, float] | None = None,
    ) -> list[Candidate]:
        light = None if relight is None else (round(relight[0], 6), round(relight[1], 6))
        key = (self.scope, frame.seq, roi, light, self.min_overlap, self.decode_width)
        found = self.cache.get(key)
        if found is None:
            self.misses += 1
            found = super().check(frame, roi, relight)
            self.cache[key] = found
            return found
        assert self.nominal_seconds is not None
        self.budget.record(self.nominal_seconds)
        frame.person_score = found[0].score if found else 0.0
        frame.person_box = found[0].box if found else None
        return found


@dataclass
class Replayer:
    """Replays training events under any detector setting; keeps the caches between them."""

    base: DetectorSettings
    fps: float
    max_frames: int | None = None
    """Event frames replayed after the pre-roll (None: all of them)."""
    check_ms: float = DEFAULT_CHECK_MS
    motion_cache: dict[tuple[str, str], list[MotionResult]] = field(default_factory=dict)
    person_cache: dict[tuple[Any, ...], list[Candidate]] = field(default_factory=dict)
    model_checks: int = 0
    replays: int = 0
    _detector: Detects | None = None

    def detector(self) -> Detects:
        if self._detector is None:
            self._detector = load_person_model(self.base)
        return self._detector

    def outcome(
        self, event: TrainingEvent, settings: DetectorSettings, cached: bool = True
    ) -> EventOutcome:
        """Replay ``event`` under ``settings`` (``cached``: use and fill the caches)."""
        self.replays += 1
        motion_key = (event.key, settings.motion.model_dump_json())
        recorded = self.motion_cache.get(motion_key) if cached else None
        motion = ReplayMotion(settings.motion, recorded)
        checkers: list[CachedPersonChecker] = []

        def person(clock: Callable[[], float]) -> PersonChecker | None:
            if settings.person_mode.value == "off":
                return None
            budget = CpuBudget(fraction=settings.person_cpu_fraction, clock=clock)
            cache = self.person_cache if cached else {}
            checker = CachedPersonChecker(
                self.detector(), budget, settings, self.check_ms / 1000.0, cache, event.key
            )
            checkers.append(checker)
            return checker

        ev = Evaluation(
            settings, camera=event.camera, check_ms=self.check_ms, person=person, motion=motion
        )
        size = (1, 1)
        complete = True
        for index, path in enumerate(event.frame_paths(self.max_frames)):
            jpeg = path.read_bytes()
            if index == 0:
                size = _jpeg_size(jpeg)
            ev.feed(index, jpeg, size[0], size[1], event.fps or self.fps)
            if any(e.get("alert") for e in ev.events.values()):
                complete = False  # alerted: it stays alerted, the rest cannot change that
                break
        if cached and recorded is None and complete:
            self.motion_cache[motion_key] = motion.results
        self.model_checks += sum(c.misses for c in checkers)
        boxes = tuple(
            _relative(e["alert_box"], size) for e in ev.events.values() if "alert_box" in e
        )
        return EventOutcome(
            key=event.key,
            occupied=event.occupied,
            motion=bool(ev.events),
            alert=any(e.get("alert") for e in ev.events.values()),
            boxes=boxes,
        )

    def outcomes(
        self,
        events: list[TrainingEvent],
        settings: DetectorSettings,
        cached: bool = True,
        progress: Callable[[], None] | None = None,
        must_alert: set[str] | None = None,
    ) -> list[EventOutcome] | None:
        """Every event's outcome, in ``events`` order. With ``must_alert``, those events are
        replayed first and None is returned as soon as one of them does not alert."""
        must = must_alert or set()
        order = sorted(range(len(events)), key=lambda i: events[i].key not in must)
        found: dict[int, EventOutcome] = {}
        for i in order:
            outcome = self.outcome(events[i], settings, cached)
            if progress is not None:
                progress()
            if outcome.key in must and not outcome.alert:
                return None
            found[i] = outcome
        return [found[i] for i in range(len(events))]


def _jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's start-of-frame marker (no decoding)."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            i += 1
            continue
        marker = jpeg[i + 1]
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE):
            height = int.from_bytes(jpeg[i + 5 : i + 7], "big")
            width = int.from_bytes(jpeg[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    raise ValueError("not a JPEG with a frame header")


def _relative(box: Any, size: tuple[int, int]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return (x / size[0], y / size[1], w / size[0], h / size[1])
