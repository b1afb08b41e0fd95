"""The poller: one daemon thread that scans, derives the next view and hands it over, never two scans at once.

Textual's thread workers run in asyncio's default executor, which is joined when the app exits, so a
scan stuck for seconds would hold up quitting. This thread is a daemon and is never joined: quitting
sets a flag and the app exits at once, whatever the scan is doing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from portmon.collect.base import Collector, guarded_scan
from portmon.model import Snapshot
from portmon.ui.traffic import ListenReader
from portmon.ui.view import Pipeline, Update, ViewSpec

SLOW_SCAN_SHARE = 3.0
"""A scan may take at most a third of the interval; beyond that the interval grows to 3x the scan."""

POLLER_CPU_SHARE = 0.2
"""The poller thread's CPU (scan and derive) may use at most a fifth of a core; beyond that the interval grows.

The event loop's part of a refresh (painting, status) comes on top: at ~125,000 sockets a refresh cost
~0.8 s of CPU in all, so at the 1.9 s interval the scan time alone chose the monitor used 53 % of a
core (``python bench/bench_scale.py --only-big``). Measured on the poller thread only, so work on
other threads (keys, a test's own) never slows the refreshes down."""


CPU_PACED_MAX = 3.0
"""The longest interval the CPU rule alone chooses (a live view refreshed less often stops feeling live);
a slow scan may still lengthen it further."""


CPU_PACED_STEP = 1.5
"""The CPU rule acts only when it would lengthen the interval by half or more: a refresh near the line
(issue 18's 31,000-socket load: 0.15-0.26 s on the poller thread at 1 s) keeps the interval asked for
instead of wavering between 1 and 1.3 s."""


def paced_interval(asked: float, scan_seconds: float, poller_cpu_seconds: float) -> float:
    """The interval in effect: the one asked for, longer when a scan is slow or a refresh costs much CPU."""
    by_cpu = min(CPU_PACED_MAX, poller_cpu_seconds / POLLER_CPU_SHARE)
    if by_cpu < CPU_PACED_STEP * asked:
        by_cpu = 0.0
    return max(asked, SLOW_SCAN_SHARE * scan_seconds, by_cpu)


class ScanAhead:
    """A collector whose first scan starts at once, on a thread of its own, and is handed over when asked for.

    Speed trick: ``portmon.cli.main.run_live`` wraps the collector in it before importing the UI, so the
    first scan (reading the tables, the cold walk's answer, building every socket) runs while Textual
    loads and starts, rather than after the screen mounts; the poller's first :meth:`scan` then only
    waits for what is left. The thread shares the GIL with the imports, so the saving is what they
    overlap (syscalls, netlink, waiting for the cold walk's child). Measured with the cold walk for
    the live monitor (``portmon.cli.launch``) on issue 18's load (31,000 sockets; two more such loads
    on the 2-core host), ``python bench/bench_startup.py --runs 3``, process start to the first row
    painted: median 1458 ms (1413-1557) against 1772 (1411-2538), CPU spent by then 1220 against 1430 ms.
    Later scans, and everything else, are the wrapped collector's. The plain version scans when first
    asked; tests/test_ui_tricks.py checks both give the same snapshots, a failure included.
    """

    def __init__(self, collector: Collector) -> None:
        self._inner = collector
        self.name = collector.name
        self._first: Snapshot | None = None
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._scan_first, name="portmon-first-scan", daemon=True
        )
        self._thread.start()

    def _scan_first(self) -> None:
        try:
            self._first = self._inner.scan()
        except BaseException as exc:  # noqa: BLE001 - re-raised by scan() on the thread that asks
            self._failed = exc

    def scan(self) -> Snapshot:
        """The scan started at construction (waiting for it), the first time; a new scan after that."""
        thread, self._thread = self._thread, None
        if thread is None:
            return self._inner.scan()
        thread.join()
        first, failed = self._first, self._failed
        self._first = self._failed = None
        if failed is not None:
            raise failed
        assert first is not None
        return first

    def __getattr__(self, name: str) -> Any:
        # Everything else (netns_note, close(), a remote collector's sessions...) is the wrapped collector's.
        return getattr(self._inner, name)


class Poller:
    """Scan with ``collector`` every ``interval`` seconds on a daemon thread and pass each Update to ``deliver``.

    ``deliver`` is called on the poller thread: give it something thread-safe (``post_message``).
    """

    def __init__(
        self,
        collector: Collector,
        deliver: Callable[[Update], object],
        spec: Callable[[], ViewSpec],
        *,
        interval: float,
        clock: Callable[[], float] = time.time,
        listen: ListenReader | None = None,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self._collector = collector
        self._deliver = deliver
        self._spec = spec
        self._clock = clock
        self.interval = interval
        """The interval the user asked for."""
        self.pipeline = Pipeline(listen)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused = False
        self._force = False
        self._thread: threading.Thread | None = None
        self._cpu_clock = cpu_clock
        self._last_cpu = 0.0
        """The poller thread's CPU seconds for the last refresh (scan and derive)."""
        self.scanning = False
        """True while a scan runs (for tests and the status line)."""

    def start(self) -> None:
        """Start the thread (the first scan begins at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="portmon-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; never waits for a scan in progress."""
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def scan_now(self) -> None:
        """Scan at once (also while paused), instead of waiting out the interval."""
        self._force = True
        self._wake.set()

    @property
    def paused(self) -> bool:
        """While paused, no scans run except those asked for with :meth:`scan_now`."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if not value:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused and not self._force:
                self._wake.wait()
                self._wake.clear()
                continue
            self._force = False
            started = time.perf_counter()
            cpu_started = self._cpu_clock()
            self.scanning = True
            try:
                snapshot = guarded_scan(self._collector, self.pipeline.last_good)
            finally:
                self.scanning = False
            if self._stop.is_set():
                return
            elapsed = time.perf_counter() - started
            interval = paced_interval(self.interval, elapsed, self._last_cpu)
            update = self.pipeline.step(snapshot, self._spec(), self._clock(), interval)
            self._last_cpu = self._cpu_clock() - cpu_started
            self._deliver(update)
            spent = time.perf_counter() - started
            self._wake.wait(max(0.0, interval - spent))
            self._wake.clear()
