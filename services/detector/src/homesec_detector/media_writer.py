"""Event media on disk: pre-roll ring buffer and a writer thread.

Layout (``homesec.media``): ``<media_dir>/<camera>/<event_id>/{event.json, snapshot.jpg,
clip.mp4, preroll/000000.jpg..., frames/000000.jpg...}``. Frames are stored as the camera's own
JPEG bytes (no re-encoding); only the snapshot is re-encoded when boxes are drawn on it.

The clip (:mod:`homesec_detector.clip`: the pre-roll and the event's first
``clip_event_frames`` frames as H.264 MP4) is encoded on a thread of its own once those frames
were seen (or the event ended) and the event alerts (or ``clip_all_events``); its file, and then
the end's event.json, are written back here in order. The folder stays open until then, so
retention never takes it and the uploader (which waits for an event.json with ``ended_at``)
finds the clip with the rest.

All writing happens on one worker thread, in submission order, so the detector can queue "write
the snapshot" and then "publish the event" and the event never names a file that does not exist
yet. Disk errors (full disk, read-only folder) are caught, counted and logged: the detector
carries on without media. The writer keeps the size index (:class:`MediaIndex`) that retention,
on its own thread (:mod:`homesec_detector.retention`), works from: a folder is open from before
its first file until the last job of its event ran.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, Field

from homesec.files import atomic_write
from homesec.media import (
    CLIP,
    EVENT_META,
    FRAMES_DIR,
    PREROLL_DIR,
    SNAPSHOT,
    event_dir,
    frame_name,
)
from homesec.pins import PinKind, Pins
from homesec_detector.clip import Clip, ClipFrame, ClipWorker
from homesec_detector.motion import BoxXYWH
from homesec_detector.openh264 import OpenH264Unavailable, load_library
from homesec_detector.retention import MediaIndex

log = logging.getLogger("homesec_detector.media")

ERROR_LOG_INTERVAL = 60.0
"""Seconds between two log lines about failing media writes (each failure is counted)."""


class MediaSettings(BaseModel):
    """What is saved with each event, and how long it is kept."""

    enabled: bool = True
    preroll_frames: int = Field(30, ge=0, le=1000, description="Frames kept before an event")
    max_event_frames: int = Field(
        300, ge=0, le=100000, description="Frames saved per event after its start (cap)"
    )
    draw_boxes: bool = Field(True, description="Draw motion (green) and person (red) boxes")
    snapshot_quality: int = Field(90, ge=10, le=100, description="JPEG quality of drawn snapshot")
    max_age_days: float = Field(30.0, gt=0, description="Events older than this are deleted")
    max_total_mb: float = Field(
        2000.0, gt=0, description="Oldest events are deleted while the media exceeds this"
    )
    retention_interval_seconds: float = Field(
        60.0, gt=0, description="Seconds between retention passes (on their own thread)"
    )
    pin_max_age_days: float = Field(
        14.0,
        gt=0,
        description="A pin (event still owed to Slack or the uploader) older than this no "
        "longer protects its folder",
    )
    candidate_keep_days: float = Field(
        7.0,
        gt=0,
        description="Events the person check rejected (hard negatives) are kept this long for "
        "the owner's daily digest in Slack (pinned against retention; at most pin_max_age_days)",
    )
    missed_buffer_seconds: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="Seconds of frames kept for a missed alert (/homesec missed): JPEG bytes, "
        "about seconds x missed_buffer_fps x the JPEG size per camera (120 s x 2 fps x 35 KB "
        "at 640x480 = 8 MB); 0: no missed alerts",
    )
    missed_buffer_fps: float = Field(
        2.0,
        ge=0,
        le=120,
        description="Rate the missed-alert buffer keeps frames at (0: every frame; the sample "
        "records it and homesec tune replays it at that rate)",
    )
    min_save_seconds: float = Field(
        600.0,
        ge=0,
        description="Save an 'unoccupied' sample after this long without motion (0: never)",
    )
    queue_size: int = Field(5000, ge=10, description="Write jobs waiting before frames are shed")
    clip_enabled: bool = Field(
        True,
        description="Save clip.mp4 (H.264) with each alerting event: the pre-roll and the "
        "event's first frames; the gateway posts it after the alert",
    )
    clip_all_events: bool = Field(
        False, description="Also make clips of events that do not alert (CPU on every event)"
    )
    clip_event_frames: int = Field(
        30,
        ge=1,
        le=600,
        description="Frames after the event's start in the clip (after the pre-roll)",
    )
    clip_max_width: int = Field(
        640, ge=64, le=3840, description="Wider frames are scaled down to this width in the clip"
    )
    clip_bitrate_kbps: int = Field(
        600,
        ge=50,
        le=20000,
        description="Bitrate cap of the clip: 600 keeps a 6 s clip under ~450 KB",
    )
    clip_nice: int = Field(
        10, ge=0, le=19, description="Niceness of the clip encoder thread (Linux, per thread)"
    )
    clip_library: str | None = Field(
        None,
        description="Path of libopenh264 (default: the system's libopenh264.so.7; e.g. Cisco's "
        "binary build)",
    )


@dataclass
class BufferedFrame:
    """One frame kept in the pre-roll ring: the JPEG bytes and what was found in it."""

    seq: int
    captured_at: float
    jpeg: bytes
    width: int
    height: int
    occupied: bool = False
    boxes: list[BoxXYWH] = field(default_factory=list)
    person_score: float | None = None
    person_box: BoxXYWH | None = None


class PrerollBuffer:
    """The last ``size`` frames (JPEG bytes, not decoded images)."""

    def __init__(self, size: int) -> None:
        self._frames: deque[BufferedFrame] = deque(maxlen=max(1, size))

    def append(self, frame: BufferedFrame) -> None:
        self._frames.append(frame)

    def frames(self) -> list[BufferedFrame]:
        return list(self._frames)

    def __len__(self) -> int:
        return len(self._frames)


class MissedBuffer:
    """The last ``seconds`` of frames at most ``fps`` (0: every frame), for a missed alert.

    It holds the same JPEG bytes objects as the pre-roll ring (nothing is copied or decoded),
    so its memory is about ``seconds x fps x JPEG size``. Appended by the camera's worker
    thread; :meth:`since` copies the deque (atomic under the GIL) for the bus thread."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        self.fps = fps
        self._frames: deque[BufferedFrame] = deque()
        self._last_kept: float | None = None

    def append(self, frame: BufferedFrame) -> None:
        if self.seconds <= 0:
            return
        if self.fps > 0 and self._last_kept is not None:
            if frame.captured_at - self._last_kept < 1.0 / self.fps - 1e-6:
                return
        self._last_kept = frame.captured_at
        self._frames.append(frame)
        while self._frames and frame.captured_at - self._frames[0].captured_at > self.seconds:
            self._frames.popleft()

    def since(self, at: float) -> list[BufferedFrame]:
        """The frames captured at or after ``at``, oldest first."""
        return [f for f in list(self._frames) if f.captured_at >= at]

    def rate(self, frames: list[BufferedFrame]) -> float | None:
        """The frames' mean rate (None for fewer than two)."""
        if len(frames) < 2:
            return None
        span = frames[-1].captured_at - frames[0].captured_at
        return round((len(frames) - 1) / span, 3) if span > 0 else None


Job = Callable[[], None]
ClipReport = Callable[[Clip | None, str | None], None]
"""Told of each clip made (or why none could be made), on the media writer thread."""


@dataclass
class _PendingClip:
    """An event's clip while its frames are collected and encoded (media writer thread only)."""

    frames: list[ClipFrame]
    event_frames: int = 0
    alerting: bool = False
    submitted: bool = False
    ended: bool = False  # finish_event ran: write the end's event.json and close once settled
    final_meta: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class MediaWriter:
    """Writes event media on a worker thread (or inline when ``threaded`` is False)."""

    def __init__(
        self,
        media_dir: Path,
        settings: MediaSettings,
        *,
        threaded: bool = True,
        on_error: Callable[[], None] | None = None,
        pins: Pins | None = None,
        on_clip: ClipReport | None = None,
    ) -> None:
        self.media_dir = media_dir
        self.settings = settings
        self.index = MediaIndex()
        self.pins = pins
        self.errors = 0
        self.shed = 0
        self._on_error = on_error
        self._threaded = threaded
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=settings.queue_size)
        self._thread: threading.Thread | None = None
        self._counts: dict[Path, int] = {}
        self._last_error_log = -ERROR_LOG_INTERVAL
        self._idle = threading.Event()
        self._idle.set()
        self._on_clip = on_clip
        self._pending: dict[Path, _PendingClip] = {}
        self._clip_info: dict[Path, dict[str, Any]] = {}
        self.clips = self._clip_worker(settings, threaded)

    @staticmethod
    def _clip_worker(settings: MediaSettings, threaded: bool) -> ClipWorker | None:
        if not settings.enabled or not settings.clip_enabled:
            return None
        try:
            load_library(settings.clip_library)
        except OpenH264Unavailable as exc:
            log.warning("alert clips are off", extra={"reason": str(exc)[:300]})
            return None
        return ClipWorker(
            max_width=settings.clip_max_width,
            bitrate_kbps=settings.clip_bitrate_kbps,
            library=settings.clip_library,
            nice=settings.clip_nice,
            threaded=threaded,
        )

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="media-writer", daemon=True)
            self._thread.start()
        if self.clips is not None:
            self.clips.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish queued jobs (clips first: they end in writes) and stop the threads."""
        if self.clips is not None:
            self.clips.stop(timeout)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job ran, and every clip queued by them was written."""
        if not self._threaded:
            return True
        deadline = time.monotonic() + timeout
        while True:
            done = threading.Event()
            self.call(done.set, essential=True)
            if not done.wait(max(0.0, deadline - time.monotonic())):
                return False
            if self.clips is None or self.clips.idle():
                return True
            if not self.clips.wait_idle(max(0.0, deadline - time.monotonic())):
                return False

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._guard(job)

    def _guard(self, job: Job) -> None:
        try:
            job()
        except OSError as exc:
            self.errors += 1
            if self._on_error:
                self._on_error()
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_INTERVAL:  # a full disk fails every write
                self._last_error_log = now
                log.warning(
                    "media write failed",
                    extra={"error": str(exc)[:300], "errors_total": self.errors},
                )
        except Exception:
            self.errors += 1
            if self._on_error:
                self._on_error()
            log.exception("media job failed")

    def call(self, job: Job, *, essential: bool = False) -> None:
        """Run ``job`` after every job queued before it. Non-essential jobs (frame writes) are
        shed when the queue is full; essential ones (publishing) wait for room."""
        if not self._threaded:
            self._guard(job)
            return
        if essential:
            self._queue.put(job)
            return
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.shed += 1
            self.errors += 1
            if self._on_error:
                self._on_error()

    # ---- event media ----------------------------------------------------------------------

    def folder(self, camera: str, event_id: str) -> Path:
        return event_dir(self.media_dir, camera, event_id)

    def start_event(
        self,
        camera: str,
        event_id: str,
        snapshot: BufferedFrame,
        preroll: Iterable[BufferedFrame],
        meta: dict[str, Any],
        then: Job | None = None,
    ) -> None:
        """Queue the snapshot (raw, so it exists when the event is published) and event.json,
        then ``then`` (the publish), then the pre-roll and the snapshot with boxes drawn. The
        folder stays open (never deleted by retention) until :meth:`finish_event` ran."""
        folder = self.folder(camera, event_id)
        jpeg = snapshot.jpeg

        preroll = list(preroll)

        def write_start() -> None:
            self.index.open(folder)  # before the folder exists: retention never sees it closed
            self._counts[folder] = 0
            if self.clips is not None:
                self._pending[folder] = _PendingClip([_clip_frame(f) for f in preroll])
            folder.mkdir(parents=True, exist_ok=True)
            self._write(folder, SNAPSHOT, jpeg)
            self._write(folder, EVENT_META, _json(meta))

        self.call(write_start, essential=True)
        if then is not None:
            self.call(then, essential=True)
        self.save_preroll(folder, preroll)
        if self.settings.draw_boxes and (snapshot.boxes or snapshot.person_box):
            self.call(lambda: self._draw_snapshot(folder, snapshot))

    def save_preroll(self, folder: Path, frames: list[BufferedFrame]) -> None:
        def write() -> None:
            sub = folder / PREROLL_DIR
            sub.mkdir(parents=True, exist_ok=True)
            for index, frame in enumerate(frames):
                (sub / frame_name(index)).write_bytes(frame.jpeg)
                self.index.wrote(folder, len(frame.jpeg))

        self.call(write)

    def add_frame(self, camera: str, event_id: str, frame: BufferedFrame) -> None:
        folder = self.folder(camera, event_id)

        def write() -> None:
            self._collect(folder, frame)
            index = self._counts.get(folder, 0)
            if index >= self.settings.max_event_frames:
                return
            sub = folder / FRAMES_DIR
            if index == 0:
                sub.mkdir(parents=True, exist_ok=True)
            (sub / frame_name(index)).write_bytes(frame.jpeg)
            self.index.wrote(folder, len(frame.jpeg))
            self._counts[folder] = index + 1

        self.call(write)

    def mark_alerting(self, camera: str, event_id: str) -> None:
        """The event alerts: its clip is made (queued after the frames already submitted)."""
        folder = self.folder(camera, event_id)

        def mark() -> None:
            pending = self._pending.get(folder)
            if pending is not None:
                pending.alerting = True
                self._maybe_encode(folder, pending)

        self.call(mark, essential=True)

    def update_person_box(self, camera: str, event_id: str, frame: BufferedFrame) -> None:
        """Redraw the snapshot with a newly found person box (when drawing is on)."""
        if self.settings.draw_boxes:
            folder = self.folder(camera, event_id)
            self.call(lambda: self._draw_snapshot(folder, frame))

    def finish_event(
        self, camera: str, event_id: str, meta: dict[str, Any], then: Job | None = None
    ) -> None:
        """Queue the final event.json, then ``then`` (the end's publish), then close the
        folder: it is open until its last message was published (and pinned if it alerts)."""
        folder = self.folder(camera, event_id)

        def write() -> None:
            meta["detector"] = {**meta.get("detector", {}), "frames": self._counts.get(folder, 0)}
            self._counts.pop(folder, None)
            self.index.open(folder)
            pending = self._pending.get(folder)
            if pending is not None:
                # written once the clip is: the uploader then finds the folder complete
                pending.ended, pending.final_meta = True, meta
                self._maybe_encode(folder, pending)
                if pending.submitted:
                    return
                del self._pending[folder]  # no clip for this event
            self._write_meta(folder, meta)

        self.call(write, essential=True)
        if then is not None:
            self.call(then, essential=True)
        self.call(lambda: self._close(folder), essential=True)

    def _write_meta(self, folder: Path, meta: dict[str, Any]) -> None:
        clip = self._clip_info.pop(folder, None)
        if clip is not None:
            meta["detector"] = {**meta.get("detector", {}), "clip": clip}
        folder.mkdir(parents=True, exist_ok=True)
        self._write(folder, EVENT_META, _json(meta))

    def _close(self, folder: Path) -> None:
        """Close the folder for retention, unless its clip is still being made."""
        if folder not in self._pending:
            self.index.close(folder)

    # ---- clips (every method below runs on the media writer thread) -------------------------

    def _collect(self, folder: Path, frame: BufferedFrame) -> None:
        pending = self._pending.get(folder)
        if pending is None or pending.submitted:
            return
        if pending.event_frames < self.settings.clip_event_frames:
            pending.frames.append(_clip_frame(frame))
            pending.event_frames += 1
        self._maybe_encode(folder, pending)

    def _maybe_encode(self, folder: Path, pending: _PendingClip) -> None:
        """Hand the frames to the encoder once they are all there and the clip is wanted."""
        wanted = pending.alerting or self.settings.clip_all_events
        complete = pending.ended or pending.event_frames >= self.settings.clip_event_frames
        if pending.submitted or not wanted or not complete or self.clips is None:
            return
        pending.submitted = True
        preroll = len(pending.frames) - pending.event_frames
        frames, pending.frames = pending.frames, []

        def done(clip: Clip | None, error: str | None) -> None:  # on the encoder's thread
            self.call(lambda: self._write_clip(folder, clip, error, preroll), essential=True)
            self.call(lambda: self._settle_clip(folder), essential=True)

        self.clips.submit(frames, done)

    def _write_clip(self, folder: Path, clip: Clip | None, error: str | None, preroll: int) -> None:
        pending = self._pending.get(folder)
        if pending is None:
            return
        pending.info = {"error": error or "clip.mp4 could not be written"}
        if self._on_clip is not None:
            self._on_clip(clip, error)
        if clip is None:
            log.warning("no clip for event", extra={"folder": str(folder), "error": error})
            return
        self._write(folder, CLIP, clip.data)
        pending.info = {
            "file": CLIP,
            "frames": clip.frames,
            "preroll_frames": preroll,
            "undecodable_frames": clip.skipped,
            "width": clip.width,
            "height": clip.height,
            "seconds": round(clip.duration, 3),
            "bytes": len(clip.data),
            "cpu_seconds": round(clip.cpu_seconds, 4),
        }
        log.info("clip written", extra={"folder": str(folder), **pending.info})

    def _settle_clip(self, folder: Path) -> None:
        """The clip is written (or failed): write the end's event.json and close if it ended."""
        pending = self._pending.pop(folder, None)
        if pending is None:
            return
        self._clip_info[folder] = pending.info
        if pending.ended:
            try:
                if pending.final_meta is not None:
                    self._write_meta(folder, pending.final_meta)
            finally:
                self.index.close(folder)

    def save_sample(
        self,
        camera: str,
        event_id: str,
        snapshot: BufferedFrame,
        preroll: list[BufferedFrame],
        meta: dict[str, Any],
    ) -> None:
        """An 'unoccupied' sample: a folder like an event with snapshot, pre-roll, event.json.
        It is labelled from the start (its label is published next), so it is pinned for the
        uploader before its first file is written."""
        folder = self.folder(camera, event_id)
        jpeg = snapshot.jpeg

        def write() -> None:
            self.index.open(folder)
            if self.pins is not None:
                self.pins.pin(PinKind.LABEL, camera, event_id)
            folder.mkdir(parents=True, exist_ok=True)
            self._write(folder, SNAPSHOT, jpeg)
            self._write(folder, EVENT_META, _json(meta))

        self.call(write, essential=True)
        self.save_preroll(folder, preroll)
        self.call(lambda: self.index.close(folder), essential=True)

    def _write(self, folder: Path, name: str, data: bytes) -> None:
        """Write (or replace) a file atomically and count the bytes it adds."""
        self.index.wrote(folder, _atomic_write(folder / name, data))

    def _draw_snapshot(self, folder: Path, frame: BufferedFrame) -> None:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            return
        thick = max(2, image.shape[1] // 320)
        for x, y, w, h in frame.boxes:
            cv2.rectangle(image, (x, y), (x + w, y + h), (0, 200, 0), thick)
        if frame.person_box is not None:
            x, y, w, h = frame.person_box
            cv2.rectangle(image, (x, y), (x + w, y + h), (0, 0, 255), thick)
        ok, buf = cv2.imencode(
            ".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.snapshot_quality]
        )
        if ok:
            self._write(folder, SNAPSHOT, buf.tobytes())


def _clip_frame(frame: BufferedFrame) -> ClipFrame:
    return ClipFrame(frame.jpeg, frame.captured_at)


def _json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, indent=2, default=str).encode()


def _atomic_write(path: Path, data: bytes) -> int:
    """Write ``path`` atomically; returns the bytes it adds (new size minus the old one)."""
    try:
        old = path.stat().st_size
    except FileNotFoundError:
        old = 0
    atomic_write(path, data, durable=False)
    return len(data) - old
