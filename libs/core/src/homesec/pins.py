"""Pins: an event folder still owed to Slack or to the uploader is kept by retention.

A pin is an empty file ``<pins_dir>/<kind>/<camera>/<event_id>`` (layout in :mod:`homesec.media`);
its modification time is when it was first pinned. Pinning again leaves it untouched, so a pin
ages from its first pinning, and releasing twice is harmless. Who pins and who releases:

* ``alert`` (owed to Slack): the detector pins before it publishes the first message of an event
  whose ``decision.alert`` is true; the gateway releases once the alert's row in its outbox is
  settled (posted, parked for good, or suppressed by the rate limit).
* ``label`` (owed to the uploader): the gateway pins when it accepts an Occupied/Unoccupied click,
  the detector when it saves an automatic 'unoccupied' sample, the uploader when it records a
  label; the uploader releases once every label of the event is uploaded (or failed for good).

* ``candidate`` (a hard negative: motion the person check rejected): the detector pins it when
  the event ends; it keeps the folder for ``media.candidate_keep_days`` (not the longer
  ``pin_max_age_days``), so the owner can still label it from the daily digest.

Only the detector's retention reads pins, and a pin older than ``media.pin_max_age_days`` no longer
protects its folder. A pin that cannot be written or removed is logged and reported through
``on_error``; it never stops the caller's real work (publishing the alert, recording the label).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from homesec.contract import is_identifier
from homesec.files import fsync_dir
from homesec.media import UnsafePath, event_dir

log = logging.getLogger("homesec.pins")


class PinKind(StrEnum):
    ALERT = "alert"  # owed to Slack
    LABEL = "label"  # owed to the uploader
    CANDIDATE = "candidate"  # a hard negative the owner may still label (for a while)


@dataclass(frozen=True)
class Pin:
    kind: PinKind
    camera: str
    event_id: str
    pinned_at: float  # Unix seconds (the file's modification time)


class Pins:
    """Pin, release and list pins in one folder (shared by detector, gateway and uploader)."""

    def __init__(self, pins_dir: Path, on_error: Callable[[], None] | None = None) -> None:
        self.pins_dir = pins_dir
        self._on_error = on_error

    def path(self, kind: PinKind, camera: str, event_id: str) -> Path:
        """The pin file; camera and event id must be identifiers (:class:`UnsafePath`)."""
        return event_dir(self.pins_dir / PinKind(kind).value, camera, event_id)

    def pin(self, kind: PinKind, camera: str, event_id: str) -> bool:
        """Pin the event folder (idempotent); False when the pin could not be written."""
        try:
            path = self.path(kind, camera, event_id)
            if path.exists():
                return True
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: created whole or not at all, and a pin already there keeps its age
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                return True
            fsync_dir(path.parent)  # the pin survives a power cut once the message is out
            return True
        except (OSError, UnsafePath) as exc:
            self._failed("pin", kind, camera, event_id, exc)
            return False

    def release(self, kind: PinKind, camera: str, event_id: str) -> bool:
        """Remove the pin (a missing one is fine); False when it could not be removed."""
        try:
            self.path(kind, camera, event_id).unlink(missing_ok=True)
            return True
        except (OSError, UnsafePath) as exc:
            self._failed("release", kind, camera, event_id, exc)
            return False

    def release_all(self, camera: str, event_id: str) -> None:
        """Remove every pin of an event (its folder was deleted)."""
        for kind in PinKind:
            self.release(kind, camera, event_id)

    def is_pinned(self, kind: PinKind, camera: str, event_id: str) -> bool:
        try:
            return self.path(kind, camera, event_id).is_file()
        except UnsafePath:
            return False

    def scan(self, kind: PinKind | None = None) -> list[Pin]:
        """Every pin (of one kind), oldest first; names that are not identifiers are ignored."""
        found: list[Pin] = []
        for k in [kind] if kind is not None else list(PinKind):
            for camera_dir in _subdirs(self.pins_dir / PinKind(k).value):
                try:
                    entries = list(os.scandir(camera_dir))
                except OSError:
                    continue
                for entry in entries:
                    if not is_identifier(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        pinned_at = entry.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue  # released meanwhile
                    found.append(Pin(PinKind(k), camera_dir.name, entry.name, pinned_at))
        found.sort(key=lambda p: p.pinned_at)
        return found

    def release_settled(self, kind: PinKind, settled: Callable[[str, str], bool]) -> int:
        """Release the pins of ``kind`` whose work ``settled(camera, event_id)`` says is done (a
        consumer's reconciliation against its own durable records); returns how many."""
        released = 0
        for pin in self.scan(kind):
            if settled(pin.camera, pin.event_id) and self.release(kind, pin.camera, pin.event_id):
                released += 1
                log.info(
                    "pin released",
                    extra={"kind": kind.value, "camera": pin.camera, "event_id": pin.event_id},
                )
        return released

    def _failed(self, what: str, kind: PinKind, camera: str, event_id: str, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error()
        log.warning(
            f"media {what} failed",
            extra={
                "kind": str(kind),
                "camera": camera[:64],
                "event_id": event_id[:64],
                "error": str(exc)[:300],
            },
        )


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [
        Path(e.path) for e in entries if is_identifier(e.name) and e.is_dir(follow_symlinks=False)
    ]
