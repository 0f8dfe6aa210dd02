"""Reading one event's media folder (layout in :mod:`homesec.media`) and checking its files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from homesec.media import (
    CLIP,
    EVENT_META,
    FRAMES_DIR,
    PREROLL_DIR,
    SNAPSHOT,
    event_dir,
    resolve_inside,
)

_FRAME_NAME = re.compile(r"^\d{6}\.jpg$")


class CorruptFile(ValueError):
    """A media file whose content is not what its name says."""


@dataclass(frozen=True)
class EventMedia:
    """What exists of an event's media right now."""

    folder_exists: bool
    ended: bool  # event.json says the event is over: the detector has written everything
    day: str | None  # YYYY-MM-DD (UTC) of started_at
    files: list[str] = field(default_factory=list)  # relative paths, upload order
    problem: str | None = None  # why event.json could not be used
    newest_mtime: float = 0.0  # last modification of any listed file (Unix seconds)


COMPLETE_TYPES = ("end", "sample")
"""``type`` values of an event.json whose folder is complete: a finished event, or an
'unoccupied' sample the detector saves in one go."""


def utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def inspect_event(media_dir: Path, camera: str, event_id: str) -> EventMedia:
    """List the event's files; ``ended`` tells whether the detector has finished writing.

    event.json is the detector's MotionEvent JSON (``started_at``, ``ended_at`` once the event
    is over) or, for an automatic 'unoccupied' sample, ``type: "sample"`` with ``captured_at``."""
    folder = event_dir(media_dir, camera, event_id)
    if not folder.is_dir():
        return EventMedia(False, False, None, [], "event folder does not exist")
    files: list[str] = []
    ended, day, problem = False, None, None
    meta_path = folder / EVENT_META
    if meta_path.is_file():
        files.append(EVENT_META)
        try:
            meta = json.loads(meta_path.read_bytes())
            started = meta.get("started_at", meta.get("captured_at"))
            if not isinstance(started, int | float) or isinstance(started, bool):
                raise ValueError("no numeric started_at or captured_at")
            day = utc_day(float(started))
            ended = meta.get("ended_at") is not None or meta.get("type") in COMPLETE_TYPES
        except (OSError, ValueError, AttributeError, TypeError, OverflowError) as exc:
            problem = f"{EVENT_META} unusable: {exc}"
    else:
        problem = f"{EVENT_META} missing"
    for name in (SNAPSHOT, CLIP):
        if (folder / name).is_file():
            files.append(name)
    for sub in (PREROLL_DIR, FRAMES_DIR):
        if (folder / sub).is_dir():
            names = sorted(p.name for p in (folder / sub).iterdir() if _FRAME_NAME.match(p.name))
            files.extend(f"{sub}/{name}" for name in names)
    newest = 0.0
    for rel in files:
        try:
            newest = max(newest, (folder / rel).stat().st_mtime)
        except OSError:
            pass
    return EventMedia(True, ended and problem is None, day, files, problem, newest)


def media_path(media_dir: Path, camera: str, event_id: str, rel: str) -> Path:
    """The file behind an object, refusing anything that leaves the media folder."""
    event_dir(media_dir, camera, event_id)  # validates both identifiers
    return resolve_inside(media_dir, f"{camera}/{event_id}/{rel}")


def check_content(rel: str, data: bytes) -> None:
    """Raise :class:`CorruptFile` when a file is visibly broken (truncated JPEG, bad JSON)."""
    if rel.endswith(".jpg"):
        if len(data) < 4 or data[:2] != b"\xff\xd8":
            raise CorruptFile(f"{rel}: not a JPEG (no start-of-image marker)")
        if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            raise CorruptFile(f"{rel}: truncated JPEG (no end-of-image marker)")
    elif rel.endswith(".json"):
        try:
            json.loads(data)
        except ValueError as exc:
            raise CorruptFile(f"{rel}: invalid JSON ({exc})") from None
    elif rel.endswith(".mp4"):
        if data[4:8] != b"ftyp":
            raise CorruptFile(f"{rel}: not an MP4 file (no ftyp box)")


_CONTENT_TYPES = {".json": "application/json", ".mp4": "video/mp4"}


def content_type(rel: str) -> str:
    return _CONTENT_TYPES.get(Path(rel).suffix, "image/jpeg")
