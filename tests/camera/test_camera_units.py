"""Plain-logic tests: orientation, pacing, backoff, fps meter, settings, device parsing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from homesec.backoff import Backoff
from homesec.settings import load_settings
from homesec_camera.imaging import JpegEncoder, orient
from homesec_camera.settings import CameraSettings
from homesec_camera.sources.opencv import parse_device, redact
from homesec_camera.timing import FpsMeter, Pacer


def marker_frame() -> np.ndarray:
    """A 40x60 (h x w) black frame with a white 10x10 marker in the top-left corner."""
    frame = np.zeros((40, 60, 3), np.uint8)
    frame[0:10, 0:10] = 255
    return frame


def marker_corner(frame: np.ndarray) -> str:
    h, w = frame.shape[:2]
    corners = {
        "top-left": frame[: h // 4, : w // 4],
        "top-right": frame[: h // 4, -(w // 4) :],
        "bottom-left": frame[-(h // 4) :, : w // 4],
        "bottom-right": frame[-(h // 4) :, -(w // 4) :],
    }
    return max(corners, key=lambda k: float(corners[k].mean()))


@pytest.mark.parametrize(
    ("rotate", "hflip", "vflip", "corner", "shape"),
    [
        (0, False, False, "top-left", (40, 60)),
        (0, True, False, "top-right", (40, 60)),
        (0, False, True, "bottom-left", (40, 60)),
        (0, True, True, "bottom-right", (40, 60)),
        (180, False, False, "bottom-right", (40, 60)),
        (90, False, False, "top-right", (60, 40)),
        (270, False, False, "bottom-left", (60, 40)),
        (90, True, False, "bottom-right", (60, 40)),
    ],
)
def test_orient_moves_the_marker(
    rotate: int, hflip: bool, vflip: bool, corner: str, shape: tuple[int, int]
) -> None:
    out = orient(marker_frame(), rotate=rotate, hflip=hflip, vflip=vflip)
    assert out.shape[:2] == shape
    assert marker_corner(out) == corner


def test_jpeg_encoder_quality_changes_size() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    small, large = JpegEncoder(20).encode(frame), JpegEncoder(95).encode(frame)
    assert small[:2] == b"\xff\xd8" and large[:2] == b"\xff\xd8"
    assert len(small) < len(large)


def test_pacer_ticks_at_the_rate_without_drift() -> None:
    pacer = Pacer(50.0, time.monotonic)
    stop = threading.Event()
    start = time.monotonic()
    skipped = [pacer.wait(stop) for _ in range(25)]
    elapsed = time.monotonic() - start
    assert sum(skipped) == 0
    # 25 ticks at 50 fps: the 25th deadline is 0.48 s after the start (first tick is immediate)
    assert 0.4 < elapsed < 2.0


def test_pacer_skips_missed_ticks_instead_of_bursting() -> None:
    pacer = Pacer(50.0, time.monotonic)  # 20 ms period
    stop = threading.Event()
    ticks, skipped, start = 0, 0, time.monotonic()
    while time.monotonic() - start < 0.6:
        result = pacer.wait(stop)
        ticks += 1
        skipped += result
        time.sleep(0.055)  # work that takes longer than two periods
    assert skipped >= ticks  # at least one missed tick per frame is reported
    assert ticks <= 12  # ~0.6 / 0.055: no catch-up burst


def test_pacer_wait_returns_minus_one_when_stopped() -> None:
    pacer = Pacer(0.5, time.monotonic)
    stop = threading.Event()
    assert pacer.wait(stop) == 0
    stop.set()
    assert pacer.wait(stop) == -1


def test_backoff_doubles_up_to_max_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_fps_meter_measures_the_window() -> None:
    now = [100.0]
    meter = FpsMeter(5.0, lambda: now[0])
    assert meter.fps() == 0.0
    for _ in range(51):
        meter.tick()
        now[0] += 0.1
    now[0] -= 0.1
    assert meter.fps() == pytest.approx(10.0, rel=0.05)
    now[0] += 10  # nothing for 10 s
    assert meter.fps() == 0.0


def test_device_parsing_and_redaction() -> None:
    assert parse_device("0") == 0
    assert parse_device("/dev/video2") == "/dev/video2"
    assert redact("rtsp://admin:secret@10.0.0.5:554/stream1") == "rtsp://***@10.0.0.5:554/stream1"
    assert redact("/tmp/clip.avi") == "/tmp/clip.avi"


def test_defaults_run_the_demo() -> None:
    s = CameraSettings()
    assert (s.source, s.camera_id, s.fps, s.width, s.height) == ("demo", "front", 10.0, 640, 480)
    assert (s.jpeg_quality, s.rotate, s.hflip, s.vflip, s.metrics_port) == (
        80,
        0,
        False,
        False,
        9101,
    )
    assert CameraSettings(rotate=90).output_size == (480, 640)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOMESEC_CAMERA_FPS", "fast"),
        ("HOMESEC_CAMERA_FPS", "0"),
        ("HOMESEC_CAMERA_SOURCE", "webcam"),
        ("HOMESEC_CAMERA_ROTATE", "45"),
        ("HOMESEC_CAMERA_CAMERA_ID", "front/door"),
        ("HOMESEC_CAMERA_JPEG_QUALITY", "101"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(CameraSettings)
    assert exc.value.code == 2
    assert name in capsys.readouterr().err


def test_backoff_bounds_must_be_ordered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMESEC_CAMERA_RECONNECT_MIN_SECONDS", "10")
    monkeypatch.setenv("HOMESEC_CAMERA_RECONNECT_MAX_SECONDS", "2")
    with pytest.raises(SystemExit) as exc:
        load_settings(CameraSettings)
    assert exc.value.code == 2


def test_rotate_is_read_from_the_environment(monkeypatch) -> None:
    from homesec.settings import load_settings
    from homesec_camera.settings import CameraSettings

    monkeypatch.setenv("HOMESEC_CAMERA_ROTATE", "180")
    assert load_settings(CameraSettings).rotate == 180
    monkeypatch.setenv("HOMESEC_CAMERA_ROTATE", "45")
    with pytest.raises(SystemExit):
        load_settings(CameraSettings)
