"""Port events over time: a stream that turns successive scans into events, a bounded log, and text/NDJSON lines."""

from __future__ import annotations

import datetime as _dt
import time as _time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from portmon.model import OWNER_HIDDEN, OWNER_KERNEL, OWNER_UNSEEN, Snapshot, Socket
from portmon.output import endpoint, socket_record, to_json
from portmon.query.diff import OPEN, STATE, Event, IdentityTally, diff_changed_objects
from portmon.sameobjects import changed_objects
from portmon.textsafe import safe

DEFAULT_EVENT_LIMIT = 5000
"""How many events the live monitor keeps (the oldest go first)."""

Scope = Callable[[Socket], bool]
"""Which sockets a stream follows (e.g. only listening ones)."""


def is_listening(sock: Socket) -> bool:
    """The default scope of ``watch``: TCP LISTEN and bound, unconnected UDP sockets."""
    return sock.listening


def event_in_scope(event: Event, scope: Scope) -> bool:
    """True when the event's socket is in scope (for a state change, before or after counts)."""
    if scope(event.socket):
        return True
    if event.kind == STATE and event.old_state is not None:
        # The socket as it was: same fields, the old state (a LISTEN socket that moved on).
        before = _with_state(event.socket, event.old_state)
        return scope(before)
    return False


def _with_state(sock: Socket, state: str | None) -> Socket:
    return sock._replace(state=state)


class EventStream:
    """Turns successive snapshots into events: the first good snapshot is the baseline (no events).

    A snapshot with ``error`` set (a failed scan, see ``guarded_scan``) gives no events and does not
    move the baseline, so the first good scan after a failure is diffed against the last good one.
    With ``scope``, only sockets in scope are compared: a socket leaving the scope counts as closed.
    Not thread-safe: feed it from one thread.
    """

    def __init__(self, scope: Scope | None = None) -> None:
        self._scope = scope
        self._last: tuple[Socket, ...] | None = None
        self._tally: IdentityTally | None = None
        """The identities of ``_last``, for ``diff_changed_objects`` (counted on the first diff)."""
        self.baseline_at: float | None = None
        """When the baseline scan was taken (None before the first good scan)."""
        self._hosts: set[str | None] = {None}
        """Every host seen in a good snapshot so far; this machine (None) is there from the start, an
        empty first scan included."""

    @property
    def started(self) -> bool:
        """True once a baseline exists."""
        return self._last is not None

    def _scoped(self, snapshot: Snapshot) -> tuple[Socket, ...]:
        if self._scope is None:
            return snapshot.sockets
        return tuple(filter(self._scope, snapshot.sockets))

    def feed(self, snapshot: Snapshot) -> tuple[Event, ...]:
        """The events since the previous good snapshot (none for the first one or a failed scan)."""
        if snapshot.error is not None:
            return ()
        sockets = self._scoped(snapshot)
        previous = self._last
        self._last = sockets
        # A remote host (--host) answers some time after the first scan: its first sockets are its
        # baseline, not a burst of opens. Which hosts answered is read from the whole snapshot.
        hosts = self._hosts_of(previous, sockets, snapshot)
        arrived = hosts - self._hosts
        self._hosts |= hosts
        if previous is None:
            self.baseline_at = snapshot.taken_at
            return ()
        if previous is sockets:
            return ()
        events, self._tally = diff_changed_objects(previous, sockets, snapshot.taken_at, self._tally)
        if arrived:
            return tuple(e for e in events if not (e.kind == OPEN and e.socket.host in arrived))
        return tuple(events)

    def _hosts_of(
        self, previous: tuple[Socket, ...] | None, sockets: tuple[Socket, ...], snapshot: Snapshot
    ) -> set[str | None]:
        """The hosts of ``sockets`` not yet seen, or more of those already seen (enough for ``feed``).

        Without a scope, ``previous`` is the last good snapshot's sockets, whose hosts were all seen:
        a host new now holds a socket that is not an object of ``previous``, so only those are read.
        """
        if self._scope is not None or previous is None:
            return {s.host for s in snapshot.sockets}
        return {s.host for s in changed_objects(previous, sockets)[1]}


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event with its position in the session's log (numbers only grow, so they identify it)."""

    seq: int
    event: Event


class EventLog:
    """The session's events, oldest first, keeping at most ``limit`` (older ones are dropped).

    Mutated by one owner (the monitor screen); readers get immutable ``LoggedEvent`` values.
    """

    def __init__(self, limit: int = DEFAULT_EVENT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("the event log must keep at least one event")
        self.limit = limit
        self._items: deque[LoggedEvent] = deque(maxlen=limit)
        self._next = 0

    def add(self, events: Iterable[Event]) -> list[LoggedEvent]:
        """Append events (in the order they happened); returns them as logged."""
        added: list[LoggedEvent] = []
        for event in events:
            item = LoggedEvent(self._next, event)
            self._next += 1
            added.append(item)
        # Only the last ``limit`` of a flood can stay; skip appending the rest.
        self._items.extend(added[-self.limit :])
        return added

    @property
    def total(self) -> int:
        """Events ever added, including those dropped."""
        return self._next

    @property
    def dropped(self) -> int:
        """Events dropped to stay within the limit."""
        return self._next - len(self._items)

    @property
    def oldest_seq(self) -> int:
        """Sequence number of the oldest event still kept (``total`` when empty)."""
        return self._items[0].seq if self._items else self._next

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[LoggedEvent]:
        return iter(self._items)

    def newest_first(self, keep: Callable[[Event], bool] | None = None) -> list[LoggedEvent]:
        """The kept events, newest first, optionally only those ``keep`` accepts."""
        items = reversed(self._items)
        if keep is None:
            return list(items)
        return [item for item in items if keep(item.event)]

    def clear(self) -> None:
        """Forget every event (the numbering goes on)."""
        self._items.clear()


# -- formatting -------------------------------------------------------------------------------


def clock_time(when: float) -> str:
    """``12:01:03`` in local time."""
    return _time.strftime("%H:%M:%S", _time.localtime(when))


def iso_time(when: float) -> str:
    """ISO 8601 local time with its UTC offset, to the millisecond: ``2026-01-01T12:00:01.000+00:00``."""
    return _dt.datetime.fromtimestamp(when).astimezone().isoformat(timespec="milliseconds")


_OWNER_WORDS = {OWNER_KERNEL: "(kernel)", OWNER_HIDDEN: "(hidden owner)", OWNER_UNSEEN: "(owner not visible)"}


def owner_text(sock: Socket, width: int = 32) -> str:
    """``python3 (4121)``, ``nginx (1290) +2`` for a shared socket, or why the owner is unknown; escaped."""
    if not sock.holders:
        return _OWNER_WORDS.get(sock.owner_note or "", "-")
    first = sock.holders[0]
    text = f"{safe(first.name or '?', width)} ({first.pid})"
    if len(sock.holders) > 1:
        text += f" +{len(sock.holders) - 1}"
    return text


def endpoints_text(sock: Socket) -> str:
    """``0.0.0.0:8000`` or ``127.0.0.1:8000 -> 127.0.0.1:52714``, escaped."""
    text = safe(endpoint(sock.local_addr, sock.local_port, sock.family))
    if sock.remote_port is not None or sock.remote_addr is not None:
        text += " -> " + safe(endpoint(sock.remote_addr, sock.remote_port, sock.family))
    return text


def state_text(event: Event) -> str:
    """The state part of an event line: ``LISTEN``, ``CLOSE_WAIT (was ESTABLISHED)``, ``udp`` state is empty."""
    if event.kind == STATE:
        return f"{safe(event.new_state or '-')} (was {safe(event.old_state or '-')})"
    state = event.socket.state
    return safe(state) if state else ""


def service_text(sock: Socket) -> str:
    """The local service, or the remote one for an outgoing connection; escaped."""
    return safe(sock.local_service or sock.remote_service or "", 32)


def event_line(event: Event) -> str:
    """One readable line: ``12:01:03 open  tcp4 0.0.0.0:8000 LISTEN python3 (4121) http-alt``.

    Every field that comes from other processes or files is escaped, so the line is safe on a terminal.
    """
    sock = event.socket
    parts = [clock_time(event.time), f"{event.kind:<5}", sock.proto_label, endpoints_text(sock)]
    if sock.host is not None:  # a remote host's socket (--host) says where it is
        parts.insert(2, f"[{safe(sock.host, 64)}]")
    state = state_text(event)
    if state:
        parts.append(state)
    parts.append(owner_text(sock))
    service = service_text(sock)
    if service:
        parts.append(service)
    return " ".join(parts)


def event_record(event: Event) -> dict[str, Any]:
    """One event as a JSON-ready dict: ``event``, ``time``, the ``list --json`` socket keys, the states
    before and after, and every holder of the socket."""
    sock = event.socket
    record: dict[str, Any] = {"event": event.kind, "time": iso_time(event.time)}
    record.update(socket_record(sock))
    record["old_state"] = event.old_state
    record["new_state"] = event.new_state
    record["holders"] = [{"pid": h.pid, "process": h.name, "user": h.user} for h in sock.holders]
    record["owner_note"] = sock.owner_note
    return record


def event_json(event: Event) -> str:
    """One NDJSON line (without the newline), ASCII only."""
    return to_json(event_record(event))

