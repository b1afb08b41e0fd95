"""The kill policy: whom signalling would reach for a port's sockets, whom it refuses and why, and what to confirm."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from portmon.actions.kill.identity import BootClock, Identity, PidFd, open_pidfd, same_process, system_clock
from portmon.actions.kill.model import (
    REFUSED_ANCESTOR,
    REFUSED_HIDDEN,
    REFUSED_INIT,
    REFUSED_KERNEL_OWNED,
    REFUSED_KERNEL_THREAD,
    REFUSED_NO_PID,
    REFUSED_PERMISSION,
    REFUSED_SELF,
    REFUSED_UNVERIFIED,
    KillPlan,
    Refusal,
    Target,
)
from portmon.actions.kill.process import (
    IS_WINDOWS,
    ProcRead,
    invoking_user,
    is_kernel_thread,
    may_signal,
    privileged,
    protected_pids,
    read_fresh,
    socket_uids,
)
from portmon.actions.kill.signals import signal_name
from portmon.actions.kill.text import first_listed, format_start, kernel_owned_note, port_label, socket_label
from portmon.actions.ownerless import backlog_of, unreadable_fd_tables
from portmon.collect.fdwalk import own_socket_inodes
from portmon.model import OWNER_KERNEL, OWNER_UNSEEN, Holder, Snapshot, Socket
from portmon.portspec import PortSpec, sockets_on_port, spec_of
from portmon.textsafe import safe


def _sudo_hint(spec: PortSpec) -> str:
    if IS_WINDOWS:
        return "run portmon from an administrator prompt"
    return f"run it with sudo (sudo portmon kill {spec})"


@dataclass(slots=True)
class _Gathered:
    """The sockets' holders in first-seen order, with the labels of their sockets, and the ownerless sockets."""

    holders: dict[int, Holder] = field(default_factory=dict)
    labels: dict[int, list[str]] = field(default_factory=dict)
    inodes: dict[int, set[int]] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    """Sockets held by a process portmon cannot see."""
    kernel_notes: list[str] = field(default_factory=list)
    """Sockets no process holds (TIME_WAIT and the like)."""
    inherited: list[str] = field(default_factory=list)
    """Labels of sockets portmon itself holds a copy of (inherited): it is never a holder to signal."""


def _gather(sockets: Sequence[Socket], spec: PortSpec, port_sockets: Sequence[Socket]) -> _Gathered:
    found = _Gathered()
    unreadable: int | None = None
    me = os.getpid()
    # The collectors leave portmon out of the holders: its inherited copies are found in its own fds.
    own = own_socket_inodes() if any(s.host is None and s.inode for s in sockets) else frozenset()
    for sock in sockets:
        label = socket_label(sock)
        if sock.host is None and sock.inode in own:
            found.inherited.append(label)
            if not sock.holders:
                continue
        if not sock.holders:
            backlog = backlog_of(sock, port_sockets) is not None
            if sock.owner_note == OWNER_UNSEEN and not backlog and unreadable is None:
                unreadable = unreadable_fd_tables()
            if backlog or sock.owner_note in (OWNER_KERNEL, OWNER_UNSEEN):
                found.kernel_notes.append(kernel_owned_note(sock, port_sockets, unreadable))
            else:
                found.refusals.append(
                    Refusal(
                        REFUSED_HIDDEN,
                        f"{socket_label(sock)}: held by a process portmon cannot see (another user's); "
                        f"root would reveal the owner: {_sudo_hint(spec)}",
                    )
                )
            continue
        for holder in sock.holders:
            if holder.pid == me:  # a snapshot that still names portmon (not one of its collectors')
                if label not in found.inherited:
                    found.inherited.append(label)
                continue
            found.holders.setdefault(holder.pid, holder)
            found.labels.setdefault(holder.pid, []).append(socket_label(sock))
            if sock.inode:
                found.inodes.setdefault(holder.pid, set()).add(sock.inode)
    return found


def _protected_refusal(pid: int, name: str, guard: dict[int, str]) -> Refusal | None:
    """The refusal of a pid never to be signalled (idle task, init, portmon and its ancestors); None for others."""
    if pid <= 0:
        return Refusal(REFUSED_NO_PID, f"pid {pid} is the kernel's idle task, not a process", pid)
    if pid == 1:
        reason = f"pid 1 ({name}) is init: killing it would bring down the system or container"
        return Refusal(REFUSED_INIT, reason, pid)
    if pid not in guard:
        return None
    if pid == os.getpid():
        return Refusal(REFUSED_SELF, f"pid {pid} is portmon itself", pid)
    reason = (
        f"pid {pid} ({name}) is one of portmon's ancestors (its shell, sudo or terminal): "
        "killing it would end this session"
    )
    return Refusal(REFUSED_ANCESTOR, reason, pid)


def _check_holder(
    holder: Holder, spec: PortSpec, guard: dict[int, str], clock: BootClock
) -> ProcRead | Refusal | str:
    """The policy for one holder: its fresh read when it may be signalled, else a refusal or a note."""
    pid = holder.pid
    name = safe(holder.name or "?")
    refused = _protected_refusal(pid, name, guard)
    if refused is not None:
        return refused
    fresh = read_fresh(pid, clock)
    if fresh is None:
        return f"pid {pid} ({name}) has exited since the scan"
    if fresh.create_time is None:
        reason = f"cannot confirm the identity of pid {pid} ({name}): its start time is not readable"
        return Refusal(REFUSED_UNVERIFIED, f"{reason}; {_sudo_hint(spec)}", pid)
    seen = clock.identity(pid, holder.create_time)
    if holder.create_time is not None and not same_process(seen, fresh.start_ticks, fresh.create_time):
        return (
            f"pid {pid} now belongs to a different process ({safe(fresh.name or '?')}, started "
            f"{format_start(fresh.create_time)}): the one that held the port has exited; it is left alone"
        )
    if is_kernel_thread(pid, fresh.ppid, fresh.exe, fresh.exe_known, fresh.cmdline):
        return Refusal(REFUSED_KERNEL_THREAD, f"pid {pid} ({name}) is a kernel thread", pid)
    if not may_signal(fresh.uids):
        owner = safe(fresh.user or holder.user or "another user")
        reason = f"pid {pid} ({name}) belongs to {owner}: permission denied; {_sudo_hint(spec)}"
        return Refusal(REFUSED_PERMISSION, reason, pid)
    return fresh


def _target(holder: Holder, fresh: ProcRead, found: _Gathered, pidfd: PidFd | None) -> Target:
    """The target as the confirmation shows it: the snapshot's identity, the fresh read's details."""
    created = holder.create_time if holder.create_time is not None else fresh.create_time
    return Target(
        identity=Identity(holder.pid, created, fresh.start_ticks),
        name=fresh.name or holder.name,
        user=fresh.user or holder.user,
        exe=fresh.exe,
        cmdline=fresh.cmdline or (),
        status=fresh.status,
        ppid=fresh.ppid,
        sockets=tuple(found.labels[holder.pid]),
        inodes=frozenset(found.inodes.get(holder.pid, ())),
        pidfd=pidfd,
    )


def _unseen_user_notes(
    sockets: Sequence[Socket],
    uids_of: dict[int, set[int]],
    spec: PortSpec,
    uids: Callable[[frozenset[int]], dict[int, int]],
) -> list[str]:
    """Without root, a socket whose kernel uid matches no visible holder may also be held by an unseen process."""
    inodes = frozenset(s.inode for s in sockets if s.inode and s.holders)
    by_inode = uids(inodes) if inodes else {}
    notes = []
    for sock in sockets:
        uid = by_inode.get(sock.inode)
        seen = [uids_of[h.pid] for h in sock.holders if h.pid in uids_of]
        if uid is None or not seen or any(uid in ids for ids in seen):
            continue
        notes.append(
            f"{socket_label(sock)}: the kernel says uid {uid} opened it, but no process seen holding it runs as "
            f"that uid: another user's process may hold it too, unseen without root; {_sudo_hint(spec)}"
        )
    return notes


def _inherited_note(labels: Sequence[str]) -> str:
    shown, left = first_listed(labels, lambda label: " -> " not in label)
    listed = "; ".join(shown) + (f" and {left:,} more" if left else "")
    return (
        f"portmon itself (pid {os.getpid()}) holds an inherited copy of {listed}: it is no holder to signal, "
        "and lets go when portmon exits"
    )


def plan_kill(
    sockets: Sequence[Socket],
    spec: PortSpec,
    port_sockets: Sequence[Socket] | None = None,
    *,
    protected: dict[int, str] | None = None,
    clock: BootClock | None = None,
    uids: Callable[[frozenset[int]], dict[int, int]] = socket_uids,
) -> KillPlan:
    """Decide whom signalling would reach for ``sockets`` (the holders of which are the targets).

    Identity is the snapshot's (pid, start time) per holder, re-read now: a holder that exited or whose
    pid now names another process is left out with a note. ``port_sockets`` is every socket on the port
    (default: ``sockets``), kept to tell old holders from new ones after the kill. ``protected`` maps
    pids that must never be signalled to a name (default: portmon and its ancestors). Each target's
    pidfd (Linux) is opened before its identity is confirmed and kept in the plan, so the signal can
    reach no other process; ``clock`` (default: the system's) stamps the plan in start-time units;
    ``uids`` gives the kernel's uid of sockets by inode (read only without root, for the unseen-holder note).
    """
    guard = protected_pids() if protected is None else protected
    clock = system_clock() if clock is None else clock
    before = tuple(port_sockets) if port_sockets is not None else tuple(sockets)
    found = _gather(sockets, spec, before)
    targets: list[Target] = []
    refusals = found.refusals
    notes: list[str] = []
    as_root = privileged()
    me = invoking_user()
    other_users: list[tuple[int, str]] = []
    uids_of: dict[int, set[int]] = {}
    for pid, holder in found.holders.items():
        try:
            pidfd = open_pidfd(pid) if pid > 1 else None
        except ProcessLookupError:
            pidfd = None  # gone: the fresh read below says so
        checked = _check_holder(holder, spec, guard, clock)
        if not isinstance(checked, ProcRead) and pidfd is not None:
            pidfd.close()
        if isinstance(checked, Refusal):
            refusals.append(checked)
        elif isinstance(checked, str):
            notes.append(checked)
        else:
            if checked.uids is not None:
                uids_of[pid] = set(checked.uids)
            target = _target(holder, checked, found, pidfd)
            if as_root and target.user and me and target.user != me:
                other_users.append((pid, safe(target.user)))
            targets.append(target)
    if targets or refusals:
        notes.extend(found.kernel_notes)
    elif found.kernel_notes:
        # Only kernel-owned sockets are left: that is a refusal with the explanation, not "nothing".
        refusals.extend(Refusal(REFUSED_KERNEL_OWNED, n) for n in found.kernel_notes)
    if not as_root and targets:
        notes.extend(_unseen_user_notes(sockets, uids_of, spec, uids))
    if found.inherited:
        notes.append(_inherited_note(found.inherited))
    if IS_WINDOWS and targets:
        notes.append("on Windows every signal is TerminateProcess, already a hard kill: holders cannot clean up")
    return KillPlan(
        spec=spec,
        label=port_label(spec, before or tuple(sockets)),
        targets=tuple(sorted(targets, key=lambda t: t.pid)),
        refusals=tuple(refusals),
        notes=tuple(notes),
        other_users=tuple(other_users),
        before=before,
        sockets=tuple(sockets),
        captured_at=time.time(),
        captured_ticks=clock.now_ticks(),
        inherited=tuple(found.inherited),
    )


def plan_for_port(snapshot: Snapshot, spec: PortSpec) -> KillPlan:
    """The plan for every socket on the port (exact port; the protocol too when the spec gives one)."""
    on_port = sockets_on_port(snapshot.sockets, spec)
    return plan_kill(on_port, spec)


def plan_for_socket(sock: Socket, snapshot: Snapshot | None = None) -> KillPlan:
    """The plan for the holders of one socket (the TUI's selected row), its port and protocol as context."""
    spec = spec_of(sock)  # in the socket's own network namespace: the verdict re-scans that one
    context = sockets_on_port(snapshot.sockets, spec) if snapshot is not None else [sock]
    if sock not in context:
        context = [sock, *context]
    return plan_kill([sock], spec, context)


def confirmation_lines(plan: KillPlan, sig: int) -> list[str]:
    """What the user confirms: the signal, the count, and any other user's processes (named)."""
    n = len(plan.targets)
    lines = [f"send {signal_name(sig)} to {n} process{'es' if n != 1 else ''} holding port {plan.label}?"]
    if plan.other_users:
        named = ", ".join(f"{user} (pid {pid})" for pid, user in plan.other_users)
        lines.append(f"as root, this signals processes of other users: {named}")
    return lines



def confirmation_for(plans: Sequence[KillPlan], sig: int) -> list[str]:
    """One question for the plans of several ports (each process counted once), then every plan's warnings."""
    if len(plans) == 1:
        return confirmation_lines(plans[0], sig)
    pids = {t.pid for plan in plans for t in plan.targets}
    n = len(pids)
    ports = ", ".join(plan.label for plan in plans)
    lines = [f"send {signal_name(sig)} to {n} process{'es' if n != 1 else ''} holding ports {ports}?"]
    others = {pid: user for plan in plans for pid, user in plan.other_users}
    if others:
        named = ", ".join(f"{user} (pid {pid})" for pid, user in sorted(others.items()))
        lines.append(f"as root, this signals processes of other users: {named}")
    return lines
