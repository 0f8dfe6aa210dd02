"""Retention of event media: its own thread, a size index, pins respected.

The media writer keeps :class:`MediaIndex` up to date with the bytes it writes (an event folder
is *open* from before its first file until its last message was published). :class:`Retention`
runs every ``media.retention_interval_seconds`` on its own thread, never on the path that
publishes events: its first pass measures every folder once (the rebuild at start); later passes
list the camera folders, measure only folders they do not know, and re-measure a closed folder
only when the modification time of it or its ``preroll/``/``frames/`` changed (the uploader
deleted uploaded files, an operator cleaned up). Then, oldest first, it deletes folders older
than ``max_age_days`` and more while the total exceeds ``max_total_mb`` — never an open folder,
never one with a pin younger than ``pin_max_age_days`` (:mod:`homesec.pins`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from homesec.contract import is_identifier
from homesec.media import EVENT_META, FRAMES_DIR, PREROLL_DIR
from homesec.pins import Pin, PinKind, Pins

log = logging.getLogger("homesec_detector.retention")

Signature = tuple[int, int, int]
"""``st_mtime_ns`` of an event folder, its ``preroll/`` and its ``frames/`` (0: missing)."""

ORPHAN_PIN_SECONDS = 3600.0
"""A pin whose event folder does not exist is removed once it is this old."""

ERROR_LOG_INTERVAL = 300.0
"""Seconds between two log lines about a failing retention pass (each failure is counted)."""


@dataclass
class Entry:
    """What the index knows about one event folder."""

    size: int = 0
    stamp: float = 0.0  # its age is measured from here: event.json's modification time
    open: bool = True  # the writer is still writing it, or has a message of it to publish
    signature: Signature | None = None  # when last measured (closed folders only)


@dataclass(frozen=True)
class Measured:
    size: int
    stamp: float
    signature: Signature


class MediaIndex:
    """Bytes per event folder (keyed by its path as a string: passes are dominated by path
    handling otherwise). The writer opens a folder before creating it, adds what it writes and
    closes it once done; retention measures what the writer did not write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}

    # ---- the writer's side (media writer thread) ------------------------------------------------

    def open(self, folder: Path) -> None:
        with self._lock:
            entry = self._entries.setdefault(os.fspath(folder), Entry(stamp=time.time()))
            entry.open = True

    def wrote(self, folder: Path, delta: int) -> None:
        with self._lock:
            entry = self._entries.setdefault(os.fspath(folder), Entry(stamp=time.time()))
            entry.size = max(0, entry.size + delta)

    def close(self, folder: Path) -> None:
        """The writer is done: record the folder's age stamp and signature (a few stats)."""
        key = os.fspath(folder)
        signature = _signature(key)
        stamp = _stamp(key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.open = False
                entry.signature = signature
                entry.stamp = stamp or entry.stamp

    # ---- retention's side ---------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        """A copy of the index."""
        with self._lock:
            return {
                key: Entry(e.size, e.stamp, e.open, e.signature) for key, e in self._entries.items()
            }

    def is_open(self, folder: str) -> bool:
        with self._lock:
            entry = self._entries.get(folder)
            return entry is not None and entry.open

    def total(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def refresh(self, media_dir: Path) -> int:
        """Bring the index in line with the disk: measure unknown folders, re-measure closed
        folders that changed, forget vanished ones. Returns the number of folders measured."""
        listed = set(_event_folders(media_dir))
        with self._lock:
            unknown = [f for f in listed if f not in self._entries]
            closed = {f: e.signature for f, e in self._entries.items() if not e.open}
        measured = 0
        for folder in unknown:
            found = _measure(folder)
            measured += 1
            with self._lock:  # the writer opens before it creates: a listed folder is not its
                if found is not None and folder not in self._entries:
                    self._entries[folder] = Entry(found.size, found.stamp, False, found.signature)
        for folder, signature in closed.items():
            if folder not in listed:
                self._forget_if_closed(folder)
                continue
            if signature is not None and _signature(folder) == signature:
                continue
            found = _measure(folder)
            measured += 1
            with self._lock:
                entry = self._entries.get(folder)
                if entry is None or entry.open:
                    continue
                if found is None:
                    del self._entries[folder]
                else:
                    entry.size, entry.stamp, entry.signature = (
                        found.size,
                        found.stamp,
                        found.signature,
                    )
        return measured

    def forget(self, folder: str) -> None:
        self._forget_if_closed(folder)

    def _forget_if_closed(self, folder: str) -> None:
        with self._lock:
            entry = self._entries.get(folder)
            if entry is not None and not entry.open:
                del self._entries[folder]


@dataclass
class RetentionReport:
    """What one retention pass saw and did."""

    deleted: int = 0
    deleted_bytes: int = 0
    total_bytes: int = 0  # after the pass
    pinned_bytes: int = 0  # folders kept by a pin that has not expired
    pinned_events: int = 0
    open_bytes: int = 0
    cap_bytes: int = 0
    expired_pins: list[Pin] = field(default_factory=list)  # newly found expired this pass
    measured: int = 0
    seconds: float = 0.0

    @property
    def pinned_over_cap(self) -> bool:
        return self.pinned_bytes > self.cap_bytes


class Retention:
    """Deletes old event folders on its own timer; see the module docstring for the rules."""

    def __init__(
        self,
        media_dir: Path,
        index: MediaIndex,
        pins: Pins,
        *,
        max_age_days: float,
        max_total_mb: float,
        pin_max_age_days: float,
        interval_seconds: float,
        candidate_keep_days: float | None = None,
        clock: Callable[[], float] = time.time,
        on_report: Callable[[RetentionReport], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.media_dir = media_dir
        self.index = index
        self.pins = pins
        self.max_age = max_age_days * 86400.0
        self.cap = int(max_total_mb * 1024 * 1024)
        self.pin_max_age = pin_max_age_days * 86400.0
        keep = pin_max_age_days if candidate_keep_days is None else candidate_keep_days
        self.candidate_max_age = min(keep, pin_max_age_days) * 86400.0
        self.interval = interval_seconds
        self.pruned = 0
        self.errors = 0
        self._clock = clock
        self._on_report = on_report
        self._on_error = on_error
        self._expired_seen: set[Pin] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = -ERROR_LOG_INTERVAL

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="media-retention", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():  # the first pass at once: it builds the index
            try:
                self.run_once()
            except Exception as exc:  # a bug or a broken disk must not end retention
                self.errors += 1
                if self._on_error is not None:
                    self._on_error()
                now = time.monotonic()
                if now - self._last_error_log >= ERROR_LOG_INTERVAL:
                    self._last_error_log = now
                    log.warning(
                        "retention pass failed",
                        exc_info=True,
                        extra={"error": str(exc)[:300], "errors_total": self.errors},
                    )
            self._stop.wait(self.interval)

    def run_once(self) -> RetentionReport:
        """One pass: refresh the index, delete what the rules allow, report."""
        started = time.perf_counter()
        report = RetentionReport(cap_bytes=self.cap)
        report.measured = self.index.refresh(self.media_dir)
        now = self._clock()
        pins = self.pins.scan()
        active, expired = self._split(pins, now)
        report.expired_pins = [p for p in expired if p not in self._expired_seen]
        self._expired_seen = set(expired)
        for pin in report.expired_pins:
            log.warning(
                "pin expired: its folder is no longer protected",
                extra={
                    "kind": pin.kind.value,
                    "camera": pin.camera,
                    "event_id": pin.event_id,
                    "pinned_days": round((now - pin.pinned_at) / 86400.0, 1),
                },
            )
        entries = self.index.entries()
        total = sum(e.size for e in entries.values())
        for folder, entry in sorted(entries.items(), key=lambda item: item[1].stamp):
            key = _names(folder)
            if entry.open:
                report.open_bytes += entry.size
                continue
            if key in active:
                report.pinned_bytes += entry.size
                report.pinned_events += 1
                continue
            if now - entry.stamp <= self.max_age and total <= self.cap:
                continue
            if self._delete(folder):
                total -= entry.size
                report.deleted += 1
                report.deleted_bytes += entry.size
        self._remove_orphan_pins(entries, pins, now)
        report.total_bytes = total
        report.seconds = time.perf_counter() - started
        if report.deleted:
            self.pruned += report.deleted
            log.info(
                "media pruned",
                extra={
                    "events": report.deleted,
                    "bytes": report.deleted_bytes,
                    "bytes_left": total,
                    "pinned_bytes": report.pinned_bytes,
                },
            )
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _split(self, pins: list[Pin], now: float) -> tuple[set[tuple[str, str]], list[Pin]]:
        """Events kept by a pin that has not expired, and the expired pins."""
        active: set[tuple[str, str]] = set()
        expired: list[Pin] = []
        for pin in pins:
            limit = self.candidate_max_age if pin.kind is PinKind.CANDIDATE else self.pin_max_age
            if now - pin.pinned_at > limit:
                expired.append(pin)
            else:
                active.add((pin.camera, pin.event_id))
        return active, expired

    def _delete(self, folder: str) -> bool:
        if self.index.is_open(folder):  # opened again since the copy (never in practice)
            return False
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.lexists(folder):  # partly deleted: measured again on the next pass
            log.warning("event folder could not be deleted", extra={"folder": folder})
            self.index.forget(folder)
            return False
        self.index.forget(folder)
        self.pins.release_all(*_names(folder))
        return True

    def _remove_orphan_pins(self, entries: dict[str, Entry], pins: list[Pin], now: float) -> None:
        """Pins of folders that do not exist (deleted by hand, never written) once they are old."""
        known = {_names(f) for f in entries}
        for pin in pins:
            if (pin.camera, pin.event_id) in known or now - pin.pinned_at < ORPHAN_PIN_SECONDS:
                continue
            if not os.path.lexists(os.path.join(self.media_dir, pin.camera, pin.event_id)):
                self.pins.release(pin.kind, pin.camera, pin.event_id)


def _names(folder: str) -> tuple[str, str]:
    """(camera, event_id) of an event folder path."""
    parent, event_id = os.path.split(folder)
    return os.path.basename(parent), event_id


def _event_folders(media_dir: Path) -> list[str]:
    """``<media_dir>/<camera>/<event_id>`` folders (identifiers only)."""
    folders: list[str] = []
    for camera in _scandir(os.fspath(media_dir)):
        if is_identifier(camera.name) and camera.is_dir(follow_symlinks=False):
            folders.extend(
                e.path
                for e in _scandir(camera.path)
                if is_identifier(e.name) and e.is_dir(follow_symlinks=False)
            )
    return folders


def _scandir(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _signature(folder: str) -> Signature:
    return (
        _mtime_ns(folder),
        _mtime_ns(os.path.join(folder, PREROLL_DIR)),
        _mtime_ns(os.path.join(folder, FRAMES_DIR)),
    )


def _stamp(folder: str) -> float:
    """event.json's modification time (the folder's when it has none); 0 when gone."""
    for path in (os.path.join(folder, EVENT_META), folder):
        try:
            return os.stat(path).st_mtime
        except OSError:
            continue
    return 0.0


def _measure(folder: str) -> Measured | None:
    """Size, age stamp and signature of a folder (a walk of its files); None when gone."""
    signature = _signature(folder)
    if signature[0] == 0:
        return None
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return Measured(total, _stamp(folder), signature)
