"""The poller: one daemon thread that scans, derives the next view and hands it over, never two scans at once.

Textual's thread workers run in asyncio's default executor, which is joined when the app exits, so a
scan stuck for seconds would hold up quitting. This thread is a daemon and is never joined: quitting
sets a flag and the app exits at once, whatever the scan is doing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from portmon.collect.base import Collector, guarded_scan
from portmon.ui.traffic import ListenReader
from portmon.ui.view import Pipeline, Update, ViewSpec

SLOW_SCAN_SHARE = 3.0
"""A scan may take at most a third of the interval; beyond that the interval grows to 3x the scan."""


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
            self.scanning = True
            try:
                snapshot = guarded_scan(self._collector, self.pipeline.last_good)
            finally:
                self.scanning = False
            if self._stop.is_set():
                return
            elapsed = time.perf_counter() - started
            interval = max(self.interval, SLOW_SCAN_SHARE * elapsed)
            update = self.pipeline.step(snapshot, self._spec(), self._clock(), interval)
            self._deliver(update)
            spent = time.perf_counter() - started
            self._wake.wait(max(0.0, interval - spent))
            self._wake.clear()
