"""The history database's schema, versioned by ``PRAGMA user_version`` and brought up to date by migrations.

Times are REAL seconds since the Unix epoch, which is UTC by definition. Each interval is one socket
(its key: protocol, family, addresses, ports, inode) in one state with one set of holders, from the
scan that first saw it (``opened``; ``opened_seen`` is 0 when the socket was already there when recording began, so it
opened at or before then) to the scan that no longer did (``closed``, NULL while open).
``end_reason`` says how it ended: ``closed`` (the socket went away), ``stop`` (the recorder stopped
cleanly), ``lost`` (the recorder died; ``closed`` is its last observation) or ``boot`` (the machine
rebooted; likewise). Holders are processes, one row per (boot id, pid, start time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

_V1 = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    last_seen REAL NOT NULL,
    ended REAL,
    scope TEXT NOT NULL
);
CREATE TABLE processes (
    id INTEGER PRIMARY KEY,
    boot_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_time REAL,
    name TEXT,
    user TEXT,
    cmdline TEXT,
    exe TEXT,
    manager TEXT,
    UNIQUE (boot_id, pid, start_time)
);
CREATE TABLE intervals (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    proto TEXT NOT NULL,
    family INTEGER NOT NULL,
    local_addr TEXT NOT NULL,
    local_port INTEGER NOT NULL,
    remote_addr TEXT,
    remote_port INTEGER,
    state TEXT,
    inode INTEGER NOT NULL DEFAULT 0,
    service TEXT,
    owner_note TEXT,
    opened REAL NOT NULL,
    opened_seen INTEGER NOT NULL DEFAULT 1,
    closed REAL,
    end_reason TEXT
);
CREATE INDEX intervals_port ON intervals (local_port, opened);
CREATE INDEX intervals_opened ON intervals (opened);
CREATE INDEX intervals_closed ON intervals (closed);
CREATE INDEX intervals_remote_port ON intervals (remote_port) WHERE remote_port IS NOT NULL;
CREATE TABLE interval_holders (
    interval INTEGER NOT NULL,
    process INTEGER NOT NULL,
    PRIMARY KEY (interval, process)
) WITHOUT ROWID;
CREATE INDEX interval_holders_process ON interval_holders (process);
"""

CLOSED = "closed"
"""end_reason: the socket went away."""
STOP = "stop"
"""end_reason: the recorder stopped cleanly."""
LOST = "lost"
"""end_reason: the recorder died; ``closed`` is its last observation."""
BOOT = "boot"
"""end_reason: the machine rebooted; ``closed`` is the last observation before."""

Migration = Callable[[sqlite3.Connection], None]


def _v1(conn: sqlite3.Connection) -> None:
    for statement in _V1.split(";"):
        if statement.strip():
            conn.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (_v1,)
"""``MIGRATIONS[n]`` takes a database at version n to n + 1. Append; never edit a released step."""
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database's schema is not one this portmon can use (str() is one line)."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new, empty database)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; returns the version it was at.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A database written by a newer
    portmon raises SchemaError rather than being touched.
    """
    before = schema_version(conn)
    if before > SCHEMA_VERSION:
        raise SchemaError(
            f"the history database has schema version {before}, newer than this portmon knows ({SCHEMA_VERSION}); "
            "upgrade portmon or use another --db"
        )
    if before == 0:
        # Only takes effect before the first table exists: freed pages can then go back to the OS cheaply.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    for version in range(before, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            if schema_version(conn) == version:
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return before
