"""Traffic rates between two scans: per connection (keyed by the kernel's socket cookie) and per process.

A connection is the same from one scan to the next only if its cookie is: the kernel never gives
two sockets the same cookie while the host is up, so a new connection on a reused address pair
never inherits the old one's byte counters. A connection first seen in the later scan opened in
between, so every byte it counts moved in the interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress
from operator import attrgetter
from typing import NamedTuple

from portmon.model import Snapshot, Socket
from portmon.sameobjects import changed_objects, changed_objects_plain


class Sample(NamedTuple):
    """A snapshot and when it was taken, by whatever clock the caller keeps (seconds)."""

    snapshot: Snapshot
    at: float


class ConnectionRate(NamedTuple):
    """One connection's traffic over an interval, in bytes per second."""

    socket: Socket
    """The connection as the later scan saw it."""
    tx_bps: float
    rx_bps: float


class ProcessRate(NamedTuple):
    """One process's traffic: the sum over the connections it is the primary holder of."""

    pid: int
    process: str | None
    user: str | None
    tx_bps: float
    rx_bps: float
    connections: int


def connection_rates(before: Sample, after: Sample) -> list[ConnectionRate]:
    """The TX and RX rate of every connection in ``after`` that has byte counters, keyed by cookie.

    Sockets without a cookie or counters (UDP, TIME_WAIT, the psutil collector) are left out. A
    counter that went down (which the kernel never does for one cookie) gives no rate.
    """
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError("the later sample must be taken after the earlier one")
    sent_before: dict[int, tuple[int, int]] = {}
    for sock in before.snapshot.sockets:
        if sock.cookie is not None and sock.bytes_sent is not None and sock.bytes_received is not None:
            sent_before[sock.cookie] = (sock.bytes_sent, sock.bytes_received)
    out: list[ConnectionRate] = []
    for sock in after.snapshot.sockets:
        if sock.cookie is None or sock.bytes_sent is None or sock.bytes_received is None:
            continue
        sent, received = sent_before.get(sock.cookie, (0, 0))
        tx = sock.bytes_sent - sent
        rx = sock.bytes_received - received
        if tx < 0 or rx < 0:
            continue
        out.append(ConnectionRate(sock, tx / seconds, rx / seconds))
    return out


_COOKIE = attrgetter("cookie")


def moving_rates(before: Sample, after: Sample) -> list[ConnectionRate]:
    """The connections of ``connection_rates(before, after)`` that moved bytes (a TX or RX rate above 0).

    Speed trick: a collector that hands back the very ``Socket`` object for a socket whose numbers
    did not change (the procfs one does) makes most sockets of ``after`` objects of ``before``, and
    such a socket moved nothing. So only the sockets new to ``after`` are looked at, and for their
    counters before only the sockets of ``before`` gone from ``after``: an old socket that is still
    an object of ``after`` cannot share a cookie with a new one. Both come from
    ``changed_objects``, which the live table's change marks already asked of this pair, so the
    rates cost no pass over every socket. The answer is ``[r for r in connection_rates(before,
    after) if r.tx_bps or r.rx_bps]`` in the same order whenever no two sockets with counters of
    one scan share a cookie (the kernel never gives two sockets one cookie); tests/test_rates.py
    compares them. Saving on issue 18's load (31,500 sockets, 20,400 with counters, two scans a
    second apart): 8.3 ms of CPU instead of 31.4 ms with a pass of its own over both scans
    (``bench/bench_collect_tricks.py --load issue18 --only-scan``, medians of 30), and 0.1 ms
    instead of ~10 ms once the pair's split is shared (``bench/bench_step.py``, the traffic stage).
    """
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError("the later sample must be taken after the earlier one")
    old, new = before.snapshot.sockets, after.snapshot.sockets
    if type(old) is tuple and type(new) is tuple:
        gone, fresh = changed_objects(old, new)
    else:  # a list could have changed in place since it was last seen: no shared answer
        gone, fresh = changed_objects_plain(old, new)
    wanted = {s.cookie for s in fresh if s.cookie is not None and s.bytes_sent is not None}
    if not wanted:
        return []
    sent_before: dict[int, tuple[int, int]] = {}
    for sock in compress(gone, map(wanted.__contains__, map(_COOKIE, gone))):
        if sock.cookie is not None and sock.bytes_sent is not None and sock.bytes_received is not None:
            sent_before[sock.cookie] = (sock.bytes_sent, sock.bytes_received)
    out: list[ConnectionRate] = []
    for sock in fresh:
        if sock.cookie is None or sock.bytes_sent is None or sock.bytes_received is None:
            continue
        sent, received = sent_before.get(sock.cookie, (0, 0))
        tx = sock.bytes_sent - sent
        rx = sock.bytes_received - received
        if tx < 0 or rx < 0 or not (tx or rx):
            continue
        out.append(ConnectionRate(sock, tx / seconds, rx / seconds))
    return out


def process_rates(rates: Iterable[ConnectionRate]) -> list[ProcessRate]:
    """Per process, the sum of its connections' rates; a shared socket counts for its primary holder only."""
    totals: dict[int, list[float]] = {}
    names: dict[int, tuple[str | None, str | None]] = {}
    for rate in rates:
        holders = rate.socket.holders
        if not holders:
            continue
        h = holders[0]
        total = totals.get(h.pid)
        if total is None:
            total = totals[h.pid] = [0.0, 0.0, 0]
            names[h.pid] = (h.name, h.user)
        total[0] += rate.tx_bps
        total[1] += rate.rx_bps
        total[2] += 1
    return [
        ProcessRate(pid, names[pid][0], names[pid][1], tx, rx, int(n)) for pid, (tx, rx, n) in totals.items()
    ]


def busiest(rates: Sequence[ConnectionRate], limit: int | None = None) -> list[ConnectionRate]:
    """Connections by total rate, busiest first (ties by local port), at most ``limit``."""
    ordered = sorted(rates, key=lambda r: (-(r.tx_bps + r.rx_bps), r.socket.local_port, r.socket.cookie or 0))
    return ordered if limit is None else ordered[:limit]


def busiest_processes(rates: Sequence[ProcessRate], limit: int | None = None) -> list[ProcessRate]:
    """Processes by total rate, busiest first (ties by pid), at most ``limit``."""
    ordered = sorted(rates, key=lambda r: (-(r.tx_bps + r.rx_bps), r.pid))
    return ordered if limit is None else ordered[:limit]
