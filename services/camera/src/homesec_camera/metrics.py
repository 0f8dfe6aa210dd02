"""The camera's Prometheus metrics (registered on the service's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from homesec.metrics import LATENCY_BUCKETS


class CameraMetrics:
    """``homesec_camera_*`` metrics, all labelled by camera id."""

    def __init__(self, registry: CollectorRegistry, camera: str) -> None:
        r = registry
        labels = ["camera"]
        self.frames_captured = Counter(
            "homesec_camera_frames_captured", "Frames read from the source", labels, registry=r
        ).labels(camera)
        self.frames_published = Counter(
            "homesec_camera_frames_published",
            "Frames published on the frames topic",
            labels,
            registry=r,
        ).labels(camera)
        dropped = Counter(
            "homesec_camera_frames_dropped",
            "Frame slots skipped: late (the loop fell behind) or disconnected (source down)",
            ["camera", "reason"],
            registry=r,
        )
        self.dropped_late = dropped.labels(camera, "late")
        self.dropped_disconnected = dropped.labels(camera, "disconnected")
        self.capture_errors = Counter(
            "homesec_camera_capture_errors",
            "Source failures (open or read); each one starts a reconnect with backoff",
            labels,
            registry=r,
        ).labels(camera)
        self.fps = Gauge(
            "homesec_camera_fps",
            "Effective published frames per second (last seconds)",
            labels,
            registry=r,
        ).labels(camera)
        self.target_fps = Gauge(
            "homesec_camera_target_fps", "Configured frames per second", labels, registry=r
        ).labels(camera)
        self.encode_seconds = Histogram(
            "homesec_camera_encode_seconds",
            "Time to orient and JPEG-encode one frame",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        ).labels(camera)
        self.source_up = Gauge(
            "homesec_camera_source_up",
            "1 while the source delivers frames, else 0",
            labels,
            registry=r,
        ).labels(camera)
        self.snapshots_published = Counter(
            "homesec_camera_snapshots_published",
            "Snapshots published (periodic refresh and on request)",
            labels,
            registry=r,
        ).labels(camera)
