"""Intervals for people and programs: one text line (or a few) per interval, and the ``--json`` records."""

from __future__ import annotations

import shlex
from typing import Any

from portmon.history.queries import HolderRecord, IntervalRecord
from portmon.history.timeparse import local_text, utc_iso
from portmon.output import endpoint
from portmon.procinfo import uptime_text
from portmon.textsafe import safe

_ENDINGS = {"stop": "recording stopped", "lost": "recorder died", "boot": "rebooted"}


def holder_record(h: HolderRecord) -> dict[str, Any]:
    """One holder as JSON: pid, process, user, cmdline (redacted argv), start_time, exe, manager."""
    return {
        "pid": h.pid,
        "process": h.name,
        "user": h.user,
        "cmdline": list(h.cmdline) if h.cmdline is not None else None,
        "start_time": utc_iso(h.start_time) if h.start_time is not None else None,
        "exe": h.exe,
        "manager": h.manager,
    }


def interval_record(rec: IntervalRecord) -> dict[str, Any]:
    """One interval as JSON; pid, process, user and cmdline are its first holder's, ``holders`` lists all."""
    first = rec.holders[0] if rec.holders else None
    return {
        "proto": rec.proto,
        "family": rec.family,
        "local_addr": rec.local_addr,
        "local_port": rec.local_port,
        "remote_addr": rec.remote_addr,
        "remote_port": rec.remote_port,
        "state": rec.state,
        "service": rec.service,
        "pid": first.pid if first else None,
        "process": first.name if first else None,
        "user": first.user if first else None,
        "cmdline": list(first.cmdline) if first and first.cmdline is not None else None,
        "opened": utc_iso(rec.opened),
        "opened_seen": rec.opened_seen,
        "closed": utc_iso(rec.closed) if rec.closed is not None else None,
        "end_reason": rec.end_reason,
        "owner_note": rec.owner_note,
        "holders": [holder_record(h) for h in rec.holders],
    }


def command_text(h: HolderRecord, width: int = 160) -> str:
    """The holder's command line, shell-quoted and escaped, or why it is missing."""
    if h.cmdline is None:
        return "(command line not readable)"
    if not h.cmdline:
        return "(no command line)"
    return safe(shlex.join(h.cmdline), width)


def span_text(rec: IntervalRecord, now: float) -> str:
    """``2026-01-01 12:00:01 -> 12:04:17 (4m 16s)``, ``... -> open (2h 03m)``; ``<=`` marks a start seen late."""
    start = ("<=" if not rec.opened_seen else "") + local_text(rec.opened)
    if rec.closed is None:
        return f"{start} -> open ({uptime_text(now - rec.opened)} so far)"
    end = local_text(rec.closed)
    if end[:10] == start.lstrip("<=")[:10]:
        end = end[11:]
    note = _ENDINGS.get(rec.end_reason or "")
    tail = f", {note}" if note else ""
    return f"{start} -> {end} ({uptime_text(rec.closed - rec.opened)}{tail})"


def interval_lines(rec: IntervalRecord, now: float) -> list[str]:
    """The text form: a line with the span and socket, then one indented line per holder."""
    local = endpoint(rec.local_addr, rec.local_port, rec.family)
    socket = f"{rec.proto}{rec.family} {safe(local)}"
    if rec.remote_port is not None:
        socket += " -> " + safe(endpoint(rec.remote_addr, rec.remote_port, rec.family))
    if rec.state:
        socket += f" {safe(rec.state)}"
    if rec.service:
        socket += f" {safe(rec.service, 32)}"
    lines = [f"{span_text(rec, now)}  {socket}"]
    if not rec.holders:
        lines.append(f"  ({safe(rec.owner_note or 'no process seen')})")
    for h in rec.holders:
        lines.append(f"  pid {h.pid}  {safe(h.name or '?', 32)}  user {safe(h.user or '?', 32)}  {command_text(h)}")
    return lines
