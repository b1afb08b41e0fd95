"""A collector whose every shared socket lists its main holder first (the pre-fork master, not a worker).

The one-shot commands order holders per command (``view.Ownership.order``); the live monitor's
poller thread scans through this wrapper so the table's PID, the detail pane and the kill dialog
start from the same main holder as ``who``, ``kill`` and ``why``.
"""

from __future__ import annotations

from portmon.collect.base import Collector
from portmon.model import Snapshot, Socket
from portmon.ownership.families import order_sockets, proc_lookup


class FamilyOrdered:
    """Wraps ``inner``: each scan's shared sockets get their holders in family order, main holder first.

    Costs one /proc/PID/stat read per holder of a shared socket per scan (memoised within the scan);
    sockets held by one process, and other hosts' sockets, pass through as the same objects. A
    reordered socket the inner collector hands back unchanged (the same object) stays the same
    reordered object from scan to scan, so whatever compares scans by identity (the diff, the
    traffic rates) still sees it as unchanged.
    """

    def __init__(self, inner: Collector, procfs: str = "/proc") -> None:
        self.inner = inner
        self.name = inner.name
        self._procfs = procfs
        self._reordered: dict[int, tuple[Socket, Socket]] = {}
        """id(the inner collector's socket) -> (that socket, its reordered copy), from the last scan."""

    def scan(self) -> Snapshot:
        snapshot = self.inner.scan()
        ordered = order_sockets(snapshot.sockets, proc_lookup(self._procfs))
        previous, self._reordered = self._reordered, {}
        changed = False
        for i, (raw, new) in enumerate(zip(snapshot.sockets, ordered, strict=True)):
            if raw is new:
                continue
            changed = True
            kept = previous.get(id(raw))
            if kept is not None and kept[0] is raw and kept[1] == new:
                ordered[i] = new = kept[1]
            self._reordered[id(raw)] = (raw, new)
        return snapshot._replace(sockets=tuple(ordered)) if changed else snapshot

    def __getattr__(self, name: str) -> object:
        # Everything else (hosts, close(), listen readers...) is the inner collector's.
        return getattr(self.inner, name)
