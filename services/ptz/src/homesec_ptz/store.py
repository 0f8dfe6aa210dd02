"""Presets and last position on disk: ``<data_dir>/ptz/<camera>/presets.json``.

Written atomically (:func:`homesec.files.atomic_write`) so a power cut never leaves half a
file. ``last_position`` (with the time it was applied) is the PTZ head's local state copy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from homesec.contract import PresetName
from homesec.files import atomic_write
from homesec.media import resolve_inside
from homesec_ptz.settings import Position

log = logging.getLogger("homesec_ptz.store")


class StoredState(BaseModel):
    presets: dict[PresetName, Position] = Field(default_factory=dict)
    last_position: Position | None = None
    last_position_at: float = Field(0.0, description="Unix time last_position was applied")


def presets_path(data_dir: Path, camera: str) -> Path:
    """The presets file of ``camera`` (an identifier, checked again here)."""
    return resolve_inside(data_dir / "ptz", f"{camera}/presets.json")


class PresetStore:
    """Named positions plus the last position, persisted as JSON."""

    def __init__(self, path: Path, initial: dict[str, Position] | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._state = StoredState(presets=dict(initial or {}))
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning(
                "presets file unreadable", extra={"path": str(self.path), "error": str(exc)}
            )
            return
        try:
            saved = StoredState.model_validate_json(raw)
        except ValidationError as exc:
            log.warning(
                "presets file invalid; starting from settings",
                extra={"path": str(self.path), "error": str(exc)[:300]},
            )
            return
        # Saved presets win over the initial ones from settings (the user changed them).
        self._state = StoredState(
            presets={**self._state.presets, **saved.presets},
            last_position=saved.last_position,
            last_position_at=saved.last_position_at,
        )

    @property
    def presets(self) -> dict[str, Position]:
        with self._lock:
            return dict(self._state.presets)

    @property
    def last_position(self) -> Position | None:
        with self._lock:
            return self._state.last_position

    @property
    def last_position_at(self) -> float:
        with self._lock:
            return self._state.last_position_at

    def save_preset(self, name: str, position: Position) -> None:
        with self._lock:
            presets = {**self._state.presets, name: position}
            self._state = self._state.model_copy(update={"presets": presets})
            self._write_locked()

    def save_position(self, position: Position) -> None:
        with self._lock:
            if self._state.last_position == position:
                return
            self._state = self._state.model_copy(
                update={"last_position": position, "last_position_at": time.time()}
            )
            self._write_locked()

    def _write_locked(self) -> None:
        try:
            doc = json.dumps(self._state.model_dump(mode="json"), indent=2) + "\n"
            atomic_write(self.path, doc.encode())
        except OSError as exc:
            log.error(
                "cannot write presets file", extra={"path": str(self.path), "error": str(exc)}
            )
