"""The detector service: frames in from the bus, events and state out.

Frames arrive on paho's network thread; each camera has a :class:`~homesec.latest.LatestSlot`
and a worker thread, so only the newest frame is processed when the detector falls behind (the
replaced ones are counted as dropped). Event messages are published through the media writer's
queue, after the snapshot they name is on disk; an alerting event is pinned for the gateway just
before its first alerting message goes out. Retention runs on its own thread. The service also
hosts the system state owner.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from homesec.bus import Bus, Received
from homesec.contract import (
    ALERT_SNAPSHOT,
    FRAMES,
    MAX_JPEG_BYTES,
    MISSED_ALERT,
    MOTION_EVENTS,
    MOTION_STATE,
    TRAINING_LABELS,
    EventType,
    Frame,
    MissedAlert,
    MotionEvent,
    OnOff,
    ServiceState,
    SystemSetting,
    TrainingLabel,
    is_identifier,
)
from homesec.homeassistant import HomeAssistantDiscovery
from homesec.latest import LatestSlot
from homesec.media import UnsafePath, resolve_inside
from homesec.metrics import ServiceMetrics
from homesec.pins import PinKind, Pins
from homesec.state import SystemStateOwner
from homesec_detector.clip import Clip
from homesec_detector.media_writer import MediaWriter
from homesec_detector.metrics import DetectorMetrics
from homesec_detector.pipeline import (
    CameraPipeline,
    PersonChecker,
    StateGetter,
    build_person_checker,
    save_missed,
)
from homesec_detector.retention import Retention, RetentionReport
from homesec_detector.settings import DetectorSettings
from homesec_detector.tune_identity import run_basis
from homesec_detector.tune_result import RESULT_FILE, TuneResultPublisher
from homesec_detector.tune_schedule import NightlyTune

log = logging.getLogger("homesec_detector")

MEDIA_RECOVERY_SECONDS = 60.0
"""Status returns to ok at the next event published this long after the last media error."""


class CameraWorker:
    """One camera: its slot, its pipeline and the thread that drains the slot."""

    def __init__(self, service: DetectorService, camera: str) -> None:
        self.camera = camera
        self.service = service
        self.slot: LatestSlot[Frame] = LatestSlot()
        self.pipeline = CameraPipeline(
            camera,
            service.settings,
            service.state_for(camera),
            person=service.person,
            media=service.media,
            on_message=lambda msg: service.publish_event(msg, self),
            zones=lambda width, height: service.state.alarm.zone_check(camera, width, height),
        )
        self.alerted: set[str] = set()
        self.alarmed: set[str] = set()
        self._resets_seen = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"detector-{camera}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.slot.put(None)  # type: ignore[arg-type]  # wake the worker
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.slot.take(timeout=1.0)
            if self._stop.is_set():
                return
            try:
                if frame is None:
                    self.pipeline.tick(time.time())
                else:
                    self._process(frame)
            except Exception:
                log.exception("frame processing failed", extra={"camera": self.camera})

    def _process(self, frame: Frame) -> None:
        m = self.service.metrics
        outcome = self.pipeline.process(frame)
        for stage, seconds in outcome.stages.items():
            m.stage_seconds.labels(stage).observe(seconds)
        m.frames_processed.labels(self.camera).inc()
        m.frame_latency.labels(self.camera).observe(max(0.0, time.time() - frame.captured_at))
        if outcome.person_checks:
            m.person_checks.labels(self.camera).inc(outcome.person_checks)
        resets = self.pipeline.motion.background_resets
        if resets > self._resets_seen:
            m.background_resets.labels(self.camera).inc(resets - self._resets_seen)
            self._resets_seen = resets
        for label in outcome.labels:
            self.service.publish_label(label)


class DetectorService:
    """Subscribes to frames, runs a pipeline per camera, publishes events and motion state."""

    def __init__(
        self,
        bus: Bus,
        settings: DetectorSettings,
        metrics: ServiceMetrics,
        *,
        person: PersonChecker | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.metrics = DetectorMetrics(metrics.registry)
        self.state = SystemStateOwner(
            bus,
            settings.state_defaults(),
            restore_wait_seconds=settings.restore_wait_seconds,
            state_path=settings.data_dir / "state" / "system.json",
            alarm=settings.alarm,
            codes=settings.codes,
        )
        self.discovery: HomeAssistantDiscovery | None = None
        if settings.ha_discovery:
            self.discovery = HomeAssistantDiscovery(
                bus,
                settings.cameras,
                discovery_prefix=settings.ha_discovery_prefix,
                codes=settings.codes,
            )
            self.discovery.install()
        self.pins = Pins(settings.pins_dir, on_error=self.metrics.pin_errors.inc)
        self.media = MediaWriter(
            settings.media_dir,
            settings.media,
            on_error=self._on_media_error,
            pins=self.pins,
            on_clip=self._on_clip,
        )
        m = settings.media
        self.retention = Retention(
            settings.media_dir,
            self.media.index,
            self.pins,
            max_age_days=m.max_age_days,
            max_total_mb=m.max_total_mb,
            pin_max_age_days=m.pin_max_age_days,
            interval_seconds=m.retention_interval_seconds,
            candidate_keep_days=m.candidate_keep_days,
            on_report=self._on_retention,
            on_error=self.metrics.retention_errors.inc,
        )
        self.person = person if person is not None else build_person_checker(settings)
        self.workers: dict[str, CameraWorker] = {}
        self._media_failing = False
        self._media_error_at = 0.0
        self._problems: dict[str, tuple[str, dict[str, object]]] = {}
        self._status_lock = threading.Lock()
        self._lock = threading.Lock()
        self._closed = False
        self.tune_result = TuneResultPublisher(bus, settings.data_dir)
        self.nightly_tune = NightlyTune(
            settings.tune,
            settings.data_dir,
            settings.data_dir / RESULT_FILE,
            on_outcome=self._on_tune_run,
            basis=lambda: run_basis(settings),
        )
        if settings.cameras:
            for camera in settings.cameras:
                bus.subscribe(FRAMES, self._on_frame, camera=camera)
                bus.subscribe(MISSED_ALERT, self._on_missed, camera=camera)
        else:
            bus.subscribe(FRAMES, self._on_frame)
            bus.subscribe(MISSED_ALERT, self._on_missed)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """After the bus started: restore/publish system state, start media writer and retention."""
        self.media.start()
        self.retention.start()
        self.state.start()
        self.nightly_tune.start()
        log.info(
            "detector running",
            extra={
                "cameras": self.settings.cameras or "all",
                "person_mode": self.settings.person_mode.value,
                "media_dir": str(self.settings.media_dir),
            },
        )

    def run(self, stop: threading.Event) -> None:
        self.start()
        self.tune_result.poll()
        while not stop.wait(self.tune_result.interval):
            self.tune_result.poll()
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop()
        for worker in workers:  # open events end cleanly: end message, motion state OFF
            try:
                worker.pipeline.close(time.time())
            except Exception:
                log.exception("closing camera failed", extra={"camera": worker.camera})
        self.media.flush()
        self.media.stop()
        self.retention.stop()
        self.nightly_tune.stop()
        self.state.stop()

    def _on_tune_run(self, outcome: str, seconds: float) -> None:
        m = self.metrics
        m.tune_runs.labels(outcome).inc()
        if outcome != "skipped":
            m.tune_last_run_seconds.set(seconds)
        if outcome == "ok":
            m.tune_last_success.set_to_current_time()
            self.tune_result.poll()  # published now, not at the next poll

    # ---- frames ---------------------------------------------------------------------------

    def state_for(self, camera: str) -> StateGetter:
        """The pipeline's view of the system state: ``armed`` means "the alarm selects this
        camera now" (armed, pending or triggered in a mode that includes it)."""

        def get(setting: SystemSetting) -> bool:
            if setting is SystemSetting.ARMED:
                return self.state.camera_alerts(camera)
            return self.state.get(setting)

        return get

    def worker(self, camera: str) -> CameraWorker | None:
        with self._lock:
            if self._closed:
                return None
            worker = self.workers.get(camera)
            if worker is None:
                worker = self.workers[camera] = CameraWorker(self, camera)
                self.bus.publish(MOTION_STATE, OnOff("OFF"), camera=camera)
                self.metrics.motion_active.labels(camera).set(0)
                worker.start()
                log.info("camera seen", extra={"camera": camera})
                if self.discovery is not None:
                    self.discovery.add_camera(camera)
            return worker

    def _on_frame(self, msg: Received[Frame]) -> None:
        camera = msg.params.get("camera", msg.payload.camera)
        if not is_identifier(camera):
            return
        worker = self.worker(camera)
        if worker is not None and worker.slot.put(msg.payload):
            self.metrics.frames_dropped.labels(camera).inc()

    def _on_missed(self, msg: Received[MissedAlert]) -> None:
        """The owner's missed alert: save the camera's buffer as an occupied sample, then its
        label (after the sample's files, on the media thread)."""
        camera = msg.params.get("camera", "")
        with self._lock:
            worker = self.workers.get(camera)
        if worker is None:
            log.warning("missed alert for a camera not seen", extra={"camera": camera[:64]})
            return
        label, why = save_missed(worker.pipeline, msg.payload, time.time())
        if label is None:
            log.warning("missed alert not saved", extra={"camera": camera, "reason": why})
            return
        self.metrics.missed_alerts.labels(camera).inc()
        log.info(
            "missed alert saved",
            extra={"camera": camera, "event_id": label.event_id, "by": label.labelled_by},
        )
        self.publish_label(label)

    # ---- publishing -----------------------------------------------------------------------

    def publish_event(self, msg: MotionEvent, worker: CameraWorker) -> None:
        """Called by the pipeline in order: on the media thread right after the files the
        message names were written (media on), or on the worker thread (media off)."""
        self._publish_now(msg, worker)

    def _publish_now(self, msg: MotionEvent, worker: CameraWorker) -> None:
        m = self.metrics
        camera = msg.camera
        self._media_recovered()
        first_alert = msg.decision.alert and msg.event_id not in worker.alerted
        if first_alert and msg.media_dir is not None:  # the gateway releases it once posted
            self.pins.pin(PinKind.ALERT, camera, msg.event_id)
        if msg.decision.alarm and msg.event_id not in worker.alarmed:
            # the alarm moves first, so its new state (pending...) is out before the event
            worker.alarmed.add(msg.event_id)
            self.state.detection(camera, msg.event_id)
        self.bus.publish(MOTION_EVENTS, msg)
        if msg.type is not EventType.END:
            m.event_latency.labels(camera).observe(max(0.0, time.time() - msg.frame_captured_at))
        if msg.type is EventType.START:
            m.motion_events.labels(camera).inc()
            m.motion_active.labels(camera).set(1)
            self.bus.publish(MOTION_STATE, OnOff("ON"), camera=camera)
        if first_alert:
            worker.alerted.add(msg.event_id)
            m.alerts.labels(camera).inc()
            self._publish_alert_snapshot(msg)

        log.info(
            "motion event",
            extra={
                "type": msg.type.value,
                "event_id": msg.event_id,
                "camera": camera,
                "alert": msg.decision.alert,
                "reason": msg.decision.reason,
                "person_score": msg.person_score,
            },
        )
        if msg.type is EventType.END:
            if msg.event_id not in worker.alerted and msg.decision.reason.startswith(
                "no person confirmed"
            ):
                m.person_rejections.labels(camera).inc()
                if msg.media_dir is not None:  # a hard negative: kept for the owner's digest
                    self.pins.pin(PinKind.CANDIDATE, camera, msg.event_id)
            worker.alerted.discard(msg.event_id)
            worker.alarmed.discard(msg.event_id)
            m.motion_active.labels(camera).set(0)
            self.bus.publish(MOTION_STATE, OnOff("OFF"), camera=camera)

    def _publish_alert_snapshot(self, msg: MotionEvent) -> None:
        """The alert's snapshot, retained on ``cam/<camera>/alert/snapshot`` (Home Assistant's
        image entity). Written before this runs (media thread); no media, no snapshot."""
        if msg.snapshot is None:
            return
        try:
            data = resolve_inside(self.settings.media_dir, msg.snapshot).read_bytes()
        except (UnsafePath, OSError) as exc:
            log.warning("alert snapshot unreadable", extra={"error": str(exc)[:200]})
            return
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if image is None or len(data) > MAX_JPEG_BYTES:
            return
        height, width = image.shape[:2]
        frame = Frame(
            camera=msg.camera,
            seq=msg.frame_seq,
            captured_at=msg.frame_captured_at,
            width=min(16384, width),
            height=min(16384, height),
            jpeg=data,
        )
        self.bus.publish(ALERT_SNAPSHOT, frame, camera=msg.camera)

    # ---- status ---------------------------------------------------------------------------

    def _problem(self, name: str, detail: str | None, **info: object) -> None:
        """Set or clear one reason to be degraded; the retained status names every current one."""
        with self._status_lock:
            before = dict(self._problems)
            if detail is None:
                self._problems.pop(name, None)
            else:
                self._problems[name] = (detail, info)
            if self._problems == before:
                return
            if not self._problems:
                self.bus.set_status(ServiceState.OK)
                return
            merged: dict[str, object] = {}
            for _, extra in self._problems.values():
                merged.update(extra)
            self.bus.set_status(
                ServiceState.DEGRADED,
                "; ".join(detail for detail, _ in self._problems.values()),
                **merged,
            )

    def _on_media_error(self) -> None:
        """Count; report the service degraded (retained status) while writes keep failing."""
        self.metrics.media_errors.inc()
        self._media_error_at = time.monotonic()
        if not self._media_failing:
            self._media_failing = True
            self._problem(
                "media",
                "event media cannot be written (disk full or read-only?)",
                media_dir=str(self.settings.media_dir),
            )

    def _on_clip(self, clip: Clip | None, error: str | None) -> None:
        m = self.metrics
        if clip is None:
            m.clips.labels("failed").inc()
            return
        m.clips.labels("made").inc()
        m.clip_cpu_seconds.observe(clip.cpu_seconds)
        m.clip_bytes.observe(len(clip.data))

    def _media_recovered(self) -> None:
        if self._media_failing and time.monotonic() - self._media_error_at > MEDIA_RECOVERY_SECONDS:
            self._media_failing = False
            self._problem("media", None)

    def _on_retention(self, report: RetentionReport) -> None:
        """Metrics of a retention pass; degraded while pinned media alone exceed the cap (the
        detector keeps detecting and alerting: only old media cannot be freed)."""
        m = self.metrics
        if report.deleted:
            m.media_pruned.inc(report.deleted)
        m.media_bytes.set(report.total_bytes)
        m.media_pinned_bytes.set(report.pinned_bytes)
        m.media_pinned_events.set(report.pinned_events)
        m.retention_seconds.observe(report.seconds)
        if report.expired_pins:
            m.pins_expired.inc(len(report.expired_pins))
        mb = 1024 * 1024
        self._problem(
            "pinned",
            (
                f"pinned media ({report.pinned_bytes / mb:.0f} MB in {report.pinned_events} "
                f"events, still owed to Slack or the uploader) exceed media.max_total_mb "
                f"({report.cap_bytes / mb:.0f} MB): check the slack-gateway and the uploader"
            )
            if report.pinned_over_cap
            else None,
        )

    def publish_label(self, label: TrainingLabel) -> None:
        self.media.call(lambda: self.bus.publish(TRAINING_LABELS, label), essential=True)
