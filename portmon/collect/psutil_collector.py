"""The portable collector: every socket and its holders through psutil (macOS, Windows, any Linux)."""

from __future__ import annotations

import os
import socket as _socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psutil

from portmon.collect.base import ServiceLookup, is_privileged, owner_note
from portmon.collect.fdwalk import own_pids, walk_all_fds
from portmon.model import (
    OWNER_HIDDEN,
    Holder,
    Snapshot,
    Socket,
)

# psutil is imported with the module: it costs ~13 ms, but this module is imported only when the
# psutil collector is chosen (``portmon.collect.choose``), and its first scan needs psutil at once.
# Deferring the import to each function (with a module ``__getattr__`` for ``.psutil``) saved nothing.


_Raw = tuple[str, int, str, int, "str | None", "int | None", "str | None", "int | None"]
"""One psutil connection: (proto, family, laddr, lport, raddr, rport, state, pid)."""
_Listener = tuple["str | None", "int | None", str, int]
"""A listening endpoint as psutil names it: (proto, family, address, port)."""
_SocketIdent = tuple[object, ...]
"""What two sockets share when only ``seq`` tells them apart."""


class ProcessCache:
    """Names and users of processes, cached per (pid, start time) so a reused pid is never confused."""

    def __init__(self) -> None:
        self._by_pid: dict[int, Holder] = {}
        self._users: dict[int, str | None] = {}

    def holder(self, pid: int) -> Holder:
        """A Holder for ``pid``; name and user None when the process is gone or unreadable."""
        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return self._by_pid.get(pid) or Holder(pid=pid)
        except psutil.AccessDenied:
            return Holder(pid=pid)
        cached = self._by_pid.get(pid)
        if cached is not None and cached.create_time == created:
            return cached
        name: str | None = None
        user: str | None = None
        try:
            with proc.oneshot():
                name = proc.name()
                user = self._user_of(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        except psutil.AccessDenied:
            pass
        holder = Holder(pid=pid, name=name, user=user, create_time=created)
        self._by_pid[pid] = holder
        return holder

    def _user_of(self, proc: psutil.Process) -> str | None:
        try:
            uid = proc.uids().real
        except (AttributeError, psutil.AccessDenied):
            try:
                return proc.username()
            except (psutil.AccessDenied, KeyError):
                return None
        if uid not in self._users:
            try:
                self._users[uid] = proc.username()
            except (psutil.AccessDenied, KeyError):
                self._users[uid] = str(uid)
        return self._users[uid]

    def forget_except(self, live: Iterable[int]) -> None:
        """Drop cached processes that are no longer seen, so the cache stays bounded."""
        keep = set(live)
        for pid in [p for p in self._by_pid if p not in keep]:
            del self._by_pid[pid]


_PROTO = {_socket.SOCK_STREAM: "tcp", _socket.SOCK_DGRAM: "udp"}
_FAMILY = {_socket.AF_INET: 4, _socket.AF_INET6: 6}


def _addr(addr: object) -> tuple[str | None, int | None]:
    ip = getattr(addr, "ip", None)
    port = getattr(addr, "port", None)
    if not ip and port is None:
        return None, None
    return ip, port


class PsutilCollector:
    """The portable collector: ``psutil.net_connections`` plus a search for every holder of a listener.

    psutil names one pid per socket. A listener shared by a pre-fork server's master and its
    workers is held by all of them, so for listening sockets the reported process's descendants
    are checked too. On macOS without root the system-wide call is refused; then the sockets of
    the processes this user may read are shown instead, and the snapshot says so.
    """

    name = "psutil"

    def __init__(self, services: ServiceLookup | None = None, expand_holders: bool = True) -> None:
        self._services = services
        self._expand = expand_holders
        self._procs = ProcessCache()

    def _system_connections(self) -> tuple[list[Any], str | None]:
        try:
            return psutil.net_connections(kind="inet"), None
        except psutil.AccessDenied:
            pass
        conns: list[Any] = []
        for proc in psutil.process_iter():
            try:
                for c in proc.net_connections(kind="inet"):
                    conns.append(_WithPid(c, proc.pid))
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
        return conns, "access denied for the system-wide socket list: only your own processes' sockets are shown"

    def scan(self) -> Snapshot:
        """Take a snapshot (raises only when psutil itself fails unexpectedly)."""
        started = time.perf_counter()
        taken = time.time()
        conns, warning = self._system_connections()
        privileged = is_privileged()
        services = self._services
        raw: list[_Raw] = []
        for c in conns:
            proto = _PROTO.get(c.type)
            family = _FAMILY.get(c.family)
            if proto is None or family is None:
                continue
            laddr, lport = _addr(c.laddr)
            raddr, rport = _addr(c.raddr)
            state = c.status if proto == "tcp" and c.status != psutil.CONN_NONE else None
            raw.append((proto, family, laddr or "", lport or 0, raddr, rport, state, c.pid))
        own = own_pids()
        if any(r[7] in own for r in raw):
            raw = _without_own(raw, own)
        pids = {r[7] for r in raw if r[7]}
        holders = {pid: self._procs.holder(pid) for pid in pids}
        extra = self._extra_holders(raw, own) if self._expand else {}
        self._procs.forget_except(list(pids) + [h.pid for hs in extra.values() for h in hs])
        sockets: list[Socket] = []
        seen: dict[_SocketIdent, int] = {}
        hidden = 0
        for proto, family, laddr, lport, raddr, rport, state, pid in raw:
            if pid:
                hs: tuple[Holder, ...] = (holders[pid],) + extra.get((proto, family, laddr, lport, pid), ())
                note = None
            else:
                hs = ()
                note = owner_note(state, privileged)
                if note == OWNER_HIDDEN:
                    hidden += 1
            ident = (proto, family, laddr, lport, raddr, rport)
            seq = seen.get(ident, 0)
            seen[ident] = seq + 1
            sockets.append(
                Socket(
                    proto=proto,
                    family=family,
                    local_addr=laddr,
                    local_port=lport,
                    remote_addr=raddr,
                    remote_port=rport,
                    state=state,
                    holders=hs,
                    owner_note=note,
                    local_service=services(lport, proto) if services else None,
                    remote_service=services(rport, proto) if services and rport is not None else None,
                    seq=seq,
                )
            )
        return Snapshot(
            sockets=tuple(sockets),
            taken_at=taken,
            scan_ms=(time.perf_counter() - started) * 1000.0,
            hidden_owners=hidden,
            warning=warning,
            collector=self.name,
        )

    def _extra_holders(
        self, raw: Sequence[_Raw], own: frozenset[int] = frozenset()
    ) -> dict[tuple[object, ...], tuple[Holder, ...]]:
        """Other processes of a listener's family (ancestors and descendants) holding the same socket.

        psutil may name any one of a pre-fork server's processes, a worker as well as the master,
        so the search climbs to the topmost ancestor that still holds the listener and then checks
        that ancestor's descendants. Each process's sockets are read at most once per scan. The
        pids in ``own`` (portmon and its walk children) are never holders.
        """
        out: dict[tuple[object, ...], tuple[Holder, ...]] = {}
        held: dict[int, frozenset[_Listener] | None] = {}
        kids: dict[int, list[int]] | None = None

        def descendants(top: int) -> list[int]:
            # One parent map per scan: psutil's children() reads every process on every call, which
            # made a scan with 2,000 processes and 500 listeners take 18 s instead of 0.5 s.
            nonlocal kids
            if kids is None:
                kids = {}
                for p in psutil.pids():
                    try:
                        kids.setdefault(psutil.Process(p).ppid(), []).append(p)
                    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                        continue
            found: list[int] = []
            seen = {top}
            stack = [top]
            while stack:
                for child in kids.get(stack.pop(), ()):
                    if child not in seen:  # a reused pid can make the map a cycle
                        seen.add(child)
                        found.append(child)
                        stack.append(child)
            return found

        def listeners_of(pid: int) -> frozenset[_Listener]:
            if pid not in held:
                try:
                    held[pid] = frozenset(
                        (_PROTO.get(c.type), _FAMILY.get(c.family), c.laddr.ip, c.laddr.port)
                        for c in psutil.Process(pid).net_connections(kind="inet")
                        if not c.raddr
                    )
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    held[pid] = None
            return held[pid] or frozenset()

        for proto, family, laddr, lport, raddr, _rport, state, pid in raw:
            if not pid or raddr is not None or not (state is None or state == psutil.CONN_LISTEN):
                continue
            listener: _Listener = (proto, family, laddr, lport)
            try:
                top = psutil.Process(pid)
                while True:
                    parent = top.parent()
                    if parent is None or parent.pid <= 1 or listener not in listeners_of(parent.pid):
                        break
                    top = parent
                family_pids = [top.pid] + descendants(top.pid)
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            others = [p for p in family_pids if p != pid and p not in own and listener in listeners_of(p)]
            if others:
                out[listener + (pid,)] = tuple(self._procs.holder(p) for p in sorted(others))
        return out


def _ident(conn: Any) -> tuple[object, ...] | None:
    """(proto, family, local address, local port, remote address, remote port) of a psutil connection, as
    ``PsutilCollector.scan`` keys a socket; None for one that is neither TCP nor UDP over IPv4/IPv6."""
    proto = _PROTO.get(conn.type)
    family = _FAMILY.get(conn.family)
    if proto is None or family is None:
        return None
    laddr, lport = _addr(conn.laddr)
    raddr, rport = _addr(conn.raddr)
    return (proto, family, laddr or "", lport or 0, raddr, rport)


def _without_own(raw: list[_Raw], own: frozenset[int]) -> list[_Raw]:
    """``raw`` with portmon (and its walk children) named as no socket's process.

    psutil names one pid per socket (on Linux the highest of its holders), so for a socket portmon
    inherited it may name portmon and no one else. Such a socket is given the highest other pid
    that holds it, or no holder at all. Done only while portmon holds one of the sockets.
    """
    wanted: set[tuple[object, ...]] = {r[:6] for r in raw if r[7] in own}
    found = _holders_by_inode(wanted, own) if sys.platform.startswith("linux") else _holders_by_address(wanted, own)
    return [(*r[:7], found.get(r[:6])) if r[7] in own else r for r in raw]


def _holders_by_inode(wanted: set[tuple[object, ...]], own: frozenset[int]) -> dict[tuple[object, ...], int]:
    """Linux: the highest other pid holding each socket in ``wanted``, found by the inode of portmon's own fd.

    One walk of every process's fds (as psutil's own system-wide call does), instead of reading the
    socket tables once per process (``_holders_by_address``, about four times slower on a 2-core host
    with 108 processes).
    """
    inodes: dict[int, tuple[object, ...]] = {}
    try:
        mine = psutil.Process().net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return _holders_by_address(wanted, own)
    for conn in mine:
        ident = _ident(conn)
        if ident in wanted and conn.fd is not None and conn.fd >= 0:
            try:
                inodes[os.fstat(conn.fd).st_ino] = ident
            except OSError:
                continue  # closed since
    found: dict[tuple[object, ...], int] = {}
    for pid, (_start, _names, fds) in walk_all_fds().items():
        if pid in own or not fds:
            continue
        for ino in fds.values():
            ident = inodes.get(ino)
            if ident is not None:
                found[ident] = max(pid, found.get(ident, 0))
    return found


def _holders_by_address(wanted: set[tuple[object, ...]], own: frozenset[int]) -> dict[tuple[object, ...], int]:
    """The highest other pid with a socket at the same addresses as each in ``wanted`` (psutil gives no
    inode to tell two such sockets apart): a read of every process's sockets."""
    found: dict[tuple[object, ...], int] = {}
    for pid in psutil.pids():
        if pid in own:
            continue
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            ident = _ident(conn)
            if ident in wanted:
                found[ident] = max(pid, found.get(ident, 0))
    return found


class _WithPid:
    """A per-process psutil connection with the pid the system-wide call would have given."""

    __slots__ = ("fd", "family", "type", "laddr", "raddr", "status", "pid")

    def __init__(self, conn: object, pid: int) -> None:
        for name in ("fd", "family", "type", "laddr", "raddr", "status"):
            setattr(self, name, getattr(conn, name))
        self.pid = pid
