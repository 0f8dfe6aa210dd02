"""An event's clip: its pre-roll and first frames as one H.264 MP4 (``clip.mp4``).

:func:`encode_clip` turns the camera's JPEG frames into the file (decode, scale to at most
``max_width``, convert to I420, OpenH264, :mod:`homesec_detector.mp4`); each frame shows until the
next one was captured, so the clip plays in real time. :class:`ClipWorker` runs the encodes on a
thread of their own, at a lower CPU priority, so a clip never delays the media writer, and with
it the event messages, nor the frame workers. Measurements and the choice of codec and encoder:
docs/performance.md, docs/deployment.md.
"""

from __future__ import annotations

import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import cv2
import numpy as np

from homesec_detector.mp4 import TIMESCALE, Sample, write_mp4
from homesec_detector.openh264 import EncoderSettings, H264Encoder

log = logging.getLogger("homesec_detector.clip")

DEFAULT_FRAME_MS = 100
"""A frame's duration when the clip's timestamps cannot tell (a single frame)."""
MAX_FRAME_MS = 1000
"""Longest a frame is shown: a camera that stalled does not freeze the clip for long."""


@dataclass(frozen=True)
class ClipFrame:
    jpeg: bytes
    captured_at: float


@dataclass(frozen=True)
class Clip:
    """An encoded clip and what went into it."""

    data: bytes
    frames: int
    width: int
    height: int
    duration: float  # seconds
    cpu_seconds: float  # decode + encode + mux, on the thread that ran it
    skipped: int = 0  # frames that could not be decoded


class ClipError(RuntimeError):
    """No clip can be made from these frames."""


def clip_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """The clip's frame size: at most ``max_width`` wide, aspect kept, both sides even."""
    if width > max_width:
        height = round(height * max_width / width)
        width = max_width
    return max(2, width - width % 2), max(2, height - height % 2)


def gap_ms(earlier: float, later: float) -> int:
    """How long the frame captured at ``earlier`` shows before the one captured at ``later``."""
    return min(MAX_FRAME_MS, max(1, round((later - earlier) * 1000)))


def durations_ms(times: Sequence[float]) -> list[int]:
    """How long each frame shows: the gap to the next capture (the last one: the median gap)."""
    gaps = [gap_ms(a, b) for a, b in zip(times, times[1:], strict=False)]
    last = round(statistics.median(gaps)) if gaps else DEFAULT_FRAME_MS
    return [*gaps, last]


def encode_clip(
    frames: Sequence[ClipFrame],
    *,
    max_width: int = 640,
    bitrate_kbps: int = 600,
    library: str | None = None,
) -> Clip:
    """The MP4 of ``frames`` (oldest first). Frames that do not decode are left out.

    Streams: each frame is decoded, converted and encoded before the next one is decoded, so
    one decoded image is held at a time (holding them all cost 0.9 MB per 640x480 frame, 56 MB
    for a 61-frame clip). A frame's presentation time is the sum of the kept frames' gaps
    before it, so every kept frame can be encoded as soon as it decodes; the durations, which
    need the next kept frame, are filled in at the end."""
    started = time.thread_time()
    skipped = 0
    size: tuple[int, int] | None = None
    times: list[float] = []
    coded: list[Sequence[bytes]] = []
    encoder: H264Encoder | None = None
    elapsed = 0
    with ExitStack() as stack:
        for frame in frames:
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), _flag(frame.jpeg, max_width))
            if image is None:
                skipped += 1
                continue
            if size is None:
                size = clip_size(image.shape[1], image.shape[0], max_width)
                settings = _encoder_settings(size, frames, bitrate_kbps)
                encoder = stack.enter_context(H264Encoder(settings, library))
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if times:
                elapsed += gap_ms(times[-1], frame.captured_at)
            times.append(frame.captured_at)
            assert encoder is not None
            coded.append(encoder.encode(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), elapsed))
    if size is None:
        raise ClipError(f"no decodable frame among {len(frames)}")
    width, height = size
    durations = durations_ms(times)
    samples = [Sample(nals, duration) for nals, duration in zip(coded, durations, strict=True)]
    data = write_mp4(samples, width, height)
    return Clip(
        data=data,
        frames=len(samples),
        width=width,
        height=height,
        duration=sum(durations) / TIMESCALE,
        cpu_seconds=time.thread_time() - started,
        skipped=skipped,
    )


def _encoder_settings(
    size: tuple[int, int], frames: Sequence[ClipFrame], bitrate_kbps: int
) -> EncoderSettings:
    """The encoder's settings; its frame rate (a rate-control hint) from all the frames' times,
    before it is known which of them decode."""
    durations = durations_ms([f.captured_at for f in frames])
    fps = min(30.0, max(1.0, len(durations) * 1000 / sum(durations)))
    return EncoderSettings(size[0], size[1], bitrate=bitrate_kbps * 1000, fps=fps)


def _flag(jpeg: bytes, max_width: int) -> int:
    """Decode flag: a reduced JPEG decode when the frame is at least twice the clip's width."""
    width = _jpeg_width(jpeg)
    if width is not None:
        if width >= 4 * max_width:
            return cv2.IMREAD_REDUCED_COLOR_4
        if width >= 2 * max_width:
            return cv2.IMREAD_REDUCED_COLOR_2
    return cv2.IMREAD_COLOR


def _jpeg_width(jpeg: bytes) -> int | None:
    """The width in a JPEG's start-of-frame header (None when it cannot be found)."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            return None
        marker = jpeg[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(jpeg[i + 7 : i + 9], "big")
        i += 2 + length
    return None


# ---- the worker ------------------------------------------------------------------------------

Done = Callable[[Clip | None, str | None], None]
"""Called on the worker thread with the clip, or None and why not."""


@dataclass(frozen=True)
class _Job:
    frames: Sequence[ClipFrame]
    done: Done


class ClipWorker:
    """Encodes clips one at a time on its own thread (inline when ``threaded`` is False)."""

    def __init__(
        self,
        *,
        max_width: int,
        bitrate_kbps: int,
        library: str | None = None,
        nice: int = 0,
        threaded: bool = True,
        encode: Callable[..., Clip] = encode_clip,
    ) -> None:
        self._options = {"max_width": max_width, "bitrate_kbps": bitrate_kbps, "library": library}
        self._nice = nice
        self._threaded = threaded
        self._encode = encode
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(self) -> None:
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="clip-encoder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, frames: Sequence[ClipFrame], done: Done) -> None:
        job = _Job(list(frames), done)
        if not self._threaded:
            self._do(job)
            return
        with self._lock:
            self._busy += 1
        self._queue.put(job)

    def idle(self) -> bool:
        with self._lock:
            return self._busy == 0

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _run(self) -> None:
        self._lower_priority()
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._do(job)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _do(self, job: _Job) -> None:
        try:
            clip = self._encode(job.frames, **self._options)
        except Exception as exc:
            job.done(None, f"{type(exc).__name__}: {exc}"[:300])
            return
        job.done(clip, None)

    def _lower_priority(self) -> None:
        """Raise this thread's niceness (Linux: per thread) so encodes yield to detection."""
        if self._nice <= 0:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (AttributeError, OSError) as exc:
            log.debug("clip thread priority unchanged", extra={"error": str(exc)})
