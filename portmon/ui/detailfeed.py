"""What feeds the detail pane: the selected socket's process, read in the background, and the sockets it holds.

A refresh redraws only the part of the pane that changed: the list can hold 200 lines of a 10,000-socket
process, and a change in the head's height is the only thing that needs a layout pass of the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from textual.message import Message

from portmon.model import Holder, Snapshot, Socket
from portmon.ownership.families import Member
from portmon.procinfo import ProcessDetail, ProcessReader, uptime_text
from portmon.ui.background import DaemonPool
from portmon.ui.detail import DetailPane, describe, held_lines, held_sockets
from portmon.ui.owners import OwnershipDetail, OwnershipReader
from portmon.ui.view import MARK_CLOSED, Marks

CHECKING = "checking what manages it…"
UNREADABLE = "what manages it could not be read"
OWNER_TTL = 30.0
"""Seconds a row's managers stay as read before a refresh reads them again (restart counts, states change);
the enricher keeps systemd's and the engines' answers as long."""
MAX_DETAILS = 256
"""Process details kept before the cache starts over."""

ProcessIdent = tuple[int, "float | None"]
OwnerKey = tuple[int, "float | None", "int | None"]
"""(pid, start time, port): whose managers, and on which port (a socket unit is found by its port)."""


class OwnershipRead(Message):
    """The selected row's managers and parent chain arrived from a background read."""

    def __init__(self, key: OwnerKey, detail: OwnershipDetail | None) -> None:
        super().__init__()
        self.key = key
        self.detail = detail


class ProcessRead(Message):
    """Details of a process arrived from a background read."""

    def __init__(self, pid: int, create_time: float | None, detail: ProcessDetail) -> None:
        super().__init__()
        self.pid = pid
        self.create_time = create_time
        self.detail = detail


def height_shape(process: ProcessDetail | None) -> ProcessDetail | None:
    """``process`` without the values that change from read to read but always fit on one line."""
    if process is None:
        return None
    cpu = None if process.cpu_percent is None else 0.0
    return replace(process, cpu_percent=cpu, rss=None, threads=None, status=None)


class DetailFeed:
    """Reads processes for the detail pane and hands the pane what changed since it last drew.

    With ``background`` the reads run on a daemon thread and their results come back as
    :class:`ProcessRead` messages through ``post`` (give them to :meth:`received`); without, the
    reader (a fake in tests and screenshots) is called at once.
    """

    def __init__(
        self,
        reader: ProcessReader,
        post: Callable[[Message], object],
        *,
        background: bool,
        ownership: OwnershipReader | None = None,
    ) -> None:
        self.details: dict[ProcessIdent, ProcessDetail] = {}
        """Processes read so far, by (pid, start time)."""
        self._reader = reader
        self._post = post
        self._background = background
        self._reading: set[ProcessIdent] = set()
        self._pool: DaemonPool | None = None
        self._ownership = ownership
        self.owners: dict[OwnerKey, OwnershipDetail | None] = {}
        """Managers and parent chains read so far (None: the read failed), by (pid, start time, port)."""
        self._owner_pool: DaemonPool | None = None
        self._owner_reading: set[OwnerKey] = set()
        self._owner_at: dict[OwnerKey, float] = {}
        self._members: tuple[tuple[Holder, ...], tuple[Member, ...]] | None = None
        # The pane's list for (snapshot, pid), and what the pane shows now: a refresh that
        # changes neither redraws nothing.
        self._held: tuple[Snapshot, int, tuple[Socket, ...], int] | None = None
        self._head: tuple[object, ...] | None = None
        self._listed: tuple[tuple[Socket, ...], int] | None = None
        self._shape: tuple[object, ...] | None = None

    def held_by(self, snapshot: Snapshot | None, pid: int) -> tuple[tuple[Socket, ...], int]:
        """The first sockets ``pid`` holds in ``snapshot`` and how many in all (once per snapshot and pid)."""
        if snapshot is None:
            return (), 0
        cached = self._held
        if cached is not None and cached[0] is snapshot and cached[1] == pid:
            return cached[2], cached[3]
        held, total = held_sockets(snapshot.sockets, pid)
        self._held = (snapshot, pid, held, total)
        return held, total

    def show(
        self, pane: DetailPane, sock: Socket | None, snapshot: Snapshot | None, marks: Marks, now: float, reread: bool
    ) -> None:
        """Show ``sock`` in ``pane`` (reading its holder again when ``reread``), redrawing only what changed."""
        process: ProcessDetail | None = None
        held: tuple[Socket, ...] = ()
        total = 0
        members: tuple[Member, ...] = ()
        owner: OwnershipDetail | str | None = None
        if sock is not None and sock.holders:
            members = self.members(sock)
            holder = members[0].holder if members else sock.holders[0]
            if reread:
                self.read(holder.pid, holder.create_time)
            process = self.details.get((holder.pid, holder.create_time))
            held, total = self.held_by(snapshot, holder.pid)
            if self._ownership is not None and sock.host is None:
                key = (holder.pid, holder.create_time, sock.local_port)
                stale = reread and time.monotonic() - self._owner_at.get(key, 0.0) > OWNER_TTL
                if key not in self.owners or stale:
                    self.read_ownership(key, holder)
                if key not in self.owners:
                    owner = CHECKING
                else:
                    owner = self.owners[key] or UNREADABLE
        closed = sock is not None and marks.mark(sock.key, now) == MARK_CLOSED
        # The head depends on the clock only through the process's uptime.
        uptime = None
        if process is not None and process.create_time is not None:
            uptime = uptime_text(now - process.create_time)
        head = (sock, closed, process, uptime, total, members, owner)
        if head != self._head:
            self._head = head
            # What decides the head's height. When only the short one-line values changed (CPU,
            # memory, threads, status, an uptime of the same length), the pane keeps its size and a
            # layout pass of the whole screen (6-8 ms at 160x50, python bench/bench_ui_tricks.py)
            # is not needed; tests/test_ui_tricks.py checks the screen looks as after one.
            shape = (sock, closed, total, height_shape(process), len(uptime or ""), members, owner)
            content = describe(
                sock, held, process, now, closed=closed, held_total=total, list_held=False,
                members=members, owner=owner,
            )
            pane.show_head(content, layout=shape != self._shape)
            self._shape = shape
        listed = (held, total)
        if listed != self._listed:
            self._listed = listed
            pane.show_held(held_lines(held, total))

    def read(self, pid: int, create_time: float | None) -> None:
        """Read a process (unless a read of it is under way)."""
        ident = (pid, create_time)
        if ident in self._reading:
            return
        self._reading.add(ident)
        if not self._background:
            # Deterministic mode: the reader is a fake, read it here.
            self.details[ident] = self._reader(pid, create_time)
            self._reading.discard(ident)
            return
        if self._pool is None:
            self._pool = DaemonPool(1, "portmon-procinfo")
        reader = self._reader
        post = self._post

        def job() -> None:
            post(ProcessRead(pid, create_time, reader(pid, create_time)))

        self._pool.submit(job)

    def members(self, sock: Socket) -> tuple[Member, ...]:
        """The holders of ``sock`` in family order with their roles (the main holder first, as ``who`` lists them)."""
        holders = sock.holders
        if len(holders) < 2 or self._ownership is None or sock.host is not None:
            return ()
        cached = self._members
        if cached is not None and cached[0] == holders:
            return cached[1]
        members = self._ownership.members(holders)
        self._members = (holders, members)
        return members

    def read_ownership(self, key: OwnerKey, holder: Holder) -> None:
        """Read the managers and parent chain of the selected row's main holder (once per key; enriched,
        up to about 2 s: on a thread of its own while polling)."""
        reader = self._ownership
        if reader is None or key in self._owner_reading:
            return
        self._owner_reading.add(key)
        self._owner_at[key] = time.monotonic()
        port = key[2]
        if not self._background:
            self.received_ownership(OwnershipRead(key, reader.detail(holder, port)))
            return
        if self._owner_pool is None:
            self._owner_pool = DaemonPool(1, "portmon-ownership")
        post = self._post

        def job() -> None:
            try:
                detail: OwnershipDetail | None = reader.detail(holder, port)
            except Exception:  # noqa: BLE001 - the pane says it could not be read
                detail = None
            post(OwnershipRead(key, detail))

        self._owner_pool.submit(job)

    def received_ownership(self, message: OwnershipRead) -> None:
        """Keep a background ownership read's result."""
        self._owner_reading.discard(message.key)
        if len(self.owners) > MAX_DETAILS:
            self.owners.clear()
            self._owner_at = {k: v for k, v in self._owner_at.items() if k in self._owner_reading}
        self.owners[message.key] = message.detail

    def received(self, message: ProcessRead) -> None:
        """Keep a background read's result."""
        ident = (message.pid, message.create_time)
        self._reading.discard(ident)
        if len(self.details) > MAX_DETAILS:
            self.details.clear()
        self.details[ident] = message.detail

    def shutdown(self) -> None:
        """Stop the reader thread, if one was started (never waits)."""
        if self._pool is not None:
            self._pool.shutdown()
        if self._owner_pool is not None:
            self._owner_pool.shutdown()
