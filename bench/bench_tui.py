"""Benchmark of the live TUI at 1k/10k/50k sockets: first frame, refresh cost, key latency, memory.

Runs the real app headless at 160x50, each size in a fresh process (so memory figures are separate):

    python bench/bench_tui.py                    # synthetic sockets (fake collector), 1k, 10k, 50k
    python bench/bench_tui.py --rows 10000       # one size
    python bench/bench_tui.py --loopback         # real loopback connections and the real collector
    python bench/bench_tui.py --loopback --panes --rows 10000   # with the detail pane and event log open

Figures (medians, with the 95th percentile where it matters):
- first frame: from constructing the app to the first table row painted, the first scan included;
- refresh UI: time on the event loop for one refresh with ~1% churn: applying the new rows (cursor
  restore included) plus rendering the visible lines. Filtering, sorting and diffing run on the
  poller thread and are shown separately as "derive (poller)";
- refresh to frame: from the scan result arriving on the event loop to the frame being painted;
- UI CPU to frame: CPU time of the event loop's thread over that same span: everything a refresh
  costs the UI, every pane painted included (with ``--panes``, the detail pane and the event log
  are open, showing a process that holds every socket when ``--loopback``);
- key: a cursor key press while refreshes with churn keep running every 0.25 s, from posting the key
  event to the cursor moved ("key"), and to the frame showing it painted ("painted"; Textual paints
  at most 60 frames a second, so this includes up to ~17 ms of waiting for the next frame);
- RSS: resident memory of the process at the end.

Targets at 10k: first frame < 1 s, refresh < 25 ms, key < 20 ms, RSS < 150 MB; at 50k refresh < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402

from portmon.collect.base import Collector  # noqa: E402
from portmon.collect.choose import default_collector  # noqa: E402
from portmon.collect.fake import (
    ScriptedCollector,  # noqa: E402
    synthetic_snapshot,  # noqa: E402
)
from portmon.model import Snapshot  # noqa: E402

SIZE = (160, 50)
TARGETS = {10_000: {"first": 1000.0, "refresh": 25.0, "key": 20.0, "rss": 150.0}, 50_000: {"refresh": 50.0}}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


async def _wait_for(app: Any, done: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until ``done()``; fail loudly if the app died or it takes longer than ``timeout`` seconds.

    Without this, an exception inside the app (a patched method whose signature changed) left the
    bench polling forever for a frame that would never come.
    """
    deadline = time.perf_counter() + timeout
    while not done():
        if app._exception is not None:
            raise RuntimeError(f"the app failed while waiting for {what}") from app._exception
        if not app.is_running:
            raise RuntimeError(f"the app stopped while waiting for {what}")
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no {what} after {timeout:g} s")
        await asyncio.sleep(0.0005)


def _synthetic(rows: int, refreshes: int) -> tuple[Collector, Callable[[], object]]:
    snapshots: list[Snapshot] = [synthetic_snapshot(rows, seed=0)]
    for i in range(refreshes + 200):
        snapshots.append(synthetic_snapshot(rows, seed=i + 1, churn=0.01, base=snapshots[-1]))
    # Stamp each with "now" when it is scanned, as a real collector would.
    queue = iter(snapshots)
    last = [snapshots[0]]

    def scan() -> Snapshot:
        snap = next(queue, last[0])
        last[0] = snap
        return Snapshot(sockets=snap.sockets, taken_at=time.time(), scan_ms=0.0, collector="fake")

    return ScriptedCollector([scan]), lambda: None


async def _scenario(rows: int, refreshes: int, keys: int, loopback: bool, panes: bool = False) -> dict[str, Any]:
    from textual import events

    from portmon.ui import monitor as monitor_module
    from portmon.ui.app import PortmonApp
    from portmon.ui.sockettable import SocketTable
    from portmon.ui.view import Pipeline

    load = None
    if loopback:
        from bench.loopback import LoopbackLoad  # type: ignore[import-not-found]

        load = LoopbackLoad(rows).start()
        collector: Collector = default_collector()
        churn: Callable[[], object] = lambda: load.churn(1.0)  # noqa: E731
    else:
        collector, churn = _synthetic(rows, refreshes)

    marks: dict[str, Any] = {"first_row": None, "apply": [], "render": 0.0, "frame": [], "frame_cpu": [], "derive": []}
    original_apply = monitor_module.MonitorScreen._apply
    original_render = SocketTable.render_line
    original_step = Pipeline.step
    original_move = SocketTable.move_cursor

    def timed_apply(self: Any, update: Any, *args: Any, **kwargs: Any) -> None:
        # Pass on whatever else _apply takes (the scan's events now), so a new parameter cannot break the bench.
        started = time.perf_counter()
        cpu = time.thread_time()
        original_apply(self, update, *args, **kwargs)
        marks["apply"].append((time.perf_counter() - started) * 1000)

        def painted() -> None:
            marks["frame"].append((time.perf_counter() - started) * 1000)
            marks["frame_cpu"].append((time.thread_time() - cpu) * 1000)

        self.call_after_refresh(painted)

    def timed_render(self: Any, y: int) -> Any:
        started = time.perf_counter()
        strip = original_render(self, y)
        marks["render"] += time.perf_counter() - started
        if y >= 1 and self.rows and marks["first_row"] is None:
            marks["first_row"] = time.perf_counter()
        return strip

    def timed_move(self: Any, row: int) -> None:
        original_move(self, row)
        marks["key_handled"] = time.perf_counter()

        def painted() -> None:
            marks["key_done"] = time.perf_counter()

        self.call_after_refresh(painted)

    def timed_step(self: Any, *args: Any) -> Any:
        started = time.perf_counter()
        result = original_step(self, *args)
        marks["derive"].append((time.perf_counter() - started) * 1000)
        return result

    monitor_module.MonitorScreen._apply = timed_apply  # type: ignore[method-assign]
    SocketTable.render_line = timed_render  # type: ignore[method-assign]
    Pipeline.step = timed_step  # type: ignore[method-assign,assignment]
    SocketTable.move_cursor = timed_move  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        app = PortmonApp(collector, interval=3600.0)
        result: dict[str, Any] = {"rows": rows}
        async with app.run_test(size=SIZE) as pilot:
            screen = app.monitor
            await _wait_for(app, lambda: marks["first_row"] is not None, "first row")
            result["first_frame_ms"] = (marks["first_row"] - started) * 1000
            result["sockets"] = len(screen.snapshot.sockets) if screen.snapshot else 0
            poller = screen.source.poller
            assert poller is not None

            # Refreshes with ~1% churn, one at a time.
            await pilot.press("down", "down", "down")
            if panes:
                await pilot.press("d", "e")
                await pilot.pause(0.5)
                screen.table.focus()
            ui: list[float] = []

            def refreshed(before: int, frames: int) -> bool:
                return screen.scans != before and len(marks["frame"]) != frames

            for _ in range(refreshes):
                churn()
                before = screen.scans
                frames = len(marks["frame"])
                marks["render"] = 0.0
                poller.scan_now()
                await _wait_for(app, partial(refreshed, before, frames), "refresh")
                ui.append(marks["apply"][-1] + marks["render"] * 1000)
            result["refresh_ui_ms"] = _median(ui)
            result["refresh_ui_p95_ms"] = _p95(ui)
            result["refresh_to_frame_ms"] = _median(marks["frame"][1:])
            cpu = marks["frame_cpu"][-refreshes:]
            result["refresh_cpu_ms"] = _median(cpu)
            result["refresh_cpu_p95_ms"] = _p95(cpu)
            result["derive_poller_ms"] = _median(marks["derive"][1:])

            # Key presses while refreshes keep coming (every 0.25 s, each with churn).
            # (With --loopback the scans are real but the load does not churn meanwhile.)
            poller.interval = 0.25
            poller.scan_now()
            latencies: list[float] = []
            handled: list[float] = []
            for i in range(keys):
                key = "down" if i % 2 == 0 else "up"
                marks["key_done"] = None
                pressed = time.perf_counter()
                app.post_message(events.Key(key, None))
                await _wait_for(app, lambda: marks["key_done"] is not None, f"{key} key painted")
                latencies.append((marks["key_done"] - pressed) * 1000)
                handled.append((marks["key_handled"] - pressed) * 1000)
                await asyncio.sleep(0.03)
            result["key_ms"] = _median(handled)
            result["key_p95_ms"] = _p95(handled)
            result["key_painted_ms"] = _median(latencies)
            result["key_painted_p95_ms"] = _p95(latencies)
            result["refreshes_during_keys"] = screen.scans
            result["rss_mb"] = psutil.Process().memory_info().rss / 2**20
            await pilot.press("q")
        return result
    finally:
        monitor_module.MonitorScreen._apply = original_apply  # type: ignore[method-assign]
        SocketTable.render_line = original_render  # type: ignore[method-assign]
        Pipeline.step = original_step  # type: ignore[method-assign]
        SocketTable.move_cursor = original_move  # type: ignore[method-assign]
        if load is not None:
            load.stop()


def _child(rows: int, refreshes: int, keys: int, loopback: bool, panes: bool) -> None:
    result = asyncio.run(_scenario(rows, refreshes, keys, loopback, panes))
    print(json.dumps(result))


def _verdict(rows: int, name: str, value: float) -> str:
    target = TARGETS.get(rows, {}).get(name)
    if target is None:
        return ""
    return " ok" if value < target else f" OVER {target:g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,10000,50000", help="comma-separated socket counts")
    parser.add_argument("--refreshes", type=int, default=15)
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--loopback", action="store_true", help="real loopback connections (bench/loopback.py)")
    parser.add_argument("--panes", action="store_true", help="with the detail pane and the event log open")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.child, args.refreshes, args.keys, args.loopback, args.panes)
        return 0
    kind = "loopback sockets" if args.loopback else "synthetic sockets"
    print(
        f"portmon TUI benchmark: headless {SIZE[0]}x{SIZE[1]}, {kind}"
        f"{', detail pane and event log open' if args.panes else ''}"
    )
    print(
        f"{'sockets':>7} {'first frame':>14} {'refresh UI':>24} {'to frame':>9} {'UI CPU to frame':>24} {'derive':>8}"
        f" {'key':>21} {'painted':>20} {'RSS':>11}"
    )
    for rows in (int(r) for r in args.rows.split(",")):
        command = [sys.executable, os.path.abspath(__file__), "--child", str(rows), "--refreshes", str(args.refreshes),
                   "--keys", str(args.keys)]
        command += (["--loopback"] if args.loopback else []) + (["--panes"] if args.panes else [])
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run(command, capture_output=True, text=True, cwd=root)
        if out.returncode != 0:
            print(f"{rows:>7} failed:\n{out.stderr}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['sockets']:>7} {r['first_frame_ms']:>9.0f} ms{_verdict(rows, 'first', r['first_frame_ms'])}"
            f"  {r['refresh_ui_ms']:>5.1f} ms (p95 {r['refresh_ui_p95_ms']:.1f})"
            f"{_verdict(rows, 'refresh', r['refresh_ui_ms'])}"
            f"  {r['refresh_to_frame_ms']:>5.1f} ms"
            f"  {r['refresh_cpu_ms']:>5.1f} ms (p95 {r['refresh_cpu_p95_ms']:.1f})"
            f"{_verdict(rows, 'refresh', r['refresh_cpu_ms'])}"
            f" {r['derive_poller_ms']:>5.1f} ms"
            f"  {r['key_ms']:>5.1f} ms (p95 {r['key_p95_ms']:.1f}){_verdict(rows, 'key', r['key_ms'])}"
            f"  {r['key_painted_ms']:>5.1f} ms (p95 {r['key_painted_p95_ms']:.1f})"
            f"  {r['rss_mb']:>5.0f} MB{_verdict(rows, 'rss', r['rss_mb'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
