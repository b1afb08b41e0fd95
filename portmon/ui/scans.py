"""Where the monitor's scans come from: the poller thread while polling, else one scan on the event loop on request."""

from __future__ import annotations

import gc
from collections.abc import Callable

from textual.message import Message

from portmon.collect.base import Collector, guarded_scan
from portmon.query.diff import Event
from portmon.query.events import EventStream
from portmon.ui.poller import Poller
from portmon.ui.traffic import ListenReader
from portmon.ui.view import Pipeline, Update, ViewSpec


class ScanCompleted(Message):
    """A scan finished (posted from the poller thread; carries only immutable values)."""

    def __init__(self, update: Update, events: tuple[Event, ...] = ()) -> None:
        super().__init__()
        self.update = update
        self.events = events
        """What changed since the previous good scan (diffed on the poller thread)."""


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the cyclic garbage collector's sight (``gc.freeze``).

    Called once, after the first scan: the app, Textual and the first snapshot's sockets (most of which
    live on, scan after scan) are then not walked by each full collection, which otherwise costs
    35-90 ms per full collection at 10,000 sockets (``python bench/bench_ui_tricks.py``; 110-140 ms
    in a long live session). Refcounting still frees them when they go, and garbage made later is
    collected as before (tests/test_ui_tricks.py).
    """
    gc.freeze()


class ScanSource:
    """Scans for the screen: ``post`` gets a :class:`ScanCompleted` from the poller thread while ``poll``;
    without polling, :meth:`start` and :meth:`scan_now` scan at once and hand the result to ``apply``.

    Either way the changes since the previous scan are diffed by whoever scans, off the event loop
    when polling.
    """

    def __init__(
        self,
        collector: Collector,
        spec: Callable[[], ViewSpec],
        *,
        poll: bool,
        interval: float,
        clock: Callable[[], float],
        post: Callable[[Message], object],
        apply: Callable[[Update, tuple[Event, ...]], None],
        listen: ListenReader | None = None,
    ) -> None:
        self._collector = collector
        self._spec = spec
        self._interval = interval
        self._clock = clock
        self._apply = apply
        self._pipeline = Pipeline(listen)
        # Fed by whoever scans: the poller thread while polling, else the event loop (never both).
        self.events = EventStream()
        self.poller: Poller | None = None
        """The poller thread (None without polling)."""
        if poll:
            stream = self.events
            self.poller = Poller(
                collector,
                # Called on the poller thread: the events are diffed there too, off the event loop.
                lambda update: post(ScanCompleted(update, stream.feed(update.snapshot))),
                spec,
                interval=interval,
                clock=clock,
                listen=listen,
            )

    def start(self) -> None:
        """Start polling, or scan once."""
        if self.poller is not None:
            self.poller.start()
        else:
            self.scan_now()

    def scan_now(self) -> None:
        """Scan at once (also while paused): on the poller thread, or here without polling."""
        if self.poller is not None:
            self.poller.scan_now()
            return
        # Only with polling off (tests, screenshots), where scans are fake and instant.
        snapshot = guarded_scan(self._collector, self._pipeline.last_good)
        update = self._pipeline.step(snapshot, self._spec(), self._clock(), self._interval)
        self._apply(update, self.events.feed(snapshot))

    def pause(self, paused: bool) -> None:
        """Stop or resume the poller's scans (scan_now still scans)."""
        if self.poller is not None:
            self.poller.paused = paused

    def stop(self) -> None:
        """End the poller thread (never waits for a scan in progress)."""
        if self.poller is not None:
            self.poller.stop()
