"""``portmon record``: a headless recorder that writes socket intervals into the history database until stopped."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from portmon.cli.context import CommandFailed, Context, UsageError
from portmon.cli.dbopts import add_db_option, db_path

if TYPE_CHECKING:
    import threading

    from portmon.collect.base import Collector
    from portmon.history.recorder import Recorder

# What run() needs is imported there: this module is imported to build the parser for every command.


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``record`` and return its runner."""
    p = subs.add_parser(
        "record",
        help="record listening sockets (and their processes) into the history database until stopped",
        description="Scan every --interval seconds and record each listening socket's interval (when it opened and "
        "closed) with every process holding it: pid, start time, name, user and command line (secrets redacted). "
        "--all records connections too. FILTER terms use the same language as 'portmon list'. Ctrl-C or SIGTERM "
        "ends it cleanly (exit 0). One recorder per database: a second one exits with status 1.",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms; only matching sockets are recorded")
    p.add_argument("-a", "--all", action="store_true", help="record every socket, connections too")
    add_db_option(p)
    p.add_argument("--keep", metavar="DURATION", default="30d",
                   help="forget intervals closed longer ago than this (default 30d; e.g. 12h, 2w)")
    p.add_argument("--max-size", metavar="SIZE", default="256M",
                   help="forget the oldest intervals when the database uses more (default 256M; e.g. 1G)")
    p.add_argument("--flush-every", metavar="SECONDS", type=float, default=5.0,
                   help="seconds between writes while sockets change: what a crash can lose at most (default 5)")
    return "record", run


def run(ctx: Context) -> int:
    """Record until SIGINT or SIGTERM; exit 0 then, 1 when another recorder holds the database."""
    import signal
    import threading

    from portmon.history.lock import RecorderLock
    from portmon.history.recorder import Recorder
    from portmon.history.retention import Retention
    from portmon.history.store import HistoryError, current_boot_id, open_db
    from portmon.history.timeparse import TimeError, parse_duration, parse_size
    from portmon.query.events import is_listening
    from portmon.query.filters import FilterError, parse_filter
    from portmon.textsafe import visible

    args: argparse.Namespace = ctx.args
    if not (0 <= args.flush_every < float("inf")):
        raise UsageError(f"--flush-every must be 0 or more seconds, got {args.flush_every:g}")
    try:
        flt = parse_filter(list(args.terms))
        keep = parse_duration(args.keep)
        max_bytes = parse_size(args.max_size)
    except (FilterError, TimeError) as exc:
        raise UsageError(str(exc)) from None
    path = db_path(ctx)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = RecorderLock(path)
    except OSError as exc:
        raise CommandFailed(f"cannot create {path.parent}: {exc.strerror or exc}") from None
    except HistoryError as exc:
        raise CommandFailed(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()  # never raise here: a write in progress finishes first

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread (tests calling run() from a thread)
            pass
    try:
        try:
            conn = open_db(path)
        except HistoryError as exc:
            raise CommandFailed(str(exc)) from None
        scope = "all" if args.all else "listening"
        recorder = Recorder(
            conn,
            boot_id=current_boot_id(),
            scope=None if args.all else is_listening,
            flt=flt,
            scope_text=f"{scope} {flt.text}".strip(),
            after_flush=Retention(keep, max_bytes),
            flush_every=args.flush_every,
        )
        try:
            recorder.begin()
            collector: Collector = ctx.collector()
            what = "every socket" if args.all else "listening sockets"
            if not flt.is_empty:
                what += f" matching {visible(flt.text)}"
            ctx.stderr.write(
                f"portmon: recording {what} into {visible(str(path))} every {ctx.interval:g} s; Ctrl-C stops\n"
            )
            ctx.stderr.flush()
            _loop(ctx, recorder, collector, stop)
        finally:
            try:
                recorder.stop()
            finally:
                conn.close()
    finally:
        lock.release()
    ctx.stderr.write("portmon: recording stopped\n")
    return 0


def _loop(ctx: Context, recorder: Recorder, collector: Collector, stop: threading.Event) -> None:
    """Scan, feed, wait out the interval, until ``stop`` is set; scan and write failures are reported once."""
    import sqlite3
    import time

    from portmon.collect.base import guarded_scan
    from portmon.model import Snapshot
    from portmon.textsafe import visible

    last_good: Snapshot | None = None
    failing: str | None = None
    while not stop.is_set():
        started = time.monotonic()
        snapshot = guarded_scan(collector, last_good)
        problem = snapshot.error
        if problem is None:
            last_good = snapshot
            try:
                recorder.feed(snapshot)
            except sqlite3.Error as exc:
                problem = f"cannot write the history: {exc}"
        if problem != failing:
            if problem is not None:
                ctx.warn(f"{visible(problem)}; still recording, retrying every {ctx.interval:g} s")
            else:
                ctx.warn("recording works again")
            ctx.stderr.flush()
            failing = problem
        stop.wait(max(0.0, ctx.interval - (time.monotonic() - started)))
