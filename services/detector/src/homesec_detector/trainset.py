"""The owner's training set, as the uploader stores it: a local folder or an S3 prefix.

Layout (``homesec_uploader``): ``<root>/<label>/<camera>/<YYYY-MM-DD>/<event_id>/{event.json,
snapshot.jpg, clip.mp4, preroll/000000.jpg..., frames/000000.jpg..., label.json}``, where
``<root>`` is the uploader's destination (its local folder plus ``key_prefix``, or
``s3://<bucket>/<key_prefix>``). ``label.json`` is uploaded last, so a folder that has it is
complete; only those with at least one frame are replayed.

S3 is read with the uploader's own client (:func:`homesec_uploader.s3_store.make_client`, its
``HOMESEC_UPLOADER_*`` settings: endpoint, region, credentials) and mirrored once into a local
cache folder, so the replays of the search read local files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from homesec.contract import Label, is_identifier
from homesec.files import atomic_write
from homesec.media import EVENT_META, FRAMES_DIR, PREROLL_DIR

LABEL_DOC = "label.json"
_WANTED = re.compile(r"^((preroll|frames)/\d{6}\.jpg|event\.json|label\.json)$")


@dataclass(frozen=True)
class TrainingEvent:
    """One complete labelled event of the training set (its frames stay on disk)."""

    key: str
    """``<label>/<camera>/<day>/<event_id>``, relative to the set's root."""
    event_id: str
    camera: str
    label: Label
    source: str
    """Who labelled it: ``slack`` (a button), ``detector`` (automatic sample), ``missed``
    (the owner's missed alert: occupied, the system did not alert)."""
    folder: Path
    preroll: int
    frames: int
    fps: float | None = None
    """The rate the frames were kept at, when event.json says (a missed-alert sample kept at
    ``media.missed_buffer_fps``); else the replay's rate."""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def occupied(self) -> bool:
        return self.label is Label.OCCUPIED

    def frame_paths(self, max_frames: int | None = None) -> list[Path]:
        """Pre-roll then event frames, oldest first (at most ``max_frames`` event frames)."""
        paths = [self.folder / PREROLL_DIR / f"{i:06d}.jpg" for i in range(self.preroll)]
        count = self.frames if max_frames is None else min(self.frames, max_frames)
        return paths + [self.folder / FRAMES_DIR / f"{i:06d}.jpg" for i in range(count)]


class Reader(Protocol):
    """Lists and reads the files of a training set by relative key."""

    def keys(self) -> Iterable[str]: ...

    def read(self, key: str) -> bytes: ...


class LocalReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self) -> Iterable[str]:
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: no such training set folder")
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


class S3Reader:
    """Objects under ``prefix`` of ``bucket`` (``list_objects_v2`` pages, ``get_object``)."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def keys(self) -> Iterable[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(start) :]

    def read(self, key: str) -> bytes:
        start = f"{self.prefix}/" if self.prefix else ""
        body = self.client.get_object(Bucket=self.bucket, Key=start + key)["Body"]
        data: bytes = body.read()
        return data


def parse_s3(location: str) -> tuple[str, str] | None:
    """``(bucket, prefix)`` of ``s3://bucket/prefix``; None for a local path."""
    if not location.startswith("s3://"):
        return None
    bucket, _, prefix = location[5:].partition("/")
    if not bucket:
        raise ValueError(f"{location}: no bucket in the S3 address")
    return bucket, prefix.strip("/")


def s3_reader(bucket: str, prefix: str) -> S3Reader:
    """A reader with the uploader's S3 client and settings (``HOMESEC_UPLOADER_*``)."""
    try:
        from homesec_uploader.s3_store import make_client
        from homesec_uploader.settings import UploaderSettings
    except ModuleNotFoundError as exc:  # pragma: no cover - the detector image has no boto3
        raise ValueError(
            f"reading S3 needs the uploader package (boto3): {exc}; or tune the local copy"
        ) from None
    from homesec.settings import load_settings

    settings = load_settings(UploaderSettings)
    return S3Reader(make_client(settings), bucket, prefix)


def mirror(reader: Reader, cache: Path, progress: Callable[[int], None] | None = None) -> Path:
    """Copy the files a replay needs (frames, event.json, label.json) of every complete event
    into ``cache``; files already there (same key) are not fetched again. Returns ``cache``."""
    by_event: dict[str, list[str]] = {}
    for key in reader.keys():
        event, _, rel = _split(key)
        if event is not None and _WANTED.match(rel):
            by_event.setdefault(event, []).append(rel)
    done = 0
    for event, rels in sorted(by_event.items()):
        if LABEL_DOC not in rels:
            continue  # not complete yet: the uploader writes label.json last
        for rel in sorted(rels):
            target = cache / event / rel
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, reader.read(f"{event}/{rel}"), durable=False)
        done += 1
        if progress is not None:
            progress(done)
    return cache


def _split(key: str) -> tuple[str | None, str, str]:
    """``(label/camera/day/event_id, event_id, rest)`` of a key, or None when it is not one."""
    parts = key.split("/")
    if len(parts) < 5:
        return None, "", ""
    label, camera, _day, event_id = parts[:4]
    if label not in {item.value for item in Label}:
        return None, "", ""
    if not is_identifier(camera) or not is_identifier(event_id):
        return None, "", ""
    return "/".join(parts[:4]), event_id, "/".join(parts[4:])


def load_events(root: Path) -> tuple[list[TrainingEvent], list[str]]:
    """The complete labelled events under ``root`` (key order) and why others were skipped."""
    events: list[TrainingEvent] = []
    skipped: list[str] = []
    if not root.is_dir():
        raise ValueError(f"{root}: no such training set folder")
    for doc in sorted(root.glob(f"*/*/*/*/{LABEL_DOC}")):
        folder = doc.parent
        key = folder.relative_to(root).as_posix()
        prefix, event_id, _ = _split(f"{key}/{LABEL_DOC}")
        if prefix is None:
            skipped.append(f"{key}: not in the training set layout")
            continue
        try:
            label_doc = json.loads(doc.read_bytes())
            label = Label(label_doc["label"]["label"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            skipped.append(f"{key}: {LABEL_DOC} unusable ({exc})")
            continue
        if label.value != key.split("/")[0]:
            skipped.append(f"{key}: {LABEL_DOC} says {label.value}")
            continue
        preroll = _count(folder / PREROLL_DIR)
        frames = _count(folder / FRAMES_DIR)
        if preroll + frames == 0:
            skipped.append(f"{key}: no frames")
            continue
        meta: dict[str, Any] = {}
        try:
            meta = json.loads((folder / EVENT_META).read_bytes())
        except (OSError, ValueError):
            pass
        events.append(
            TrainingEvent(
                key=key,
                event_id=event_id,
                camera=key.split("/")[1],
                label=label,
                source=str(label_doc["label"].get("source", "slack")),
                folder=folder,
                preroll=preroll,
                frames=frames,
                fps=_fps(meta),
                meta=meta if isinstance(meta, dict) else {},
            )
        )
    return events, skipped


def _fps(meta: Any) -> float | None:
    detector = meta.get("detector") if isinstance(meta, dict) else None
    fps = detector.get("fps") if isinstance(detector, dict) else None
    if isinstance(fps, int | float) and not isinstance(fps, bool) and 0 < fps <= 1000:
        return float(fps)
    return None


def _count(folder: Path) -> int:
    """Frames 000000.jpg, 000001.jpg... present without a gap."""
    count = 0
    while (folder / f"{count:06d}.jpg").is_file():
        count += 1
    return count


def open_training_set(
    location: str, cache: Path | None, progress: Callable[[int], None] | None = None
) -> tuple[list[TrainingEvent], list[str]]:
    """Load a training set from a folder or ``s3://bucket/prefix`` (mirrored into ``cache``)."""
    s3 = parse_s3(location)
    if s3 is None:
        return load_events(Path(location))
    if cache is None:
        raise ValueError("an S3 training set needs a cache folder")
    bucket, prefix = s3
    return load_events(mirror(s3_reader(bucket, prefix), cache, progress))
