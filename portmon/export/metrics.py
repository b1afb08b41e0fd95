"""Prometheus metrics of the latest snapshot: one poller thread scans, a custom collector serves what it saw.

A scrape never scans: ``SnapshotMetrics.collect`` reads the poller's latest snapshot and its
counters, so a scrape storm costs formatting only (the metric families are built once per
poll and reused by every scrape until the next one). Labels are bounded: no pid, command
line or remote port (each would make a new series per connection or restart).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from operator import attrgetter

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from portmon.collect.base import Collector, guarded_scan
from portmon.model import LISTEN, TCP_STATES, Snapshot, Socket
from portmon.ownership.view import shared_ownership
from portmon.query.diff import CLOSE, OPEN, STATE
from portmon.query.events import EventStream

SCAN_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the scan-duration histogram: a scan takes milliseconds to a second."""

EVENT_KINDS = (OPEN, CLOSE, STATE)
UDP_STATE = "none"
"""The ``state`` label of UDP sockets, which have no TCP state (the filter language's ``state:none``)."""

_HOST = attrgetter("host")
_PROTO = attrgetter("proto")
_STATE = attrgetter("state")

INFO_LABELS = ("host", "proto", "family", "address", "port", "service", "process", "user", "manager")
"""Labels of ``portmon_listening_socket_info``: ``host`` is empty for this machine (so absent in PromQL);
``manager`` is the main holder's innermost manager as ``kind name`` (``systemd nginx.service``), empty when
nothing manages it or the socket is on another host."""


def _manager_label(sock: Socket) -> str:
    """``kind name`` of the socket's innermost manager on this machine (no pid: a bounded label), or ""."""
    if sock.host is not None or not sock.holders:
        return ""
    managers = shared_ownership().socket_managers(sock)
    return f"{managers[0].kind} {managers[0].name}" if managers else ""


class MetricsState:
    """What the poller saw: the latest snapshot and the counters since start. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.scans = 0
        self.scan_errors = 0
        self.scan_seconds_sum = 0.0
        self.bucket_counts = [0] * len(SCAN_BUCKETS)
        self.events: Counter[str] = Counter(dict.fromkeys(EVENT_KINDS, 0))
        self.generation = 0
        """Moves on with every poll: scrapes of one generation share their metric families."""

    def record(self, snapshot: Snapshot, events: Sequence[str]) -> None:
        """One poll's result: the snapshot, its duration, whether it failed, and its event kinds."""
        seconds = snapshot.scan_ms / 1000.0
        with self._lock:
            self.snapshot = snapshot
            self.scans += 1
            self.scan_seconds_sum += seconds
            for i, bound in enumerate(SCAN_BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[i] += 1
            if snapshot.error is not None:
                self.scan_errors += 1
            self.events.update(events)
            self.generation += 1

    def families(self) -> list[Metric]:
        """The metric families of the current state (build under the lock: counters stay consistent)."""
        with self._lock:
            return build_families(self)


def build_families(state: MetricsState) -> list[Metric]:
    """Every portmon metric family for ``state`` (its lock held by the caller)."""
    snap = state.snapshot
    info = GaugeMetricFamily(
        "portmon_listening_socket_info",
        "One series per listening socket (TCP LISTEN, bound UDP), value 1.",
        labels=INFO_LABELS,
    )
    counts = GaugeMetricFamily(
        "portmon_sockets", "Sockets by protocol and TCP state.", labels=("host", "proto", "state")
    )
    hidden = GaugeMetricFamily(
        "portmon_sockets_hidden_owner", "Sockets whose owning process portmon may not see (run as root to see them)."
    )
    where_labels = ("host", "proto", "family", "address", "port")
    accept_queue = GaugeMetricFamily(
        "portmon_listener_accept_queue", "Connections waiting for accept() on a listener.", labels=where_labels
    )
    backlog = GaugeMetricFamily(
        "portmon_listener_backlog", "The most connections that may wait on a listener.", labels=where_labels
    )
    if snap is not None:
        socks = snap.sockets
        # Counted in C (zip/map/Counter): a scrape after a poll walks every socket once, ~3x faster.
        by_state: Counter[tuple[str | None, str, str | None]] = Counter(
            zip(map(_HOST, socks), map(_PROTO, socks), map(_STATE, socks), strict=True)
        )
        seen: set[tuple[str, ...]] = set()
        queues: Counter[tuple[str, ...]] = Counter()
        backlogs: Counter[tuple[str, ...]] = Counter()
        for s in socks:
            if not (s.state == LISTEN or (s.proto == "udp" and s.remote_port is None)):
                continue
            if s.accept_queue is not None or s.backlog is not None:  # where the collector reads them
                where: tuple[str, ...] = (s.host or "", s.proto, str(s.family), s.local_addr, str(s.local_port))
                queues[where] += s.accept_queue or 0  # an SO_REUSEPORT group: its listeners summed
                backlogs[where] += s.backlog or 0
            labels = (
                s.host or "",
                s.proto,
                str(s.family),
                s.local_addr,
                str(s.local_port),
                s.local_service or "",
                s.process or "",
                s.user or "",
                _manager_label(s),
            )
            if labels not in seen:  # SO_REUSEPORT groups are one series
                seen.add(labels)
                info.add_metric(labels, 1)
        totals: Counter[tuple[str, str, str]] = Counter()
        for (host, proto, tcp_state), n in by_state.items():
            totals[(host or "", proto, (tcp_state or UDP_STATE).lower())] += n
        for host in sorted({h for h, _, _ in totals} | {""}):
            for proto, states in (("tcp", [st.lower() for st in TCP_STATES]), ("udp", [UDP_STATE])):
                for st in states:
                    counts.add_metric((host, proto, st), totals.get((host, proto, st), 0))
        hidden.add_metric((), snap.hidden_owners)
        for labels_of, n in queues.items():
            accept_queue.add_metric(labels_of, n)
        for labels_of, n in backlogs.items():
            backlog.add_metric(labels_of, n)
    duration = HistogramMetricFamily("portmon_scan_duration_seconds", "How long each socket scan took.")
    cumulative = list(state.bucket_counts)
    buckets = [(_bound(b), float(c)) for b, c in zip(SCAN_BUCKETS, cumulative, strict=True)]
    buckets.append(("+Inf", float(state.scans)))
    duration.add_metric((), buckets, state.scan_seconds_sum)
    errors = CounterMetricFamily("portmon_scan_errors", "Scans that failed (the last good sockets are served).")
    errors.add_metric((), state.scan_errors)
    events = CounterMetricFamily(
        "portmon_events", "Socket events seen between scans: open, close, state.", labels=("event",)
    )
    for kind in EVENT_KINDS:
        events.add_metric((kind,), state.events[kind])
    return [info, counts, hidden, accept_queue, backlog, duration, errors, events]


def _bound(value: float) -> str:
    return repr(float(value))


class SnapshotMetrics(PromCollector):
    """The prometheus_client collector: the poller's latest state, families cached per poll."""

    def __init__(self, state: MetricsState) -> None:
        self._state = state
        self._cache: tuple[int, list[Metric]] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """The families of the latest poll (built on the first scrape after it, then reused)."""
        with self._lock:
            generation = self._state.generation
            cache = self._cache
            if cache is None or cache[0] != generation:
                cache = self._cache = (generation, self._state.families())
        yield from cache[1]


class Poller:
    """The one thread that scans: every ``interval`` seconds, never overlapping, until stopped."""

    def __init__(
        self,
        collector: Collector,
        state: MetricsState,
        interval: float,
        on_poll: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self._collector = collector
        self._state = state
        self._interval = interval
        self._on_poll = on_poll
        self._stop = threading.Event()
        self._stream = EventStream()
        self._last_good: Snapshot | None = None
        self._thread: threading.Thread | None = None

    def poll_once(self) -> Snapshot:
        """Scan, record the snapshot and its events, and return it."""
        snap = guarded_scan(self._collector, self._last_good)
        if snap.error is None:
            self._last_good = snap
        kinds = [event.kind for event in self._stream.feed(snap)]
        self._state.record(snap, kinds)
        if self._on_poll is not None:
            self._on_poll(snap)
        return snap

    def run(self) -> None:
        """Poll until ``stop()``: the next poll starts ``interval`` after the last one started."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="portmon-metrics-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread after its current poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
