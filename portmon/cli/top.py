"""``portmon top``: the busiest connections and processes by traffic rate, refreshed, as text or NDJSON."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from portmon.cli.context import Context, UsageError

if TYPE_CHECKING:
    from portmon.collect.base import Collector
    from portmon.query.filters import SocketFilter
    from portmon.query.rates import ConnectionRate, ProcessRate

# What run() needs is imported there: this module is imported to build the parser for every command.

CLEAR = "\x1b[H\x1b[2J"
"""Cursor home and clear screen: how a terminal shows each sample in place, like top."""


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``top`` and return its runner."""
    p = subs.add_parser(
        "top",
        help="the busiest connections and processes by traffic rate",
        description="Scan every --interval seconds and show the connections and processes moving the most "
        "bytes, by TX and RX bytes per second since the previous scan (TCP, from the kernel's tcp_info; Linux). "
        "On a terminal each sample replaces the last; otherwise samples follow each other. FILTER terms use the "
        "same language as 'portmon list' and pick the connections (a process sums the ones that match). "
        "Ctrl-C ends it (exit 0).",
    )
    p.add_argument("terms", nargs="*", metavar="FILTER", help="filter terms; all must match the connection")
    p.add_argument("-n", "--count", type=_count, default=None, metavar="N", help="stop after N samples")
    p.add_argument("--limit", type=_count, default=20, metavar="ROWS", help="rows of each table (default 20)")
    p.add_argument(
        "--json",
        action="store_true",
        help="NDJSON: one object per sample with time, connections (the 'list --json' keys plus tx_bps and "
        "rx_bps) and processes (pid, process, user, tx_bps, rx_bps, connections)",
    )
    return "top", run


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return n


class TopSample:
    """One sample: when it was taken (epoch seconds) and the rates since the one before, busiest first."""

    __slots__ = ("connections", "processes", "time")

    def __init__(self, time: float, connections: list[ConnectionRate], processes: list[ProcessRate]) -> None:
        self.time = time
        self.connections = connections
        self.processes = processes


def samples(
    collector: Collector,
    interval: float,
    flt: SocketFilter | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[TopSample]:
    """Rates between consecutive scans, one sample per ``interval`` (the first scan is the baseline).

    ``clock`` times the scans (the rate's interval is the time between them, not the nominal
    ``interval``) and ``sleep`` waits: tests inject both.
    """
    from portmon.query.rates import Sample, busiest, busiest_processes, connection_rates, process_rates

    last = Sample(collector.scan(), clock())
    while True:
        sleep(max(0.0, interval - (clock() - last.at)))
        now = Sample(collector.scan(), clock())
        rates = connection_rates(last, now)
        if flt is not None and not flt.is_empty:
            rates = [r for r in rates if flt.matches(r.socket)]
        yield TopSample(now.snapshot.taken_at, busiest(rates), busiest_processes(process_rates(rates)))
        last = now


def sample_record(sample: TopSample, limit: int | None = None) -> dict[str, Any]:
    """One NDJSON object: time, connections (the ``list --json`` keys plus rates), processes."""
    from portmon.output import socket_record
    from portmon.query.events import iso_time

    return {
        "time": iso_time(sample.time),
        "connections": [
            {**socket_record(r.socket), "tx_bps": r.tx_bps, "rx_bps": r.rx_bps} for r in sample.connections[:limit]
        ],
        "processes": [
            {
                "pid": p.pid,
                "process": p.process,
                "user": p.user,
                "tx_bps": p.tx_bps,
                "rx_bps": p.rx_bps,
                "connections": p.connections,
            }
            for p in sample.processes[:limit]
        ],
    }


def human_rate(bps: float) -> str:
    """Bytes per second, short: "0", "512", "12.3K", "4.5M", "1.2G"."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f}{unit}"
    return f"{bps:.0f}"


def sample_text(sample: TopSample, limit: int) -> str:
    """The busiest connections and processes as two aligned tables (untrusted names made visible)."""
    from portmon.output import endpoint, format_table
    from portmon.query.events import clock_time
    from portmon.textsafe import safe

    total_tx = sum(r.tx_bps for r in sample.connections)
    total_rx = sum(r.rx_bps for r in sample.connections)
    head = (
        f"portmon top  {clock_time(sample.time)}  {len(sample.connections)} connections  "
        f"TX {human_rate(total_tx)}B/s  RX {human_rate(total_rx)}B/s"
    )
    conns = [
        (
            human_rate(r.tx_bps),
            human_rate(r.rx_bps),
            r.socket.proto_label,
            endpoint(r.socket.local_addr, r.socket.local_port, r.socket.family),
            endpoint(r.socket.remote_addr, r.socket.remote_port, r.socket.family),
            safe(r.socket.state),
            "" if r.socket.pid is None else str(r.socket.pid),
            safe(r.socket.process, 24),
        )
        for r in sample.connections[:limit]
    ]
    procs = [
        (
            human_rate(p.tx_bps),
            human_rate(p.rx_bps),
            str(p.pid),
            safe(p.process, 24),
            safe(p.user, 16),
            str(p.connections),
        )
        for p in sample.processes[:limit]
    ]
    return "\n".join(
        (
            head,
            "",
            format_table(("TX/s", "RX/s", "PROTO", "LOCAL", "REMOTE", "STATE", "PID", "PROCESS"), conns),
            "",
            format_table(("TX/s", "RX/s", "PID", "PROCESS", "USER", "CONNS"), procs),
        )
    )


def run(ctx: Context) -> int:
    """Print samples until --count is reached or Ctrl-C; exit 0."""
    from portmon.output import to_json
    from portmon.query.filters import FilterError, parse_filter

    args: argparse.Namespace = ctx.args
    try:
        flt = parse_filter(list(args.terms))
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    out = ctx.stdout
    terminal = not args.json and out.isatty()
    try:
        collector = ctx.collector()
        for n, sample in enumerate(samples(collector, ctx.interval, flt), 1):
            if args.json:
                out.write(to_json(sample_record(sample, args.limit)) + "\n")
            else:
                text = sample_text(sample, args.limit)
                out.write(CLEAR + text + "\n" if terminal else text + "\n\n")
            out.flush()
            if ctx.output_lost():
                return 0  # the reader went away (a closed pipe): stop sampling
            if args.count is not None and n >= args.count:
                return 0
    except KeyboardInterrupt:
        return 0
    return 0
