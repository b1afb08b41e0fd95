"""The verdict after a kill: re-scan the port and say freed, only TIME_WAIT left, still held (by whom), or re-bound."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import psutil

from portmon.actions.kill.identity import BootClock, same_start_time, started_before, system_clock
from portmon.actions.kill.model import (
    DENIED,
    EXITED,
    FREED,
    GONE,
    LET_GO,
    REBOUND,
    STILL_HELD,
    SURVIVED,
    TIME_WAIT_ONLY,
    UNINTERRUPTIBLE,
    UNKNOWN,
    KillPlan,
    NewHolder,
    TargetResult,
    Verdict,
)
from portmon.actions.kill.text import TIME_WAIT_SECONDS
from portmon.collect.fdwalk import own_socket_inodes
from portmon.model import OWNER_KERNEL, OWNER_UNSEEN, Snapshot, Socket
from portmon.portspec import sockets_on_port
from portmon.textsafe import safe


def verdict_without_scan(plan: KillPlan, results: Sequence[TargetResult]) -> Verdict:
    """The verdict when there is no re-scan: still held by the survivors, or unknown."""
    alive = tuple(r.target.pid for r in results if r.alive)
    if alive:
        verdict = Verdict(
            STILL_HELD, f"port {plan.label} still held by {_held_text(results, alive)}", still_held_by=alive
        )
    else:
        verdict = Verdict(UNKNOWN, f"port {plan.label}: the holders exited (not re-scanned)")
    return _with_let_go(verdict, results)


def _reason_for(result: TargetResult | None) -> str:
    if result is None:
        return ""
    if result.result == UNINTERRUPTIBLE:
        return "uninterruptible sleep"
    if result.result == DENIED:
        return f"permission denied, owner {safe(result.target.user or '?')}: run with sudo"
    if result.result == SURVIVED:
        last = next((s for s in reversed(result.signals) if s != "SIGCONT"), "the signal")
        return f"ignores {last}" if last != "SIGKILL" else "survives SIGKILL"
    return ""


def _held_text(results: Sequence[TargetResult], pids: Sequence[int], extra: dict[int, str] | None = None) -> str:
    """``1234 (ignores SIGTERM)``; several pids with one reason share it: ``1, 2, 3 (each ignores SIGTERM)``."""
    by_pid = {r.target.pid: r for r in results}
    whys = {pid: _reason_for(by_pid.get(pid)) or (extra or {}).get(pid, "") for pid in pids}
    ordered = sorted(pids)
    reasons = set(whys.values())
    if len(ordered) > 1 and len(reasons) == 1:
        why = reasons.pop()
        joined = ", ".join(map(str, ordered))
        return f"{joined} (each {why})" if why else joined
    return ", ".join(f"{pid} ({whys[pid]})" if whys[pid] else str(pid) for pid in ordered)


def describe_new_holder(pid: int, clock: BootClock | None = None) -> NewHolder:
    """Name a new holder and its parent (the supervisor that restarted it, when there is one)."""
    clock = system_clock() if clock is None else clock
    name = ppid = pname = None
    created = None
    ticks = clock.start_ticks(pid)
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = proc.name()
            ppid = proc.ppid()
            created = proc.create_time()
        parent = proc.parent()
        if parent is not None:
            pname = parent.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass
    return NewHolder(pid=pid, name=name, parent_pid=ppid, parent_name=pname, create_time=created, start_ticks=ticks)


@dataclass(slots=True)
class _Holding:
    """Who holds the port after the kill, sorted against the plan."""

    still: list[int] = field(default_factory=list)
    """Holders the plan knew (and did not see exit)."""
    new: list[int] = field(default_factory=list)
    """Holders the plan did not know, or that exited and came back under the same pid."""
    started_of: dict[int, float | None] = field(default_factory=dict)
    """The snapshot's start time of each new holder."""
    hidden: bool = False
    """A socket on the port whose holder portmon cannot see."""
    inherited: bool = False
    """A socket on the port held by nobody but portmon itself (an inherited copy)."""


def _sort_holders(plan: KillPlan, results: Sequence[TargetResult], now: Sequence[Socket]) -> _Holding:
    """Tell the holders after the kill apart: the ones the plan knew from new ones (pid and start time)."""
    exited = {r.target.pid for r in results if r.result in (EXITED, GONE)}
    targets = {t.pid for t in plan.targets}
    old: dict[int, float | None] = {}
    for sock in plan.before:
        for h in sock.holders:
            old.setdefault(h.pid, h.create_time)
    out = _Holding()
    me = os.getpid()
    own = own_socket_inodes() if any(s.host is None and s.inode and not s.holders for s in now) else frozenset()
    for sock in now:
        if not sock.holders:
            if sock.host is None and sock.inode in own:
                out.inherited = True  # portmon's own inherited copy: the collectors name no holder
            elif sock.owner_note not in (OWNER_KERNEL, OWNER_UNSEEN):
                out.hidden = True
            continue
        if all(h.pid == me for h in sock.holders):
            out.inherited = True
        for h in sock.holders:
            if h.pid == me or h.pid in out.still or h.pid in out.new:
                continue
            known = h.pid in old and (
                h.create_time is None or old[h.pid] is None or same_start_time(old[h.pid], h.create_time)
            )
            if known and not (h.pid in targets and h.pid in exited):
                out.still.append(h.pid)
            else:
                out.new.append(h.pid)
                out.started_of[h.pid] = h.create_time
    return out


def _split_new(
    plan: KillPlan, holding: _Holding, describe: Callable[[int], NewHolder]
) -> tuple[list[int], list[NewHolder]]:
    """The new holders that were running before the plan (missed by the scan), and the ones started since.

    Start times are compared with the plan's stamp in clock ticks since boot where both are known,
    else on the wall clock with btime's rounding allowed for (see :func:`started_before`).
    """
    unseen: list[int] = []
    rebound: list[NewHolder] = []
    for pid in holding.new:
        nh = describe(pid)
        started = nh.create_time if nh.create_time is not None else holding.started_of.get(pid)
        if started_before(plan.captured_ticks, plan.captured_at, nh.start_ticks, started):
            # Running before the kill was planned, yet not seen holding the port: a holder the scan missed.
            unseen.append(pid)
        else:
            rebound.append(nh)
    return unseen, rebound


def _rebound_text(rebound: Sequence[NewHolder]) -> str:
    """``555 (nginx), child of 1 (systemd)``, one part per new holder."""
    parts = []
    for nh in rebound:
        text = f"{nh.pid} ({safe(nh.name or '?')})"
        if nh.parent_pid:
            text += f", child of {nh.parent_pid} ({safe(nh.parent_name or '?')})"
        parts.append(text)
    return "; ".join(parts)


def _with_let_go(verdict: Verdict, results: Sequence[TargetResult]) -> Verdict:
    """The verdict, saying which planned holders were left alone because they no longer held the socket."""
    let_go = [str(r.target.pid) for r in results if r.result == LET_GO]
    if not let_go:
        return verdict
    return replace(verdict, message=f"{verdict.message} (left alone: {', '.join(let_go)}, no longer holding it)")


def judge(
    plan: KillPlan,
    results: Sequence[TargetResult],
    after: Snapshot,
    describe: Callable[[int], NewHolder] = describe_new_holder,
) -> Verdict:
    """The verdict from the re-scan: freed, only TIME_WAIT left, still held (by whom), or re-bound by a new pid."""
    return _with_let_go(_judge(plan, results, after, describe), results)


def _judge(
    plan: KillPlan, results: Sequence[TargetResult], after: Snapshot, describe: Callable[[int], NewHolder]
) -> Verdict:
    now = sockets_on_port(after.sockets, plan.spec)
    holding = _sort_holders(plan, results, now)
    unseen, rebound = _split_new(plan, holding, describe)
    reasons = dict.fromkeys(unseen, "not seen holding it before")
    still = holding.still + unseen
    label = plan.label
    if rebound:
        message = (
            f"port {label} re-bound by new pid {_rebound_text(rebound)}: "
            "a supervisor (systemd, Docker, a process manager) restarted it"
        )
        if still:
            message += f"; still held by {_held_text(results, still, reasons)}"
        return Verdict(REBOUND, message, still_held_by=tuple(still), rebound_by=tuple(rebound))
    if still:
        return Verdict(
            STILL_HELD, f"port {label} still held by {_held_text(results, still, reasons)}", still_held_by=tuple(still)
        )
    if holding.hidden:
        return Verdict(STILL_HELD, f"port {label} still held by a process portmon cannot see; root would reveal it")
    if holding.inherited:
        return Verdict(
            FREED, f"port {label} freed of its holders; portmon itself holds an inherited copy until it exits"
        )
    if now:
        return Verdict(
            TIME_WAIT_ONLY,
            f"port {label} freed; only TIME_WAIT left (bindable with SO_REUSEADDR; "
            f"clears within {TIME_WAIT_SECONDS} s)",
        )
    return Verdict(FREED, f"port {label} freed")
