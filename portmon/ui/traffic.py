"""Traffic between the last two scans for the live monitor: rates per connection and per process, machine
totals, listen-queue counters and a short per-process rate history.

Plain values, no Textual: the poller thread computes them beside the view (off the event loop) and the
screen only shows them. The rates themselves are :mod:`portmon.query.rates`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from portmon.collect.netstat import ListenCounters
from portmon.model import Snapshot, Socket
from portmon.query.rates import ProcessRate, Sample, moving_rates, process_rates

TX_COLUMN = "tx_bps"
RX_COLUMN = "rx_bps"
RATE_COLUMNS: tuple[str, ...] = (TX_COLUMN, RX_COLUMN)
"""The table's rate columns (sortable like the others; not in ``portmon.query.sorting.COLUMNS``)."""
RATE_TITLES = {TX_COLUMN: "TX/s", RX_COLUMN: "RX/s"}

HISTORY_SCANS = 60
"""Scans of per-process rate history kept for the detail pane's sparkline."""

ListenReader = Callable[[], "ListenCounters | None"]

IDLE = (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class Traffic:
    """What moved between the last two good scans. Immutable: it crosses from the poller thread as it is."""

    seconds: float
    """The interval the rates are over (0 on the first scan: no rates yet)."""
    by_cookie: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    """(TX, RX) bytes per second per connection that moved bytes, by socket cookie (idle ones: see :meth:`rate`)."""
    processes: Mapping[int, ProcessRate] = field(default_factory=dict)
    """Per process (primary holder) that moved bytes, the sum of its connections' rates (``connections``
    counts those that moved bytes)."""
    tx_bps: float = 0.0
    rx_bps: float = 0.0
    """Machine totals: every connection with counters."""
    counters: bool = False
    """True when the scan had byte counters at all (not the psutil collector, not a fake without them)."""
    listen: ListenCounters | None = None
    """ListenOverflows and ListenDrops since the previous scan (host-wide); None where unknown."""
    history: tuple[Mapping[int, float], ...] = ()
    """Per scan, oldest first, each process's TX+RX rate (processes without traffic left out)."""

    def rate(self, sock: Socket) -> tuple[float, float] | None:
        """``sock``'s (TX, RX) rate, or None when it has none (no cookie, no counters, first scan)."""
        if sock.cookie is None or sock.bytes_sent is None or sock.bytes_received is None or self.seconds <= 0:
            return None
        # Only connections that moved bytes are kept: at 10,000 mostly idle sockets that spares
        # building and keeping thousands of zero entries per scan.
        return self.by_cookie.get(sock.cookie, IDLE)

    def series(self, pid: int) -> list[float]:
        """The process's TX+RX rate over the kept scans, oldest first (0 where it moved nothing)."""
        return [scan.get(pid, 0.0) for scan in self.history]


class TrafficTracker:
    """Turns each good scan into a :class:`Traffic` against the one before (owned by whoever scans).

    Sample times are the snapshots' own ``taken_at``; ``listen`` reads the host's listen counters
    (injected: None reads nothing).
    """

    def __init__(self, listen: ListenReader | None = None, history: int = HISTORY_SCANS) -> None:
        self._listen = listen
        self._last: Sample | None = None
        self._last_listen: ListenCounters | None = None
        self._history: deque[Mapping[int, float]] = deque(maxlen=history)
        self.traffic: Traffic | None = None
        """The latest traffic (kept through failed scans)."""

    def step(self, snapshot: Snapshot) -> Traffic | None:
        """Account for one scan; a failed scan changes nothing."""
        if snapshot.error is not None or (self._last is not None and snapshot.taken_at <= self._last.at):
            # A failed scan, or the same scan again (a fake repeating its last step): nothing new.
            return self.traffic
        listen_now = self._listen() if self._listen is not None else None
        listen = None
        if listen_now is not None and self._last_listen is not None:
            listen = listen_now.since(self._last_listen)
        self._last_listen = listen_now
        sample = Sample(snapshot, snapshot.taken_at)
        before, self._last = self._last, sample
        # Stops at the first socket with counters: TCP connections come early in a scan.
        counters = any(s.bytes_sent is not None for s in snapshot.sockets)
        if before is None:
            self.traffic = Traffic(0.0, counters=counters, listen=listen, history=tuple(self._history))
            return self.traffic
        seconds = sample.at - before.at
        rates = moving_rates(before, sample)
        by_cookie = {r.socket.cookie: (r.tx_bps, r.rx_bps) for r in rates if r.socket.cookie is not None}
        procs = {p.pid: p for p in process_rates(rates)}
        self._history.append({pid: p.tx_bps + p.rx_bps for pid, p in procs.items() if p.tx_bps or p.rx_bps})
        self.traffic = Traffic(
            seconds,
            by_cookie,
            procs,
            sum(r.tx_bps for r in rates),
            sum(r.rx_bps for r in rates),
            counters,
            listen,
            tuple(self._history),
        )
        return self.traffic


def process_totals(sockets: Iterable[Socket], pid: int) -> tuple[int, int] | None:
    """Bytes sent and received over the connections ``pid`` is the primary holder of (None: none has counters)."""
    sent = received = 0
    found = False
    for sock in sockets:
        holders = sock.holders
        if holders and holders[0].pid == pid and sock.bytes_sent is not None and sock.bytes_received is not None:
            sent += sock.bytes_sent
            received += sock.bytes_received
            found = True
    return (sent, received) if found else None


def sort_by_rate(rows: Sequence[Socket], traffic: Traffic | None, column: str, descending: bool) -> list[Socket]:
    """``rows`` by their TX or RX rate (``column``), sockets without a rate last either way.

    Stable: ``rows`` come sorted by port, so equal rates keep that order and rows do not jump.
    """
    index = 0 if column == TX_COLUMN else 1

    def key(sock: Socket) -> tuple[bool, float]:
        rate = traffic.rate(sock) if traffic is not None else None
        if rate is None:
            return (True, 0.0)
        return (False, -rate[index] if descending else rate[index])

    return sorted(rows, key=key)


def rate_text(bps: float | None) -> str:
    """A rate for a narrow cell: "0", "512 B", "12.3 kB", "1.2 MB" (per second, SI units); "" when unknown."""
    if bps is None:
        return ""
    if bps < 0.5:
        return "0"
    value = bps
    for unit in ("B", "kB", "MB", "GB"):
        if value < 999.95 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{bps:.0f} B"  # not reached


def bytes_text(n: int) -> str:
    """A byte count: "512 B", "1.5 kB", "3.2 GB" (SI units)."""
    return rate_text(float(n)) if n else "0 B"
