"""SO_REUSEPORT on a busy port: is a group already sharing it, and could a new server silently join?

Two sockets may listen on the same address and port only when both set SO_REUSEPORT (and belong to
the same user): the kernel then spreads new connections across them. A stale dev server that set
it answers part of the requests meant for the new one. The test bind here sets SO_REUSEPORT and
binds, but never listens: only listening sockets get connections, so the probe cannot take one.
UDP is not probed (a bound UDP socket would receive a share of datagrams at once); its groups are
still reported from the socket table.
"""

from __future__ import annotations

import errno
import os
import socket as _socket
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from portmon.model import Socket
from portmon.ownership.families import reuseport_groups
from portmon.textsafe import safe

ReuseportBinder = Callable[[int, int, str], "tuple[bool, str | None]"]
"""``bind(port, family, address) -> (ok, error)``: one SO_REUSEPORT test bind."""


def reuseport_bind(port: int, family: int, address: str) -> tuple[bool, str | None]:
    """Bind (never listen) a TCP socket with SO_REUSEPORT to ``address:port`` and close it."""
    option = getattr(_socket, "SO_REUSEPORT", None)
    if option is None:
        return False, "SO_REUSEPORT is not available here"
    try:
        sock = _socket.socket(_socket.AF_INET if family == 4 else _socket.AF_INET6, _socket.SOCK_STREAM)
    except OSError as exc:
        return False, f"socket: {exc.strerror or exc}"
    try:
        sock.setsockopt(_socket.SOL_SOCKET, option, 1)
        if family == 6 and address not in ("::", ""):
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return False, f"bind: {name} ({exc.strerror or exc})"
    finally:
        sock.close()
    return True, None


class ReuseportCheck(NamedTuple):
    """What SO_REUSEPORT means for one port."""

    port: int
    proto: str
    groups: tuple[tuple[Socket, ...], ...] = ()
    """Listeners sharing one address and port (each group two or more sockets)."""
    binds: tuple[tuple[int, str, bool, str | None], ...] = ()
    """(family, address, succeeded, error) of each SO_REUSEPORT test bind."""
    lines: tuple[str, ...] = ()
    """What to tell the user, safe to print (empty when SO_REUSEPORT plays no part)."""

    @property
    def joinable(self) -> bool:
        """Whether a new server with SO_REUSEPORT could start on the port now (a test bind succeeded)."""
        return any(ok for _, _, ok, _ in self.binds)


def _who(group: Sequence[Socket]) -> str:
    names = [f"{safe(s.process or '?', 32)} ({s.pid})" if s.holders else "(unknown owner)" for s in group]
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _endpoint(family: int, address: str, port: int) -> str:
    return f"[{address}]:{port}" if family == 6 else f"{address}:{port}"


def check_reuseport(
    port: int, proto: str, sockets: Sequence[Socket], binder: ReuseportBinder = reuseport_bind
) -> ReuseportCheck:
    """Groups on ``port``/``proto`` from the table, and for TCP SO_REUSEPORT test binds on the listeners' addresses."""
    mine = [s for s in sockets if s.local_port == port and s.proto == proto]
    groups = tuple(reuseport_groups(mine))
    lines = []
    for group in groups:
        first = group[0]
        lines.append(
            f"{len(group)} sockets listen on {safe(_endpoint(first.family, first.local_addr, port), 60)} together "
            f"(SO_REUSEPORT): {_who(group)}; the kernel spreads new connections across them"
        )
    binds: list[tuple[int, str, bool, str | None]] = []
    if proto == "tcp":
        addresses = sorted({(s.family, s.local_addr) for s in mine if s.listening})
        for family, address in addresses:
            ok, error = binder(port, family, address)
            binds.append((family, address, ok, error))
    joined = [(f, a) for f, a, ok, _ in binds if ok]
    if joined:
        where = ", ".join(safe(_endpoint(f, a, port), 60) for f, a in joined)
        user = _current_user()
        lines.append(
            f"a new server that sets SO_REUSEPORT would start on {where} and silently take a share of the "
            f"connections (the test bind with SO_REUSEPORT succeeded{f' as {user}' if user else ''}): "
            "a stale server answering part of the requests looks exactly like this"
        )
    elif binds and groups:
        lines.append("the test bind with SO_REUSEPORT failed: only the same user's servers can join the group")
    return ReuseportCheck(port, proto, groups, tuple(binds), tuple(lines))


def reuseport_record(check: ReuseportCheck) -> dict[str, Any]:
    """The ``reuseport`` object of ``why --json``."""
    return {
        "joinable": check.joinable,
        "groups": [[{"pid": s.pid, "process": s.process, "local_addr": s.local_addr} for s in g] for g in check.groups],
        "binds": [{"family": f, "address": a, "ok": ok, "error": e} for f, a, ok, e in check.binds],
    }


def _current_user() -> str | None:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return None
