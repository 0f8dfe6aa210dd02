"""The person model's answers kept on disk between ``homesec tune`` runs.

An answer is what :meth:`PersonChecker.answer` returned: the model's detections (before the
check's own filters) for one frame's pixels, decode reduction, relight and the square the model
saw. It is keyed by the SHA-1 of the frame's JPEG bytes and those inputs, in a SQLite file whose
answers all belong to one *model identity* (:func:`~homesec_detector.tune_identity.model_identity`:
the code that computes an answer, the OpenCV and NumPy versions, the model files' SHA-1s and
both models' settings). A file made with another identity is emptied before use, so an answer
is never served for a model, or a check's code, that did not give it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from homesec_detector.person_decoders import Detection
from homesec_detector.tune_kept import claim_identity

CACHE_FILE = "tune/model-answers.sqlite"
"""Under the data dir: the answers of the last model identity."""


class AnswerStore(Protocol):
    """Where a replay's person checks look up and keep the model's answers."""

    def get(self, key: str) -> list[Detection] | None: ...

    def put(self, key: str, found: list[Detection]) -> None: ...


class ModelAnswers:
    """A SQLite file of answers for one model identity (written on :meth:`close`)."""

    def __init__(self, path: Path, identity: str, *, readonly: bool = False) -> None:
        """``readonly``: only read an existing file of ``identity`` (a replay worker's view
        while another process owns the file)."""
        self.path = path
        self.identity = identity
        self.hits = 0
        self.added = 0
        if readonly:
            self._db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
            row = self._db.execute("SELECT value FROM meta WHERE name = 'identity'").fetchone()
            if row is None or row[0] != identity:
                raise ValueError(f"{path}: answers of another model identity")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT)")
        claim_identity(self._db, identity, ["answers"])

    def get(self, key: str) -> list[Detection] | None:
        row = self._db.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return [
            Detection(s, (b[0], b[1], b[2], b[3]), c, label)
            for s, b, c, label in json.loads(row[0])
        ]

    def put(self, key: str, found: list[Detection]) -> None:
        value = [[float(d.score), [int(v) for v in d.box], int(d.class_id), d.label] for d in found]
        self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(value)))
        self.added += 1

    def count(self) -> int:
        """Answers in the file."""
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def merge(self, path: Path) -> int:
        """Add every answer of another answers file of the same identity; how many."""
        self._db.commit()
        self._db.execute("ATTACH DATABASE ? AS other", (str(path),))
        try:
            added = self._db.execute(
                "INSERT OR REPLACE INTO answers SELECT key, value FROM other.answers"
            ).rowcount
            self._db.commit()
        finally:
            self._db.execute("DETACH DATABASE other")
        self.added += added
        return added

    def close(self) -> None:
        self._db.commit()
        self._db.close()


def answer_key(jpeg_sha1: str, flag: int, region: Any, relight: tuple[float, float] | None) -> str:
    """The disk key of one answer: the SHA-1 of the frame's bytes and every other input of
    the model."""
    return json.dumps([jpeg_sha1, flag, region, relight])
