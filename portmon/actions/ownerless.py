"""Why a socket has no visible holder, said honestly: waiting in a listener's backlog, or in unreadable fds.

A connection the kernel has completed but the server has not yet ``accept()``-ed has no fd in any
process: it belongs to the listener's accept queue. A socket held by a process whose fd table even
root may not read (a restricting security module, a process being torn down) has no visible holder
either. Neither is "another container's PID namespace", which is what is left when neither applies.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from portmon.model import ESTABLISHED, SYN_RECV, Socket

_WILDCARDS = frozenset({"0.0.0.0", "::", "", "*"})

_IN_BACKLOG_STATES = frozenset({ESTABLISHED, SYN_RECV})
"""States of a connection still in (or on its way into) a listener's queue."""


def _reaches(listener: Socket, conn: Socket) -> bool:
    """True when ``conn`` could have arrived on ``listener``: same port, and its address or a wildcard."""
    if listener.local_port != conn.local_port or listener.proto != conn.proto:
        return False
    if listener.local_addr in _WILDCARDS:
        # An IPv6 wildcard listener also takes IPv4 connections (dual-stack); an IPv4 one only IPv4.
        return listener.family == 6 or conn.family == 4
    return listener.local_addr == conn.local_addr


def backlog_of(sock: Socket, port_sockets: Iterable[Socket]) -> int | None:
    """The pid of the listener whose accept queue holds ``sock``, or None when it is not such a connection.

    Only a TCP connection without holders qualifies, and only when a listener on its address and port
    has a visible holder (a specific address wins over a wildcard, as the kernel chooses).
    """
    if sock.holders or sock.proto != "tcp" or sock.state not in _IN_BACKLOG_STATES:
        return None
    listeners = [s for s in port_sockets if s.listening and s.holders and _reaches(s, sock)]
    if not listeners:
        return None
    listeners.sort(key=lambda s: s.local_addr in _WILDCARDS)
    return listeners[0].holders[0].pid


def unreadable_fd_tables(procfs: str = "/proc") -> int:
    """How many processes' fd tables cannot be listed now (0 off Linux): a socket may hide in any of them."""
    if not sys.platform.startswith("linux"):
        return 0
    count = 0
    try:
        names = os.listdir(procfs)
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            os.listdir(f"{procfs}/{name}/fd")
        except PermissionError:
            count += 1
        except OSError:
            pass  # exited meanwhile
    return count


def unreadable_text(count: int) -> str:
    """``the fds of 3 processes could not be read``."""
    return f"the fds of {count} process{'es' if count != 1 else ''} could not be read"
