"""What the history keeps about a holder process beyond the scan's Holder: its redacted command line and exe.

Read once per process (pid and start time) and cached, so a recorder reads /proc only for new processes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import psutil

from portmon.history.redact import redact_cmdline
from portmon.model import Holder
from portmon.ownership.view import shared_ownership

IDENTITY_TOLERANCE = 1.0
"""Seconds two start times of one pid may differ and still name one process (clock rounding, boot-time jitter)."""
_CACHE_LIMIT = 8192


class ProcessFacts(NamedTuple):
    """A holder as the history stores it. ``cmdline`` is already redacted; None where it could not be read."""

    pid: int
    start_time: float | None
    name: str | None
    user: str | None
    cmdline: tuple[str, ...] | None
    exe: str | None
    manager: str | None = None
    """What manages it, innermost first, as ``kind name`` (``systemd nginx.service``, ``docker web``), where known.

    No pid: a baseline compares it across restarts."""


def read_facts(holder: Holder) -> ProcessFacts:
    """The holder's facts from the running process; what cannot be read (exited, forbidden) stays None.

    A pid that now names a different process (its start time differs) gives only the scan's fields.
    """
    cmdline: tuple[str, ...] | None = None
    exe: str | None = None
    try:
        proc = psutil.Process(holder.pid)
        if holder.create_time is None or abs(proc.create_time() - holder.create_time) <= IDENTITY_TOLERANCE:
            with proc.oneshot():
                try:
                    cmdline = redact_cmdline(proc.cmdline())
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    pass
                try:
                    exe = proc.exe() or None
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    pass
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass
    return ProcessFacts(holder.pid, holder.create_time, holder.name, holder.user, cmdline, exe, manager_text(holder))


def manager_text(holder: Holder) -> str | None:
    """The holder's innermost manager as ``kind name``, or None when nothing manages it (cheap sources only)."""
    managers = shared_ownership().managers(holder)
    if not managers:
        return None
    return f"{managers[0].kind} {managers[0].name}"


class FactsCache:
    """``facts(holder)``: read_facts once per (pid, start time), the most recent few thousand kept."""

    def __init__(self, reader: Callable[[Holder], ProcessFacts] = read_facts, limit: int = _CACHE_LIMIT) -> None:
        self._reader = reader
        self._items: OrderedDict[tuple[int, float | None], ProcessFacts] = OrderedDict()
        self._limit = limit

    def facts(self, holder: Holder) -> ProcessFacts:
        """The facts of ``holder`` (cached)."""
        key = (holder.pid, holder.create_time)
        got = self._items.get(key)
        if got is None:
            got = self._reader(holder)
            self._items[key] = got
            if len(self._items) > self._limit:
                self._items.popitem(last=False)
        return got
