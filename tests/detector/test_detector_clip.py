"""The clip encoder: OpenH264 through ctypes, the MP4 writer, decoded back by OpenCV's FFmpeg."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from homesec_detector.clip import (
    Clip,
    ClipError,
    ClipFrame,
    ClipWorker,
    clip_size,
    durations_ms,
    encode_clip,
)
from homesec_detector.clip import _jpeg_width as jpeg_width
from homesec_detector.openh264 import OpenH264Unavailable, load_library

ROAD = Path(__file__).resolve().parents[1] / "assets" / "video" / "road_640x360.avi"


def road_frames(count: int, size: tuple[int, int] = (640, 480), fps: float = 10.0) -> list:
    capture = cv2.VideoCapture(str(ROAD))
    frames = []
    for n in range(count):
        ok, image = capture.read()
        assert ok
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        frames.append(ClipFrame(data, 1_764_100_000.0 + n / fps))
    return frames


def decode(data: bytes, tmp_path: Path) -> tuple[list[np.ndarray], cv2.VideoCapture, list]:
    """Frames, the capture, and each frame's presentation time (ms)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    images, times = [], []
    while True:
        ok, image = capture.read()
        if not ok:
            return images, capture, times
        images.append(image)
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC))


def top_boxes(data: bytes) -> list[bytes]:
    kinds, offset = [], 0
    while offset < len(data):
        size = struct.unpack(">I", data[offset : offset + 4])[0]
        kinds.append(data[offset + 4 : offset + 8])
        offset += size
    assert offset == len(data)
    return kinds


def test_clip_decodes_with_every_frame_as_h264(tmp_path: Path) -> None:
    frames = road_frames(60)
    clip = encode_clip(frames, max_width=640, bitrate_kbps=600)
    assert (clip.frames, clip.width, clip.height, clip.skipped) == (60, 640, 480, 0)
    assert clip.duration == pytest.approx(6.0)
    assert top_boxes(clip.data) == [b"ftyp", b"moov", b"mdat"]  # playable while it streams
    images, capture, _ = decode(clip.data, tmp_path)
    assert len(images) == 60
    assert images[0].shape == (480, 640, 3)
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc in ("avc1", "h264")
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, rel=0.01)
    source = cv2.imdecode(np.frombuffer(frames[30].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert cv2.PSNR(source, images[30]) > 30  # the picture, not just a frame count
    assert len(clip.data) < 600_000 // 8 * 6 * 1.2  # within the bitrate cap


def test_a_key_frame_mid_clip_keeps_every_frame_decodable(tmp_path: Path) -> None:
    """Lights coming up: OpenH264 starts a new key frame (with new parameter sets) mid-clip."""
    frames = []
    for n in range(20):
        picture = np.full((480, 640, 3), n * 10, np.uint8)
        cv2.circle(picture, (30 + n * 25, 240), 40, (0, 0, 255), -1)
        data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        frames.append(ClipFrame(data, n / 10))
    clip = encode_clip(frames)
    images, _, _ = decode(clip.data, tmp_path)
    assert len(images) == 20
    last = cv2.imdecode(np.frombuffer(frames[-1].jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert cv2.PSNR(last, images[-1]) > 30


def test_frames_show_as_long_as_they_were_captured_apart(tmp_path: Path) -> None:
    frames = road_frames(4)
    times = [0.0, 0.1, 0.5, 0.6]
    frames = [ClipFrame(f.jpeg, 1000.0 + t) for f, t in zip(frames, times, strict=True)]
    clip = encode_clip(frames)
    assert clip.duration == pytest.approx(0.7)  # 100 + 400 + 100 ms, the last one the median
    images, _, times = decode(clip.data, tmp_path)
    assert len(images) == 4
    assert times == pytest.approx([0, 100, 500, 600], abs=1)


def test_durations_are_bounded() -> None:
    assert durations_ms([5.0]) == [100]
    assert durations_ms([0.0, 0.0, 30.0, 30.1]) == [1, 1000, 100, 100]


def test_large_frames_are_scaled_down_and_odd_sizes_made_even(tmp_path: Path) -> None:
    big = road_frames(5, size=(1280, 960))
    assert jpeg_width(big[0].jpeg) == 1280
    clip = encode_clip(big, max_width=640)
    assert (clip.width, clip.height) == (640, 480)
    images, _, _ = decode(clip.data, tmp_path)
    assert [i.shape for i in images] == [(480, 640, 3)] * 5
    assert clip_size(642, 361, 640) == (640, 360)
    assert clip_size(321, 241, 640) == (320, 240)


def test_undecodable_frames_are_left_out(tmp_path: Path) -> None:
    frames = road_frames(5)
    frames[2] = ClipFrame(b"\xff\xd8 not a jpeg \xff\xd9", frames[2].captured_at)
    clip = encode_clip(frames)
    assert (clip.frames, clip.skipped) == (4, 1)
    assert len(decode(clip.data, tmp_path)[0]) == 4
    with pytest.raises(ClipError):
        encode_clip([ClipFrame(b"junk", 0.0)])


def test_a_missing_library_says_what_to_install() -> None:
    with pytest.raises(OpenH264Unavailable, match="libopenh264"):
        load_library("/nonexistent/libopenh264.so.7")


def test_the_clip_thread_runs_at_a_lower_priority() -> None:
    seen: list[int] = []
    done = threading.Event()

    def probe(frames: Any, **options: Any) -> Clip:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return encode_clip(frames, **options)

    worker = ClipWorker(max_width=640, bitrate_kbps=600, nice=7, encode=probe)
    worker.start()
    try:
        worker.submit(road_frames(3), lambda clip, error: done.set())
        assert done.wait(30) and worker.wait_idle(30)
    finally:
        worker.stop()
    assert seen == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)]  # this thread: unchanged
