"""Event media on disk: pre-roll ring buffer and a writer thread.

Layout (``homesec.media``): ``<media_dir>/<camera>/<event_id>/{event.json, snapshot.jpg,
preroll/000000.jpg..., frames/000000.jpg...}``. Frames are stored as the camera's own JPEG bytes
(no re-encoding); only the snapshot is re-encoded when boxes are drawn on it.

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
from homesec.media import EVENT_META, FRAMES_DIR, PREROLL_DIR, SNAPSHOT, event_dir, frame_name
from homesec.pins import PinKind, Pins
from homesec_detector.motion import BoxXYWH
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
    min_save_seconds: float = Field(
        600.0,
        ge=0,
        description="Save an 'unoccupied' sample after this long without motion (0: never)",
    )
    queue_size: int = Field(5000, ge=10, description="Write jobs waiting before frames are shed")


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


Job = Callable[[], None]


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

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="media-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish queued jobs and stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job ran."""
        if not self._threaded:
            return True
        done = threading.Event()
        self.call(done.set, essential=True)
        return done.wait(timeout)

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

        def write_start() -> None:
            self.index.open(folder)  # before the folder exists: retention never sees it closed
            self._counts[folder] = 0
            folder.mkdir(parents=True, exist_ok=True)
            self._write(folder, SNAPSHOT, jpeg)
            self._write(folder, EVENT_META, _json(meta))

        self.call(write_start, essential=True)
        if then is not None:
            self.call(then, essential=True)
        self.save_preroll(folder, list(preroll))
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
            folder.mkdir(parents=True, exist_ok=True)
            self._write(folder, EVENT_META, _json(meta))

        self.call(write, essential=True)
        if then is not None:
            self.call(then, essential=True)
        self.call(lambda: self.index.close(folder), essential=True)

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
