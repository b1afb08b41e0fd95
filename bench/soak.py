"""Soak benchmark of the live monitor: many refreshes with churn; memory, store sizes and UI time must stay flat.

Runs the real app headless (160x50) with its poller thread, the detail pane and the event log open, the
cursor moving once per refresh (now and then to the end and back), and reports, for each tenth of the run:

- RSS: resident memory of the process (app, poller and data) at the end of the window;
- UI CPU: CPU time of the UI thread (the event loop) from one refresh to the next, median and p95:
  applying the new rows, painting the table, detail pane and event log, the soak's key press (with
  the detail pane open a new selection is described and laid out), the highlight ticks and the
  garbage collector's passes in between. It is the UI's whole cost per refresh interval, for
  spotting growth over a run; the cost of a refresh alone is ``bench_tui.py --panes``'s "UI CPU
  to frame";
- apply: wall time of the screen's refresh handler alone, median;
- derive: filter, sort and diff on the poller thread, median; scan: the collector's own scan time;
- stores: rows in the table, rendered-row cache, event log, count history, change marks, process
  details and the filter caches, against their bounds.

At the end it asks the app to quit while a scan hangs and reports how long quitting took.

    python bench/soak.py                              # 10,000 synthetic sockets, 1 % churn, 1,000 refreshes
    python bench/soak.py --sockets 10000 --refreshes 3000 --interval 0.02
    python bench/soak.py --real --minutes 10          # real loopback sockets (bench/loopback.py), 1 s refresh

Targets: RSS growth in the second half of the run under 5 MB (or 5 %), as the caches are full by then;
every store within its bound; UI CPU per refresh in the last tenth within 1.5x of the second tenth's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402

from portmon.collect.fake import synthetic_snapshot  # noqa: E402
from portmon.model import Snapshot  # noqa: E402

SIZE = (160, 50)
WINDOWS = 10


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


class ChurningCollector:
    """Synthetic sockets, a fresh 1 % churn on every scan (made on the poller thread, like a real scan)."""

    name = "fake"

    def __init__(self, sockets: int, churn: float) -> None:
        self._last = synthetic_snapshot(sockets, seed=0)
        self._churn = churn
        self._n = 0
        self.hang = threading.Event()
        """Set it to make the next scan hang until ``release`` is set (for the quit measurement)."""
        self.release = threading.Event()
        self.hanging = threading.Event()

    def scan(self) -> Snapshot:
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(120)
        started = time.perf_counter()
        self._n += 1
        snap = synthetic_snapshot(0, seed=self._n, churn=self._churn, base=self._last)
        self._last = snap
        return Snapshot(
            sockets=snap.sockets, taken_at=time.time(), scan_ms=(time.perf_counter() - started) * 1000, collector="fake"
        )


class HangableCollector:
    """Wraps a real collector so that the quit measurement can make one scan hang."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.hang = threading.Event()
        self.release = threading.Event()
        self.hanging = threading.Event()

    def scan(self) -> Snapshot:
        if self.hang.is_set():
            self.hanging.set()
            self.release.wait(120)
        return self.inner.scan()


class GcPauses:
    """Durations of the garbage collector's passes (they run on whichever thread allocates: mostly the UI's)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)

    def take(self) -> list[float]:
        out, self.pauses = self.pauses, []
        return out


@dataclass
class Sample:
    refresh: int
    ui_cpu_ms: float
    apply_ms: float
    scan_ms: float
    derive_ms: float


@dataclass
class Window:
    first: int
    last: int
    rss_mb: float
    samples: list[Sample]
    gc_ms: list[float] = field(default_factory=list)
    stores: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def _stores(screen: Any) -> dict[str, tuple[int, int | None]]:
    """Size and bound of every store that lives as long as the app."""
    from portmon.query import filters
    from portmon.ui import sockettable

    table = screen.table
    snapshot_rows = len(screen.snapshot.sockets) if screen.snapshot is not None else 0
    marks = screen.marks
    out: dict[str, tuple[int, int | None]] = {
        # The table holds the snapshot's rows plus closed rows kept for a few seconds.
        "table rows": (len(table.rows), None),
        "snapshot rows": (snapshot_rows, None),
        "row cache": (len(table._cache), getattr(sockettable, "ROW_CACHE_LIMIT", 4096) + 1),
        "process details": (len(screen.detail_feed.details), 256 + 1),
        "count history": (len(screen.history), 600),
        "marks (new+changed+closed)": (len(marks.opened) + len(marks.changed) + len(marks.closed), None),
        "filter holder cache": (len(filters._holder_text), filters._HOLDER_LIMIT + 1),
        "filter address cache": (len(filters._addr_values), filters._ADDR_CACHE_LIMIT + 1),
    }
    events = getattr(screen, "events", None)
    if events is not None and hasattr(events, "limit"):
        out["event log"] = (len(events), events.limit)
        panes = screen.query("#events")
        cells = getattr(panes.first(), "_cells", None) if panes else None
        if isinstance(cells, dict):
            # Pruned to the rows shown once it holds twice as many.
            out["event log row cache"] = (len(cells), 2 * max(events.limit, 256) + 1)
    collector = getattr(screen.collector, "inner", screen.collector)
    # The procfs collector's caches live in its parts: the owner index and the socket builder.
    parts = {"procs": "_owners.procs", "where": "_owners.where", "unowned": "_owners.unowned",
             "pending": "_owners.pending", "holders": "_sockets._holders", "svc": "_sockets._svc"}
    for label, path in parts.items():
        value: Any = collector
        for name in path.split("."):
            value = getattr(value, name, None)
        if isinstance(value, (dict, set)):
            out[f"collector {label}"] = (len(value), None)
    return out


async def _soak(collector: Any, refreshes: int, interval: float) -> dict[str, Any]:
    from textual import events as tevents

    from portmon.ui import monitor as monitor_module
    from portmon.ui.app import PortmonApp
    from portmon.ui.view import Pipeline

    samples: list[Sample] = []
    state: dict[str, Any] = {"cpu": None, "derive": []}
    applied = asyncio.Event()
    """Set on every refresh: the soak's loop waits on it rather than polling the event loop it measures."""
    original_apply = monitor_module.MonitorScreen._apply
    original_step = Pipeline.step

    def timed_apply(self: Any, update: Any, *args: Any, **kwargs: Any) -> None:
        cpu = time.thread_time()
        started = time.perf_counter()
        original_apply(self, update, *args, **kwargs)
        apply_ms = (time.perf_counter() - started) * 1000
        previous = state["cpu"]
        state["cpu"] = cpu
        derive = state["derive"][-1] if state["derive"] else float("nan")
        if previous is not None:
            # Everything the UI thread did since the last refresh began: painting, keys, ticks and this apply.
            samples.append(Sample(self.scans, (cpu - previous) * 1000, apply_ms, update.snapshot.scan_ms, derive))
        applied.set()

    def timed_step(self: Any, *args: Any) -> Any:
        started = time.perf_counter()
        result = original_step(self, *args)
        state["derive"].append((time.perf_counter() - started) * 1000)
        del state["derive"][:-4]
        return result

    monitor_module.MonitorScreen._apply = timed_apply  # type: ignore[method-assign]
    Pipeline.step = timed_step  # type: ignore[method-assign,assignment]
    process = psutil.Process()
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    windows: list[Window] = []
    result: dict[str, Any] = {}
    try:
        app = PortmonApp(collector, interval=interval)
        async with app.run_test(size=SIZE):
            screen = app.monitor
            while screen.scans < 2:
                await asyncio.sleep(0.01)
            for key in ("d", "e", "down", "down"):
                app.post_message(tevents.Key(key, key if len(key) == 1 else None))
                await asyncio.sleep(0.05)
            gc.collect()
            result["rss_start_mb"] = process.memory_info().rss / 2**20
            result["objects_start"] = len(gc.get_objects())
            per_window = max(1, refreshes // WINDOWS)
            first = screen.scans
            started = time.perf_counter()
            moves = 0
            seen = screen.scans
            while screen.scans < first + refreshes:
                await applied.wait()
                applied.clear()
                if screen.scans == seen:
                    continue
                seen = screen.scans
                # A user moving the cursor once per refresh, now and then jumping to the end and back.
                moves += 1
                key = "down" if moves % 10 else ("end" if moves % 20 == 0 else "home")
                app.post_message(tevents.Key(key, None))
                done = screen.scans - first
                if done >= per_window * (len(windows) + 1) or screen.scans >= first + refreshes:
                    lo = first + per_window * len(windows)
                    window = Window(
                        first=lo - first,
                        last=done,
                        rss_mb=process.memory_info().rss / 2**20,
                        samples=[s for s in samples if lo < s.refresh <= screen.scans],
                        stores=_stores(screen),
                        gc_ms=pauses.take(),
                    )
                    windows.append(window)
                    _print_window(window, len(windows) == 1)
            result["seconds"] = time.perf_counter() - started
            result["refreshes"] = screen.scans - first
            gc.collect()
            result["rss_end_mb"] = process.memory_info().rss / 2**20
            result["objects_end"] = len(gc.get_objects())
            result["stores"] = _stores(screen)

            # Quit while a scan hangs: the app must not wait for it.
            collector.hang.set()
            screen.action_refresh_now()
            await asyncio.get_running_loop().run_in_executor(None, collector.hanging.wait, 60)
            quit_started = time.perf_counter()
            app.post_message(tevents.Key("q", "q"))
            while app.is_running and time.perf_counter() - quit_started < 30:
                await asyncio.sleep(0.001)
            result["quit_ms"] = (time.perf_counter() - quit_started) * 1000
        collector.release.set()
    finally:
        monitor_module.MonitorScreen._apply = original_apply  # type: ignore[method-assign]
        Pipeline.step = original_step  # type: ignore[method-assign]
        gc.callbacks.remove(pauses)
    result["windows"] = windows
    return result


def _print_window(w: Window, header: bool) -> None:
    if header:
        print(
            f"{'refreshes':>13} {'RSS MB':>7} {'UI CPU ms/refresh':>19} {'apply ms':>9} {'derive ms':>10}"
            f" {'scan ms':>8} {'rows':>7} {'events':>11} {'row cache':>9} {'GC max ms':>9}"
        )
    ui = [s.ui_cpu_ms for s in w.samples]
    events = w.stores.get("event log", (0, None))
    print(
        f"{w.first:>6}-{w.last:<6} {w.rss_mb:>7.1f} {_median(ui):>8.1f} (p95 {_p95(ui):>5.1f})"
        f" {_median([s.apply_ms for s in w.samples]):>9.1f} {_median([s.derive_ms for s in w.samples]):>10.1f}"
        f" {_median([s.scan_ms for s in w.samples]):>8.1f} {w.stores['table rows'][0]:>7}"
        f" {events[0]:>5}/{events[1] or '-':<5} {w.stores['row cache'][0]:>9} {max(w.gc_ms, default=0.0):>9.1f}",
        flush=True,
    )


def _summary(result: dict[str, Any]) -> int:
    windows: list[Window] = result["windows"]
    print()
    print(
        f"{result['refreshes']} refreshes in {result['seconds']:.0f} s"
        f" ({result['refreshes'] / result['seconds']:.1f}/s)"
    )
    base = windows[0].rss_mb if windows else result["rss_start_mb"]
    end = result["rss_end_mb"]
    half = windows[len(windows) // 2 - 1].rss_mb if len(windows) >= 2 else base
    # Caches fill during the first half (each within its bound); after that memory must stay put.
    rss_ok = end - half <= max(5.0, 0.05 * half)
    print(
        f"RSS: {result['rss_start_mb']:.1f} MB at start, {base:.1f} MB after the first tenth,"
        f" {half:.1f} MB at half way, {end:.1f} MB at the end ({end - base:+.1f} MB since the first tenth,"
        f" {end - half:+.1f} MB in the second half)"
        f"{'' if rss_ok else '  OVER target'}"
    )
    print(f"Python objects: {result['objects_start']:,} at start, {result['objects_end']:,} at the end")
    ok = rss_ok
    if len(windows) >= 3:
        early = _median([s.ui_cpu_ms for s in windows[1].samples])  # the first tenth includes warm-up
        late = _median([s.ui_cpu_ms for s in windows[-1].samples])
        stable = late <= 1.5 * early
        ok &= stable
        print(
            f"UI CPU per refresh: {early:.1f} ms (2nd tenth) -> {late:.1f} ms (last tenth)"
            f"{'' if stable else '  OVER target'}"
        )
    print("stores at the end (size / bound):")
    for name, (size, bound) in result["stores"].items():
        within = bound is None or size <= bound
        ok &= within
        print(f"  {name:<28} {size:>7}{'' if bound is None else f' / {bound}'}{'' if within else '  OVER bound'}")
    print(f"quit while a scan hangs: {result['quit_ms']:.0f} ms")
    print("verdict:", "flat" if ok else "GROWTH OR SLOWDOWN, see above")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--churn", type=float, default=1.0, help="percent of sockets replaced per refresh")
    parser.add_argument("--refreshes", type=int, default=1000, help="refreshes of the fake soak")
    parser.add_argument("--interval", type=float, default=None, help="refresh interval (default 0.05 s fake, 1 s real)")
    parser.add_argument("--real", action="store_true", help="real loopback sockets and the real collector")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the --real soak")
    args = parser.parse_args(argv)

    if not args.real:
        interval = args.interval or 0.05
        print(
            f"portmon soak: {args.sockets:,} synthetic sockets, {args.churn:g} % churn per refresh, "
            f"{args.refreshes:,} refreshes, interval {interval:g} s, headless {SIZE[0]}x{SIZE[1]}",
            flush=True,
        )
        fake = ChurningCollector(args.sockets, args.churn / 100.0)
        result = asyncio.run(_soak(fake, args.refreshes, interval))
        return _summary(result)

    from bench.loopback import LoopbackLoad  # type: ignore[import-not-found]
    from portmon.collect.choose import default_collector

    interval = args.interval or 1.0
    refreshes = max(WINDOWS, int(args.minutes * 60 / interval))
    load = LoopbackLoad(args.sockets).start()
    print(
        f"portmon soak: {load.sockets:,} real loopback sockets in pids {load.pids},"
        f" {args.churn:g} % churn per refresh, {args.minutes:g} min ({refreshes} refreshes at {interval:g} s),"
        f" real collector, headless {SIZE[0]}x{SIZE[1]}",
        flush=True,
    )
    real = HangableCollector(default_collector())
    stop = threading.Event()
    churned = {"pairs": 0}

    def churner() -> None:
        # Churn between scans at the refresh rate, from its own thread (as other programs would).
        while not stop.wait(interval):
            churned["pairs"] += load.churn(args.churn)

    thread = threading.Thread(target=churner, name="churn", daemon=True)
    thread.start()
    try:
        result = asyncio.run(_soak(real, refreshes, interval))
    finally:
        stop.set()
        thread.join(30)
        load.stop()
    print(f"pairs replaced by churn: {churned['pairs']:,}")
    return _summary(result)


if __name__ == "__main__":
    sys.exit(main())
