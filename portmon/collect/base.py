"""What every collector shares: the Collector protocol, the service lookup type, owner notes and the guarded scan."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Protocol

from portmon.model import (
    KERNEL_STATES,
    ORPHAN_STATES,
    OWNER_HIDDEN,
    OWNER_KERNEL,
    OWNER_UNSEEN,
    Snapshot,
)

ServiceLookup = Callable[[int, str], str | None]
"""``services(port, proto) -> name``: how a collector names the service on a port."""


class Collector(Protocol):
    """Anything that can take a snapshot of the machine's sockets."""

    name: str

    def scan(self) -> Snapshot:
        """Return every TCP and UDP socket now; raise on failure (callers keep the last good snapshot)."""
        ...


def is_privileged() -> bool:
    """True when portmon can see every process's sockets (root on POSIX; always on Windows)."""
    geteuid = getattr(os, "geteuid", None)
    return True if geteuid is None else geteuid() == 0


def owner_note(state: str | None, privileged: bool) -> str:
    """Why a socket with no holder has none: kernel-owned (TIME_WAIT, orphans), hidden from us, or unseen.

    Without privilege an ownerless LISTEN or ESTABLISHED socket is another user's (hidden). With it,
    only an orphan of a close is the kernel's; anything else is held from outside our view.
    """
    if state in KERNEL_STATES or (privileged and state in ORPHAN_STATES):
        return OWNER_KERNEL
    return OWNER_UNSEEN if privileged else OWNER_HIDDEN


def guarded_scan(collector: Collector, last: Snapshot | None) -> Snapshot:
    """Scan, and on any failure return the last good sockets with the error attached.

    The live monitor and ``watch`` call this so a failing scan never loses what the user saw.
    """
    started = time.perf_counter()
    try:
        return collector.scan()
    except Exception as exc:  # noqa: BLE001 - any scan failure is reported, never fatal
        message = f"scan failed: {type(exc).__name__}: {exc}"
        elapsed = (time.perf_counter() - started) * 1000.0
        if last is None:
            return Snapshot(sockets=(), taken_at=time.time(), scan_ms=elapsed, error=message, collector=collector.name)
        return Snapshot(
            sockets=last.sockets,
            taken_at=last.taken_at,
            scan_ms=elapsed,
            hidden_owners=last.hidden_owners,
            warning=last.warning,
            error=message,
            collector=last.collector,
        )
