"""How a kill talks about ports, sockets, signals and start times: labels and formatting, untrusted text escaped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from portmon.actions.ownerless import backlog_of, unreadable_text
from portmon.model import CLOSE, CLOSING, FIN_WAIT1, FIN_WAIT2, LAST_ACK, NEW_SYN_RECV, SYN_RECV, TIME_WAIT, Socket
from portmon.output import endpoint
from portmon.portspec import PortSpec
from portmon.textsafe import safe

TIME_WAIT_SECONDS = 60
"""How long Linux keeps a TIME_WAIT socket (TCP_TIMEWAIT_LEN); other systems use 30-120 s."""


T = TypeVar("T")


def format_start(create_time: float | None) -> str:
    """A process start time as local ``YYYY-MM-DD HH:MM:SS``, or ``?``."""
    if create_time is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(create_time))


def port_label(spec: PortSpec, sockets: Sequence[Socket]) -> str:
    """``8080/tcp`` when the protocol is given or all sockets share one, else ``8080``."""
    if spec.proto:
        return f"{spec.port}/{spec.proto}"
    protos = {s.proto for s in sockets}
    if len(protos) == 1:
        return f"{spec.port}/{protos.pop()}"
    return str(spec.port)


def socket_label(sock: Socket) -> str:
    """``tcp4 127.0.0.1:8080 LISTEN`` or ``tcp4 127.0.0.1:8080 -> 127.0.0.1:51234 TIME_WAIT``."""
    text = f"{sock.proto_label} {endpoint(sock.local_addr, sock.local_port, sock.family)}"
    if sock.remote_port is not None:
        text += f" -> {endpoint(sock.remote_addr, sock.remote_port, sock.family)}"
    if sock.state:
        text += f" {sock.state}"
    return safe(text)


MAX_SOCKETS_LISTED = 8
"""Sockets a text listing names for one port (or one process on it) before saying how many more there are:
a server with 5,000 connections is one listener and 5,000 lines nobody reads before a y/N prompt."""

def first_listed(
    items: Sequence[T], listening: Callable[[T], bool], limit: int = MAX_SOCKETS_LISTED
) -> tuple[list[T], int]:
    """What a listing shows of ``items`` and how many it leaves out.

    Up to ``limit`` items are kept in their order. Past that, the listening (or bound) ones
    come first, then the others in order, ``limit`` in all.
    """
    if len(items) <= limit:
        return list(items), 0
    first = [item for item in items if listening(item)]
    rest = [item for item in items if not listening(item)]
    shown = (first + rest)[:limit]
    return shown, len(items) - len(shown)


_CLOSING_STATES = frozenset({FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK, CLOSE, SYN_RECV, NEW_SYN_RECV})
"""TCP states a socket passes through on its way out (or in): the kernel finishes them without a process."""


def kernel_owned_note(sock: Socket, port_sockets: Sequence[Socket] = (), unreadable: int | None = None) -> str:
    """Why a socket no process holds cannot be killed, and whether it goes away by itself.

    ``port_sockets`` (every socket on the port) tells a connection waiting in a listener's backlog;
    ``unreadable`` is how many processes' fds could not be read (None: not counted).
    """
    listener = backlog_of(sock, port_sockets)
    if listener is not None:
        return (
            f"{socket_label(sock)}: not yet accepted (in the backlog of pid {listener}): no process holds it "
            f"until pid {listener} accepts it, and it goes when that listener closes"
        )
    if sock.state == TIME_WAIT:
        return (
            f"{socket_label(sock)}: kernel-owned, no process holds it; it clears by itself within the kernel's "
            f"TIME_WAIT period ({TIME_WAIT_SECONDS} s on Linux), "
            "and a new server can bind the port now with SO_REUSEADDR"
        )
    if sock.state in _CLOSING_STATES:
        return f"{socket_label(sock)}: kernel-owned, no process holds it; the kernel finishes and drops it by itself"
    if unreadable:
        return (
            f"{socket_label(sock)}: no visible process holds it; {unreadable_text(unreadable)}, even as root, "
            "and one of them may hold it: there is nothing here portmon can signal"
        )
    return (
        f"{socket_label(sock)}: no visible process holds it (a kernel socket, or one held from another container's "
        "PID namespace): there is nothing here portmon can signal"
    )



_SOCKET_KINDS = frozenset(f"{proto}{family}" for proto in ("tcp", "udp") for family in (4, 6))
"""How a socket label begins (its ``proto_label``)."""


def _state_of(label: str) -> str | None:
    """The state a socket label ends with (``TIME_WAIT``), None for a stateless (UDP) label."""
    last = label.rsplit(" ", 1)[-1]
    return last if last and last.replace("_", "").isalnum() and last.isupper() else None


def grouped_lines(texts: Sequence[str]) -> list[str]:
    """Per-socket lines (``LABEL: explanation``) with the same explanation said once, with the count.

    300 TIME_WAIT remnants give one line, ``300 sockets (300 TIME_WAIT): kernel-owned, ...``; a line
    whose explanation no other line shares is kept as it is. Order: each explanation where it first appears.
    """
    groups: dict[str, list[str]] = {}
    for text in texts:
        label, sep, why = text.partition(": ")
        # Only lines about a socket (``tcp4 ...: why``) are merged; a line about a pid stays its own.
        about_socket = sep and label.split(" ", 1)[0] in _SOCKET_KINDS
        groups.setdefault(why if about_socket else "\0" + text, []).append(text)
    lines: list[str] = []
    for why, members in groups.items():
        if len(members) == 1:
            lines.append(members[0])
            continue
        states: dict[str, int] = {}
        for member in members:
            state = _state_of(member.partition(": ")[0])
            if state is not None:
                states[state] = states.get(state, 0) + 1
        counts = ", ".join(f"{n:,} {state}" for state, n in states.items())
        lines.append(f"{len(members):,} sockets{f' ({counts})' if counts else ''}: {why}")
    return lines
