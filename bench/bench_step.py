"""The poller thread's work after the collector's scan, stage by stage, on a live load (issue 18's target: <= 15 ms).

Runs what the live monitor's poller thread runs once a second (the procfs collector, wrapped in
``FamilyOrdered`` and in the history recorder writing to a scratch database, then
``Pipeline.step`` with the default view and the event stream) and what ``portmon watch --all``
runs (the collector without counters, the event stream, the lines printed to nowhere). Each
stage's CPU time on this thread is timed; the medians of ``--scans`` refreshes (the first two
left out: they build the caches) are printed in ms, beside the targets of issue 18 for the work
after the scan (ordering + recorder + ``Pipeline.step`` + events <= 15 ms; watch's part likewise).

    unshare -n sh -c 'ip link set lo up && exec python bench/loads.py issue18 --seconds 3600' &
    nsenter -n -t LOAD_PID python bench/bench_step.py [--root /work/main] [--scans 20]

``--root`` times another checkout's code with this script (A/B); the stages that checkout lacks
read 0.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_MS = 15.0
"""Issue 18: the poller's work after the scan, and watch's, per refresh at this load."""


def _timed(figures: dict[str, list[float]], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            figures.setdefault(label, []).append((time.thread_time() - started) * 1000)

    return run


def _median(values: list[float]) -> float:
    return statistics.median(values[2:] if len(values) > 4 else values)


def monitor(scans: int, interval: float) -> dict[str, list[float]]:
    """Per-stage CPU ms of the live monitor's poller thread, per refresh."""
    from portmon.collect.choose import default_collector
    from portmon.history.live import start_recording
    from portmon.ownership.ordered import FamilyOrdered
    from portmon.query.events import EventStream
    from portmon.registry import load_registry
    from portmon.ui import view
    from portmon.ui.traffic import TrafficTracker
    from portmon.ui.view import Pipeline, ViewSpec

    figures: dict[str, list[float]] = {}
    inner = default_collector(services=load_registry(), netns="host")
    inner.scan = _timed(figures, "scan", inner.scan)  # type: ignore[method-assign]
    ordered = FamilyOrdered(inner)
    ordered.scan = _timed(figures, "scan+order", ordered.scan)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        collector, recording, why_not = start_recording(ordered, Path(tmp) / "history.db")
        if recording is None:
            raise SystemExit(f"bench_step: {why_not}")
        recorder = recording._recorder
        recorder.feed = _timed(figures, "record", recorder.feed)  # type: ignore[method-assign]
        view.advance_marks = _timed(figures, "  marks", view.advance_marks)  # type: ignore[assignment]
        view.derive_view = _timed(figures, "  derive", view.derive_view)  # type: ignore[assignment]
        TrafficTracker.step = _timed(figures, "  traffic", TrafficTracker.step)  # type: ignore[method-assign]
        pipeline = Pipeline(None)
        stream = EventStream()
        spec = ViewSpec()
        try:
            for _ in range(scans):
                started = time.monotonic()
                snapshot = collector.scan()
                t0 = time.thread_time()
                pipeline.step(snapshot, spec, time.time(), interval)
                t1 = time.thread_time()
                stream.feed(snapshot)
                t2 = time.thread_time()
                figures.setdefault("step", []).append((t1 - t0) * 1000)
                figures.setdefault("events", []).append((t2 - t1) * 1000)
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        finally:
            recording.close()
    figures["order"] = [a - b for a, b in zip(figures.pop("scan+order"), figures["scan"], strict=True)]
    return figures


def watch(scans: int, interval: float) -> dict[str, list[float]]:
    """Per-stage CPU ms of ``portmon watch --all`` (text lines), per refresh."""
    from portmon.collect.choose import default_collector
    from portmon.query.events import EventStream, event_line
    from portmon.registry import load_registry

    figures: dict[str, list[float]] = {}
    collector = default_collector(services=load_registry(), counters=False, netns="host")
    stream = EventStream(None)
    out = io.StringIO()
    lines = []
    for _ in range(scans):
        started = time.monotonic()
        t0 = time.thread_time()
        snapshot = collector.scan()
        t1 = time.thread_time()
        events = stream.feed(snapshot)
        t2 = time.thread_time()
        for event in events:
            out.write(event_line(event) + "\n")
        t3 = time.thread_time()
        out.seek(0)
        out.truncate()
        lines.append(len(events))
        figures.setdefault("scan", []).append((t1 - t0) * 1000)
        figures.setdefault("events", []).append((t2 - t1) * 1000)
        figures.setdefault("print", []).append((t3 - t2) * 1000)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    print(f"watch --all: {statistics.median(lines):.0f} events per refresh (median)")
    return figures


def report(title: str, figures: dict[str, list[float]], after_scan: list[str], sockets: str) -> None:
    print(f"{title} ({sockets}): CPU ms per refresh, medians")
    for label, values in figures.items():
        print(f"  {label:12} {_median(values):7.1f}")
    total = [sum(parts) for parts in zip(*(figures[name] for name in after_scan), strict=True)]
    verdict = "ok" if _median(total) <= TARGET_MS else "OVER"
    parts = " + ".join(after_scan)
    print(f"  after the scan ({parts}): {_median(total):.1f} ms, target <= {TARGET_MS:g} ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent), help="checkout to time")
    parser.add_argument("--scans", type=int, default=15, help="refreshes per part (default 15)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--only", choices=("monitor", "watch"), help="time one part only")
    args = parser.parse_args(argv)
    sys.path.insert(0, args.root)
    from portmon.collect.procfs import ProcfsCollector

    sockets = f"{len(ProcfsCollector().scan().sockets)} sockets, {args.root}"
    if args.only != "watch":
        report("live monitor", monitor(args.scans, args.interval), ["order", "record", "step", "events"], sockets)
    if args.only != "monitor":
        report("watch --all", watch(args.scans, args.interval), ["events", "print"], sockets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
