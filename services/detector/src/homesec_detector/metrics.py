"""The detector's Prometheus metrics (registered on the service's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from homesec.metrics import LATENCY_BUCKETS

STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class DetectorMetrics:
    """``homesec_detector_*`` metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.frames_processed = Counter(
            "homesec_detector_frames_processed",
            "Frames run through the detector",
            ["camera"],
            registry=r,
        )
        self.frames_dropped = Counter(
            "homesec_detector_frames_dropped",
            "Frames replaced by a newer one before the worker took them (latest-wins)",
            ["camera"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "homesec_detector_stage_seconds",
            "Seconds per processing stage (decode, motion, person, media)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.frame_latency = Histogram(
            "homesec_detector_frame_latency_seconds",
            "Capture timestamp to frame processed",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_latency = Histogram(
            "homesec_detector_event_latency_seconds",
            "Capture timestamp of the causing frame to event message published",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.motion_events = Counter(
            "homesec_detector_motion_events", "Motion events started", ["camera"], registry=r
        )
        self.alerts = Counter(
            "homesec_detector_alerts",
            "Motion events that alerted the owner",
            ["camera"],
            registry=r,
        )
        self.person_checks = Counter(
            "homesec_detector_person_checks", "Person model runs", ["camera"], registry=r
        )
        self.missed_alerts = Counter(
            "homesec_detector_missed_alerts",
            "Missed alerts the owner reported (saved as occupied samples)",
            ["camera"],
            registry=r,
        )
        self.person_rejections = Counter(
            "homesec_detector_person_rejections",
            "Events not alerted because no person was confirmed",
            ["camera"],
            registry=r,
        )
        self.background_resets = Counter(
            "homesec_detector_background_resets",
            "Background re-learnt after a sudden global change (lights, IR switch)",
            ["camera"],
            registry=r,
        )
        self.motion_active = Gauge(
            "homesec_detector_motion_active",
            "1 while a motion event is open",
            ["camera"],
            registry=r,
        )
        self.media_errors = Counter(
            "homesec_detector_media_errors",
            "Event media writes that failed (disk full, ...)",
            registry=r,
        )
        self.media_pruned = Counter(
            "homesec_detector_media_pruned", "Event folders deleted by retention", registry=r
        )
        self.media_bytes = Gauge(
            "homesec_detector_media_bytes",
            "Bytes of event media after the last retention pass",
            registry=r,
        )
        self.media_pinned_bytes = Gauge(
            "homesec_detector_media_pinned_bytes",
            "Bytes of event folders kept by a pin (still owed to Slack or the uploader)",
            registry=r,
        )
        self.media_pinned_events = Gauge(
            "homesec_detector_media_pinned_events",
            "Event folders kept by a pin",
            registry=r,
        )
        self.pins_expired = Counter(
            "homesec_detector_media_pins_expired",
            "Pins older than media.pin_max_age_days: their folders are no longer protected",
            registry=r,
        )
        self.pin_errors = Counter(
            "homesec_detector_media_pin_errors",
            "Pins that could not be written or removed",
            registry=r,
        )
        self.retention_seconds = Histogram(
            "homesec_detector_retention_seconds",
            "Seconds per retention pass (its own thread, not the event path)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=r,
        )
        self.retention_errors = Counter(
            "homesec_detector_retention_errors",
            "Retention passes that failed (retried at the next interval)",
            registry=r,
        )
        self.tune_runs = Counter(
            "homesec_detector_tune_runs",
            "Nightly homesec tune runs by outcome: ok, skipped (no training set yet), failed, "
            "timeout",
            ["outcome"],
            registry=r,
        )
        for outcome in ("ok", "skipped", "failed", "timeout"):
            self.tune_runs.labels(outcome)  # exported at 0 from the start
        self.tune_last_run_seconds = Gauge(
            "homesec_detector_tune_last_run_seconds",
            "Wall seconds of the last nightly tune run (a child process at the lowest priority)",
            registry=r,
        )
        self.tune_last_success = Gauge(
            "homesec_detector_tune_last_success_timestamp_seconds",
            "When the last nightly tune run recorded a result",
            registry=r,
        )
        self.clips = Counter(
            "homesec_detector_clips",
            "Alert clips (clip.mp4): made, or failed (frames undecodable, encoder error)",
            ["outcome"],
            registry=r,
        )
        self.clip_cpu_seconds = Histogram(
            "homesec_detector_clip_cpu_seconds",
            "CPU seconds per clip (decode + H.264 encode + MP4), on the clip encoder's thread",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.clip_bytes = Histogram(
            "homesec_detector_clip_bytes",
            "Size of each clip.mp4",
            buckets=(10e3, 25e3, 50e3, 100e3, 250e3, 500e3, 1e6, 2.5e6, 5e6),
            registry=r,
        )
