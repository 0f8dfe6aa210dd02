"""Durable outbox in SQLite: alerts waiting for Slack and labels waiting for the broker.

A row is marked done only after the remote side confirmed it, so a gateway restart, a Slack
outage or a broker outage loses nothing. Alerts are delivered in insertion order; an alert
whose image was uploaded but whose button message was not remembers that (``stage``), so a
retry never posts the image twice. An alert Slack refuses for good is *parked* (with the reason
and whether its text fallback went out) so the alerts behind it go on. An alert's clip has a row
of its own (``clips``): it waits for the detector's clip.mp4 and is posted after the alert, by
its own sender, so it never holds up an alert.

Writes are ``synchronous=FULL``: a row the bus handler stored survives a power cut, because the
broker forgets the message once the handler returned. Schema changes are numbered migrations
(``PRAGMA user_version``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Literal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    camera TEXT NOT NULL,
    created_at REAL NOT NULL,
    text TEXT NOT NULL,
    training INTEGER NOT NULL,
    image BLOB,
    stage INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS alerts_stage ON alerts (stage, id);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    published_at REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "ALTER TABLE alerts ADD COLUMN parked_reason TEXT",
            "ALTER TABLE alerts ADD COLUMN fallback_error TEXT",
            "ALTER TABLE alerts ADD COLUMN parked_at REAL",
        ),
    ),
    (
        2,
        (
            "CREATE TABLE clips ("
            " event_id TEXT PRIMARY KEY,"
            " camera TEXT NOT NULL,"
            " created_at REAL NOT NULL,"
            " stage INTEGER NOT NULL DEFAULT 0,"
            " attempts INTEGER NOT NULL DEFAULT 0,"
            " last_error TEXT,"
            " settled_at REAL)",
            "CREATE INDEX clips_stage ON clips (stage)",
        ),
    ),
    (
        3,
        (
            "CREATE TABLE label_log ("
            " event_id TEXT NOT NULL,"
            " camera TEXT NOT NULL,"
            " label TEXT NOT NULL,"
            " source TEXT NOT NULL,"
            " labelled_by TEXT NOT NULL,"
            " labelled_at REAL NOT NULL,"
            " UNIQUE (event_id, label, labelled_at))",
            "CREATE INDEX label_log_at ON label_log (labelled_at)",
            "CREATE TABLE candidates ("
            " event_id TEXT PRIMARY KEY,"
            " camera TEXT NOT NULL,"
            " ended_at REAL NOT NULL,"
            " snapshot TEXT,"
            " posted_at REAL)",
        ),
    ),
)
"""``(user_version, statements)``: applied in order to a file older than that version."""


class Stage(IntEnum):
    SUPPRESSED = -1  # rate-limited: remembered so later updates of the event do not alert
    QUEUED = 0
    UPLOADED = 1  # image posted, button message still to post
    SENT = 2
    PARKED = 3  # Slack refused it for good; see parked_reason / fallback_error


UNSETTLED_STAGES = (Stage.QUEUED, Stage.UPLOADED)
"""Stages of an alert Slack still owes something; any other stage is settled for good."""


class ClipStage(IntEnum):
    WAITING = 0  # for the clip file, for its alert to go out first, or for Slack
    SENT = 1
    GIVEN_UP = 2  # no clip came in time, or Slack refused it; see last_error


@dataclass(frozen=True)
class QueuedAlert:
    id: int
    event_id: str
    camera: str
    created_at: float
    text: str
    training: bool
    image: bytes | None
    stage: Stage
    attempts: int


@dataclass(frozen=True)
class ParkedAlert:
    event_id: str
    camera: str
    created_at: float
    reason: str  # why Slack refused the full alert
    fallback_error: str | None  # None: the text fallback was posted
    parked_at: float


@dataclass(frozen=True)
class WaitingClip:
    event_id: str
    camera: str
    created_at: float  # when its alert was queued
    attempts: int
    alert_stage: Stage


AddResult = Literal["queued", "duplicate", "rate_limited"]


class Store:
    """Thread-safe wrapper around one SQLite file (WAL mode)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for target, statements in _MIGRATIONS:
            if version >= target:
                continue
            with self._transaction():
                for statement in statements:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target:d}")
            version = target

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- alerts ------------------------------------------------------------------------------

    def add_alert(
        self,
        *,
        event_id: str,
        camera: str,
        text: str,
        training: bool,
        image: bytes | None,
        min_interval: float,
        now: float | None = None,
        clip: bool = False,
    ) -> AddResult:
        """Queue an alert once per event (with a clip to follow when ``clip``); suppress it when
        the camera alerted too recently."""
        now = time.time() if now is None else now
        with self._lock, self._transaction():
            if self._db.execute("SELECT 1 FROM alerts WHERE event_id=?", (event_id,)).fetchone():
                return "duplicate"
            row = self._db.execute(
                "SELECT MAX(created_at) FROM alerts WHERE camera=? AND stage>=0", (camera,)
            ).fetchone()
            last = row[0] if row else None
            limited = last is not None and now - float(last) < min_interval
            stage = Stage.SUPPRESSED if limited else Stage.QUEUED
            self._db.execute(
                "INSERT INTO alerts (event_id, camera, created_at, text, training, image, stage)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, camera, now, text, int(training), None if limited else image, stage),
            )
            if clip and not limited:
                self._db.execute(
                    "INSERT INTO clips (event_id, camera, created_at) VALUES (?, ?, ?)",
                    (event_id, camera, now),
                )
            return "rate_limited" if limited else "queued"

    def has_alert(self, event_id: str) -> bool:
        """Whether this event already has a row (queued, sent, parked or suppressed)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM alerts WHERE event_id=?", (event_id,)).fetchone()
        return row is not None

    def next_alert(self) -> QueuedAlert | None:
        """The oldest alert not yet delivered."""
        return self._alert("stage IN (0, 1) ORDER BY id LIMIT 1", ())

    def get_alert(self, alert_id: int) -> QueuedAlert | None:
        return self._alert("id=?", (alert_id,))

    def _alert(self, where: str, args: tuple[object, ...]) -> QueuedAlert | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, event_id, camera, created_at, text, training, image, stage, attempts"
                f" FROM alerts WHERE {where}",
                args,
            ).fetchone()
        if row is None:
            return None
        return QueuedAlert(
            id=row[0],
            event_id=row[1],
            camera=row[2],
            created_at=row[3],
            text=row[4],
            training=bool(row[5]),
            image=row[6],
            stage=Stage(row[7]),
            attempts=row[8],
        )

    def set_stage(self, alert_id: int, stage: Stage) -> None:
        with self._lock:
            if stage is Stage.SENT:
                self._db.execute(
                    "UPDATE alerts SET stage=?, image=NULL, sent_at=?, last_error=NULL WHERE id=?",
                    (stage, time.time(), alert_id),
                )
            else:
                self._db.execute("UPDATE alerts SET stage=? WHERE id=?", (stage, alert_id))

    def park(self, alert_id: int, reason: str, fallback_error: str | None) -> None:
        """Take a refused alert out of the queue, keeping why (and whether its text went out)."""
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET stage=?, image=NULL, parked_reason=?, fallback_error=?,"
                " parked_at=? WHERE id=?",
                (
                    Stage.PARKED,
                    reason[:500],
                    None if fallback_error is None else fallback_error[:500],
                    time.time(),
                    alert_id,
                ),
            )

    def parked_alerts(self, limit: int = 5) -> tuple[int, list[ParkedAlert]]:
        """How many alerts are parked, and the newest ``limit`` of them."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM alerts WHERE stage=3").fetchone()[0]
            rows = self._db.execute(
                "SELECT event_id, camera, created_at, parked_reason, fallback_error, parked_at"
                " FROM alerts WHERE stage=3 ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return int(count), [
            ParkedAlert(
                event_id=r[0],
                camera=r[1],
                created_at=r[2],
                reason=r[3] or "",
                fallback_error=r[4],
                parked_at=r[5] or 0.0,
            )
            for r in rows
        ]

    def alert_settled(self, camera: str, event_id: str) -> bool:
        """True once the event's alert is settled (posted, suppressed, parked) and its clip too
        (posted or given up): its media is no longer owed to Slack. False while either is
        waiting, and for an event not received yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT stage FROM alerts WHERE event_id=? AND camera=?", (event_id, camera)
            ).fetchone()
            clip = self._db.execute(
                "SELECT 1 FROM clips WHERE event_id=? AND stage=?", (event_id, ClipStage.WAITING)
            ).fetchone()
        return row is not None and int(row[0]) not in UNSETTLED_STAGES and clip is None

    def record_failure(self, alert_id: int, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE alerts SET attempts=attempts+1, last_error=? WHERE id=?",
                (error[:500], alert_id),
            )

    def alert_backlog(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM alerts WHERE stage IN (0, 1)").fetchone()
        return int(row[0])

    def prune(self, older_than_seconds: float = 14 * 24 * 3600) -> None:
        """Forget delivered/suppressed/parked alerts and published labels older than the horizon."""
        cutoff = time.time() - older_than_seconds
        with self._lock:
            self._db.execute(
                "DELETE FROM alerts WHERE stage IN (-1, 2, 3) AND created_at < ?", (cutoff,)
            )
            self._db.execute(
                "DELETE FROM labels WHERE published_at IS NOT NULL AND created_at < ?", (cutoff,)
            )
            self._db.execute("DELETE FROM clips WHERE stage!=0 AND created_at < ?", (cutoff,))

    # ---- clips -------------------------------------------------------------------------------

    def waiting_clips(self) -> list[WaitingClip]:
        """Clips still to post, in the order of their alerts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.event_id, c.camera, c.created_at, c.attempts, a.stage FROM clips c"
                " JOIN alerts a ON a.event_id = c.event_id WHERE c.stage=0 ORDER BY a.id"
            ).fetchall()
        return [WaitingClip(r[0], r[1], r[2], r[3], Stage(r[4])) for r in rows]

    def clip_stage(self, event_id: str) -> ClipStage | None:
        with self._lock:
            row = self._db.execute(
                "SELECT stage FROM clips WHERE event_id=?", (event_id,)
            ).fetchone()
        return None if row is None else ClipStage(row[0])

    def record_clip_failure(self, event_id: str, error: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE clips SET attempts=attempts+1, last_error=? WHERE event_id=?",
                (error[:500], event_id),
            )

    def settle_clip(self, event_id: str, stage: ClipStage, reason: str | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE clips SET stage=?, settled_at=?, last_error=COALESCE(?, last_error)"
                " WHERE event_id=?",
                (stage, time.time(), None if reason is None else reason[:500], event_id),
            )

    # ---- labels ------------------------------------------------------------------------------

    def add_label(self, payload_json: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO labels (payload, created_at) VALUES (?, ?)",
                (payload_json, time.time()),
            )
            return int(cur.lastrowid or 0)

    def pending_labels(self) -> list[tuple[int, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, payload FROM labels WHERE published_at IS NULL ORDER BY id"
            ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def mark_label_published(self, label_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE labels SET published_at=? WHERE id=?", (time.time(), label_id))

    # ---- training: every label seen, hard negatives, the weekly figures ------------------------

    def log_label(
        self,
        *,
        event_id: str,
        camera: str,
        label: str,
        source: str,
        labelled_by: str,
        labelled_at: float,
    ) -> None:
        """Remember a label seen on ``training/labels`` (a redelivery changes nothing)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO label_log"
                " (event_id, camera, label, source, labelled_by, labelled_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, camera, label, source, labelled_by, labelled_at),
            )

    def add_candidate(
        self, event_id: str, camera: str, ended_at: float, snapshot: str | None
    ) -> None:
        """A hard negative (motion the person check rejected) for the daily digest."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO candidates (event_id, camera, ended_at, snapshot)"
                " VALUES (?, ?, ?, ?)",
                (event_id, camera, ended_at, snapshot),
            )

    def digest_candidates(
        self, since: float, limit: int
    ) -> list[tuple[str, str, float, str | None]]:
        """``(event_id, camera, ended_at, snapshot)`` of unposted, unlabelled candidates that
        ended after ``since``, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, camera, ended_at, snapshot FROM candidates c"
                " WHERE posted_at IS NULL AND ended_at >= ? AND NOT EXISTS"
                " (SELECT 1 FROM label_log l WHERE l.event_id = c.event_id)"
                " ORDER BY ended_at DESC, event_id LIMIT ?",
                (since, limit),
            ).fetchall()
        return [(str(r[0]), str(r[1]), float(r[2]), r[3]) for r in rows]

    def mark_candidate_posted(self, event_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE candidates SET posted_at=? WHERE event_id=?", (time.time(), event_id)
            )

    def training_figures(self, since: float, until: float) -> dict[str, int]:
        """Counts over ``[since, until)``: alerts queued, the owner's labels (automatic samples
        left out) by verdict, missed alerts, and how the labelled alerts were judged (each
        event by its newest owner label)."""
        window = (since, until)
        with self._lock:
            alerts = self._db.execute(
                "SELECT COUNT(*) FROM alerts WHERE stage>=0 AND created_at>=? AND created_at<?",
                window,
            ).fetchone()[0]
            by_kind = dict(
                self._db.execute(
                    "SELECT CASE WHEN source='missed' THEN 'missed' ELSE label END, COUNT(*)"
                    " FROM label_log WHERE source!='detector' AND labelled_at>=? AND"
                    " labelled_at<? GROUP BY 1",
                    window,
                ).fetchall()
            )
            judged = dict(
                self._db.execute(
                    "SELECT l.label, COUNT(*) FROM alerts a JOIN label_log l"
                    " ON l.event_id = a.event_id AND l.source NOT IN ('detector', 'missed')"
                    " AND l.labelled_at = (SELECT MAX(labelled_at) FROM label_log m"
                    "  WHERE m.event_id = a.event_id AND m.source NOT IN ('detector', 'missed'))"
                    " WHERE a.stage>=0 AND a.created_at>=? AND a.created_at<? GROUP BY 1",
                    window,
                ).fetchall()
            )
        return {
            "alerts": int(alerts),
            "labels": int(sum(by_kind.values())),
            "occupied_labels": int(by_kind.get("occupied", 0)),
            "unoccupied_labels": int(by_kind.get("unoccupied", 0)),
            "missed_alerts": int(by_kind.get("missed", 0)),
            "labelled_alerts": int(sum(judged.values())),
            "false_alerts": int(judged.get("unoccupied", 0)),
        }

    # ---- small key/value facts ---------------------------------------------------------------

    def note_event(self, started_at: float, camera: str) -> None:
        """Remember the newest event seen (a redelivered older one does not move it back)."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key='last_event_at'").fetchone()
            if row is None or float(row[0]) <= started_at:
                self._put_meta("last_event_at", repr(started_at))
                self._put_meta("last_event_camera", camera)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._put_meta(key, value)

    def _put_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])
