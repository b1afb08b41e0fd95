"""The recorder: turns successive scans into intervals in the history database, written in batches.

Fed from whoever scans (``portmon record``'s loop, the live monitor's poller thread): ``feed()``
only compares the scan with the intervals it holds open in memory and reads the command line of
processes it has not met; the database is written by ``flush()`` at most every ``flush_every``
seconds, in one transaction. A crash loses at most that much, and never corrupts the file (WAL).

At ``begin()`` it cleans up after recorders that died: intervals left open from an earlier boot
are closed at that recorder's last observation; those from this boot (and those its predecessor
closed when it stopped) are taken over if the first scan still shows the same socket held by the
same processes (pid and start time), else closed at the last observation too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable

from portmon.history.procfacts import FactsCache, ProcessFacts
from portmon.history.recovery import Candidate, Identity, close_dead_sessions, identity, load_candidates
from portmon.history.redact import redact_cmdline
from portmon.history.schema import CLOSED, LOST, STOP
from portmon.history.store import transaction
from portmon.model import Holder, Snapshot, Socket, SocketKey
from portmon.query.filters import SocketFilter
from portmon.sameobjects import changed_objects

FLUSH_EVERY = 5.0
"""Seconds between writes while sockets change: what a crash can lose at most."""
HEARTBEAT_EVERY = 30.0
"""Seconds between writes while nothing changes (the session's last observation moves on)."""
CMDLINE_LIMIT = 4096
"""Characters of a command line kept (a ``python -c SCRIPT`` or a Java class path can run to 100 KB)."""


def stored_cmdline(argv: tuple[str, ...]) -> str:
    """The command line as stored: redacted, at most CMDLINE_LIMIT characters (the cut marked with "…"), JSON."""
    out: list[str] = []
    room = CMDLINE_LIMIT
    for arg in redact_cmdline(argv):
        if len(arg) > room:
            out.append(arg[:room] + "…")
            break
        out.append(arg)
        room -= len(arg)
    return json.dumps(out)


class _Interval:
    """One interval as the recorder holds it until written (and, while open, after)."""

    __slots__ = ("sock", "opened", "opened_seen", "holders", "closed", "reason", "rowid")

    def __init__(self, sock: Socket, opened: float, opened_seen: bool, holders: tuple[ProcessFacts, ...]) -> None:
        self.sock = sock
        self.opened = opened
        self.opened_seen = opened_seen
        self.holders = holders
        self.closed: float | None = None
        self.reason: str | None = None
        self.rowid: int | None = None


class Recorder:
    """Records the sockets of the snapshots fed to it (see the module doc). Use from one thread.

    ``scope`` picks the sockets to record (listening ones by default; None records every socket) and
    ``flt`` narrows them further. ``clock`` gives the time of flushes and of a stop; intervals take
    their times from the snapshots. ``facts`` reads a new holder's command line (redacted) and exe.
    ``after_flush`` runs after each write (retention hooks in here).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        boot_id: str,
        scope: Callable[[Socket], bool] | None,
        flt: SocketFilter | None = None,
        scope_text: str = "",
        clock: Callable[[], float] = time.time,
        facts: Callable[[Holder], ProcessFacts] | None = None,
        flush_every: float = FLUSH_EVERY,
        heartbeat_every: float = HEARTBEAT_EVERY,
        after_flush: Callable[[sqlite3.Connection, float], None] | None = None,
    ) -> None:
        self.conn = conn
        self.boot_id = boot_id
        self._scope = scope
        self._filter = flt if flt is not None and not flt.is_empty else None
        self._scope_text = scope_text
        self._clock = clock
        self._facts = facts if facts is not None else FactsCache().facts
        self._flush_every = flush_every
        self._heartbeat_every = heartbeat_every
        self._after_flush = after_flush
        self.session: int | None = None
        self._open: dict[Identity, _Interval] = {}
        self._keyed: dict[tuple[SocketKey, str | None], Identity] = {}
        self._objects: dict[int, tuple[Socket, Identity | None]] = {}
        """The last scan's in-scope sockets by id(): each with its interval, or None when filtered out."""
        self._last_sockets: tuple[Socket, ...] | None = None
        """The open interval with holders of each (key, state)."""
        self._new: list[_Interval] = []
        self._ended: list[_Interval] = []
        self._candidates: dict[Identity, Candidate] | None = None
        self._reopen: list[int] = []
        self._lost: list[tuple[float, int]] = []
        self._process_ids: dict[tuple[int, float | None], int] = {}
        self._last_flush = 0.0
        self._last_scan: float | None = None
        self._dirty = False
        self.scans = 0
        """Good snapshots fed (for callers and tests)."""
        self.writes = 0
        """Transactions written."""

    @property
    def open_count(self) -> int:
        """Intervals open now."""
        return len(self._open)

    # -- start -----------------------------------------------------------------------------------

    def begin(self) -> int:
        """Start a session: clean up after dead recorders and note this one. Returns the session id.

        The caller holds the database's RecorderLock, so no other recorder is alive.
        """
        now = self._clock()
        conn = self.conn
        with transaction(conn):
            previous = close_dead_sessions(conn, self.boot_id)
            self._candidates, self._lost = load_candidates(conn, self.boot_id, previous)
            cur = conn.execute(
                "INSERT INTO sessions (boot_id, pid, started, last_seen, scope) VALUES (?, ?, ?, ?, ?)",
                (self.boot_id, os.getpid(), now, now, self._scope_text),
            )
            self.session = int(cur.lastrowid or 0)
        self._last_flush = now
        self.writes += 1
        if self._after_flush is not None:
            self._after_flush(conn, now)
        return self.session

    # -- scans -----------------------------------------------------------------------------------

    def feed(self, snapshot: Snapshot) -> None:
        """Take one scan: intervals open and close in memory; a write happens when one is due.

        Collectors hand back the same Socket object for a socket that did not change, so only new
        objects are looked at: an object gone means its interval may have ended, a new one that an
        interval may have begun (or, with the same identity, goes on). Cost follows the churn, not the
        socket count.
        """
        if snapshot.error is not None:
            return  # a failed scan repeats old sockets: it proves nothing
        at = snapshot.taken_at
        first = self.scans == 0
        self.scans += 1
        self._last_scan = at
        sockets: Iterable[Socket] = snapshot.sockets
        if sockets is self._last_sockets:
            self.maybe_flush()
            return
        last, self._last_sockets = self._last_sockets, snapshot.sockets
        if type(last) is tuple and type(snapshot.sockets) is tuple:
            fresh, left = self._moved_objects(last, snapshot.sockets)
        else:
            fresh, left = self._split_objects(sockets)
        objects = self._objects
        opened = self._open
        keyed = self._keyed
        arrived: dict[Identity, Socket] = {}
        flt = self._filter
        for s in fresh:
            if flt is not None and not flt.matches(s):
                objects[id(s)] = (s, None)
                continue
            ident = identity(s)
            if not s.holders and ident not in opened:
                # The owner went out of sight (a dying process, a scan racing an exit): same socket, same interval.
                ident = keyed.get((ident[0], ident[1]), ident)
            arrived[ident] = s
            objects[id(s)] = (s, ident)
        for gone in left:
            if gone is None or gone in arrived:
                continue
            ended = opened.pop(gone, None)
            if ended is not None:
                self._end(ended, at, CLOSED)
                if keyed.get((gone[0], gone[1])) == gone:
                    del keyed[(gone[0], gone[1])]
        candidates, self._candidates = self._candidates, None
        for ident, sock in arrived.items():
            if ident in opened:
                continue
            holders = tuple(self._facts(h) for h in sock.holders)
            cand = candidates.pop(ident, None) if candidates else None
            if cand is not None:
                iv = _Interval(sock, at, False, holders)
                iv.rowid = cand.rowid
                self._reopen.append(cand.rowid)
            else:
                iv = _Interval(sock, at, not first, holders)
                self._new.append(iv)
            opened[ident] = iv
            if sock.holders:
                keyed[(ident[0], ident[1])] = ident
            self._dirty = True
        if candidates:
            for cand in candidates.values():
                if cand.was_open:
                    self._lost.append((cand.last_seen, cand.rowid))
                    self._dirty = True
        self.maybe_flush()

    def _split_objects(self, sockets: Iterable[Socket]) -> tuple[list[Socket], list[Identity | None]]:
        """(the in-scope sockets that are not objects of the last scan, the identities of those gone), in one
        pass over every socket; ``_objects`` becomes the in-scope objects of this scan, fresh ones still to add."""
        if self._scope is not None:
            sockets = filter(self._scope, sockets)
        previous = self._objects
        objects: dict[int, tuple[Socket, Identity | None]] = {}
        fresh: list[Socket] = []
        pop = previous.pop
        for s in sockets:
            hit = pop(id(s), None)
            if hit is not None and hit[0] is s:
                objects[id(s)] = hit
            else:
                fresh.append(s)
        self._objects = objects
        return fresh, [ident for _sock, ident in previous.values()]

    def _moved_objects(
        self, last: tuple[Socket, ...], sockets: tuple[Socket, ...]
    ) -> tuple[list[Socket], list[Identity | None]]:
        """:meth:`_split_objects` from the sockets that came and went since ``last``, the scan fed before.

        Speed trick for the live monitor's poller thread: the pair's split by object
        (``changed_objects``, which the change marks, rows, rates and events of the same refresh
        share) gives the sockets that came and went, so the scope is asked of those only and the
        objects kept are moved along, instead of a pass in Python over every socket. The same
        intervals open and close, in the same order for the new ones (so the same rows are
        written; tests/test_history_recorder.py feeds both ways). Saving on issue 18's load
        (31,000 sockets, 200-450 new objects per scan; ``bench/bench_step.py``, the record stage,
        medians of 14): 0.1 ms of CPU per scan instead of 3.7 ms, the split being asked already.
        """
        gone, came = changed_objects(last, sockets)
        objects = self._objects
        left: list[Identity | None] = []
        for s in gone:
            hit = objects.pop(id(s), None)
            if hit is not None:
                left.append(hit[1])
        fresh = came if self._scope is None else list(filter(self._scope, came))
        return fresh, left

    def _end(self, iv: _Interval, at: float, reason: str) -> None:
        iv.closed = at
        iv.reason = reason
        if iv.rowid is not None:
            self._ended.append(iv)  # one not written yet is inserted already closed
        self._dirty = True

    def maybe_flush(self) -> bool:
        """Write if a write is due (changes waiting ``flush_every``, or a heartbeat); True when it wrote."""
        now = self._clock()
        waited = now - self._last_flush
        if (self._dirty and waited >= self._flush_every) or waited >= self._heartbeat_every:
            self.flush()
            return True
        return False

    # -- writes ----------------------------------------------------------------------------------

    def _process_id(self, facts: ProcessFacts) -> int:
        key = (facts.pid, facts.start_time)
        rowid = self._process_ids.get(key)
        if rowid is not None:
            return rowid
        conn = self.conn
        row = conn.execute(
            "SELECT id FROM processes WHERE boot_id = ? AND pid = ? AND start_time IS ?",
            (self.boot_id, facts.pid, facts.start_time),
        ).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO processes (boot_id, pid, start_time, name, user, cmdline, exe, manager)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.boot_id,
                    facts.pid,
                    facts.start_time,
                    facts.name,
                    facts.user,
                    stored_cmdline(facts.cmdline) if facts.cmdline is not None else None,
                    facts.exe,
                    facts.manager,
                ),
            )
            rowid = int(cur.lastrowid or 0)
        else:
            rowid = int(row[0])
        if len(self._process_ids) > 65536:
            self._process_ids.clear()
        self._process_ids[key] = rowid
        return rowid

    def flush(self) -> None:
        """Write everything waiting, and the session's last observation, in one transaction."""
        if self.session is None:
            raise RuntimeError("Recorder.begin() was not called")
        now = self._clock()
        conn = self.conn
        new, self._new = self._new, []
        ended, self._ended = self._ended, []
        reopen, self._reopen = self._reopen, []
        lost, self._lost = self._lost, []
        try:
            self._write(new, ended, reopen, lost, now)
        except BaseException:
            # Nothing was written: keep it all for the next try (a full disk, a busy database).
            for iv in new:
                iv.rowid = None
            self._new[:0] = new
            self._ended[:0] = ended
            self._reopen[:0] = reopen
            self._lost[:0] = lost
            self._process_ids.clear()
            raise
        self._dirty = False
        self._last_flush = now
        self.writes += 1
        if self._after_flush is not None:
            self._after_flush(conn, now)

    def _write(
        self, new: list[_Interval], ended: list[_Interval], reopen: list[int], lost: list[tuple[float, int]], now: float
    ) -> None:
        conn = self.conn
        with transaction(conn):
            links: list[tuple[int, int]] = []
            for iv in new:
                s = iv.sock
                key = s.key
                cur = conn.execute(
                    "INSERT INTO intervals (session, proto, family, local_addr, local_port, remote_addr, remote_port,"
                    " state, inode, service, owner_note, opened, opened_seen, closed, end_reason)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.session, s.proto, s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port,
                        s.state, key[6], s.local_service, s.owner_note, iv.opened, int(iv.opened_seen),
                        iv.closed, iv.reason,
                    ),
                )
                iv.rowid = int(cur.lastrowid or 0)
                links.extend((iv.rowid, self._process_id(h)) for h in iv.holders)
            if links:
                conn.executemany("INSERT OR IGNORE INTO interval_holders (interval, process) VALUES (?, ?)", links)
            if ended:
                conn.executemany(
                    "UPDATE intervals SET closed = ?, end_reason = ? WHERE id = ?",
                    [(iv.closed, iv.reason, iv.rowid) for iv in ended],
                )
            if reopen:
                conn.executemany(
                    "UPDATE intervals SET session = ?, closed = NULL, end_reason = NULL WHERE id = ?",
                    [(self.session, rowid) for rowid in reopen],
                )
            if lost:
                conn.executemany(f"UPDATE intervals SET closed = ?, end_reason = '{LOST}' WHERE id = ?", lost)
            last = self._last_scan if self._last_scan is not None else now
            conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (last, self.session))

    def stop(self) -> None:
        """End the session cleanly: open intervals close now (reason ``stop``), everything is written."""
        if self.session is None:
            return
        now = self._clock()
        for iv in self._open.values():
            self._end(iv, now, STOP)
        self._open.clear()
        self._keyed.clear()
        self._objects.clear()
        self._last_sockets = None
        self._last_scan = max(self._last_scan or now, now)
        self.flush()
        with transaction(self.conn):
            self.conn.execute("UPDATE sessions SET ended = ? WHERE id = ?", (now, self.session))
        self.session = None
