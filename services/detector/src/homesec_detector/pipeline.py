"""One camera's detector pipeline: decode → motion → (person) → events → media.

The service and ``homesec eval`` both run this class; only the clock (frame timestamps), the
source of frames and where the messages go differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2

from homesec.contract import (
    EventType,
    Frame,
    Label,
    MissedAlert,
    MotionEvent,
    PersonMode,
    SystemSetting,
    TrainingLabel,
)
from homesec_detector.events import (
    DecisionInputs,
    EventTracker,
    PersonFinding,
    make_event_id,
)
from homesec_detector.evidence import Candidate, Check, PersonEvidence
from homesec_detector.media_writer import BufferedFrame, MediaWriter, MissedBuffer, PrerollBuffer
from homesec_detector.motion import BoxXYWH, MotionDetector, MotionResult
from homesec_detector.person import CpuBudget, PersonDetector, PersonModelSettings
from homesec_detector.person_decoders import Detection
from homesec_detector.person_verify import Detects, VerifiedDetector, detect_in_jpeg
from homesec_detector.settings import DetectorSettings

log = logging.getLogger("homesec_detector.pipeline")

StateGetter = Callable[[SystemSetting], bool]
ZoneGetter = Callable[[int, int], Callable[[BoxXYWH | None], bool] | None]
"""The alarm mode's zone test for a frame of (width, height); None: the whole frame counts."""


@dataclass
class Outcome:
    """What processing one frame produced."""

    motion: MotionResult | None
    person_score: float | None = None
    """Best person score in this frame; None where the model did not run on it."""
    person_checks: int = 0
    """Model runs for this frame (this frame plus pre-roll frames checked at event start)."""
    messages: list[MotionEvent] = field(default_factory=list)
    labels: list[TrainingLabel] = field(default_factory=list)
    event_id: str | None = None
    alert: bool = False
    stages: dict[str, float] = field(default_factory=dict)


class PersonChecker:
    """Runs the person model on one buffered frame (decoding it in colour), within a budget."""

    def __init__(
        self,
        detector: Detects,
        budget: CpuBudget,
        decode_width: int = 640,
        min_overlap: float = 0.3,
        nominal_seconds: float | None = None,
    ) -> None:
        self.min_overlap = min_overlap
        self.nominal_seconds = nominal_seconds
        """Charge the budget this much per check instead of the time measured (evaluation:
        results that do not depend on the machine's load)."""
        self.detector = detector
        self.budget = budget
        self.decode_width = decode_width

    def check(
        self,
        frame: BufferedFrame,
        roi: BoxXYWH | None,
        relight: tuple[float, float] | None = None,
    ) -> list[Candidate]:
        """Person candidates in ``frame`` (full-frame pixels, best first; with ``roi`` only those
        lying in it); stores the best score (0 when none) and box on the frame. ``relight``
        (gain, offset) is applied first: the frame as lit before a sudden light change."""
        factor, flag = self.reduction(frame.width)
        small_roi = None if roi is None else tuple(v // factor for v in roi)
        started = time.perf_counter()
        found = self.answer(frame, flag, small_roi, relight)  # type: ignore[arg-type]
        if found is None:
            return []
        spent = time.perf_counter() - started
        self.budget.record(spent if self.nominal_seconds is None else self.nominal_seconds)
        if small_roi is not None:
            # the crop around the motion shows more than the motion: a person must be IN it
            found = [
                d
                for d in found
                if _overlap(d.box, small_roi) >= self.min_overlap  # type: ignore[arg-type]
            ]
        out = [
            Candidate(float(d.score), tuple(v * factor for v in d.box))  # type: ignore[arg-type]
            for d in found
        ]
        frame.person_score = out[0].score if out else 0.0
        frame.person_box = out[0].box if out else None
        return out

    def reduction(self, width: int) -> tuple[int, int]:
        """(factor, imread flag): the JPEG-native reduction to about ``decode_width``."""
        if width >= 4 * self.decode_width:
            return 4, cv2.IMREAD_REDUCED_COLOR_4
        if width >= 2 * self.decode_width:
            return 2, cv2.IMREAD_REDUCED_COLOR_2
        return 1, cv2.IMREAD_COLOR

    def answer(
        self,
        frame: BufferedFrame,
        flag: int,
        roi: BoxXYWH | None,
        relight: tuple[float, float] | None,
    ) -> list[Detection] | None:
        """The model's detections in ``frame`` decoded with ``flag`` (``roi`` in its pixels),
        relit first; None when the frame does not decode."""
        return detect_in_jpeg(self.detector, frame.jpeg, flag, roi, relight)


def build_person_checker(
    settings: DetectorSettings,
    clock: Callable[[], float] = time.monotonic,
    nominal_seconds: float | None = None,
    detector: Detects | None = None,
) -> PersonChecker | None:
    """The person model with its CPU budget (None when ``person_mode`` is off). The model
    reports scores from ``person_report_threshold`` up; the evidence rule decides what counts.
    ``clock`` paces the budget (the evaluation passes its simulated frame clock); ``detector``:
    a model already loaded (``homesec tune`` loads it once for every replay)."""
    if settings.person_mode is PersonMode.OFF:
        return None
    if detector is not None:
        return PersonChecker(
            detector,
            CpuBudget(fraction=settings.person_cpu_fraction, clock=clock),
            settings.person_decode_width,
            settings.person_min_overlap,
            nominal_seconds,
        )
    model_settings = settings.person.model_copy(
        update={
            "score_threshold": min(
                settings.person_report_threshold, settings.person.score_threshold
            )
        }
    )
    return PersonChecker(
        _detector(settings, model_settings),
        CpuBudget(fraction=settings.person_cpu_fraction, clock=clock),
        settings.person_decode_width,
        settings.person_min_overlap,
        nominal_seconds,
    )


def load_person_model(settings: DetectorSettings) -> Detects:
    """The configured person model(s), loaded once, reporting from the report threshold."""
    first = settings.person.model_copy(
        update={
            "score_threshold": min(
                settings.person_report_threshold, settings.person.score_threshold
            )
        }
    )
    return _detector(settings, first)


def _detector(settings: DetectorSettings, first: PersonModelSettings) -> Detects:
    """The first model, verified by the second where ``verifier.enabled``."""
    model = PersonDetector(first)
    if not settings.verifier.enabled:
        return model
    return VerifiedDetector(model, PersonDetector(settings.verifier), settings.verifier)


class CameraPipeline:
    """Per-camera state: background model, pre-roll, event tracker."""

    def __init__(
        self,
        camera: str,
        settings: DetectorSettings,
        state: StateGetter,
        *,
        person: PersonChecker | None = None,
        media: MediaWriter | None = None,
        score_all: bool = False,
        on_message: Callable[[MotionEvent], None] | None = None,
        zones: ZoneGetter | None = None,
        motion: MotionDetector | None = None,
    ) -> None:
        self.camera = camera
        self.on_message = on_message
        self.settings = settings
        self.state = state
        self.zones = zones
        self.person = person if settings.person_mode is not PersonMode.OFF else None
        self.media = media if settings.media.enabled else None
        self.score_all = score_all
        self.motion = motion if motion is not None else MotionDetector(settings.motion)
        self.tracker = EventTracker(
            camera, settings.events, media=self.media is not None, person_mode=settings.person_mode
        )
        self.ring = PrerollBuffer(settings.media.preroll_frames + 1)
        self.missed = MissedBuffer(
            settings.media.missed_buffer_seconds if self.media is not None else 0.0,
            settings.media.missed_buffer_fps,
        )
        self._quiet_since: float | None = None
        self.evidence = PersonEvidence(settings.evidence)
        self._before: list[BoxXYWH] = []
        self._last: BufferedFrame | None = None
        self.frames = 0
        self.undecodable = 0

    @property
    def threshold(self) -> float:
        return self.settings.evidence.confirm_median

    def _inputs(self) -> DecisionInputs:
        return DecisionInputs(
            armed=self.state(SystemSetting.ARMED),
            notifications=self.state(SystemSetting.NOTIFICATIONS),
            person_mode=self.settings.person_mode,
            person_threshold=self.threshold,
            zone=self._zone(),
        )

    def _zone(self) -> Callable[[BoxXYWH | None], bool] | None:
        last = self._last
        if self.zones is None or last is None:
            return None
        return self.zones(last.width, last.height)

    # ---- per frame ------------------------------------------------------------------------

    def process(self, frame: Frame, now: float | None = None) -> Outcome:
        """Run one frame through the detector; ``now`` defaults to its capture time."""
        now = frame.captured_at if now is None else now
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        gray = self.motion.decode(frame.jpeg, frame.width)
        t1 = time.perf_counter()
        stages["decode"] = t1 - t0
        if gray is None:
            self.undecodable += 1
            return Outcome(motion=None, stages=stages, event_id=self.tracker.event_id)
        result = self.motion.process_gray(gray, (frame.width, frame.height))
        stages["motion"] = time.perf_counter() - t1
        self.frames += 1

        buf = BufferedFrame(
            seq=frame.seq,
            captured_at=frame.captured_at,
            jpeg=frame.jpeg,
            width=frame.width,
            height=frame.height,
            occupied=result.occupied,
            boxes=result.boxes,
        )
        self.ring.append(buf)
        self.missed.append(buf)
        self._last = buf

        t2 = time.perf_counter()
        finding, checks = self._person_checks(buf, result, now)
        if checks:
            stages["person"] = time.perf_counter() - t2

        was_active = self.tracker.active
        messages = self.tracker.step(
            now, frame.seq, frame.captured_at, result, finding, self._inputs()
        )
        if was_active and not self.tracker.active:
            self.evidence.clear()  # the event ended: its evidence goes with it
        t3 = time.perf_counter()
        labels = self._media(buf, messages, was_active, now, result)
        stages["media"] = time.perf_counter() - t3
        return Outcome(
            motion=result,
            person_score=buf.person_score,
            person_checks=checks,
            messages=messages,
            labels=labels,
            event_id=self.tracker.event_id or (messages[-1].event_id if messages else None),
            alert=self.tracker.alerted
            or any(m.decision.alert and m.type is EventType.END for m in messages),
            stages=stages,
        )

    def tick(self, now: float) -> list[MotionEvent]:
        """End an event whose camera went quiet (no frames at all) for the quiet time."""
        last = self._last
        seq = last.seq if last else 0
        captured = last.captured_at if last else now
        messages = self.tracker.tick(now, seq, captured)
        for msg in messages:
            self._finish(msg)
        return messages

    def close(self, now: float) -> list[MotionEvent]:
        """End an open event because the detector stops (its media and ``end`` go out)."""
        last = self._last
        seq = last.seq if last else 0
        captured = last.captured_at if last else now
        messages = self.tracker.close(now, seq, captured)
        for msg in messages:
            self._finish(msg)
        return messages

    # ---- person ---------------------------------------------------------------------------

    def _person_checks(
        self, buf: BufferedFrame, result: MotionResult, now: float
    ) -> tuple[PersonFinding | None, int]:
        """Run the model where it pays, feed the evidence; returns its finding and the count.

        * every frame with motion, or whose light changed at once (the guard re-learns the
          background: the relit regions, else the whole frame), while no person is confirmed
          for the open/coming event and the CPU budget allows;
        * when this frame starts an event: up to ``person_preroll_checks`` pre-roll frames with
          motion that were not checked yet (newest first);
        * ``score_all`` (evaluation of the model itself): every frame, whole image, no budget.
        """
        person = self.person
        if person is None:
            return None, 0
        evidence = self.evidence
        if not self.tracker.active:
            evidence.forget_before(now - self.settings.evidence.keep_seconds)
        checks = 0
        if self.score_all:
            self._feed(buf, person.check(buf, None), result.check_boxes)
            checks += 1
        else:
            wanted, roi = _check_region(result, self._before)
            self._before = result.check_boxes
            if wanted and not evidence.verdict.confirmed and person.budget.allow():
                motion = result.check_boxes or result.relit_boxes
                self._feed(buf, person.check(buf, roi, result.relight), motion)
                checks += 1
            if not self.tracker.active and self.tracker.would_start_with(result.occupied):
                extra = 0
                for old in reversed(self.ring.frames()[:-1]):
                    if extra >= self.settings.person_preroll_checks or evidence.verdict.confirmed:
                        break
                    if old.occupied and old.person_score is None and person.budget.allow():
                        self._feed(old, person.check(old, _union(old.boxes)), old.boxes)
                        extra += 1
                checks += extra
        if not evidence.checks:
            return None, checks
        verdict = evidence.verdict
        return PersonFinding(verdict.score, verdict.box, verdict.confirmed, verdict.reason), checks

    def _feed(
        self, frame: BufferedFrame, candidates: list[Candidate], motion: list[BoxXYWH]
    ) -> None:
        self.evidence.add(
            Check(
                frame.seq,
                frame.captured_at,
                (frame.width, frame.height),
                tuple(candidates),
                tuple(motion),
            )
        )

    # ---- media ----------------------------------------------------------------------------

    def _media(
        self,
        buf: BufferedFrame,
        messages: list[MotionEvent],
        was_active: bool,
        now: float,
        result: MotionResult,
    ) -> list[TrainingLabel]:
        media = self.media
        if result.occupied or self.tracker.active or self._quiet_since is None:
            self._quiet_since = now
        if media is None:
            for msg in messages:
                self._emit(msg)
            return []
        for msg in messages:
            if msg.type is EventType.START:
                preroll = self.ring.frames()[:-1]
                snap = buf
                person = self.tracker.person
                if buf.person_box is None and person is not None and person.box is not None:
                    # the best person was seen a few frames earlier (pre-roll): draw it too
                    snap = replace(buf, person_box=person.box)
                media.start_event(
                    self.camera,
                    msg.event_id,
                    snap,
                    preroll,
                    _meta(msg, preroll),
                    then=self._emitter(msg),
                )
                media.add_frame(self.camera, msg.event_id, buf)
                if msg.decision.alert:
                    media.mark_alerting(self.camera, msg.event_id)
            elif msg.type is EventType.END:
                self._finish(msg)
            else:
                emit = self._emitter(msg)
                if emit is not None:
                    media.call(emit, essential=True)  # keep order behind the start
                if msg.decision.alert:
                    media.mark_alerting(self.camera, msg.event_id)
        if was_active and self.tracker.active and self.tracker.event_id:
            media.add_frame(self.camera, self.tracker.event_id, buf)
            if any(m.type is EventType.UPDATE and m.person_box for m in messages):
                if buf.person_box is not None and buf.person_score == self.tracker.person.score:  # type: ignore[union-attr]
                    media.update_person_box(self.camera, self.tracker.event_id, buf)
        return self._unoccupied_sample(now, buf)

    def _finish(self, msg: MotionEvent) -> None:
        if self.media is not None:
            if msg.decision.alert:
                self.media.mark_alerting(self.camera, msg.event_id)
            self.media.finish_event(
                self.camera, msg.event_id, _meta(msg, None), then=self._emitter(msg)
            )
        else:
            self._emit(msg)

    def _emit(self, msg: MotionEvent) -> None:
        """Hand a message to ``on_message``. With media on this runs on the media thread right
        after the files the message names were written, so it never overtakes them."""
        if self.on_message is not None:
            self.on_message(msg)

    def _emitter(self, msg: MotionEvent) -> Callable[[], None] | None:
        if self.on_message is None:
            return None
        return lambda: self._emit(msg)

    def _unoccupied_sample(self, now: float, buf: BufferedFrame) -> list[TrainingLabel]:
        every = self.settings.media.min_save_seconds
        if (
            self.media is None
            or every <= 0
            or self._quiet_since is None
            or now - self._quiet_since < every
            or self.tracker.occupied_recent()
            or not self.state(SystemSetting.TRAINING)
        ):
            return []
        self._quiet_since = now
        event_id = make_event_id(self.camera, now, buf.seq, "unocc")
        frames = self.ring.frames()[:-1]
        meta = {
            "event_id": event_id,
            "camera": self.camera,
            "type": "sample",
            "label": Label.UNOCCUPIED.value,
            "captured_at": buf.captured_at,
            "frame_seq": buf.seq,
            "detector": {"preroll_frames": len(frames)},
        }
        self.media.save_sample(self.camera, event_id, buf, frames, meta)
        return [
            TrainingLabel(
                event_id=event_id,
                camera=self.camera,
                label=Label.UNOCCUPIED,
                labelled_by="detector:auto",
                labelled_at=now,
                source="detector",
            )
        ]


def save_missed(
    pipeline: CameraPipeline, request: MissedAlert, now: float
) -> tuple[TrainingLabel | None, str]:
    """Save the camera's last ``request.seconds`` (its missed-alert buffer) as an *occupied*
    sample the system did not alert on: a folder like an unoccupied sample (snapshot, the
    frames as pre-roll, event.json with their rate), then its label. ``(label, why not)``; a
    request whose sample exists already (a redelivery) is answered with its label again."""
    media, buffer, last = pipeline.media, pipeline.missed, pipeline._last
    if media is None or buffer.seconds <= 0:
        return None, "missed alerts are off (media off or media.missed_buffer_seconds 0)"
    if last is None:
        return None, "no frame from this camera yet"
    seconds = min(request.seconds or buffer.seconds, buffer.seconds)
    frames = buffer.since(last.captured_at - seconds)
    if not frames:
        return None, "the buffer holds no frame of that time"
    event_id = request.event_id or make_event_id(pipeline.camera, now, last.seq, "miss")
    label = TrainingLabel(
        event_id=event_id,
        camera=pipeline.camera,
        label=Label.OCCUPIED,
        labelled_by=request.requested_by,
        labelled_at=now,
        source="missed",
    )
    if media.folder(pipeline.camera, event_id).exists():
        return label, ""
    meta = {
        "event_id": event_id,
        "camera": pipeline.camera,
        "type": "sample",
        "label": Label.OCCUPIED.value,
        "source": "missed",
        "requested_by": request.requested_by,
        "captured_at": frames[0].captured_at,
        "frame_seq": last.seq,
        "detector": {
            "preroll_frames": len(frames),
            "fps": buffer.rate(frames),
            "seconds": round(frames[-1].captured_at - frames[0].captured_at, 3),
        },
    }
    media.save_sample(pipeline.camera, event_id, frames[-1], frames, meta)
    return label, ""


def _check_region(result: MotionResult, before: list[BoxXYWH]) -> tuple[bool, BoxXYWH | None]:
    """(check this frame?, region; None = the whole frame) for a frame's motion result;
    ``before``: the previous frame's check boxes."""
    if result.occupied or result.check_boxes:
        return True, _union(result.check_boxes or result.boxes)
    if result.global_change:
        if result.relit_whole:  # no telling what changed: where motion just was, else all
            return True, _union(before)
        return bool(result.relit_boxes), _union(result.relit_boxes)
    return False, None


def _union(boxes: list[BoxXYWH]) -> BoxXYWH | None:
    if not boxes:
        return None
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def _overlap(box: BoxXYWH, roi: BoxXYWH) -> float:
    """Fraction of ``box`` inside ``roi``."""
    x0, y0 = max(box[0], roi[0]), max(box[1], roi[1])
    x1 = min(box[0] + box[2], roi[0] + roi[2])
    y1 = min(box[1] + box[3], roi[1] + roi[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / max(1, box[2] * box[3])


def _meta(msg: MotionEvent, preroll: list[BufferedFrame] | None) -> dict[str, Any]:
    meta: dict[str, Any] = msg.model_dump(mode="json")
    if preroll is not None:
        meta["detector"] = {"preroll_frames": len(preroll)}
    return meta
