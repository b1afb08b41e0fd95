"""One recorder per database: an exclusive lock on a file beside it, released by the kernel when the recorder dies.

The lock is ``flock`` on ``DB.lock``, never on the database itself: closing any descriptor of a file
drops the process's POSIX locks on it, and SQLite's own locks on the database are POSIX locks.
The file holds the recorder's pid, so the second recorder can say who holds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from portmon.history.store import HistoryError


class RecorderBusy(HistoryError):
    """Another recorder already writes to this database."""


def lock_path(db: Path) -> Path:
    """The lock file of database ``db``."""
    return db.with_name(db.name + ".lock")


class RecorderLock:
    """Held while a recorder writes to a database; ``release()`` (or process death) lets go."""

    def __init__(self, db: Path) -> None:
        import fcntl

        self.path = lock_path(db)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise HistoryError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise RecorderBusy(
                f"another recorder ({who}) is already recording into {db}; "
                "stop it first, or give this one another --db"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_start_time(os.getpid())}\n".encode(), 0)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Let go of the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        words = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        return None
    return int(words[0]) if words and words[0].isdigit() else None


def _start_time(pid: int) -> float:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return 0.0


def recorder_running(db: Path) -> bool:
    """Whether a recorder holds ``db`` now, judged without taking the lock (which could turn a recorder away).

    The lock file names the last holder's pid and start time: it runs if that very process still does.
    """
    try:
        words = lock_path(db).read_text().split()
    except OSError:
        return False
    if len(words) < 2 or not words[0].isdigit():
        return False
    try:
        started = float(words[1])
    except ValueError:
        return False
    return started > 0 and abs(_start_time(int(words[0])) - started) < 1.0
