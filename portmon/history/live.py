"""Recording while the live monitor runs: a collector that feeds each scan to a recorder, on the scanning thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from portmon.collect.base import Collector
from portmon.history.lock import RecorderBusy, RecorderLock
from portmon.history.queries import recent_events
from portmon.history.recorder import Recorder
from portmon.history.retention import Retention
from portmon.history.store import HistoryError, current_boot_id, open_db
from portmon.model import Snapshot
from portmon.query.diff import Event
from portmon.query.events import is_listening


class RecordingCollector:
    """Scans with ``inner`` and records each good scan; a failing write stops recording, never scanning.

    Anything else the inner collector offers (``start_cold_walk``, ...) passes through.
    """

    def __init__(self, inner: Collector, recorder: Recorder, lock: RecorderLock) -> None:
        self._inner = inner
        self.name = inner.name
        self._recorder = recorder
        self._lock = lock
        self._mutex = threading.Lock()
        self._closed = False
        self.error: str | None = None
        """Why recording stopped, when a write failed (scans go on)."""

    @property
    def recording(self) -> bool:
        """True while scans are being recorded."""
        return not self._closed and self.error is None

    def scan(self) -> Snapshot:
        """The inner collector's scan, recorded on the way (on the caller's thread)."""
        snapshot = self._inner.scan()
        with self._mutex:
            if self.recording:
                try:
                    self._recorder.feed(snapshot)
                except sqlite3.Error as exc:
                    self.error = f"history recording stopped: {exc}"
        return snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def close(self) -> None:
        """Stop recording: open intervals close now, the database and its lock are let go (idempotent)."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                if self.error is None:
                    self._recorder.stop()
            except sqlite3.Error:
                pass  # nothing more can be written; the next recorder cleans up as after a crash
            finally:
                self._recorder.conn.close()
                self._lock.release()


def start_recording(
    inner: Collector, db: Path, clock: Callable[[], float] = time.time
) -> tuple[Collector, RecordingCollector | None, str | None]:
    """The collector to scan with, its recorder (None when not recording) and why not.

    Records listening sockets, as ``portmon record`` does by default. When another recorder holds the
    database (a ``portmon record`` service) the monitor does not record: that one already does.
    """
    try:
        lock = RecorderLock(db)
    except RecorderBusy as exc:
        return inner, None, str(exc).split(";")[0] + ": the monitor does not record too"
    except HistoryError as exc:
        return inner, None, str(exc)
    try:
        conn = open_db(db)
        recorder = Recorder(conn, boot_id=current_boot_id(), scope=is_listening, scope_text="listening (live monitor)",
                            clock=clock, after_flush=Retention())
        recorder.begin()
    except (HistoryError, sqlite3.Error) as exc:
        lock.release()
        return inner, None, f"not recording history: {exc}"
    wrapped = RecordingCollector(inner, recorder, lock)
    return wrapped, wrapped, None


def past_events(db: Path, limit: int) -> tuple[list[Event], str | None]:
    """The newest ``limit`` events the history database holds (oldest first), or why there are none."""
    if not db.exists():
        return [], None
    try:
        conn = open_db(db, create=False)
    except HistoryError as exc:
        return [], str(exc)
    try:
        return recent_events(conn, limit), None
    except sqlite3.Error as exc:
        return [], f"cannot read the history database {db}: {exc}"
    finally:
        conn.close()
