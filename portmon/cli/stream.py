"""``portmon _stream`` (hidden): what a remote portmon runs for a local one, snapshots as JSON lines on stdout."""

from __future__ import annotations

import time
from typing import Any

from portmon.cli.context import Context

# The remote side of --host (portmon.remote): started over ssh by portmon.remote.agentless.SCRIPT.
# The name is spelled here too, not imported: every command builds this parser, and importing
# portmon.remote for one string would cost each of them ~1 ms (a test keeps the two equal).
STREAM_COMMAND = "_stream"


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``_stream`` without help, so it stays out of the command list, and return its runner."""
    p = subs.add_parser(STREAM_COMMAND, description="Stream snapshots as JSON lines (for portmon --host).")
    p.add_argument("--probe", action="store_true", help="print the stream's first line and exit 0")
    return STREAM_COMMAND, run


def run(ctx: Context) -> int:
    """Scan every --interval and write a line per scan until the reader goes away."""
    from portmon import __version__
    from portmon.collect.base import guarded_scan
    from portmon.remote.stream import hello_line, snapshot_line

    out = ctx.stdout
    if ctx.args.probe:
        out.write(hello_line("probe", __version__) + "\n")
        return 0
    # The stream's socket encoding has no namespace field: keep to the remote host's own namespace, as the
    # agentless mode (which reads /proc/net) does.
    collector = ctx.collector(netns="host")
    out.write(hello_line(collector.name, __version__) + "\n")
    out.flush()
    last_good = None
    sent = None
    interval = ctx.interval
    try:
        while True:
            started = time.monotonic()
            snap = guarded_scan(collector, last_good)
            if snap.error is None:
                last_good = snap
            same = sent is not None and snap.sockets == sent
            out.write(snapshot_line(snap, same=same) + "\n")
            out.flush()
            if ctx.output_lost():
                # The ssh session (the reader) is gone: a stream nobody reads must not scan on forever.
                return 0
            sent = snap.sockets
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0
