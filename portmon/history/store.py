"""Where the history database lives and how it is opened: created user-only, WAL mode, schema migrated."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from portmon.history.schema import SchemaError, migrate

DB_NAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 5000
"""How long a statement waits for another connection's write lock before failing."""


class HistoryError(Exception):
    """The history database cannot be used; str() is one line naming the file and the reason."""


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/portmon/history.sqlite3``, with XDG's default ``~/.local/state``."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "")
    # The XDG spec: a relative path is invalid and must be ignored.
    base = Path(state) if state and os.path.isabs(state) else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return base / "portmon" / DB_NAME


def _create_private(path: Path) -> None:
    """Create the file (and its folder) readable by its owner only, unless it exists.

    SQLite gives the -wal and -shm files the database file's permissions, so they are private too.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)


def open_db(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """A connection to the history database at ``path`` in autocommit mode, WAL, schema up to date.

    Without ``create``, a missing file raises HistoryError instead of being created (readers).
    """
    try:
        if not path.exists():
            if not create:
                raise HistoryError(f"no history database at {path}: start 'portmon record' (or the live monitor) first")
            _create_private(path)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    except OSError as exc:
        raise HistoryError(f"cannot open the history database {path}: {exc.strerror or exc}") from None
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open the history database {path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"cannot put the history database {path} in WAL mode (got {mode})")
        # In WAL mode NORMAL never corrupts on a crash; at worst a power cut loses the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        migrate(conn)
    except SchemaError as exc:
        conn.close()
        raise HistoryError(f"{path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise HistoryError(f"cannot use the history database {path}: {exc}") from None
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def current_boot_id() -> str:
    """This boot's id: the kernel's random boot id on Linux, else the boot time (both change at each boot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            value = fh.read().strip()
        if value:
            return value
    except OSError:
        pass
    import psutil

    return f"boot-time-{int(psutil.boot_time())}"
