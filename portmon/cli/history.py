"""``portmon history``: the recorded intervals matching a filter, newest first, or who held them at an instant."""

from __future__ import annotations

import argparse
import time
from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.cli.dbopts import add_db_option, db_path, open_history

# What run() needs is imported there: this module is imported to build the parser for every command.


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``history`` and return its runner."""
    p = subs.add_parser(
        "history",
        help="recorded socket intervals: who held which port, when, with which command line",
        description="Show the intervals recorded by 'portmon record' (or the live monitor) that match FILTER, newest "
        "first: when each socket opened and closed, and every process that held it. --at T shows who held "
        "matching sockets at that instant: exit 0 with the answer, 1 when nothing did. Times: ISO 8601 "
        "(2026-01-31T14:02, 2026-01-31 14:02:05Z; local time without an offset), 14:02, today 9:00, "
        "yesterday 14:02, 2h or 2h30m (ago), now, @EPOCH.",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms (the language of 'portmon list')")
    p.add_argument("--since", metavar="T", help="only intervals still open at or after T")
    p.add_argument("--until", metavar="T", help="only intervals opened at or before T")
    p.add_argument("--at", metavar="T", help="who held matching sockets at the instant T (exit 1 when nobody)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N intervals")
    p.add_argument("--json", action="store_true", help="a JSON array of interval objects")
    add_db_option(p)
    return "history", run


def run(ctx: Context, clock: Any = time.time) -> int:
    """Print the matching intervals; exit 1 when ``--at`` finds nothing (or nothing matches at all)."""
    from portmon.history.lock import recorder_running
    from portmon.history.queries import find_intervals
    from portmon.history.report import interval_lines, interval_record
    from portmon.history.timeparse import TimeError, local_text, parse_time
    from portmon.output import to_json
    from portmon.query.filters import FilterError, parse_filter

    args: argparse.Namespace = ctx.args
    now = clock()
    try:
        flt = parse_filter(list(args.terms))
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
        at = parse_time(args.at, now) if args.at else None
    except (FilterError, TimeError) as exc:
        raise UsageError(str(exc)) from None
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    if since is not None and until is not None and since > until:
        raise UsageError("--since is later than --until")
    conn = open_history(ctx, create=False)
    try:
        recording = recorder_running(db_path(ctx))
        found = find_intervals(conn, flt, since=since, until=until, at=at, limit=args.limit, recording=recording)
    finally:
        conn.close()
    if args.json:
        ctx.stdout.write(to_json([interval_record(r) for r in found]) + "\n")
    elif at is not None and not found:
        what = f"matching {flt.text} " if not flt.is_empty else ""
        ctx.stdout.write(f"no socket {what}was held at {local_text(at)} (as far as the history knows)\n")
    elif not found:
        ctx.stdout.write("no recorded intervals match\n")
    else:
        if at is not None:
            ctx.stdout.write(f"held at {local_text(at)}:\n")
        ctx.stdout.write("\n".join(line for r in found for line in interval_lines(r, now)) + "\n")
    return 0 if found else 1
