"""``portmon list``: every socket once, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.output import iter_sockets_json, sockets_csv, sockets_table
from portmon.ownership.families import order_sockets
from portmon.query.filters import FilterError, parse_filter
from portmon.query.sorting import sort_sockets


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``list`` and return its runner."""
    p = subs.add_parser(
        "list",
        help="print every socket once",
        description="Print every TCP and UDP socket once. FILTER terms use the same language as the live filter "
        "(e.g. ':8080', 'state:listen', 'proc:python', '!udp').",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms; all must match")
    p.add_argument("-l", "--listening", action="store_true", help="only listening TCP and bound UDP sockets")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON array of socket objects")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument("--sort", default="local_port", metavar="COLUMN", help="sort column (default local_port)")
    return "list", run


def run(ctx: Context) -> int:
    """Print the sockets; exit 0 (an empty result is not an error)."""
    args: argparse.Namespace = ctx.args
    try:
        flt = parse_filter(list(args.terms))
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    column = getattr(args, "sort", "local_port")
    try:
        sort_sockets([], column)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    snap = ctx.scan()
    sockets = [s for s in snap.sockets if s.listening] if args.listening else list(snap.sockets)
    if not flt.is_empty:
        sockets = flt.apply(sockets)
    # A shared socket's main holder (a pre-fork master) first: the row's pid, first in holders and pids.
    sockets = order_sockets(sort_sockets(sockets, column))
    if args.json:
        from portmon.ownership.view import Ownership  # its managers are for JSON only

        write = ctx.stdout.write
        for part in iter_sockets_json(sockets, Ownership().record_extra):
            write(part)
        write("\n")
    elif args.csv:
        ctx.stdout.write(sockets_csv(sockets))
    else:
        ctx.stdout.write(sockets_table(sockets) + "\n")
    ctx.stdout.flush()
    return 0
