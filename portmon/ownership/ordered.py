"""A collector whose every shared socket lists its main holder first (the pre-fork master, not a worker).

The one-shot commands order holders per command (``view.Ownership.order``); the live monitor's
poller thread scans through this wrapper so the table's PID, the detail pane and the kill dialog
start from the same main holder as ``who``, ``kill`` and ``why``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress, repeat
from operator import attrgetter, lt

from portmon.collect.base import Collector
from portmon.model import Snapshot, Socket
from portmon.ownership.families import order_sockets, proc_lookup
from portmon.sameobjects import changed_objects

_HOLDERS = attrgetter("holders")


def shared_positions(sockets: Sequence[Socket]) -> list[int]:
    """The positions of the sockets with more than one holder: the only ones whose holders need ordering.

    Speed trick for :class:`FamilyOrdered`: found in C (``map``, ``compress``) instead of a Python
    pass over every socket, so ordering a scan costs a pass in C plus Python work per shared socket
    only. Equals :func:`shared_positions_plain` (tests/test_ownership_ordered.py). Saving on issue
    18's load (31,000 sockets; ``bench/bench_step.py``, the order stage, medians of 12 on a busy
    2-core host): 3.0-3.3 ms of CPU per scan instead of 4.0 ms.
    """
    return list(compress(range(len(sockets)), map(lt, repeat(1), map(len, map(_HOLDERS, sockets)))))


def none_shared_since(last: tuple[Socket, ...], sockets: tuple[Socket, ...]) -> bool:
    """True when no socket of ``sockets`` is shared, given that none of ``last`` was.

    Speed trick for :class:`FamilyOrdered`: a socket that is an object of ``last`` is not shared,
    so only the sockets new since then are looked at, picked out by ``changed_objects``: the very
    question the rest of the refresh (change marks, rows, rates, events, the history recorder)
    asks of this pair when the scan is passed through unchanged, so its answer is shared, and a
    host where nothing is shared pays no pass of its own over every socket. Equals ``not
    shared_positions(sockets)`` under that condition (tests/test_ownership_ordered.py). Saving on
    issue 18's load (31,000 sockets, none shared; ``bench/bench_step.py``, the order stage): under
    0.1 ms of CPU per scan instead of ~3 ms for :func:`shared_positions`.
    """
    return not shared_positions(changed_objects(last, sockets)[1])


def shared_positions_plain(sockets: Sequence[Socket]) -> list[int]:
    """:func:`shared_positions` as a plain loop (for the equivalence test)."""
    return [i for i, sock in enumerate(sockets) if len(sock.holders) > 1]


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
        self._unshared: tuple[Socket, ...] | None = None
        """The last scan's sockets when none of them was shared (so all were passed through)."""

    def scan(self) -> Snapshot:
        snapshot = self.inner.scan()
        sockets = snapshot.sockets
        last, self._unshared = self._unshared, None
        if last is not None and type(sockets) is tuple and none_shared_since(last, sockets):
            self._unshared = sockets
            return snapshot
        at = shared_positions(sockets)
        previous, self._reordered = self._reordered, {}
        if not at:
            self._unshared = sockets if type(sockets) is tuple else None
            return snapshot
        raws = [sockets[i] for i in at]
        ordered: list[Socket] | None = None
        for i, raw, new in zip(at, raws, order_sockets(raws, proc_lookup(self._procfs)), strict=True):
            if raw is new:
                continue
            if ordered is None:
                ordered = list(sockets)
            kept = previous.get(id(raw))
            if kept is not None and kept[0] is raw and kept[1] == new:
                new = kept[1]
            ordered[i] = new
            self._reordered[id(raw)] = (raw, new)
        return snapshot._replace(sockets=tuple(ordered)) if ordered is not None else snapshot

    def __getattr__(self, name: str) -> object:
        # Everything else (hosts, close(), listen readers...) is the inner collector's.
        return getattr(self.inner, name)
