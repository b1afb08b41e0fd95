"""``portmon serve``: Prometheus metrics of the sockets, over HTTP (``--metrics``) or as a textfile (``--textfile``)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from portmon.cli.context import Context, UsageError

# What run() needs is imported there: this module is imported to build the parser for every command.


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``serve`` and return its runner."""
    p = subs.add_parser(
        "serve",
        help="serve Prometheus metrics of the sockets (HTTP endpoint or node_exporter textfile)",
        description="Scan every --interval seconds in one thread and serve what the last scan saw: "
        "portmon_listening_socket_info, portmon_sockets{proto,state}, portmon_sockets_hidden_owner, "
        "portmon_scan_duration_seconds, portmon_scan_errors_total and portmon_events_total{event}. "
        "A scrape never scans. The endpoint binds to loopback unless --expose is given. "
        "With --host, remote hosts' sockets are served too, labelled host=...",
    )
    p.add_argument(
        "--metrics",
        metavar="[HOST:]PORT",
        help="serve on HOST:PORT (default host 127.0.0.1; port 0 picks a free one); /metrics",
    )
    p.add_argument(
        "--expose",
        action="store_true",
        help="allow --metrics on an address other than loopback (the socket table is then readable from there)",
    )
    p.add_argument(
        "--textfile",
        metavar="PATH",
        help="write the metrics to PATH (atomically: a temporary file renamed over it) after every scan",
    )
    p.add_argument("--once", action="store_true", help="with --textfile only: scan once, write, exit (for cron)")
    return "serve", run


def run(ctx: Context) -> int:
    """Serve until interrupted (exit 0), or write the textfile once with --once."""
    from portmon.export.metrics import MetricsState, Poller
    from portmon.export.server import AddressError, MetricsServer, is_loopback, metrics_registry, parse_listen_address
    from portmon.export.server import write_textfile as write

    args: argparse.Namespace = ctx.args
    if not args.metrics and not args.textfile:
        raise UsageError("serve needs --metrics [HOST:]PORT, --textfile PATH, or both")
    if args.once and (args.metrics or not args.textfile):
        raise UsageError("--once goes with --textfile alone")
    address = None
    if args.metrics:
        try:
            address = parse_listen_address(args.metrics)
        except AddressError as exc:
            raise UsageError(str(exc)) from None
        if not args.expose and not is_loopback(address.host):
            raise UsageError(
                f"'{address.host}' is not a loopback address: "
                "add --expose to serve the socket table beyond this machine"
            )
    state = MetricsState()
    registry = metrics_registry(state)

    def on_poll(_: object) -> None:
        if args.textfile:
            try:
                write(args.textfile, registry)
            except OSError as exc:
                ctx.warn(f"cannot write {args.textfile}: {exc.strerror or exc}")
                ctx.stderr.flush()

    collector = ctx.collector()
    poller = Poller(collector, state, ctx.interval, on_poll=on_poll)
    if args.once:
        wait_ready = getattr(collector, "wait_ready", None)
        if wait_ready is not None:
            from portmon.cli.hosts import host_timeout

            wait_ready(host_timeout(args))
        poller.poll_once()
        return 0
    server = None
    if address is not None:
        try:
            server = MetricsServer(address, registry, lambda: state.generation)
        except AddressError as exc:
            raise UsageError(str(exc)) from None
        exposed = "" if is_loopback(server.host) else " (not loopback: reachable from other machines)"
        ctx.stderr.write(f"portmon: serving metrics on {server.url}{exposed}; Ctrl-C stops\n")
        ctx.stderr.flush()
    if args.textfile:
        ctx.stderr.write(f"portmon: writing metrics to {args.textfile} every {ctx.interval:g} s; Ctrl-C stops\n")
        ctx.stderr.flush()
    from portmon.cli.watch import _interruptible

    _interruptible()
    poller.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        poller.stop()
        if server is not None:
            server.close()
