"""The broker-facing shell: MQTT topics in and out of the capture loop."""

from __future__ import annotations

import logging
import threading
from typing import Any

from homesec.bus import Bus, Received
from homesec.contract import (
    FRAMES,
    SNAPSHOT,
    SNAPSHOT_REQUEST,
    Frame,
    ServiceState,
    SnapshotRequest,
)
from homesec.metrics import ServiceMetrics
from homesec_camera.capture import CaptureLoop
from homesec_camera.metrics import CameraMetrics
from homesec_camera.settings import CameraSettings
from homesec_camera.sources import FrameSource, build_source

log = logging.getLogger("homesec_camera.service")


class BusSink:
    """Publishes the capture loop's output on the bus."""

    def __init__(self, bus: Bus, camera: str) -> None:
        self._bus = bus
        self._camera = camera

    def publish_frame(self, frame: Frame) -> bool:
        return not self._bus.publish(FRAMES, frame, camera=self._camera).dropped

    def publish_snapshot(self, frame: Frame) -> bool:
        return not self._bus.publish(SNAPSHOT, frame, camera=self._camera).dropped

    def publish_status(self, state: ServiceState, detail: str, info: dict[str, Any]) -> None:
        self._bus.set_status(state, detail, **info)


class CameraService:
    """One camera on the bus. Construct before ``bus.start()`` (it subscribes)."""

    def __init__(
        self,
        bus: Bus,
        settings: CameraSettings,
        metrics: ServiceMetrics,
        source: FrameSource | None = None,
    ) -> None:
        self.settings = settings
        self.camera_metrics = CameraMetrics(metrics.registry, settings.camera_id)
        self.loop = CaptureLoop(
            settings,
            source if source is not None else build_source(settings),
            BusSink(bus, settings.camera_id),
            self.camera_metrics,
        )
        bus.subscribe(SNAPSHOT_REQUEST, self._on_snapshot_request, camera=settings.camera_id)

    def _on_snapshot_request(self, msg: Received[SnapshotRequest]) -> None:
        published = self.loop.request_snapshot()
        log.info(
            "snapshot requested",
            extra={
                "request_id": msg.payload.request_id,
                "requested_by": msg.payload.requested_by,
                "published": published,
            },
        )

    def run(self, stop: threading.Event) -> None:
        self.loop.run(stop)
