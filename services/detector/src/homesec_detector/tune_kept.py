"""What ``homesec tune``'s kept SQLite files share: one identity per file, and how long an
unused row stays.

Each file (model answers, motion tracks, event outcomes) holds rows of one *identity* (the code,
libraries and model its rows were computed with): a file opened under another identity is
emptied first, since none of its rows can be used again. Within one identity a row stays while
some run used it in the last :data:`KEEP_UNUSED_DAYS` days (older ones are deleted when a run
opens the file), so a run on another set, a subset or other settings does not drop what the
detector's nightly run on the house's own set uses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

KEEP_UNUSED_DAYS = 30
"""Days a row no run used stays in its file (the nightly run uses its set's rows every day)."""


def claim_identity(db: sqlite3.Connection, identity: str, tables: Sequence[str]) -> None:
    """Mark the file as ``identity``'s, emptying ``tables`` when it held another's."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
    row = db.execute("SELECT value FROM meta WHERE name = 'identity'").fetchone()
    if row is None or row[0] != identity:
        for table in tables:
            db.execute(f"DELETE FROM {table}")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('identity', ?)", (identity,))
    db.commit()


def drop_unused(db: sqlite3.Connection, tables: Sequence[str], run_ns: int) -> None:
    """Delete the rows of ``tables`` (a ``run`` column: when a run last used them, in ns) that
    no run used in the :data:`KEEP_UNUSED_DAYS` days before ``run_ns``."""
    cutoff = run_ns - KEEP_UNUSED_DAYS * 86_400 * 1_000_000_000
    for table in tables:
        db.execute(f"DELETE FROM {table} WHERE run < ?", (cutoff,))
