"""How the monitor words traffic: the status line's totals and listen counters, and the detail pane's section."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from portmon.model import LISTEN, Socket
from portmon.ui.traffic import Traffic, bytes_text, rate_text

TOTALS_PRIORITY = 3
"""The machine totals go from the status line after the state counts and the filter, before the sort."""
LISTEN_ALERT_PRIORITY = 2
"""Overflows or drops since the last scan: kept as long as the filter."""
LISTEN_QUIET_PRIORITY = 8
"""No overflow and no drop: the first thing to go."""


def status_units(traffic: Traffic | None) -> list[tuple[Text, int]]:
    """The status line's traffic units, each with its priority (see ``portmon.ui.status.Part``)."""
    if traffic is None:
        return []
    units: list[tuple[Text, int]] = []
    if traffic.counters and traffic.seconds > 0:
        text = Text.assemble("TX ", (rate_text(traffic.tx_bps) + "/s", "bold"), " RX ",
                             (rate_text(traffic.rx_bps) + "/s", "bold"))  # fmt: skip
        units.append((text, TOTALS_PRIORITY))
    listen = traffic.listen
    if listen is not None:
        line = f"listen overflows {listen.overflows} drops {listen.drops}"
        if listen.overflows or listen.drops:
            units.append((Text(line, "bold red"), LISTEN_ALERT_PRIORITY))
        else:
            units.append((Text(line, "dim"), LISTEN_QUIET_PRIORITY))
    return units


def accept_queue_text(sock: Socket) -> Text | None:
    """A listener's accept queue against its backlog ("3/128 queued"), red when full; None when unknown."""
    if sock.accept_queue is None or sock.backlog is None:
        return None
    text = f"{sock.accept_queue}/{sock.backlog} queued"
    if sock.accept_queue_full:
        return Text(f"{text}: full, the server is not accepting", "bold red")
    return Text(text)


def detail_section(
    sock: Socket | None, traffic: Traffic | None, totals: tuple[int, int] | None = None
) -> RenderableType | None:
    """The detail pane's traffic lines for ``sock``: its rate and counters, its process's totals and rate,
    and for a listener its accept queue and the host's overflows and drops since the last scan. ``totals``
    are the bytes its process's connections sent and received (``portmon.ui.traffic.process_totals``).
    None when there is nothing to say (no counters anywhere)."""
    if sock is None:
        return None
    lines: list[Text] = []
    listening = sock.proto == "tcp" and sock.state == LISTEN
    if listening:
        queue = accept_queue_text(sock)
        if queue is not None:
            lines.append(Text.assemble(("Accept queue ", "bold"), queue))
        if traffic is not None and traffic.listen is not None:
            listen = traffic.listen
            style = "bold red" if listen.overflows or listen.drops else ""
            lines.append(Text.assemble(("Host-wide ", "bold"), (
                f"ListenOverflows +{listen.overflows}, ListenDrops +{listen.drops} since the last scan", style)))
    elif sock.bytes_sent is not None and sock.bytes_received is not None:
        rate = traffic.rate(sock) if traffic is not None else None
        line = Text.assemble(("Connection ", "bold"), f"sent {bytes_text(sock.bytes_sent)}, "
                             f"received {bytes_text(sock.bytes_received)}")  # fmt: skip
        if rate is not None:
            line.append(f"; TX {rate_text(rate[0])}/s RX {rate_text(rate[1])}/s")
        if sock.rtt_ms is not None:
            line.append(f"; rtt {sock.rtt_ms:.1f} ms")
        if sock.retransmits:
            line.append(f"; {sock.retransmits} retransmitted", "yellow")
        lines.append(line)
    if sock.holders and traffic is not None and traffic.counters and totals is not None:
        # Only for a process with connections that count bytes: a bare listener's would be all zeros.
        pid = sock.holders[0].pid
        sent, received = totals
        line = Text.assemble((f"Process {pid} ", "bold"), f"sent {bytes_text(sent)}, received {bytes_text(received)}")
        proc = traffic.processes.get(pid)
        if traffic.seconds > 0:
            tx = proc.tx_bps if proc is not None else 0.0
            rx = proc.rx_bps if proc is not None else 0.0
            line.append(f"; TX {rate_text(tx)}/s RX {rate_text(rx)}/s")
        lines.append(line)
        lines.append(Text(f"pid {pid}'s TX+RX per scan, newest right:", "dim"))
    if not lines:
        return None
    heading = Text("Traffic", "bold underline")
    return Group(Text(), heading, *lines)
