"""Restoring retained state by its one writer, whatever the start order of service and broker.

Every owner of retained state (the detector's system switches, the PTZ head's position, the
presence state) keeps the last value it applied in its own data folder too (:class:`LocalCopy`,
atomic writes) and restores the same way (:class:`RetainedRestore`):

1. the local copy is in force at once, so anything decided before the broker answers uses the
   last known value, not a default;
2. the restore window opens only once the bus is online and the broker granted the subscription
   to the owner's own state topic — the broker sends the retained values right after that
   SUBACK — and lasts ``window_seconds``;
3. per topic, the newer of the local copy and the retained value wins (by its timestamp); the
   defaults apply only when neither exists (a fresh install).

Nothing is published before step 3, so a default is never published over a value that may
exist: a power cut that brings the services up before the broker keeps the house armed, a
broker that lost its store gets the local copy back, and a service that lost its data folder
takes the retained value.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from homesec.bus import Bus, Received
from homesec.contract import Channel
from homesec.files import atomic_write

log = logging.getLogger("homesec.restore")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class LocalCopy(Generic[M]):
    """The last applied values of an owner's state topics, by key, in one JSON file."""

    def __init__(self, path: Path, model: type[M]) -> None:
        self.path = path
        self.model = model

    def load(self) -> dict[str, M]:
        """The saved values; an unreadable or invalid file counts as none (and is logged)."""
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning(
                "local state copy unreadable", extra={"path": str(self.path), "error": str(exc)}
            )
            return {}
        values: dict[str, M] = {}
        if not isinstance(raw, dict):
            log.warning("local state copy invalid", extra={"path": str(self.path)})
            return {}
        for key, item in raw.items():
            try:
                values[str(key)] = self.model.model_validate(item)
            except ValidationError as exc:
                log.warning(
                    "local state value invalid; ignored",
                    extra={"path": str(self.path), "key": key, "error": str(exc)[:300]},
                )
        return values

    def save(self, values: dict[str, M]) -> None:
        """Write all values atomically; raises ``OSError`` (the caller reports it)."""
        doc = {key: value.model_dump(mode="json") for key, value in values.items()}
        atomic_write(self.path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())


def newest(
    candidates: Iterable[tuple[str, T | None]], timestamp: Callable[[T], float]
) -> tuple[str, T] | None:
    """The ``(source, value)`` with the latest timestamp; on a tie the first candidate wins."""
    best: tuple[str, T] | None = None
    for source, value in candidates:
        if value is None:
            continue
        if best is None or timestamp(value) > timestamp(best[1]):
            best = (source, value)
    return best


class RetainedRestore(Generic[M]):
    """Collects the retained values of one state channel until the restore window closed.

    Construct before ``bus.start()`` (it subscribes). :meth:`wait` blocks until the window
    closed and returns the retained values by key; after that, messages on the channel go to
    the ``after`` listener (e.g. to correct a foreign writer)."""

    def __init__(
        self,
        bus: Bus,
        channel: Channel[M],
        key: Callable[[dict[str, str]], str],
        *,
        window_seconds: float,
        after: Callable[[str, Received[M]], None] | None = None,
        **params: str,
    ) -> None:
        self._bus = bus
        self._key = key
        self._window = window_seconds
        self._after = after
        self._lock = threading.Lock()
        self._retained: dict[str, M] = {}
        self._done = threading.Event()
        self.subscription = bus.subscribe(channel, self._on_message, **params)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _on_message(self, msg: Received[M]) -> None:
        key = self._key(msg.params)
        with self._lock:
            if not self._done.is_set():
                if msg.retained:
                    self._retained[key] = msg.payload
                return
        if self._after is not None:
            self._after(key, msg)

    def wait(self, stop: threading.Event) -> dict[str, M] | None:
        """Block until online, the subscription granted and the window passed; the retained
        values by key, or None when ``stop`` was set first."""
        if not self._ready(stop) or stop.wait(self._window):
            return None
        return self._close()

    def _ready(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self.subscription.wait(0.5) and self._bus.connected:
                return True
        return False

    def _close(self) -> dict[str, M]:
        with self._lock:
            self._done.set()
            return dict(self._retained)


def wait_together(
    restores: Sequence[RetainedRestore[Any]], stop: threading.Event
) -> list[dict[str, Any]] | None:
    """:meth:`RetainedRestore.wait` for several channels of one owner, with one window (the
    longest) once every subscription is granted: restoring two topics takes no longer than one."""
    if not all(r._ready(stop) for r in restores):
        return None
    if stop.wait(max(r._window for r in restores)):
        return None
    return [r._close() for r in restores]


def key_of(param: str) -> Callable[[dict[str, str]], str]:
    """A key function taking one topic parameter (``""`` for a topic without parameters)."""

    def key(params: dict[str, Any]) -> str:
        return str(params.get(param, ""))

    return key
