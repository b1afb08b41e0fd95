"""Whether a server could bind a port right now, and why not: real test binds read together with the socket table."""

from __future__ import annotations

import os
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from portmon.actions.binds import (
    BIND_DENIED,
    BIND_IN_USE,
    BIND_UNAVAILABLE,
    RESULT_WORDS,
    WILDCARDS,
    BindAttempt,
    Binder,
    probe_binds,
)
from portmon.actions.kill.text import TIME_WAIT_SECONDS, first_listed, format_start, socket_label
from portmon.actions.ownerless import backlog_of, unreadable_fd_tables, unreadable_text
from portmon.collect.base import is_privileged
from portmon.collect.fdwalk import own_socket_inodes
from portmon.model import ORPHAN_STATES, OWNER_HIDDEN, OWNER_KERNEL, OWNER_UNSEEN, Holder, Socket
from portmon.output import socket_record
from portmon.ownership.preflight import Preflight, preflight_record
from portmon.ownership.reuseport import ReuseportCheck, reuseport_record
from portmon.ownership.view import PortOwnership, managers_json
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessDetail, ProcessReader, read_process, uptime_text
from portmon.textsafe import safe

# Verdicts (the ``reason`` of an answer).
FREE = "free"
"""Every test bind without SO_REUSEADDR succeeded."""
HELD = "held"
"""Processes hold sockets on the port."""
PARTIAL = "partial"
"""Processes hold the port on specific addresses only, and another address is still free."""
REMNANTS = "time-wait"
"""Only kernel-owned remnants of closed connections (TIME_WAIT, FIN_WAIT...) are left."""
HIDDEN = "hidden"
"""Sockets on the port belong to another user's processes, which only root may see."""
UNSEEN = "unseen"
"""Running as root, yet no visible process holds the sockets (another PID namespace)."""
PRIVILEGED = "privileged"
"""A system port, and binding it needs privileges this user lacks."""
UNKNOWN = "unknown"
"""The kernel refuses the bind, but the socket table does not say why (or nothing could be tested)."""

MAX_HOLDERS_SHOWN = 10
_COMMAND_WIDTH = 300

def unprivileged_port_start() -> int:
    """The lowest port an unprivileged process may bind (Linux's ip_unprivileged_port_start; 1024 elsewhere)."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 1024


def _current_user() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class HolderInfo:
    """One process holding sockets on the port, as far as it could be read."""

    pid: int
    name: str | None = None
    user: str | None = None
    cmdline: tuple[str, ...] | None = None
    create_time: float | None = None
    uptime: float | None = None
    """Seconds it has been running."""
    sockets: tuple[str, ...] = ()
    """Labels of its sockets on the port (``tcp4 127.0.0.1:8000 LISTEN``)."""
    error: str | None = None
    """Why the process could not be read (it exited, the pid was reused, ...)."""

    @property
    def command(self) -> str:
        """The command line joined with spaces (or the name), escaped."""
        if self.cmdline:
            return safe(" ".join(self.cmdline), _COMMAND_WIDTH)
        return safe(self.name or "?", _COMMAND_WIDTH)


@dataclass(frozen=True, slots=True)
class PortAnswer:
    """The verdict for one port and protocol."""

    port: int
    proto: str
    free: bool
    reason: str
    """FREE, HELD, PARTIAL, REMNANTS, HIDDEN, UNSEEN, PRIVILEGED or UNKNOWN."""
    message: str
    """The verdict in one line, safe to print."""
    details: tuple[str, ...] = ()
    """More lines explaining it, safe to print."""
    holders: tuple[HolderInfo, ...] = ()
    binds: tuple[BindAttempt, ...] = ()
    sockets: tuple[Socket, ...] = ()
    """Every socket on the port and protocol in the socket table."""
    taken: tuple[str, ...] = ()
    """Addresses where the plain test bind failed because the port is in use."""
    free_addresses: tuple[str, ...] = ()
    """Addresses where the plain test bind succeeded."""
    reuseaddr_ok: bool | None = None
    """Whether the SO_REUSEADDR bind on the wildcard succeeded (None when it was not tried)."""
    kill_command: str | None = None
    running_as_root: bool = False
    """Whether portmon ran with root's privileges (not the PRIVILEGED reason: that is about the port)."""
    preflight: Preflight | None = None
    """Ownership: what manages the main holder and what a kill would lead to (when asked for)."""
    reuseport: ReuseportCheck | None = None
    """Ownership: SO_REUSEPORT groups on the port and whether a new server could join (when asked for)."""

    @property
    def label(self) -> str:
        """``8000/tcp``."""
        return f"{self.port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class WhyReport:
    """The answer to ``portmon why PORT``: one answer per protocol checked (the asked one, else TCP then UDP)."""

    spec: PortSpec
    answers: tuple[PortAnswer, ...]

    @property
    def primary(self) -> PortAnswer:
        """The answer shown in full: the protocol asked for; else the first protocol on which the port is held.

        Without a protocol the port is free only when it is free over both TCP and UDP, so a UDP-only
        holder is the answer that counts (TCP, checked first, leads when both or neither are held).
        """
        return next((a for a in self.answers if not a.free), self.answers[0])

    @property
    def others(self) -> tuple[PortAnswer, ...]:
        """The answers for the other protocols checked, in checking order."""
        main = self.primary
        return tuple(a for a in self.answers if a is not main)

    @property
    def held_protocols(self) -> tuple[str, ...]:
        """The protocols over which the port is not free, in checking order."""
        return tuple(a.proto for a in self.answers if not a.free)

    @property
    def free(self) -> bool:
        """True when the port is free over every protocol checked."""
        return not self.held_protocols

    @property
    def headline(self) -> str | None:
        """Without a protocol, when the port is held: which protocols hold it and which are free (else None)."""
        if self.spec.proto is not None or len(self.answers) < 2 or self.free:
            return None
        held = " and ".join(self.held_protocols)
        free = [a.proto for a in self.answers if a.free]
        rest = f"; free over {' and '.join(free)}" if free else ""
        return f"port {self.spec.port} is in use over {held}{rest}"

    @property
    def exit_code(self) -> int:
        """0 when the port is free (over both protocols when none was given), 1 otherwise."""
        return 0 if self.free else 1


HolderOrder = Callable[[Sequence[Holder]], list[int]]
"""``order(holders) -> pids``: the order to list a port's holders in (ownership's family order)."""


def _holder_infos(
    owned: Sequence[Socket], reader: ProcessReader, now: float, order: HolderOrder | None = None
) -> tuple[HolderInfo, ...]:
    # Labels kept in a dict: in order, each once, without a list scan per socket (a server can
    # hold thousands on one port).
    by_pid: dict[int, tuple[Any, dict[str, None]]] = {}
    for sock in owned:
        label = socket_label(sock)
        for holder in sock.holders:
            by_pid.setdefault(holder.pid, (holder, {}))[1][label] = None
    infos: list[HolderInfo] = []
    for pid in order([h for h, _ in by_pid.values()]) if order is not None else sorted(by_pid):
        holder, labels = by_pid[pid]
        detail: ProcessDetail = reader(pid, holder.create_time)
        created = detail.create_time if detail.error is None and detail.create_time is not None else holder.create_time
        infos.append(
            HolderInfo(
                pid=pid,
                name=detail.name if detail.name is not None else holder.name,
                user=detail.user if detail.user is not None else holder.user,
                cmdline=detail.cmdline if detail.error is None else None,
                create_time=created,
                uptime=(now - created) if created is not None else None,
                sockets=tuple(labels),
                error=detail.error,
            )
        )
    return tuple(infos)


def _who(holders: Sequence[HolderInfo]) -> str:
    names = [f"{safe(h.name or '?', 32)} ({h.pid})" for h in holders[:3]]
    text = ", ".join(names)
    if len(holders) > 3:
        text += f" and {len(holders) - 3} more"
    return text


def _addresses(binds: Iterable[BindAttempt]) -> str:
    return ", ".join(b.address for b in binds)


def _state_counts(sockets: Sequence[Socket]) -> str:
    counts: dict[str, int] = {}
    for sock in sockets:
        state = sock.state or "bound"
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {safe(state)}" for state, n in sorted(counts.items()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _is_remnant(sock: Socket) -> bool:
    # An ownerless socket in a closing state is the kernel's finishing a close, even when the collector,
    # lacking root, could not rule out another user's process (it calls those hidden).
    if sock.holders:
        return False
    return sock.owner_note == OWNER_KERNEL or (sock.proto == "tcp" and sock.state in ORPHAN_STATES)


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What one port and protocol's verdict is drawn from: its sockets by kind and its test binds by result."""

    port: int
    proto: str
    privileged: bool
    port_start: int
    binds: tuple[BindAttempt, ...]
    """The test binds of this protocol."""
    on_port: tuple[Socket, ...]
    owned: list[Socket]
    """Sockets a visible process holds."""
    remnants: list[Socket]
    """Kernel-owned remains of closed connections."""
    hidden: list[Socket]
    """Sockets of another user's processes (only root sees their owner)."""
    unseen: list[Socket]
    """Sockets no process in portmon's view holds, although it could see them all."""
    backlog: dict[int, int]
    """Connections not yet accepted: listener pid -> how many wait in its backlog."""
    inherited: list[Socket]
    """Sockets nobody but portmon itself holds (inherited copies: portmon is never a holder)."""
    unreadable: int
    """Processes whose fds could not be read (counted only when there are unseen sockets)."""
    plain: list[BindAttempt]
    """The binds without SO_REUSEADDR that could be tried."""
    plain_ok: list[BindAttempt]
    plain_in_use: list[BindAttempt]
    denied: list[BindAttempt]
    reuseaddr_ok: bool | None

    @property
    def label(self) -> str:
        """``8000/tcp``."""
        return f"{self.port}/{self.proto}"

    @property
    def mixed(self) -> bool:
        """True when the plain bind failed on some addresses and succeeded on others."""
        return bool(self.plain_ok) and bool(self.plain_in_use)

    @property
    def addresses_line(self) -> str:
        """Where the plain bind fails and where it succeeds."""
        return f"a bind fails on {_addresses(self.plain_in_use)} and succeeds on {_addresses(self.plain_ok)}"

    @property
    def privilege_note(self) -> str:
        """Why the port needs privileges whoever holds it."""
        return (
            f"binding port {self.port} needs privileges in any case: ports below {self.port_start} are reserved "
            "for root (or a process with CAP_NET_BIND_SERVICE)"
        )

    def answer(self, **fields: Any) -> PortAnswer:
        """A PortAnswer with this evidence's port, binds and sockets, and the given verdict fields."""
        return PortAnswer(
            port=self.port,
            proto=self.proto,
            binds=self.binds,
            sockets=self.on_port,
            taken=tuple(b.address for b in self.plain_in_use),
            free_addresses=tuple(b.address for b in self.plain_ok),
            reuseaddr_ok=self.reuseaddr_ok,
            running_as_root=self.privileged,
            **fields,
        )


def _evidence(
    port: int,
    proto: str,
    binds: Sequence[BindAttempt],
    sockets: Sequence[Socket],
    privileged: bool,
    port_start: int,
    unreadable: Callable[[], int],
) -> _Evidence:
    """Sort the sockets on ``port``/``proto`` by kind and its test binds by result."""
    mine = tuple(b for b in binds if b.proto == proto)
    on_port = tuple(s for s in sockets if s.local_port == port and s.proto == proto)
    me = os.getpid()
    # The collectors name no holder for portmon's own inherited copy: it is found in portmon's fds.
    own = own_socket_inodes() if any(s.host is None and s.inode and not s.holders for s in on_port) else frozenset()
    inherited = [
        s for s in on_port
        if (s.holders and all(h.pid == me for h in s.holders)) or (not s.holders and s.host is None and s.inode in own)
    ]
    # Every verdict below is drawn from the sockets as held by processes other than portmon itself.
    view = tuple(
        s if all(h.pid != me for h in s.holders) else s._replace(holders=tuple(h for h in s.holders if h.pid != me))
        for s in on_port
    )
    backlog: dict[int, int] = {}
    waiting: set[Socket] = set()
    for sock in view:
        listener = backlog_of(sock, view)
        if listener is not None:
            backlog[listener] = backlog.get(listener, 0) + 1
            waiting.add(sock)
    copies = {s.key for s in inherited}
    loose = [s for s in view if not s.holders and s not in waiting and s.key not in copies and not _is_remnant(s)]
    unseen = [s for s in loose if s.owner_note == OWNER_UNSEEN]
    plain = [b for b in mine if not b.reuseaddr and b.result != BIND_UNAVAILABLE]
    reuse_wild = [b for b in mine if b.reuseaddr and b.address in WILDCARDS and b.result != BIND_UNAVAILABLE]
    return _Evidence(
        port=port,
        proto=proto,
        privileged=privileged,
        port_start=port_start,
        binds=mine,
        on_port=on_port,
        owned=[s for s in view if s.holders],
        remnants=[s for s in view if _is_remnant(s)],
        hidden=[s for s in loose if s.owner_note == OWNER_HIDDEN],
        unseen=unseen,
        backlog=backlog,
        inherited=inherited,
        unreadable=unreadable() if unseen else 0,
        plain=plain,
        plain_ok=[b for b in plain if b.ok],
        plain_in_use=[b for b in plain if b.result == BIND_IN_USE],
        denied=[b for b in plain if b.result == BIND_DENIED],
        reuseaddr_ok=all(b.ok for b in reuse_wild) if reuse_wild else None,
    )


def _free_answer(ev: _Evidence) -> PortAnswer:
    """Every plain test bind succeeded: free, whatever the (older) socket table says."""
    details = [f"test binds succeeded on {_addresses(ev.plain_ok)}"]
    if ev.remnants:
        closed = _count(len(ev.remnants), "closed connection")
        details.append(f"{closed} on the port ({_state_counts(ev.remnants)}) do not block it")
    if ev.owned or ev.hidden or ev.unseen:
        details.append("the socket table still listed sockets on this port: they have probably closed since the scan")
    return ev.answer(
        free=True, reason=FREE, message=f"port {ev.label} is free: a server can bind it now", details=tuple(details)
    )


def _untested_answer(ev: _Evidence) -> PortAnswer:
    """No plain test bind could be made at all (no address family available, say)."""
    why = "; ".join(sorted({b.error or b.result for b in ev.binds})) or "no address to test"
    return ev.answer(free=False, reason=UNKNOWN, message=f"port {ev.label}: no test bind could be made ({why})")


def _held_answer(
    ev: _Evidence, reader: ProcessReader, now: float, user: str | None, order: HolderOrder | None = None
) -> PortAnswer:
    """Visible processes hold the port: who, on which addresses, and the kill command (with sudo when needed)."""
    holders = _holder_infos(ev.owned, reader, now, order)
    bound = sorted({s.local_addr for s in ev.owned})
    specific = all(addr not in WILDCARDS for addr in bound)
    if specific and ev.plain_ok:
        reason = PARTIAL
        message = (
            f"port {ev.label} is taken on {', '.join(safe(a) for a in bound)} only, by {_who(holders)}; "
            f"still free on {_addresses(ev.plain_ok)}"
        )
    else:
        reason = HELD
        message = f"port {ev.label} is in use: held by {_who(holders)}"
    details: list[str] = []
    if not any(s.listening for s in ev.owned):
        details.append(
            "no process listens on it, but open connections on the port hold it "
            f"({_state_counts(ev.owned)}); a new server needs SO_REUSEADDR to bind while they last"
        )
    if ev.mixed:
        details.append(ev.addresses_line)
        if reason == PARTIAL:
            details.append(
                "a server binding one of the free addresses can start; one binding the wildcard address "
                "(0.0.0.0 or ::) cannot"
            )
    for pid, n in ev.backlog.items():
        details.append(f"{_count(n, 'connection')} not yet accepted (in the backlog of pid {pid})")
    if ev.inherited:
        details.append(_inherited_line(ev))
    if ev.hidden or ev.unseen:
        more = _count(len(ev.hidden) + len(ev.unseen), "more socket")
        why = f" ({unreadable_text(ev.unreadable)}, even as root)" if ev.unreadable else ""
        details.append(f"{more} on the port: owner not visible to portmon{why}")
    if ev.remnants:
        details.append(
            f"the kernel also keeps {_count(len(ev.remnants), 'closed connection')} ({_state_counts(ev.remnants)})"
        )
    if ev.denied and not ev.privileged:
        details.append(ev.privilege_note)
    details.extend(backlog_notes(ev.owned))
    needs_sudo = not ev.privileged and any(h.user is None or (user is not None and h.user != user) for h in holders)
    kill = f"{'sudo ' if needs_sudo else ''}portmon kill {ev.label}"
    return ev.answer(
        free=False, reason=reason, message=message, details=tuple(details), holders=holders, kill_command=kill
    )


def _inherited_line(ev: _Evidence) -> str:
    return (
        f"portmon itself (pid {os.getpid()}) holds an inherited copy of {_count(len(ev.inherited), 'socket')} "
        "on the port (socket activation or a leaked fd): it lets go when it exits"
    )


def _inherited_answer(ev: _Evidence) -> PortAnswer:
    """Nobody but portmon itself holds the port: a copy it inherited."""
    message = f"port {ev.label} is in use only by portmon's own inherited copy: it is free once portmon exits"
    return ev.answer(free=False, reason=HELD, message=message, details=(_inherited_line(ev),))


# -- listener health (accept queue against backlog) ------------------------------------------------


def backlog_notes(sockets: Iterable[Socket]) -> list[str]:
    """One line per listener whose accept queue is over its backlog: its process is not calling accept()."""
    return [
        f"the server is not accepting: {s.accept_queue}/{s.backlog} queued on {s.proto_label} "
        f"{safe(s.local_addr)}:{s.local_port} (new connections are dropped until it accepts)"
        for s in sockets
        if s.accept_queue_full
    ]


def _hidden_answer(ev: _Evidence) -> PortAnswer:
    message = (
        f"port {ev.label} is in use by another user's process, which portmon cannot see: "
        f"run as root to see it (sudo portmon why {ev.label})"
    )
    listed = "; ".join(socket_label(s) for s in ev.hidden[:5])
    details = [f"{_count(len(ev.hidden), 'socket')} on the port: {listed}"]
    if ev.mixed:
        details.append(ev.addresses_line)
    if ev.denied and not ev.privileged:
        details.append(ev.privilege_note)
    return ev.answer(free=False, reason=HIDDEN, message=message, details=tuple(details))


def _unseen_answer(ev: _Evidence) -> PortAnswer:
    if ev.unreadable:
        message = (
            f"port {ev.label} is in use, but no process in portmon's view holds it: "
            f"{unreadable_text(ev.unreadable)}, even as root, and one of them may hold it"
        )
    else:
        message = (
            f"port {ev.label} is in use, but no process in portmon's view holds it "
            "(its owner runs in another PID namespace, such as a container)"
        )
    listed = "; ".join(socket_label(s) for s in ev.unseen[:5])
    details = [f"{_count(len(ev.unseen), 'socket')} on the port: {listed}"]
    if ev.mixed:
        details.append(ev.addresses_line)
    return ev.answer(free=False, reason=UNSEEN, message=message, details=tuple(details))


def _remnants_answer(ev: _Evidence) -> PortAnswer:
    message = (
        f"port {ev.label} is held only by the kernel: {_count(len(ev.remnants), 'closed connection')} "
        f"({_state_counts(ev.remnants)}) that no process owns any more"
    )
    details = [
        "the kernel keeps a connection for a while after it is closed, so late packets are not mistaken for a "
        f"new one; these clear by themselves within the kernel's timeout ({TIME_WAIT_SECONDS} s on Linux)"
    ]
    if ev.reuseaddr_ok:
        details.append(
            "a server that sets SO_REUSEADDR can bind the port now (the test bind with SO_REUSEADDR succeeded)"
        )
    elif ev.reuseaddr_ok is False:
        details.append(
            "even with SO_REUSEADDR the test bind failed (the old server did not set it): "
            f"wait for them to clear, at most {TIME_WAIT_SECONDS} s on Linux"
        )
    if ev.mixed:
        details.append(ev.addresses_line)
    if ev.denied and not ev.privileged:
        details.append(ev.privilege_note)
    return ev.answer(free=False, reason=REMNANTS, message=message, details=tuple(details))


def _privileged_answer(ev: _Evidence) -> PortAnswer:
    message = (
        f"port {ev.label} needs privileges: ports below {ev.port_start} can only be bound by root "
        "(or with CAP_NET_BIND_SERVICE)"
    )
    details = [f"allowed on {_addresses(ev.plain_ok)}"] if ev.plain_ok else []
    details.append("nothing else holds it; run the server as root, or grant it CAP_NET_BIND_SERVICE")
    return ev.answer(free=False, reason=PRIVILEGED, message=message, details=tuple(details))


def _unexplained_answer(ev: _Evidence) -> PortAnswer:
    """The kernel refuses the bind and the socket table does not say why."""
    if ev.plain_in_use:
        message = (
            f"port {ev.label} is in use, but the socket table shows no socket on it "
            "(it may have changed since the scan: try again)"
        )
        details = (ev.addresses_line,) if ev.mixed else ()
        return ev.answer(free=False, reason=UNKNOWN, message=message, details=details)
    errors = "; ".join(sorted({f"{b.address}: {b.error}" for b in ev.plain if not b.ok}))
    return ev.answer(free=False, reason=UNKNOWN, message=f"port {ev.label}: the test bind failed ({safe(errors)})")


def judge(
    port: int,
    proto: str,
    binds: Sequence[BindAttempt],
    sockets: Sequence[Socket],
    *,
    privileged: bool,
    reader: ProcessReader = read_process,
    now: float | None = None,
    user: str | None = None,
    port_start: int = 1024,
    unreadable: Callable[[], int] = unreadable_fd_tables,
    order: HolderOrder | None = None,
) -> PortAnswer:
    """The verdict for ``port``/``proto`` from the test binds and the socket table (pure but for ``reader``).

    ``sockets`` may be the whole table: only those bound locally to the port and protocol count.
    ``user`` is the invoking user (to tell when killing needs sudo); ``port_start`` the lowest
    port unprivileged users may bind; ``unreadable`` counts the processes whose fds cannot be read
    (called only when some socket has no visible holder). The test binds decide whether the port is free; the socket
    table explains why not, the most telling cause first. ``order`` lists the holders (default: by pid).
    """
    ev = _evidence(port, proto, binds, sockets, privileged, port_start, unreadable)
    if ev.plain and len(ev.plain_ok) == len(ev.plain):
        return _free_answer(ev)
    if not ev.plain:
        return _untested_answer(ev)
    if ev.owned:
        return _held_answer(ev, reader, _time.time() if now is None else now, user, order)
    if ev.inherited:
        return _inherited_answer(ev)
    if ev.hidden:
        return _hidden_answer(ev)
    if ev.unseen:
        return _unseen_answer(ev)
    if ev.remnants:
        return _remnants_answer(ev)
    if ev.denied:
        return _privileged_answer(ev)
    return _unexplained_answer(ev)


def explain(
    spec: PortSpec,
    sockets: Sequence[Socket],
    *,
    binder: Binder = probe_binds,
    reader: ProcessReader = read_process,
    privileged: bool | None = None,
    now: float | None = None,
    ownership: PortOwnership | None = None,
) -> WhyReport:
    """Answer "why is this port busy?" for ``spec``: its protocol, or TCP first and then UDP when none is given.

    With ``ownership`` the holders are listed main holder first, and each answer names what manages
    them and the SO_REUSEPORT situation (see :func:`with_ownership`).
    """
    protos = (spec.proto,) if spec.proto else ("tcp", "udp")
    priv = is_privileged() if privileged is None else privileged
    user = _current_user()
    start = unprivileged_port_start()
    order = ownership.order_pids if ownership is not None else None
    answers = tuple(
        judge(spec.port, proto, tuple(binder(spec.port, proto)), sockets, privileged=priv, reader=reader,
              now=now, user=user, port_start=start, order=order)
        for proto in protos
    )
    if ownership is not None:
        answers = tuple(with_ownership(a, ownership) for a in answers)
    return WhyReport(spec, answers)


# -- ownership: managers and SO_REUSEPORT (portmon.ownership) ---------------------------------------


def with_ownership(answer: PortAnswer, ownership: PortOwnership) -> PortAnswer:
    """The answer with its holders' manager (a preflight of killing them) and the SO_REUSEPORT check."""
    from dataclasses import replace

    pre = ownership.preflight([h.pid for h in answer.holders], answer.port) if answer.holders else None
    check = ownership.reuseport(answer.port, answer.proto, answer.sockets)
    return replace(answer, preflight=pre, reuseport=check)


def ownership_lines(answer: PortAnswer) -> list[str]:
    """The manager's prediction and the SO_REUSEPORT lines of an answer (empty without ownership)."""
    lines = []
    if answer.preflight is not None and answer.preflight.managers:
        lines.append(answer.preflight.message)
    if answer.reuseport is not None:
        lines.extend(answer.reuseport.lines)
    return lines


def ownership_record(answer: PortAnswer) -> dict[str, Any]:
    """The ``manager``, ``preflight`` and ``reuseport`` keys of an answer's JSON (null without ownership)."""
    pre = answer.preflight
    return {
        "manager": managers_json(pre.managers) if pre is not None else None,
        "preflight": preflight_record(pre) if pre is not None else None,
        "reuseport": reuseport_record(answer.reuseport) if answer.reuseport is not None else None,
    }


# -- rendering ------------------------------------------------------------------------------------


def holder_lines(holder: HolderInfo) -> list[str]:
    """The lines describing one holder: pid, name, user, uptime, command line and its sockets."""
    head = f"pid {holder.pid}  {safe(holder.name or '?', 32)}  user {safe(holder.user or '?', 32)}"
    if holder.uptime is not None and holder.create_time is not None:
        head += f"  up {uptime_text(holder.uptime)} (since {format_start(holder.create_time)})"
    lines = [head]
    if holder.error:
        lines.append(f"  note {safe(holder.error)}")
    elif holder.cmdline is not None:
        lines.append(f"  cmd  {holder.command}")
    shown, left = first_listed(holder.sockets, lambda label: " -> " not in label)
    for label in shown:
        lines.append(f"  on   {label}")
    if left:
        lines.append(f"  on   … and {left:,} more sockets on this port")
    return lines


def bind_table(binds: Sequence[BindAttempt]) -> list[str]:
    """The test binds as a small table: one row per address, without and with SO_REUSEADDR."""
    rows: dict[tuple[int, str], dict[bool, BindAttempt]] = {}
    for b in binds:
        rows.setdefault((b.family, b.address), {})[b.reuseaddr] = b
    if not rows:
        return []
    width = max(len("test binds (tcp)") - 2, *(len(a.endpoint) for cols in rows.values() for a in cols.values()))
    lines = [f"{('test binds (' + binds[0].proto + ')').ljust(width + 2)}  without SO_REUSEADDR  with SO_REUSEADDR"]
    for cols in rows.values():
        first = next(iter(cols.values()))
        plain = RESULT_WORDS.get(cols[False].result, "?") if False in cols else "-"
        reuse = RESULT_WORDS.get(cols[True].result, "?") if True in cols else "-"
        lines.append(f"  {first.endpoint.ljust(width)}  {plain.ljust(20)}  {reuse}")
    return lines


def answer_lines(answer: PortAnswer, binds: bool = True) -> list[str]:
    """The answer for one protocol as lines of text, every untrusted field escaped."""
    lines = [answer.message]
    shown = answer.holders[:MAX_HOLDERS_SHOWN]
    for holder in shown:
        lines.extend("  " + line for line in holder_lines(holder))
    if len(answer.holders) > len(shown):
        lines.append(f"  … and {len(answer.holders) - len(shown)} more processes")
    lines.extend(ownership_lines(answer))
    lines.extend(answer.details)
    if answer.kill_command:
        lines.append(f"to free it: {answer.kill_command}   (shows the processes and asks first)")
    if binds:
        lines.extend(bind_table(answer.binds))
    return lines


def report_lines(report: WhyReport) -> list[str]:
    """The whole report: the headline (which protocols hold the port), the main answer in full, then one line
    per other protocol checked."""
    headline = report.headline
    lines = ([headline] if headline else []) + answer_lines(report.primary)
    for other in report.others:
        lines.append("")
        lines.append(f"also checked {other.label} (give {report.spec.port}/tcp or /udp to check one): {other.message}")
    return lines


def bind_record(b: BindAttempt) -> dict[str, Any]:
    """One test bind as a JSON-ready dict."""
    return {"address": b.address, "family": b.family, "reuseaddr": b.reuseaddr, "result": b.result, "error": b.error}


def answer_record(answer: PortAnswer) -> dict[str, Any]:
    """One protocol's answer as a JSON-ready dict (``port``, ``proto``, ``free``, ``reason``, ``holders``, ...)."""
    return {
        "port": answer.port,
        "proto": answer.proto,
        "free": answer.free,
        "reason": answer.reason,
        "message": answer.message,
        "details": list(answer.details),
        "holders": [
            {
                "pid": h.pid,
                "process": h.name,
                "user": h.user,
                "cmdline": list(h.cmdline) if h.cmdline is not None else None,
                "create_time": h.create_time,
                "started": format_start(h.create_time) if h.create_time is not None else None,
                "uptime_seconds": round(h.uptime, 3) if h.uptime is not None else None,
                "sockets": list(h.sockets),
                "error": h.error,
            }
            for h in answer.holders
        ],
        "kill_command": answer.kill_command,
        "taken_addresses": list(answer.taken),
        "free_addresses": list(answer.free_addresses),
        "reuseaddr_bind_ok": answer.reuseaddr_ok,
        "time_wait_seconds": TIME_WAIT_SECONDS,
        "running_as_root": answer.running_as_root,
        "binds": [bind_record(b) for b in answer.binds],
        "sockets": [dict(socket_record(s), owner_note=s.owner_note) for s in answer.sockets],
        **ownership_record(answer),
    }


def report_record(report: WhyReport) -> dict[str, Any]:
    """The ``why --json`` document: the main answer's fields, ``also_checked`` for the other protocol, and
    ``port_free`` / ``held_protocols`` over every protocol checked (what the exit code follows)."""
    doc = answer_record(report.primary)
    doc["proto_given"] = report.spec.proto is not None
    doc["port_free"] = report.free
    doc["held_protocols"] = list(report.held_protocols)
    doc["also_checked"] = [answer_record(a) for a in report.others]
    return doc
