"""The picamera2 adapter against a fake ``picamera2`` module (the Pi camera cannot run here).

The fake records every call under picamera2's real API names and returns frames the way the
library does for an ``RGB888`` main stream: an ``(height, width, 3)`` uint8 array in B, G, R
order."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec.bus import Bus
from homesec.contract import FRAMES, Frame, ServiceState
from homesec.metrics import ServiceMetrics
from homesec.settings import BrokerSettings
from homesec_camera.service import CameraService
from homesec_camera.settings import CameraSettings
from homesec_camera.sources import build_source
from homesec_camera.sources.base import SourceError
from homesec_camera.sources.picamera2 import Picamera2Source
from support import Collector, wait_until


class FakePicamera2Module(types.ModuleType):
    """Stands in for the ``picamera2`` package."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        super().__init__("picamera2")
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail_on = fail_on
        module = self

        class Picamera2:
            def __init__(self, camera_num: int = 0) -> None:
                module._record("Picamera2", camera_num)
                self.config: dict[str, Any] | None = None
                self.started = False
                self.frames = 0

            def create_video_configuration(self, **kwargs: Any) -> dict[str, Any]:
                module._record("create_video_configuration", **kwargs)
                return {"use_case": "video", **kwargs}

            def configure(self, config: dict[str, Any]) -> None:
                module._record("configure", config)
                self.config = config

            def start(self) -> None:
                module._record("start")
                self.started = True

            def capture_array(self, name: str = "main") -> np.ndarray:
                module._record("capture_array", name)
                assert self.started and self.config is not None
                width, height = self.config[name]["size"]
                self.frames += 1
                frame = np.zeros((height, width, 3), np.uint8)
                frame[:, :, 0] = 200  # blue channel first: RGB888 is laid out B, G, R
                frame[:4, :4] = 255
                return frame

            def stop(self) -> None:
                module._record("stop")
                self.started = False

            def close(self) -> None:
                module._record("close")

        self.Picamera2 = Picamera2

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))
        if name == self.fail_on:
            raise RuntimeError(f"{name}: camera __init__ sequence did not complete")

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> FakePicamera2Module:
    module = FakePicamera2Module()
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return module


def test_adapter_uses_the_documented_api(fake_picamera2: FakePicamera2Module) -> None:
    source = Picamera2Source(640, 480, 10.0)
    assert "picamera2" in sys.modules and not fake_picamera2.calls  # nothing until open()
    source.open()
    assert fake_picamera2.names() == [
        "Picamera2",
        "create_video_configuration",
        "configure",
        "start",
    ]
    kwargs = fake_picamera2.calls[1][2]
    assert kwargs["main"] == {"size": (640, 480), "format": "RGB888"}
    assert kwargs["controls"] == {"FrameDurationLimits": (100_000, 100_000)}
    frame = source.read()
    assert fake_picamera2.calls[-1][:2] == ("capture_array", ("main",))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert frame[100, 100, 0] == 200 and frame[100, 100, 2] == 0  # BGR passed through as is
    source.close()
    assert fake_picamera2.names()[-2:] == ["stop", "close"]
    source.close()  # idempotent
    assert fake_picamera2.names().count("close") == 1


def test_picamera2_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import raises ImportError
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        Picamera2Source(640, 480, 10.0).open()


@pytest.mark.parametrize("fail_on", ["Picamera2", "start"])
def test_camera_that_fails_to_start(monkeypatch: pytest.MonkeyPatch, fail_on: str) -> None:
    module = FakePicamera2Module(fail_on=fail_on)
    monkeypatch.setitem(sys.modules, "picamera2", module)
    source = Picamera2Source(320, 240, 5.0)
    with pytest.raises(SourceError, match="cannot start Pi camera"):
        source.open()
    if fail_on == "start":
        assert module.names()[-2:] == ["stop", "close"]  # a half-started camera is released


def test_capture_failure_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    module = FakePicamera2Module(fail_on="capture_array")
    monkeypatch.setitem(sys.modules, "picamera2", module)
    source = Picamera2Source(320, 240, 5.0)
    source.open()
    with pytest.raises(SourceError, match="capture failed"):
        source.read()


def test_service_publishes_pi_camera_frames(
    fake_picamera2: FakePicamera2Module,
    broker_settings: BrokerSettings,
    make_bus: Any,
    tmp_path: Path,
) -> None:
    settings = CameraSettings(
        broker=broker_settings,
        metrics_port=0,
        data_dir=tmp_path,
        source="picamera2",
        width=320,
        height=240,
        fps=10,
        vflip=True,
        hflip=True,
    )
    assert isinstance(build_source(settings), Picamera2Source)
    frames: Collector[Frame] = Collector()
    listener = make_bus("listener")
    assert listener.subscribe(FRAMES, frames, camera="front").wait(10)
    metrics = ServiceMetrics("camera")
    bus = Bus(settings.broker, "camera", metrics)
    service = CameraService(bus, settings, metrics)
    stop = threading.Event()
    bus.start()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        frames.wait_for(3, timeout=15)
        wait_until(lambda: bus.status.info.get("source") == "picamera2", 15)
        assert bus.status.state == ServiceState.OK
    finally:
        stop.set()
        thread.join(10)
        bus.stop(timeout=1)
    assert "close" in fake_picamera2.names()
    image = cv2.imdecode(np.frombuffer(frames.payloads[-1].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    assert image[-2:, -2:].mean() > 200 and image[:2, :2, 2].mean() < 60  # upside down
