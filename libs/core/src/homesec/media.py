"""Where event media lives on disk — one layout shared by detector, gateway and uploader.

    <media_dir>/<camera>/<event_id>/
        event.json        metadata (the final MotionEvent as JSON, plus detector figures)
        snapshot.jpg      the alert image (boxes drawn when enabled)
        clip.mp4          H.264 clip of the pre-roll and the event's first frames (alerting
                          events; written a few seconds after the event started)
        preroll/000000.jpg ...   frames before the event started (oldest first)
        frames/000000.jpg  ...   frames during the event

Every path built from a message goes through :func:`event_dir` or :func:`resolve_inside`, which
accept identifiers only and refuse anything that would leave the media folder.

Folders still owed to Slack or to the uploader are *pinned* (:mod:`homesec.pins`) by empty files
in a folder of their own, next to the media (``<data_dir>/pins``, its own volume in Docker, so the
gateway can pin while it mounts the media read-only)::

    <pins_dir>/alert/<camera>/<event_id>    owed to Slack (detector pins, gateway releases)
    <pins_dir>/label/<camera>/<event_id>    owed to the uploader (gateway, detector, uploader
                                            pin; the uploader releases)
    <pins_dir>/candidate/<camera>/<event_id> a hard negative kept for the owner's digest
                                            (detector pins; expires after
                                            media.candidate_keep_days)

The detector's retention never deletes an open or pinned folder; a pin older than
``media.pin_max_age_days`` (a candidate pin: ``media.candidate_keep_days``) no longer protects it.
"""

from __future__ import annotations

from pathlib import Path

from homesec.contract import is_identifier

EVENT_META = "event.json"
SNAPSHOT = "snapshot.jpg"
CLIP = "clip.mp4"
PREROLL_DIR = "preroll"
FRAMES_DIR = "frames"


class UnsafePath(ValueError):
    """A path from untrusted input that is not a plain location inside the media folder."""


def event_dir(media_dir: Path, camera: str, event_id: str) -> Path:
    """Folder of one event; camera and event id must be identifiers."""
    for what, value in (("camera", camera), ("event_id", event_id)):
        if not is_identifier(value):
            raise UnsafePath(f"{what} {value!r} is not an identifier")
    return media_dir / camera / event_id


def relative_event_dir(camera: str, event_id: str) -> str:
    """The event folder relative to the media folder, as carried in MotionEvent.media_dir."""
    return event_dir(Path(), camera, event_id).as_posix()


def resolve_inside(media_dir: Path, relative: str) -> Path:
    """Resolve a relative path received in a message, refusing escapes and odd names."""
    if not relative or relative.startswith(("/", "\\")) or "\x00" in relative:
        raise UnsafePath(f"not a relative path: {relative!r}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePath(f"path has empty, '.' or '..' parts: {relative!r}")
    root = media_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise UnsafePath(f"path leaves the media folder: {relative!r}")
    return target


def frame_name(index: int) -> str:
    """File name of the index-th frame in a preroll/ or frames/ folder."""
    return f"{index:06d}.jpg"
