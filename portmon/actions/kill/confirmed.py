"""Killing exactly the processes a user confirmed: identities as ``PID:TICKS`` text, and a plan cut down to them.

A remote kill is planned twice: a dry run on the host lists the holders, the user confirms here,
and the host's portmon plans again when it signals. Between the two a holder may exit, a new
process may take the port, or a pid may be reused. So the confirmation carries each target's
identity (pid and start time in clock ticks since boot, see :mod:`.identity`), and the second plan
signals only targets whose identity is exactly one confirmed: a confirmed pid that now names
another process is refused (nothing is signalled), a holder nobody confirmed is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from portmon.actions.kill.identity import BootClock
from portmon.actions.kill.model import KillPlan, Refusal, Target
from portmon.textsafe import safe

REFUSED_CHANGED = "changed-since-confirmed"
"""A confirmed pid now names another process (its start time differs): the pid was reused."""

IDENTITIES_PREFIX = "exact identities (pid:start ticks): --pids "
"""How a dry run states the identities of its targets (the rest of the line is ``format_identities``)."""

MAX_IDENTITIES = 10_000
"""More confirmed processes than any port has holders: a longer list is refused as bad input."""


def format_identities(targets: Iterable[Target]) -> str | None:
    """``123:4567,890:1234`` for the targets; None when one has no start time in ticks (not Linux)."""
    parts = []
    for t in targets:
        if t.identity.start_ticks is None:
            return None
        parts.append(f"{t.pid}:{t.identity.start_ticks}")
    return ",".join(parts) if parts else None


def parse_identities(text: str) -> dict[int, int]:
    """``PID:TICKS[,PID:TICKS...]`` -> {pid: start ticks}; ValueError naming what is wrong (text not echoed)."""
    out: dict[int, int] = {}
    items = text.split(",")
    if len(items) > MAX_IDENTITIES:
        raise ValueError(f"at most {MAX_IDENTITIES:,} processes may be confirmed")
    for n, item in enumerate(items, 1):
        pid_text, sep, ticks_text = item.strip().partition(":")
        if not (sep and pid_text.isascii() and pid_text.isdigit() and ticks_text.isascii() and ticks_text.isdigit()):
            raise ValueError(f"item {n} is not PID:TICKS (two whole numbers, as a dry run prints them)")
        if len(pid_text) > 10 or len(ticks_text) > 20:
            raise ValueError(f"item {n}: the number is out of range")
        pid, ticks = int(pid_text), int(ticks_text)
        if pid < 1:
            raise ValueError(f"item {n}: a pid is 1 or more")
        if out.get(pid, ticks) != ticks:
            raise ValueError(f"pid {pid} is given twice with different start times")
        out[pid] = ticks
    return out


def identities_from_lines(lines: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the identities a dry run's output states, or None; the output without that line)."""
    found: str | None = None
    rest = []
    for line in lines:
        if line.startswith(IDENTITIES_PREFIX):
            found = line[len(IDENTITIES_PREFIX) :].strip()
        else:
            rest.append(line)
    return found, rest


def keep_confirmed(plan: KillPlan, confirmed: Mapping[int, int], clock: BootClock) -> KillPlan:
    """``plan`` with only the targets whose (pid, start ticks) were confirmed.

    A target whose pid was confirmed with another start time is refused (the pid names another
    process now), as is a confirmed pid that no longer holds the port and names another process
    now: a refusal blocks the whole kill. A target nobody confirmed is dropped with a note (the
    verdict will say it still holds the port); a confirmed process that has exited is a note.
    """
    kept: list[Target] = []
    refusals = list(plan.refusals)
    notes = list(plan.notes)
    for t in plan.targets:
        want = confirmed.get(t.pid)
        if want is None:
            notes.append(f"pid {t.label} holds the port now but was not among the processes confirmed: left alone")
        elif t.identity.start_ticks != want:
            refusals.append(_changed(t.pid, t.identity.start_ticks, want, f" ({safe(t.name or '?')})"))
        else:
            kept.append(t)
            continue
        if t.pidfd is not None:
            t.pidfd.close()
    planned = {t.pid for t in plan.targets}
    for pid, want in sorted(confirmed.items()):
        if pid in planned:
            continue
        now = clock.start_ticks(pid)
        if now is None:
            notes.append(f"pid {pid} (confirmed) has exited since: nothing to signal there")
        elif now != want:
            refusals.append(_changed(pid, now, want, ""))
        else:
            notes.append(f"pid {pid} (confirmed) no longer holds port {plan.label}: left alone")
    return replace(plan, targets=tuple(kept), refusals=tuple(refusals), notes=tuple(notes))


def _changed(pid: int, now: int | None, want: int, name: str) -> Refusal:
    started = "an unknown time" if now is None else f"tick {now}"
    reason = (
        f"pid {pid}{name} is not the process confirmed: it started at {started}, the one confirmed at tick {want} "
        "(the pid was reused); run the kill again to see who holds the port now"
    )
    return Refusal(REFUSED_CHANGED, reason, pid)
