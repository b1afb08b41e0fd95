"""``portmon list``: every socket once, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
from typing import Any

from portmon.cli.context import CommandFailed, Context, UsageError
from portmon.output import iter_sockets_json, sockets_csv, sockets_table
from portmon.ownership.families import family_labeller, order_sockets
from portmon.query.filters import FilterError, parse_filter
from portmon.query.sorting import parse_sort, sort_sockets


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``list`` and return its runner."""
    p = subs.add_parser(
        "list",
        help="print every socket once",
        description="Print every TCP and UDP socket once. FILTER terms use the same language as the live filter "
        "(e.g. ':8080', 'state:listen', 'proc:python', '!udp').",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms; all must match")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("-l", "--listening", action="store_true", help="only listening TCP and bound UDP sockets")
    shown.add_argument(
        "-a", "--all", action="store_true", help="every socket, even when the config file says listening = true"
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON array of socket objects")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument(
        "--sort",
        default=None,
        metavar="COLUMN",
        help="sort column: an id (local_port, pid, state, ...) or a header title (PORT, 'LOCAL ADDRESS'), any case; "
        "-COLUMN (as --sort=-pid) sorts descending (default local_port, or the config file's sort)",
    )
    p.add_argument("-r", "--reverse", action="store_true", help="reverse the sort order")
    return "list", run


def as_default(args: argparse.Namespace) -> None:
    """Fill in ``list``'s options for ``portmon`` without a command when it prints the list."""
    args.terms, args.listening, args.json, args.csv = [], False, False, False
    args.sort, args.reverse, args.all = None, False, False


def run(ctx: Context) -> int:
    """Print the sockets; exit 0 (an empty result is not an error)."""
    args: argparse.Namespace = ctx.args
    try:
        flt = parse_filter(list(args.terms))
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    sort = getattr(args, "sort", None)
    try:
        column, descending = parse_sort(sort or ctx.settings["sort"])
    except ValueError as exc:
        if sort is None:  # the config file's
            raise CommandFailed(f"{ctx.settings.source('sort')}: sort: {exc}", 2) from None
        raise UsageError(str(exc)) from None
    if getattr(args, "reverse", False):
        descending = not descending
    listening = args.listening or (ctx.settings["listening"] and not getattr(args, "all", False))
    ignore = ctx.ignore_filters()
    snap = ctx.scan()
    sockets = [s for s in snap.sockets if s.listening] if listening else list(snap.sockets)
    if ignore:
        sockets = [s for s in sockets if not any(f.matches(s) for f in ignore)]
    if not flt.is_empty:
        sockets = flt.apply(sockets)
    # A shared socket's main holder (a pre-fork master) first: the row's pid, first in holders and pids.
    sockets = order_sockets(sort_sockets(sockets, column, descending))
    if args.json:
        from portmon.ownership.view import Ownership  # its managers are for JSON only

        write = ctx.stdout.write
        for part in iter_sockets_json(sockets, Ownership().record_extra):
            write(part)
        write("\n")
    elif args.csv:
        ctx.stdout.write(sockets_csv(sockets))
    else:
        ctx.stdout.write(sockets_table(sockets, host_column=ctx.hosts_given, label=family_labeller()) + "\n")
    ctx.stdout.flush()
    return 0
