"""A durable outbox for QoS 1 messages: written before they are sent, deleted on PUBACK.

The bus stores every ``message``-class publish (events, commands, labels) here first, so a
message survives the process dying before the broker acknowledged it; at start the bus sends
what is left, oldest first. Consumers are idempotent, so a message whose PUBACK was lost in a
crash and that is sent again does no harm.

SQLite in WAL mode with ``synchronous=FULL``: a committed row survives a power cut.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("homesec.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    properties TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Pending:
    """One stored message not yet acknowledged by the broker."""

    id: int
    topic: str
    channel: str
    payload: bytes
    properties: dict[str, str]


class Outbox:
    """The durable queue behind :class:`homesec.bus.Bus` QoS 1 publishes (thread-safe)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def add(
        self, topic: str, channel: str, payload: bytes, properties: dict[str, str], at: float
    ) -> int:
        """Store a message durably; returns its row id. Raises ``sqlite3.Error``/``OSError``."""
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (topic, channel, payload, properties, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (topic, channel, payload, json.dumps(properties), at),
            )
            row_id = cur.lastrowid
        assert row_id is not None
        return row_id

    def remove(self, row_id: int) -> None:
        """Forget a message the broker acknowledged (errors are logged: it is sent again)."""
        try:
            with self._lock:
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        except sqlite3.Error as exc:
            log.warning("outbox row not removed", extra={"id": row_id, "error": str(exc)})

    def pending(self, after: int = 0, limit: int = 1000) -> list[Pending]:
        """Stored messages with an id above ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, channel, payload, properties FROM outbox "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            Pending(
                id=r[0], topic=r[1], channel=r[2], payload=bytes(r[3]), properties=json.loads(r[4])
            )
            for r in rows
        ]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
