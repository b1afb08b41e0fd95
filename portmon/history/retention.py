"""Retention: forget intervals older than a number of days, and the oldest ones when the file grows too big.

Both run in the recorder after a write, at most every ``every`` seconds, and cost a few indexed
deletes; freed pages go back to the file system with an incremental vacuum (no full VACUUM).
"""

from __future__ import annotations

import sqlite3

from portmon.history.store import transaction

DEFAULT_KEEP = 30 * 86400.0
"""Intervals closed longer ago than this are deleted (``--keep 30d``)."""
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""When the database uses more than this, the oldest closed intervals go first (``--max-size 256M``)."""
PRUNE_EVERY = 3600.0


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in use in the database (pages in use, not free pages, not the WAL)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(page_size) * (int(pages) - int(free))


def _delete_intervals(conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> int:
    ids = [r[0] for r in conn.execute(f"SELECT id FROM intervals WHERE {where}", params)]
    for start in range(0, len(ids), 500):
        part = [(i,) for i in ids[start : start + 500]]
        conn.executemany("DELETE FROM interval_holders WHERE interval = ?", part)
        conn.executemany("DELETE FROM intervals WHERE id = ?", part)
    return len(ids)


def _forget_orphans(conn: sqlite3.Connection, before: float) -> None:
    conn.execute(
        "DELETE FROM processes WHERE NOT EXISTS (SELECT 1 FROM interval_holders h WHERE h.process = processes.id)"
    )
    conn.execute(
        "DELETE FROM sessions WHERE ended IS NOT NULL AND ended < ?"
        " AND NOT EXISTS (SELECT 1 FROM intervals i WHERE i.session = sessions.id)",
        (before,),
    )


def prune(conn: sqlite3.Connection, now: float, keep: float = DEFAULT_KEEP, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Delete what retention says to forget; returns how many intervals went.

    Open intervals are never deleted. By size: the oldest closed intervals go, a batch at a time,
    until the database uses at most 90 % of ``max_bytes`` (so it does not prune at every write).
    """
    cutoff = now - keep
    removed = 0
    with transaction(conn):
        removed += _delete_intervals(conn, "closed IS NOT NULL AND closed < ?", (cutoff,))
    if used_bytes(conn) > max_bytes:
        target = int(max_bytes * 0.9)
        for _ in range(20):  # rows go, pages come free: a few rounds always reach the target
            used = used_bytes(conn)
            if used <= target:
                break
            with transaction(conn):
                total = conn.execute("SELECT count(*) FROM intervals WHERE closed IS NOT NULL").fetchone()[0]
                if not total:
                    break
                # Oldest first, by when they closed (the index on closed), a share as large as the excess.
                share = max(0.05, 1.0 - target / used)
                batch = max(1, min(total, int(total * share) + 1))
                removed += _delete_intervals(
                    conn, "id IN (SELECT id FROM intervals WHERE closed IS NOT NULL ORDER BY closed LIMIT ?)", (batch,)
                )
                _forget_orphans(conn, now)
    if removed:
        with transaction(conn):
            _forget_orphans(conn, cutoff)
        conn.execute("PRAGMA incremental_vacuum")
    return removed


class Retention:
    """Runs ``prune`` after a recorder's write, at most every ``every`` seconds (the first write always)."""

    def __init__(
        self, keep: float = DEFAULT_KEEP, max_bytes: int = DEFAULT_MAX_BYTES, every: float = PRUNE_EVERY
    ) -> None:
        self.keep = keep
        self.max_bytes = max_bytes
        self.every = every
        self._last: float | None = None
        self.removed = 0
        """Intervals deleted so far."""

    def __call__(self, conn: sqlite3.Connection, now: float) -> None:
        if self._last is not None and now - self._last < self.every:
            return
        self._last = now
        self.removed += prune(conn, now, self.keep, self.max_bytes)
