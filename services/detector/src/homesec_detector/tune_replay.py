"""Replay training events through the detector's own code path, with caches between settings.

Each event (pre-roll, then its frames) runs through :class:`~homesec_detector.evaluate.Evaluation`
— the :class:`~homesec_detector.pipeline.CameraPipeline` of the service — armed, notifications on,
on the simulated frame clock. Caches make trying many settings cheap without a second pipeline:

* **motion**: an event's :class:`~homesec_detector.motion.MotionDetector` results under one
  motion setting (:class:`MotionTrack`) are computed once, as far as a replay needed them, and
  extended when a later replay goes further; :class:`ReplayMotion` hands them to the pipeline
  in order (the last few motion settings are kept: each candidate's is used once), and kept
  on disk between runs in :class:`~homesec_detector.tune_tracks.MotionTracks` (a track read
  back is extended after its detector caught up on the frames it covers);
* **frames**: an event's JPEG bytes and motion greys are read and decoded once for every
  motion setting (:class:`~homesec_detector.tune_frames.FrameCache`, within a byte budget);
* **person**: a person check's model answer depends on the frame's pixels, its decode
  reduction, the relight and the *square the model sees* (:meth:`PersonDetector.region`), not
  on the exact motion box: :class:`CachedPersonChecker` keeps answers by those, in memory and
  in :class:`~homesec_detector.tune_cache.ModelAnswers` on disk (a second ``tune`` run needs no
  model run for what it saw before); the check's own filters (the share inside the region) and
  the CPU budget (charged the same nominal time) run as in an uncached check, so a cached replay
  decides exactly as an uncached one;
* **outcomes**: a whole event's outcome under one setting, kept on disk between runs in
  :class:`~homesec_detector.tune_outcomes.EventOutcomes` (keyed by the code, the model, the
  settings and the frames): a run replays only what no earlier run replayed;
* **bound**: the search says which events may not be lost and what a candidate must beat
  (:class:`Bound`); a replay stops as soon as the candidate cannot win (:class:`Stopped`).

An event stops replaying once it alerted: an alerted event stays alerted.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from homesec_detector.evaluate import DEFAULT_CHECK_MS, Evaluation
from homesec_detector.media_writer import BufferedFrame
from homesec_detector.motion import (
    BoxXYWH,
    MotionDetector,
    MotionResult,
    MotionSettings,
    reduction_for,
)
from homesec_detector.person import CpuBudget
from homesec_detector.person_decoders import Detection
from homesec_detector.person_verify import Detects
from homesec_detector.pipeline import PersonChecker, load_person_model
from homesec_detector.settings import DetectorSettings
from homesec_detector.trainset import TrainingEvent
from homesec_detector.tune_cache import AnswerStore, answer_key
from homesec_detector.tune_frames import EventFrames, FrameCache
from homesec_detector.tune_tracks import MotionTracks, TrackStore

if TYPE_CHECKING:
    from homesec_detector.tune_outcomes import EventOutcomes

_PLACEHOLDER = np.zeros((1, 1), np.uint8)
MOTION_SETTINGS_KEPT = 3
"""Motion settings whose tracks stay in memory (least recently used dropped first)."""


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


@dataclass(frozen=True)
class Bound:
    """What a candidate must achieve; its replay stops as soon as it cannot."""

    must_alert: frozenset[str] = frozenset()
    """Events that must still alert (stop at the first that does not)."""
    beat: tuple[int, int] | None = None
    """(false alerts, -alerts on occupied) to beat strictly (stop once no completion can)."""
    order: tuple[str, ...] = ()
    """Event keys replayed first, in this order (the rest follow in the set's order)."""


class FramesGone(Exception):
    """An event's frame files went away during the run (the uploader relabelled the event, or
    removed it with the bucket's copy): its outcome cannot be replayed exactly any more."""

    def __init__(self, key: str, error: str) -> None:
        """``error``: what reading the files said."""
        super().__init__(f"{key}: its files went away during the run ({error})")
        self.key = key
        self.error = error


@dataclass(frozen=True)
class Stopped:
    """A replay stopped early at ``key``: ``lost`` it (a must-alert event), else out-bounded."""

    key: str
    lost: bool


class Tally:
    """A bound's replay order over ``events`` and its stop decision, outcome by outcome."""

    def __init__(self, events: Sequence[TrainingEvent], bound: Bound | None = None) -> None:
        self.bound = bound or Bound()
        position = {e.key: i for i, e in enumerate(events)}
        first = [position[k] for k in self.bound.order if k in position]
        chosen = set(first)
        self.order = first + [i for i in range(len(events)) if i not in chosen]
        """Indexes into ``events``, in replay order."""
        self.occupied_left = sum(1 for e in events if e.occupied)
        self.false_alerts = self.alerts = 0

    def add(self, outcome: EventOutcome) -> Stopped | None:
        """Count the next outcome in :attr:`order`; :class:`Stopped` once the bound is lost."""
        bound = self.bound
        if outcome.key in bound.must_alert and not outcome.alert:
            return Stopped(outcome.key, lost=True)
        self.occupied_left -= outcome.occupied
        self.false_alerts += outcome.alert and not outcome.occupied
        self.alerts += outcome.alert and outcome.occupied
        best_case = (self.false_alerts, -(self.alerts + self.occupied_left))
        if bound.beat is not None and best_case >= bound.beat:
            return Stopped(outcome.key, lost=False)
        return None


class MotionTrack:
    """One event's motion results under one motion setting, per frame (None: undecodable)."""

    def __init__(
        self, settings: MotionSettings, results: list[MotionResult | None] | None = None
    ) -> None:
        """``results``: a track computed earlier (its detector catches up when extended)."""
        self.detector = MotionDetector(settings)
        self.results: list[MotionResult | None] = results or []
        self.stored = len(self.results)
        """Results the disk already holds."""
        self.consumed = 0
        """Frames the detector has seen (fewer than ``results`` for a track read from disk)."""
        self.key = ""
        """Its key on disk ("": not kept there)."""


class ReplayMotion(MotionDetector):
    """The pipeline's motion detector, answering from a :class:`MotionTrack` (extending it)."""

    def __init__(self, track: MotionTrack, frames: EventFrames | None = None) -> None:
        """``frames``: the event's frames kept between replays (their greys decoded once)."""
        super().__init__(track.detector.settings)
        self.track = track
        self.frames = frames
        self._at = 0

    def decode(self, jpeg: bytes, width: int) -> np.ndarray | None:
        at, track = self._at, self.track
        self._at += 1
        if at < len(track.results):
            return None if track.results[at] is None else _PLACEHOLDER
        gray = self._grey(at, jpeg, width)
        if gray is None:
            track.results.append(None)
            if track.consumed == at:
                track.consumed = at + 1
        return gray

    def process_gray(self, gray: np.ndarray, full_size: tuple[int, int]) -> MotionResult:
        at, track = self._at - 1, self.track
        if at == len(track.results):
            for i in range(track.consumed, at):  # a track from disk: the detector catches up
                earlier = self._grey(i, b"", full_size[0])
                if earlier is not None:
                    track.detector.process_gray(earlier, full_size)
            track.results.append(track.detector.process_gray(gray, full_size))
            track.consumed = at + 1
        result = track.results[at]
        assert result is not None
        return result

    def _grey(self, index: int, jpeg: bytes, width: int) -> np.ndarray | None:
        detector = self.track.detector
        if self.frames is None:
            return detector.decode(jpeg, width)
        flag = reduction_for(width, detector.settings.analysis_width)[1]
        return self.frames.grey(index, flag, lambda data: detector.decode(data, width))


class CachedPersonChecker(PersonChecker):
    """The configured person check, answering repeated model inputs from the caches."""

    def __init__(
        self,
        detector: Detects,
        budget: CpuBudget,
        settings: DetectorSettings,
        nominal_seconds: float,
        cache: dict[tuple[Any, ...], list[Detection]],
        scope: str,
        disk: AnswerStore | None = None,
        frames: EventFrames | None = None,
    ) -> None:
        """``frames``: the event's kept frames (the disk key's SHA-1 of each computed once)."""
        super().__init__(
            detector,
            budget,
            settings.person_decode_width,
            settings.person_min_overlap,
            nominal_seconds,
        )
        self.cache = cache
        self.scope = scope
        self.disk = disk
        self.frames = frames
        self.misses = 0
        self._region = getattr(detector, "region", None)

    def answer(
        self,
        frame: BufferedFrame,
        flag: int,
        roi: BoxXYWH | None,
        relight: tuple[float, float] | None,
    ) -> list[Detection] | None:
        region = self._square(frame, flag, roi)
        key = (self.scope, frame.seq, flag, region, relight)
        found = self.cache.get(key)
        if found is not None:
            return found
        disk_key = ""
        if self.disk is not None:
            frames = self.frames
            if frames is not None and frames.jpeg(frame.seq) is frame.jpeg:
                digest = frames.sha1(frame.seq)
            else:
                digest = hashlib.sha1(frame.jpeg).hexdigest()
            disk_key = answer_key(digest, flag, region, relight)
            found = self.disk.get(disk_key)
        if found is None:
            found = super().answer(frame, flag, roi, relight)
            if found is None:
                return None  # does not decode: nothing kept, the check is not charged
            self.misses += 1
            if self.disk is not None:
                self.disk.put(disk_key, found)
        self.cache[key] = found
        return found

    def _square(self, frame: BufferedFrame, flag: int, roi: BoxXYWH | None) -> Any:
        """What the model's answer depends on besides the pixels: the square it sees (the
        region of the decoded image's size), else the region itself."""
        if self._region is None:
            return ("roi", roi)
        factor = self.reduction(frame.width)[0]
        size = (-(-frame.width // factor), -(-frame.height // factor))  # libjpeg rounds up
        square = self._region(size[0], size[1], roi)
        return None if square is None else (square.x0, square.y0, square.side, size)


@dataclass
class Replayer:
    """Replays training events under any detector setting; keeps the caches between them."""

    base: DetectorSettings
    fps: float
    max_frames: int | None = None
    """Event frames replayed after the pre-roll (None: all of them)."""
    check_ms: float = DEFAULT_CHECK_MS
    answers: AnswerStore | None = None
    """The model's answers on disk (None: in memory only)."""
    tracks: TrackStore | None = None
    """Motion tracks on disk (None: in memory only)."""
    outcome_store: EventOutcomes | None = None
    """Whole-event outcomes on disk (None: every event replayed)."""
    motion_cache: OrderedDict[str, dict[str, MotionTrack]] = field(default_factory=OrderedDict)
    person_cache: dict[tuple[Any, ...], list[Detection]] = field(default_factory=dict)
    frame_cache: FrameCache = field(default_factory=FrameCache)
    model_checks: int = 0
    replays: int = 0
    _detector: Detects | None = None
    _paths: dict[str, list[Path]] = field(default_factory=dict)
    _touched: set[str] = field(default_factory=set)

    def detector(self) -> Detects:
        if self._detector is None:
            self._detector = load_person_model(self.base)
        return self._detector

    def _track(
        self, event: TrainingEvent, motion: MotionSettings, frames: EventFrames, digest: str
    ) -> MotionTrack:
        """``digest``: the outcomes file's copy of the frames' digest ("": ``frames.digest()``,
        read only when the tracks file needs it)."""
        key = motion.model_dump_json()
        tracks = self.motion_cache.get(key)
        if tracks is None:
            tracks = self.motion_cache[key] = {}
            while len(self.motion_cache) > MOTION_SETTINGS_KEPT:
                self.motion_cache.popitem(last=False)
        self.motion_cache.move_to_end(key)
        if event.key not in tracks:
            if self.tracks is None:
                tracks[event.key] = MotionTrack(motion)
            else:
                disk_key = self.tracks.key(motion, digest or frames.digest())
                track = MotionTrack(motion, self.tracks.get(disk_key))
                track.key = disk_key
                tracks[event.key] = track
        return tracks[event.key]

    def _keep(self, track: MotionTrack) -> None:
        if self.tracks is not None and track.key and len(track.results) > track.stored:
            self.tracks.put(track.key, track.results)
            track.stored = len(track.results)

    def outcome(
        self, event: TrainingEvent, settings: DetectorSettings, cached: bool = True
    ) -> EventOutcome:
        """Replay ``event`` under ``settings`` (``cached``: use and fill the caches);
        :class:`FramesGone` when its files went away."""
        try:
            return self._outcome(event, settings, cached)
        except FileNotFoundError as exc:
            raise FramesGone(event.key, str(exc)) from exc

    def _outcome(
        self, event: TrainingEvent, settings: DetectorSettings, cached: bool
    ) -> EventOutcome:
        self.replays += 1
        paths = self._paths.get(event.key)
        if paths is None:
            paths = self._paths[event.key] = event.frame_paths(self.max_frames)
        frames = self.frame_cache.event(event.key, paths) if cached else None
        outcome_key = ""
        digest = ""
        store = self.outcome_store
        if frames is not None and store is not None:
            digest = store.event_digest(event, paths, frames)
            outcome_key = store.key(event, store.settings_key(settings), digest)
            known = store.get(outcome_key, event)
            if known is not None:
                self._touch_track(settings.motion, digest)
                return known
        if frames is None:
            track = MotionTrack(settings.motion)
        else:
            track = self._track(event, settings.motion, frames, digest)
        checkers: list[CachedPersonChecker] = []

        def person(clock: Callable[[], float]) -> PersonChecker | None:
            if settings.person_mode.value == "off":
                return None
            budget = CpuBudget(fraction=settings.person_cpu_fraction, clock=clock)
            checker = CachedPersonChecker(
                self.detector(),
                budget,
                settings,
                self.check_ms / 1000.0,
                self.person_cache if cached else {},
                event.key,
                self.answers if cached else None,
                frames,
            )
            checkers.append(checker)
            return checker

        ev = Evaluation(
            settings,
            camera=event.camera,
            check_ms=self.check_ms,
            person=person,
            motion=ReplayMotion(track, frames),
        )
        size = (1, 1)
        for index, path in enumerate(paths):
            jpeg = path.read_bytes() if frames is None else frames.jpeg(index)
            if index == 0:
                size = _jpeg_size(jpeg)
            ev.feed(index, jpeg, size[0], size[1], event.fps or self.fps)
            if any(e.get("alert") for e in ev.events.values()):
                break  # alerted: it stays alerted, the rest cannot change that
        self.model_checks += sum(c.misses for c in checkers)
        self._keep(track)
        boxes = tuple(
            _relative(e["alert_box"], size) for e in ev.events.values() if "alert_box" in e
        )
        outcome = EventOutcome(
            key=event.key,
            occupied=event.occupied,
            motion=bool(ev.events),
            alert=any(e.get("alert") for e in ev.events.values()),
            boxes=boxes,
        )
        if outcome_key and store is not None:
            store.put(outcome_key, outcome)
        return outcome

    def _touch_track(self, motion: MotionSettings, digest: str) -> None:
        """Keep the motion track of an outcome read back (the tracks file keeps only what a
        run used; a later change of settings needs it again)."""
        if isinstance(self.tracks, MotionTracks):
            key = self.tracks.key(motion, digest)
            if key not in self._touched:
                self._touched.add(key)
                self.tracks.touch((key,))

    def outcomes(
        self,
        events: Sequence[TrainingEvent],
        settings: DetectorSettings,
        cached: bool = True,
        progress: Callable[[], None] | None = None,
        bound: Bound | None = None,
    ) -> list[EventOutcome] | Stopped:
        """Every event's outcome, in ``events`` order; with ``bound``, the events of
        ``bound.order`` first, and :class:`Stopped` as soon as the candidate cannot meet it."""
        tally = Tally(events, bound)
        found: dict[int, EventOutcome] = {}
        for i in tally.order:
            outcome = self.outcome(events[i], settings, cached)
            if progress is not None:
                progress()
            found[i] = outcome
            stopped = tally.add(outcome)
            if stopped is not None:
                return stopped
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
