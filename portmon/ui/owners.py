"""Ownership for the monitor: the Managed by column's text, resolved off the event loop for the rows on screen,
and the selected row's family, managers (enriched, time-boxed) and parent chain for the detail pane.

The monitor takes an :class:`OwnershipReader`: :class:`LiveOwnership` reads /proc (and, for the
selected row only, systemd and the container engines); :class:`DemoOwnership` answers for the demo
data of ``portmon.collect.fake``, so tests and screenshots never read the real machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from portmon.model import Holder, Socket
from portmon.ownership.enrich import Enricher
from portmon.ownership.families import Member, family, proc_lookup, workers_label
from portmon.ownership.manager import (
    RESTART_LIKELY,
    RESTART_NO,
    RESTART_YES,
    SESSION,
    SYSTEMD_UNIT,
    Manager,
    command,
)
from portmon.ownership.preflight import managers_for
from portmon.ownership.view import Ownership, managed_by_text, marked_chain
from portmon.ui.background import DaemonPool

MAX_TEXTS = 8192
"""Managed by texts kept (per process identity) before the cache starts over."""

Identity = tuple[int, "float | None"]


class OwnershipDetail(NamedTuple):
    """What the detail pane shows about who really holds a socket."""

    managers: tuple[Manager, ...]
    """Every manager of the main holder, innermost actionable first, enriched where systemd or an engine answered."""
    chain: tuple[tuple[int, str, bool], ...]
    """The main holder's parent chain, its parent first: (pid, name, is a manager)."""


class OwnershipReader(Protocol):
    """Where the monitor's ownership answers come from (/proc, or the demo)."""

    def managed_by(self, sock: Socket) -> str:
        """The Managed by cell of a row (cheap sources only; may read /proc: call it off the event loop)."""

    def members(self, holders: tuple[Holder, ...]) -> tuple[Member, ...]:
        """The holders of one socket in family order with their roles (a few /proc/PID/stat reads)."""

    def detail(self, holder: Holder, port: int | None) -> OwnershipDetail:
        """The main holder's managers (enriched, up to about 2 s) and parent chain, for the selected row."""

    def new_scan(self) -> None:
        """A new scan came: pids seen before may have been reused."""


class LiveOwnership:
    """Ownership of this machine's processes: /proc for the table, plus systemd and the engines for one row.

    The column and the detail pane ask from different threads: each has its own ``Ownership`` and lock.
    """

    def __init__(self, procfs: str = "/proc", enricher: Enricher | None = None) -> None:
        self._procfs = procfs
        self._table = Ownership(procfs)
        self._table_lock = threading.Lock()
        self._enricher = enricher if enricher is not None else Enricher()
        self._detail_lock = threading.Lock()
        self._stale = False

    def managed_by(self, sock: Socket) -> str:
        if not sock.holders or sock.host is not None:
            return ""
        with self._table_lock:
            if self._stale:
                self._stale = False
                self._table.new_scan()
            (ordered,) = self._table.order([sock])
            return managed_by_text(self._table.socket_managers(ordered))

    def members(self, holders: tuple[Holder, ...]) -> tuple[Member, ...]:
        return family(holders, proc_lookup(self._procfs))

    def detail(self, holder: Holder, port: int | None) -> OwnershipDetail:
        with self._detail_lock:
            managers = managers_for(holder.pid, port=port, enricher=self._enricher, procfs=self._procfs)
            chain = marked_chain(holder.pid, managers, self._procfs)
        return OwnershipDetail(managers, tuple(chain))

    def new_scan(self) -> None:
        self._stale = True


def _unit(name: str, policy: str, restarts: str = "0") -> tuple[Manager, ...]:
    restart = RESTART_YES if policy == "always" else (RESTART_LIKELY if policy.startswith("on-") else RESTART_NO)
    details = (("Restart", policy), ("NRestarts", restarts), ("ActiveState", "active"))
    return (Manager(SYSTEMD_UNIT, name, "systemd", restart=restart, stop=command("systemctl", "stop", name),
                    details=details),)


_SESSION = (Manager(SESSION, "session-2.scope", "cgroup", restart=RESTART_NO),)
_DEMO_MANAGERS: dict[int, tuple[Manager, ...]] = {
    602: _unit("systemd-resolved.service", "always"),
    640: _unit("avahi-daemon.service", "on-failure"),
    812: _unit("ssh.service", "on-failure"),
    24310: _unit("ssh.service", "on-failure"),
    1044: _unit("postgresql@16-main.service", "on-failure"),
    30112: _unit("postgresql@16-main.service", "on-failure"),
    1290: _unit("nginx.service", "always", "2"),
    1291: _unit("nginx.service", "always", "2"),
    1292: _unit("nginx.service", "always", "2"),
    23001: _SESSION,
    24555: _SESSION,
    4021: _SESSION,
}


class DemoOwnership:
    """Ownership answers for the demo data (``portmon.collect.fake``): the same every call, no /proc read."""

    def managed_by(self, sock: Socket) -> str:
        return managed_by_text(_DEMO_MANAGERS.get(sock.holders[0].pid, ())) if sock.holders else ""

    def members(self, holders: tuple[Holder, ...]) -> tuple[Member, ...]:
        from portmon.collect.fake import demo_process  # deferred import: demo data, off the live monitor's start

        def lookup(pid: int) -> tuple[int, int, str] | None:
            p = demo_process(pid)
            if p.error is not None or p.ppid is None or p.create_time is None:
                return None
            return p.ppid, int(p.create_time * 100), p.name or "?"

        return family(holders, lookup)

    def detail(self, holder: Holder, port: int | None) -> OwnershipDetail:
        from portmon.collect.fake import demo_process  # deferred import (see members)

        managers = _DEMO_MANAGERS.get(holder.pid, ())
        supervisors = {m.pid for m in managers if m.pid is not None}
        chain = tuple((pid, name or "?", pid in supervisors) for pid, name in demo_process(holder.pid).ancestors)
        return OwnershipDetail(managers, chain)

    def new_scan(self) -> None:
        pass


def family_note(members: Sequence[Member]) -> str:
    """``+2 workers``: what the detail pane's heading says of a shared socket's family."""
    return workers_label(members)


class ManagerNames:
    """The Managed by texts, per main holder identity: :meth:`get` never blocks while polling.

    A row not resolved yet returns None and is queued on one daemon thread; ``on_resolved()`` is
    then called from that thread (post a message: the table redraws its rows). Without
    ``background`` (tests, screenshots) the reader is asked at once.
    """

    def __init__(self, reader: OwnershipReader, on_resolved: Callable[[], object], *, background: bool) -> None:
        self._reader = reader
        self._on_resolved = on_resolved
        self._background = background
        self._texts: dict[Identity, str] = {}
        self._families: dict[tuple[Holder, ...], str] = {}
        self._pending: set[Identity] = set()
        self._lock = threading.Lock()
        self._pool: DaemonPool | None = None

    def get(self, sock: Socket) -> str | None:
        """The cell's text; None while it is being worked out."""
        if not sock.holders:
            return ""
        first = sock.holders[0]
        key = (first.pid, first.create_time)
        text = self._texts.get(key)
        if text is not None:
            return text
        if not self._background:
            text = self._store(key, self._reader.managed_by(sock))
            return text
        with self._lock:
            if key in self._pending:
                return None
            self._pending.add(key)
        if self._pool is None:
            self._pool = DaemonPool(1, "portmon-managers")
        self._pool.submit(lambda: self._resolve(key, sock))
        return None

    def _store(self, key: Identity, text: str) -> str:
        with self._lock:
            if len(self._texts) >= MAX_TEXTS:
                self._texts.clear()
            self._texts[key] = text
            self._pending.discard(key)
        return text

    def _resolve(self, key: Identity, sock: Socket) -> None:
        try:
            text = self._reader.managed_by(sock)
        except Exception:  # noqa: BLE001 - an unreadable process shows no manager, not a crash
            text = ""
        self._store(key, text)
        with self._lock:
            last = not self._pending
        if last:
            self._on_resolved()

    def family_label(self, sock: Socket) -> str:
        """``+3 workers`` for a shared socket's Process cell ("" for one holder), cached per holders tuple.

        Asked only for the rows drawn; each new tuple costs one /proc/PID/stat read per holder (the
        holders carry their start times, so a reused pid makes a new tuple).
        """
        holders = sock.holders
        if len(holders) < 2 or sock.host is not None:
            return ""
        label = self._families.get(holders)
        if label is None:
            try:
                label = workers_label(self._reader.members(holders))
            except Exception:  # noqa: BLE001 - an unreadable process: the plain count
                label = f"+{len(holders) - 1}"
            if len(self._families) >= MAX_TEXTS:
                self._families.clear()
            self._families[holders] = label
        return label

    def new_scan(self) -> None:
        """A new scan came (the reader forgets the parents it read: pids may be reused)."""
        self._reader.new_scan()

    def shutdown(self) -> None:
        """Stop the thread, if one was started (never waits)."""
        if self._pool is not None:
            self._pool.shutdown()
