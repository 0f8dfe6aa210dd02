"""Motion tracks kept on disk between ``homesec tune`` runs.

A :class:`~homesec_detector.tune_replay.MotionTrack` (an event's
:class:`~homesec_detector.motion.MotionResult` per frame under one motion setting) depends only
on the event's frames, the motion settings, the motion code, OpenCV and NumPy
(:func:`~homesec_detector.tune_identity.motion_identity`): :func:`track_key` hashes all of
them, so a stored track is used only for exactly the inputs that produced it. A second ``tune``
on the same set and settings then decodes no frame the first run already analysed.
The file holds one motion identity's tracks, each kept while a run used it in the last
:data:`~homesec_detector.tune_kept.KEEP_UNUSED_DAYS` days (:mod:`~homesec_detector.tune_kept`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from homesec_detector.motion import MotionResult, MotionSettings
from homesec_detector.tune_identity import motion_identity
from homesec_detector.tune_kept import claim_identity, drop_unused

TRACKS_FILE = "tune/motion-tracks.sqlite"
"""Under the data dir: the motion tracks runs used lately."""

_BOX_LISTS = ("boxes", "check_boxes", "relit_boxes")


def track_key(identity: str, settings: MotionSettings, frames_digest: str) -> str:
    """The disk key of one event's track: code, motion settings and the frames' bytes."""
    return hashlib.sha1(
        json.dumps([identity, settings.model_dump(mode="json"), frames_digest]).encode()
    ).hexdigest()


def dump_results(results: Sequence[MotionResult | None]) -> str:
    return json.dumps([None if r is None else dataclasses.asdict(r) for r in results])


def load_results(text: str) -> list[MotionResult | None]:
    """:func:`dump_results`'s results as the detector made them (tuples where it had tuples)."""
    out: list[MotionResult | None] = []
    for item in json.loads(text):
        if item is None:
            out.append(None)
            continue
        fields: dict[str, Any] = dict(item)
        for name in _BOX_LISTS:
            fields[name] = [tuple(b) for b in fields[name]]
        fields["size"] = tuple(fields["size"])
        if fields["relight"] is not None:
            fields["relight"] = tuple(fields["relight"])
        out.append(MotionResult(**fields))
    return out


class TrackStore(Protocol):
    """Where a replay looks up and keeps motion tracks."""

    def key(self, settings: MotionSettings, frames_digest: str) -> str: ...

    def get(self, key: str) -> list[MotionResult | None] | None: ...

    def put(self, key: str, results: Sequence[MotionResult | None]) -> None: ...


class MotionTracks:
    """A SQLite file of motion tracks (written on :meth:`close`)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """``readonly``: only read an existing file (a replay worker's view while another
        process owns it: reads mark nothing, :meth:`close` changes nothing)."""
        self.path = path
        self.identity = motion_identity()
        self.readonly = readonly
        self._run = time.time_ns()
        self.hits = 0
        """Tracks read back from earlier runs (not counting this run's own, read again)."""
        if readonly:
            self._db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tracks (key TEXT PRIMARY KEY, run INTEGER, value TEXT)"
        )
        claim_identity(self._db, self.identity, ["tracks"])
        drop_unused(self._db, ["tracks"], self._run)

    def key(self, settings: MotionSettings, frames_digest: str) -> str:
        return track_key(self.identity, settings, frames_digest)

    def get(self, key: str) -> list[MotionResult | None] | None:
        row = self._db.execute("SELECT run, value FROM tracks WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row[0] != self._run and not self.readonly:
            self._db.execute("UPDATE tracks SET run = ? WHERE key = ?", (self._run, key))
            self.hits += 1
        return load_results(row[1])

    def put(self, key: str, results: Sequence[MotionResult | None]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO tracks VALUES (?, ?, ?)",
            (key, self._run, dump_results(results)),
        )

    def touch(self, keys: Iterable[str]) -> None:
        """Mark tracks of earlier runs as used by this run (so they stay in the file)."""
        self._db.executemany(
            "UPDATE tracks SET run = ? WHERE key = ?", ((self._run, k) for k in keys)
        )

    def merge(self, path: Path) -> int:
        """Add every track of another tracks file as this run's; how many."""
        self._db.commit()
        self._db.execute("ATTACH DATABASE ? AS other", (str(path),))
        try:
            added = self._db.execute(
                "INSERT OR REPLACE INTO tracks SELECT key, ?, value FROM other.tracks",
                (self._run,),
            ).rowcount
            self._db.commit()
        finally:
            self._db.execute("DETACH DATABASE other")
        return added

    def close(self) -> None:
        self._db.commit()  # nothing to commit in a read-only view
        self._db.close()
