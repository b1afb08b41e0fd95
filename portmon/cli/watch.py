"""``portmon watch``: stream socket events (open, close, state change) until interrupted, as text or NDJSON."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.collect.base import guarded_scan
from portmon.gctune import pace_for_long_runs
from portmon.model import Snapshot
from portmon.query.filters import FilterError, SocketFilter, parse_filter
from portmon.textsafe import echo, visible


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``watch`` and return its runner."""
    p = subs.add_parser(
        "watch",
        help="stream socket events (open, close, state change) until interrupted",
        description="Scan every --interval seconds and print one line per change: a socket opened, closed or "
        "changed TCP state. The first scan is the baseline: sockets already open are not reported. By default "
        "only listening sockets (TCP LISTEN and bound UDP) are watched; --all watches every connection too. "
        "FILTER terms use the same language as 'portmon list'. Ctrl-C ends it (exit 0). A failing scan is "
        "reported on stderr and watching goes on.",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms; all must match the event's socket")
    p.add_argument("-a", "--all", action="store_true", help="every socket, connections too (default: listening only)")
    p.add_argument(
        "--json",
        action="store_true",
        help="NDJSON: one object per event with event, time, the 'list --json' keys, old_state and new_state",
    )
    return "watch", run


def _first_scan_notes(ctx: Context, snapshot: Snapshot, watching_all: bool, flt: SocketFilter) -> None:
    """Warnings about what portmon cannot see, and a word on stderr that watching has begun (the baseline
    is taken: anything that changes from now on is reported). The count is of what the filter keeps."""
    if snapshot.warning:
        ctx.warn(snapshot.warning)
    if snapshot.hidden_note:
        ctx.warn(snapshot.hidden_note)
    watched = [s for s in snapshot.sockets if watching_all or s.listening]
    if not flt.is_empty:
        watched = flt.apply(watched)
    n = len(watched)
    what = f"{n} socket{'s' if n != 1 else ''}" if watching_all else f"{n} listening socket{'s' if n != 1 else ''}"
    if not flt.is_empty:
        what += f" matching {echo(flt.text)}"
    ctx.stderr.write(f"portmon: watching {what} for changes every {ctx.interval:g} s; Ctrl-C stops\n")
    ctx.stderr.flush()


def run(ctx: Context) -> int:
    """Watch until interrupted; exit 0 on Ctrl-C (or when the reader of the pipe goes away).

    portmon.query.events is imported here, not at the top (deferred import): this module is imported
    to build the parser of every command, and events brings dataclasses and inspect, 13-52 ms on a
    busy 2-core host (``python -X importtime`` after the parser is built, five runs).
    """
    from portmon.query.events import EventStream, event_json, event_line, is_listening

    args: argparse.Namespace = ctx.args
    try:
        flt = parse_filter(list(args.terms))
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    ignore = ctx.ignore_filters()
    pace_for_long_runs()
    # Only --json prints the traffic counters (the socket's ``list --json`` keys): the text lines
    # show none, so the text stream does without tcp_info (bench/bench_scale.py measures watch --all).
    collector = ctx.collector(counters=bool(args.json))
    stream = EventStream(None if args.all else is_listening)
    render = event_json if args.json else event_line
    out = ctx.stdout
    interval = ctx.interval
    last_good: Snapshot | None = None
    failing: str | None = None
    _interruptible()
    try:
        while True:
            started = time.monotonic()
            snapshot = guarded_scan(collector, last_good)
            if snapshot.error is not None:
                # One line per run of failures (not one per interval); the next good scan says so.
                if snapshot.error != failing:
                    ctx.warn(f"{visible(snapshot.error)}; still watching, retrying every {interval:g} s")
                    ctx.stderr.flush()
                failing = snapshot.error
            else:
                if failing is not None:
                    ctx.warn("scans work again")
                    ctx.stderr.flush()
                    failing = None
                if last_good is None:
                    _first_scan_notes(ctx, snapshot, args.all, flt)
                    netns_note = getattr(collector, "netns_note", None)  # without root: once, not per scan
                    if netns_note:
                        ctx.note(netns_note)
                last_good = snapshot
                for event in stream.feed(snapshot):
                    if any(f.matches(event.socket) for f in ignore):
                        continue
                    if flt.is_empty or flt.matches(event.socket):
                        out.write(render(event) + "\n")
                        out.flush()
                if ctx.output_lost():
                    return 0  # the reader went away (or the output failed: the caller says so)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0


def _interruptible() -> None:
    """Make Ctrl-C (SIGINT) and SIGTERM end ``watch`` cleanly, however it was started.

    A shell without job control starts background commands with SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler, so ``watch`` could not be stopped the way its help says.
    ``watch`` exists to be interrupted, so it takes both signals back.
    """
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread (tests calling run() from a thread)
            pass
