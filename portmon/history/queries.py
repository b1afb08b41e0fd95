"""Reading the history: intervals in a time window or at an instant, newest first, filtered like the live table."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from portmon.model import Holder, Socket
from portmon.query.diff import CLOSE, OPEN, Event
from portmon.query.filters import SocketFilter, split_terms


class HolderRecord(NamedTuple):
    """A process that held a socket during an interval, as recorded (command line redacted)."""

    pid: int
    start_time: float | None
    name: str | None
    user: str | None
    cmdline: tuple[str, ...] | None
    exe: str | None
    manager: str | None


class IntervalRecord(NamedTuple):
    """One recorded interval: a socket in one state with one set of holders, from ``opened`` to ``closed``."""

    id: int
    proto: str
    family: int
    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str | None
    service: str | None
    owner_note: str | None
    opened: float
    opened_seen: bool
    """False when the socket was already there when recording began (it opened at or before ``opened``)."""
    closed: float | None
    """None while open."""
    end_reason: str | None
    """``closed``, ``stop``, ``lost`` or ``boot`` (see portmon.history.schema); None while open."""
    holders: tuple[HolderRecord, ...]

    def socket(self) -> Socket:
        """The interval as a Socket, for the filter language and the event log."""
        return Socket(
            proto=self.proto,
            family=self.family,
            local_addr=self.local_addr,
            local_port=self.local_port,
            remote_addr=self.remote_addr,
            remote_port=self.remote_port,
            state=self.state,
            holders=tuple(Holder(h.pid, h.name, h.user, h.start_time) for h in self.holders),
            owner_note=self.owner_note,
            inode=self.id,
            local_service=self.service,
        )

    def held_at(self, when: float) -> bool:
        """True when the interval covers the instant ``when``."""
        return self.opened <= when and (self.closed is None or when < self.closed)


_COLUMNS = (
    "id, proto, family, local_addr, local_port, remote_addr, remote_port, state, service, owner_note,"
    " opened, opened_seen, closed, end_reason"
)
_CHUNK = 500
_PORT_TERM = re.compile(r"^(port:|:|lport:)(\d{1,5})(?:-(\d{1,5}))?$", re.IGNORECASE)
# With no recorder running, an open interval ends at its recorder's last observation: what the next
# recorder will write (see Recorder.begin), said at once.
_DEAD_CLOSED = "COALESCE(closed, (SELECT last_seen FROM sessions s WHERE s.id = intervals.session))"
_DEAD_COLUMNS = _COLUMNS.replace(
    " closed, end_reason", f" {_DEAD_CLOSED}, COALESCE(end_reason, CASE WHEN closed IS NULL THEN 'lost' END)"
)


def _holders(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, list[HolderRecord]]:
    out: dict[int, list[HolderRecord]] = {}
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        for interval, pid, start_time, name, user, cmdline, exe, manager in conn.execute(
            "SELECT h.interval, p.pid, p.start_time, p.name, p.user, p.cmdline, p.exe, p.manager"
            f" FROM interval_holders h JOIN processes p ON p.id = h.process WHERE h.interval IN ({marks})"
            " ORDER BY h.interval, p.pid",
            part,
        ):
            argv = tuple(json.loads(cmdline)) if cmdline is not None else None
            out.setdefault(interval, []).append(HolderRecord(pid, start_time, name, user, argv, exe, manager))
    return out


def _records(conn: sqlite3.Connection, rows: list[Any]) -> Iterator[IntervalRecord]:
    holders = _holders(conn, [int(r[0]) for r in rows])
    for r in rows:
        (rowid, proto, family, laddr, lport, raddr, rport, state, service, note, opened, seen, closed, reason) = r
        yield IntervalRecord(
            rowid, proto, family, laddr, lport, raddr, rport, state, service, note,
            opened, bool(seen), closed, reason, tuple(holders.get(rowid, ())),
        )


def _port_hints(flt: SocketFilter) -> tuple[list[str], list[object]]:
    """SQL conditions implied by the filter's port terms (``:8080``, ``port:8000-8100``, ``lport:8080``).

    Every term must match, so each such term narrows the rows SQL returns (the local port's index does
    the work); the filter itself still decides. Other terms are left to it.
    """
    where: list[str] = []
    params: list[object] = []
    for term in split_terms(flt.text):
        m = _PORT_TERM.match(term)
        if m is None:
            continue
        low = int(m.group(2))
        high = int(m.group(3)) if m.group(3) else low
        if m.group(1).lower() == "lport:":
            where.append("local_port BETWEEN ? AND ?")
            params += [low, high]
        else:
            where.append("(local_port BETWEEN ? AND ? OR remote_port BETWEEN ? AND ?)")
            params += [low, high, low, high]
    return where, params


def find_intervals(
    conn: sqlite3.Connection,
    flt: SocketFilter | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    at: float | None = None,
    port: int | None = None,
    limit: int | None = None,
    recording: bool = True,
) -> list[IntervalRecord]:
    """Intervals matching ``flt`` that overlap [since, until] (or cover ``at``), newest opened first.

    ``port`` narrows by local port in SQL (the index) before the filter runs; ``limit`` caps the answer.
    ``recording=False`` says no recorder runs now (see lock.recorder_running): an interval still open
    in the database then ends at its recorder's last observation, with end_reason ``lost``.
    """
    where: list[str] = []
    params: list[object] = []
    closed = "closed" if recording else _DEAD_CLOSED
    if at is not None:
        where.append(f"opened <= ? AND ({closed} IS NULL OR {closed} > ?)")
        params += [at, at]
    if since is not None:
        where.append(f"({closed} IS NULL OR {closed} >= ?)")
        params.append(since)
    if until is not None:
        where.append("opened <= ?")
        params.append(until)
    if port is not None:
        where.append("local_port = ?")
        params.append(port)
    flt = flt if flt is not None and not flt.is_empty else None
    if flt is not None:
        hints, hinted = _port_hints(flt)
        where += hints
        params += hinted
    sql = f"SELECT {_COLUMNS if recording else _DEAD_COLUMNS} FROM intervals"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened DESC, id DESC"
    out: list[IntervalRecord] = []
    cursor = conn.execute(sql, params)
    while True:
        rows = cursor.fetchmany(_CHUNK)
        if not rows:
            break
        for rec in _records(conn, rows):
            if flt is None or flt.matches(rec.socket()):
                out.append(rec)
                if limit is not None and len(out) >= limit:
                    return out
    return out


def recent_events(conn: sqlite3.Connection, limit: int, before: float | None = None) -> list[Event]:
    """The newest ``limit`` opens and closes the store knows (before ``before``), oldest first.

    A close is a socket that went away (not one whose recorder stopped); an open is one seen to appear
    (not one already there when recording began). For the live monitor's event log.
    """
    # Two walks down the opened and closed indexes, each stopping after ``limit`` rows, merged here.
    found: list[tuple[int, str, float]] = []
    for kind, column, cond in ((OPEN, "opened", "opened_seen = 1"), (CLOSE, "closed", "end_reason = 'closed'")):
        sql = f"SELECT id, '{kind}', {column} FROM intervals WHERE {column} IS NOT NULL AND {cond}"
        params: list[object] = []
        if before is not None:
            sql += f" AND {column} < ?"
            params.append(before)
        sql += f" ORDER BY {column} DESC LIMIT ?"
        found += conn.execute(sql, [*params, limit]).fetchall()
    found.sort(key=lambda row: (row[2], row[1] == OPEN), reverse=True)  # at one instant, closes come first
    del found[limit:]
    ids = sorted({r[0] for r in found})
    by_id: dict[int, IntervalRecord] = {}
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(part))
        rows = conn.execute(f"SELECT {_COLUMNS} FROM intervals WHERE id IN ({marks})", part).fetchall()
        for rec in _records(conn, rows):
            by_id[rec.id] = rec
    events: list[Event] = []
    for rowid, kind, when in reversed(found):
        got = by_id.get(rowid)
        if got is None:
            continue
        sock = got.socket()
        if kind == OPEN:
            events.append(Event(OPEN, when, sock, new_state=sock.state))
        else:
            events.append(Event(CLOSE, when, sock, old_state=sock.state))
    return events
