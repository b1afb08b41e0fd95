"""A collector whose every shared socket lists its main holder first (the pre-fork master, not a worker).

The one-shot commands order holders per command (``view.Ownership.order``); the live monitor's
poller thread scans through this wrapper so the table's PID, the detail pane and the kill dialog
start from the same main holder as ``who``, ``kill`` and ``why``.
"""

from __future__ import annotations

from portmon.collect.base import Collector
from portmon.model import Snapshot
from portmon.ownership.families import order_sockets, proc_lookup


class FamilyOrdered:
    """Wraps ``inner``: each scan's shared sockets get their holders in family order, main holder first.

    Costs one /proc/PID/stat read per holder of a shared socket per scan (memoised within the scan);
    sockets held by one process, and other hosts' sockets, pass through as the same objects.
    """

    def __init__(self, inner: Collector, procfs: str = "/proc") -> None:
        self.inner = inner
        self.name = inner.name
        self._procfs = procfs

    def scan(self) -> Snapshot:
        snapshot = self.inner.scan()
        ordered = order_sockets(snapshot.sockets, proc_lookup(self._procfs))
        if all(a is b for a, b in zip(ordered, snapshot.sockets, strict=True)):
            return snapshot
        return snapshot._replace(sockets=tuple(ordered))

    def __getattr__(self, name: str) -> object:
        # Everything else (hosts, close(), listen readers...) is the inner collector's.
        return getattr(self.inner, name)
