"""Process families: which holder of a shared socket is the main one, and which are its workers.

A pre-fork server's master opens the listener and forks workers that inherit it: every one of them
holds the socket. The main holder is the family's root, the holder none of whose ancestors holds
the socket (the oldest root on a tie); holders below another holder are its workers. A service
manager holding the socket for socket activation (pid 1, a ``systemd --user`` instance) is an
ancestor of everything: it is set apart as the activator, after the service's own processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from portmon.model import Holder, Socket
from portmon.ownership.proc import read_stat
from portmon.textsafe import safe

MAIN = "main"
"""The family's root: the process to show, name and act on first."""
WORKER = "worker"
"""A descendant of another holder (a pre-fork worker)."""
PEER = "peer"
"""Another root: a holder outside the main family (a socket passed over a unix socket)."""
ACTIVATOR = "activator"
"""A service manager holding the socket for socket activation (systemd)."""

ProcLookup = Callable[[int], "tuple[int, int, str] | None"]
"""``lookup(pid) -> (parent pid, start ticks, name)`` or None for a process that is gone."""

_MAX_DEPTH = 64


def proc_lookup(procfs: str = "/proc") -> ProcLookup:
    """A lookup reading /proc/PID/stat, memoised for the lifetime of the returned function."""
    memo: dict[int, tuple[int, int, str] | None] = {}

    def lookup(pid: int) -> tuple[int, int, str] | None:
        if pid not in memo:
            stat = read_stat(pid, procfs)
            memo[pid] = None if stat is None else (stat[1], stat[2], stat[0])
        return memo[pid]

    return lookup


class Member(NamedTuple):
    """One holder with its place in the family."""

    holder: Holder
    role: str
    """MAIN, WORKER, PEER or ACTIVATOR."""
    parent: int | None = None
    """The nearest ancestor that holds the socket too (a worker's master), else None."""


def _is_activator(holder: Holder, info: tuple[int, int, str] | None) -> bool:
    return holder.pid == 1 or (info is not None and info[2] == "systemd")


def family(holders: Sequence[Holder], lookup: ProcLookup) -> tuple[Member, ...]:
    """The holders of one socket in family order: the main holder first, its workers, other roots, activators."""
    if len(holders) < 2:
        return tuple(Member(h, MAIN) for h in holders)
    info = {h.pid: lookup(h.pid) for h in holders}
    activators = {h.pid for h in holders if _is_activator(h, info[h.pid])}
    if len(activators) == len(holders):
        activators = set()
    pids = {h.pid for h in holders} - activators
    holder_parent: dict[int, int | None] = {}
    depth: dict[int, int] = {}
    for h in holders:
        if h.pid in activators:
            continue
        found: int | None = None
        steps = 0
        seen = {h.pid}
        cur = info[h.pid]
        level = 0
        while cur is not None and steps < _MAX_DEPTH:
            ppid = cur[0]
            if ppid <= 0 or ppid in seen:
                break
            if ppid in pids:
                found = found if found is not None else ppid
                level += 1
            seen.add(ppid)
            cur = info[ppid] if ppid in info else lookup(ppid)
            steps += 1
        holder_parent[h.pid] = found
        depth[h.pid] = level

    def age(h: Holder) -> tuple[float, float, int]:
        got = info[h.pid]
        ticks = float(got[1]) if got is not None else float("inf")
        return ticks, h.create_time if h.create_time is not None else float("inf"), h.pid

    roots = sorted((h for h in holders if h.pid in pids and holder_parent[h.pid] is None), key=age)
    root_of: dict[int, int] = {}
    for h in holders:
        if h.pid in activators:
            continue
        top = h.pid
        while holder_parent.get(top) is not None:
            top = holder_parent[top]  # type: ignore[assignment]  # the loop condition says it is not None
        root_of[h.pid] = top
    rank = {r.pid: i for i, r in enumerate(roots)}
    members: list[tuple[tuple[int, int, int], Member]] = []
    for h in holders:
        if h.pid in activators:
            members.append(((len(roots) + 1, 0, h.pid), Member(h, ACTIVATOR)))
            continue
        parent = holder_parent[h.pid]
        group = rank.get(root_of[h.pid], len(roots))
        if parent is not None:
            role = WORKER
        else:
            role = MAIN if group == 0 else PEER
        members.append(((group, depth[h.pid], h.pid), Member(h, role, parent)))
    members.sort(key=lambda item: item[0])
    return tuple(m for _, m in members)


def family_order(holders: Sequence[Holder], lookup: ProcLookup) -> tuple[Holder, ...]:
    """The holders with the main holder first (see :func:`family`)."""
    return tuple(m.holder for m in family(holders, lookup))


def order_sockets(sockets: Sequence[Socket], lookup: ProcLookup | None = None) -> list[Socket]:
    """The sockets with every shared socket's holders in family order, main holder first.

    Each distinct holders tuple (by value: a collector may build one per socket) is ordered once,
    and a socket whose order does not change is the same object.
    """
    look = lookup or proc_lookup()
    done: dict[tuple[Holder, ...], tuple[Holder, ...]] = {}
    out: list[Socket] = []
    for sock in sockets:
        hs = sock.holders
        if len(hs) < 2 or getattr(sock, "host", None) is not None:  # another host's pids are not in our /proc
            out.append(sock)
            continue
        ordered = done.get(hs)
        if ordered is None:
            ordered = done[hs] = family_order(hs, look)
        out.append(sock if ordered == hs else sock._replace(holders=ordered))
    return out


def role_text(member: Member) -> str:
    """``main``, ``worker of 1290``, ``other``, ``activator``: a holder's place in its family."""
    if member.role == MAIN:
        return "main"
    if member.parent is not None:
        return f"worker of {member.parent}"
    return member.role


def workers_label(members: Sequence[Member]) -> str:
    """``+3 workers``, ``+1 worker, +1 other``, or "" for a socket with one holder."""
    workers = sum(1 for m in members if m.role == WORKER)
    others = len(members) - 1 - workers
    parts = []
    if workers:
        parts.append(f"+{workers} worker{'s' if workers != 1 else ''}")
    if others > 0:
        parts.append(f"+{others} other{'s' if others != 1 else ''}")
    return ", ".join(parts)


def reuseport_groups(sockets: Sequence[Socket]) -> list[tuple[Socket, ...]]:
    """Listening sockets that share protocol, address and port (only possible with SO_REUSEPORT), two or more each.

    Each group is in family order of its main holders' start: the group shows as one row whose
    processes each take a share of the connections.
    """
    by_addr: dict[tuple[str, int, str, int], list[Socket]] = {}
    for sock in sockets:
        if sock.listening:
            by_addr.setdefault((sock.proto, sock.family, sock.local_addr, sock.local_port), []).append(sock)
    groups = []
    for group in by_addr.values():
        if len(group) > 1:
            groups.append(tuple(sorted(group, key=lambda s: (s.holders[0].create_time or 0.0, s.pid or 0)
                                       if s.holders else (float("inf"), 0))))
    return groups


def family_labeller(lookup: ProcLookup | None = None, width: int = 24) -> Callable[[Socket], str]:
    """A PROCESS-cell writer for text tables: ``python3 +3 workers`` for a pre-fork family, ``nginx`` alone,
    or why a socket has no owner (memoised per holders tuple; keep the sockets alive while using it)."""
    look = lookup or proc_lookup()
    done: dict[int, tuple[tuple[Holder, ...], str]] = {}

    def label(sock: Socket) -> str:
        hs = sock.holders
        if not hs:
            return "-" if sock.owner_note is None else f"({sock.owner_note})"
        hit = done.get(id(hs))
        if hit is not None and hit[0] is hs:
            return hit[1]
        name = safe(hs[0].name or "?", width)
        if len(hs) > 1:
            members = family(hs, look) if getattr(sock, "host", None) is None else tuple(Member(h, PEER) for h in hs)
            name = f"{name} {workers_label(members) or f'+{len(hs) - 1}'}"
        done[id(hs)] = (hs, name)
        return name

    return label
