"""What one interval is (its identity), and cleaning up after recorders that died before writing their end.

A new recorder, holding the database's lock, first closes what recorders of an earlier boot left
open, at their last observation. Intervals of this boot left open (a crash) or closed by the last
recorder when it stopped are candidates: the first scan takes over each one whose socket is still
there with the same holders (pid and start time); the open ones it does not find close at their
recorder's last observation.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from portmon.history.schema import BOOT, STOP
from portmon.model import Socket, SocketKey

Identity = tuple[SocketKey, "str | None", tuple[tuple[int, float], ...]]
"""What one interval is: the socket's key, its state and its holders' (pid, start time)."""

_CHUNK = 500


def start_key(value: float | None) -> float:
    """A start time as identities hold it: floats read from /proc or psutil, rounded past their noise."""
    return -1.0 if value is None else round(value, 2)


def identity(sock: Socket) -> Identity:
    """The interval a socket belongs to: a change of key, state or holders starts a new one."""
    holders = sock.holders
    if len(holders) == 1:
        h = holders[0]
        return (sock.key, sock.state, ((h.pid, start_key(h.create_time)),))
    return (sock.key, sock.state, tuple(sorted((h.pid, start_key(h.create_time)) for h in holders)))


class Candidate(NamedTuple):
    """An interval a previous recorder of this boot left open, or closed when it stopped."""

    rowid: int
    was_open: bool
    last_seen: float


def close_dead_sessions(conn: sqlite3.Connection, boot_id: str) -> int | None:
    """End the sessions that never said goodbye and close their earlier boots' intervals (in the caller's
    transaction); returns the id of this boot's last session, or None."""
    conn.execute("UPDATE sessions SET ended = last_seen WHERE ended IS NULL")
    conn.execute(
        "UPDATE intervals SET closed = (SELECT last_seen FROM sessions WHERE sessions.id = intervals.session),"
        f" end_reason = '{BOOT}'"
        " WHERE closed IS NULL AND session IN (SELECT id FROM sessions WHERE boot_id != ?)",
        (boot_id,),
    )
    row = conn.execute("SELECT id FROM sessions WHERE boot_id = ? ORDER BY id DESC LIMIT 1", (boot_id,)).fetchone()
    return int(row[0]) if row else None


def load_candidates(
    conn: sqlite3.Connection, boot_id: str, previous: int | None
) -> tuple[dict[Identity, Candidate], list[tuple[float, int]]]:
    """This boot's open intervals and those its last session closed on stopping, by identity; and the
    (last observation, id) of open ones to close at once (two left open for one socket: the newer wins)."""
    rows = conn.execute(
        "SELECT i.id, i.proto, i.family, i.local_addr, i.local_port, i.remote_addr, i.remote_port, i.inode,"
        " i.state, i.closed IS NULL, s.last_seen"
        " FROM intervals i JOIN sessions s ON s.id = i.session"
        " WHERE s.boot_id = ? AND (i.closed IS NULL OR (i.session = ? AND i.end_reason = ?))"
        " ORDER BY i.id",
        (boot_id, previous if previous is not None else -1, STOP),
    ).fetchall()
    holders: dict[int, list[tuple[int, float]]] = {}
    ids = [r[0] for r in rows]
    for chunk in range(0, len(ids), _CHUNK):
        part = ids[chunk : chunk + _CHUNK]
        marks = ",".join("?" * len(part))
        for interval, pid, start in conn.execute(
            "SELECT h.interval, p.pid, p.start_time FROM interval_holders h JOIN processes p ON p.id = h.process"
            f" WHERE h.interval IN ({marks})",
            part,
        ):
            holders.setdefault(interval, []).append((pid, start_key(start)))
    out: dict[Identity, Candidate] = {}
    lost: list[tuple[float, int]] = []
    for rowid, proto, family, laddr, lport, raddr, rport, inode, state, is_open, last_seen in rows:
        key: SocketKey = (proto, family, laddr, lport, raddr or "", rport if rport is not None else -1, inode)
        ident: Identity = (key, state, tuple(sorted(holders.get(rowid, ()))))
        twin = out.get(ident)
        if twin is not None and twin.was_open:
            lost.append((twin.last_seen, twin.rowid))
        out[ident] = Candidate(rowid, bool(is_open), last_seen)
    return out, lost
