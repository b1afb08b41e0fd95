"""Test binds: bind (and listen on) a port as a server would, closing at once, or predict them from a socket list."""

from __future__ import annotations

import errno as _errno
import socket as _socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from portmon.model import Socket
from portmon.portspec import PROTOCOLS

IS_WINDOWS = sys.platform == "win32"

PROBE_ADDRESSES: tuple[tuple[int, str], ...] = ((4, "0.0.0.0"), (4, "127.0.0.1"), (6, "::"), (6, "::1"))
"""(family, address) of every test bind: the wildcard and the loopback address of IPv4 and IPv6."""

WILDCARDS = frozenset({"0.0.0.0", "::", "", "*"})

# Results of one test bind.
BIND_OK = "ok"
BIND_IN_USE = "in-use"
BIND_DENIED = "denied"
BIND_UNAVAILABLE = "unavailable"
"""The address family or address does not exist here (no IPv6, no ::1): left out of the verdict."""
BIND_ERROR = "error"

RESULT_WORDS = {
    BIND_OK: "free",
    BIND_IN_USE: "in use",
    BIND_DENIED: "denied",
    BIND_UNAVAILABLE: "n/a",
    BIND_ERROR: "error",
}
"""How each result reads in the table of test binds."""

Binder = Callable[[int, str], Sequence["BindAttempt"]]
"""``binder(port, proto) -> attempts``: :func:`probe_binds`, or a simulation in tests and screenshots."""


@dataclass(frozen=True, slots=True)
class BindAttempt:
    """One test bind: where, with which option, and what the kernel said."""

    proto: str
    family: int
    address: str
    reuseaddr: bool
    result: str
    """BIND_OK, BIND_IN_USE, BIND_DENIED, BIND_UNAVAILABLE or BIND_ERROR."""
    error: str | None = None
    """The failing call and its error, e.g. ``bind: EADDRINUSE (Address already in use)``."""

    @property
    def ok(self) -> bool:
        """True when the bind (and, for TCP, the listen) succeeded."""
        return self.result == BIND_OK

    @property
    def endpoint(self) -> str:
        """``0.0.0.0`` or ``[::1]``."""
        return f"[{self.address}]" if self.family == 6 else self.address


def _classify(exc: OSError) -> str:
    code = exc.errno
    if code == _errno.EADDRINUSE:
        return BIND_IN_USE
    if code in (_errno.EACCES, _errno.EPERM):
        return BIND_DENIED
    if code in (_errno.EADDRNOTAVAIL, _errno.EAFNOSUPPORT, getattr(_errno, "EPROTONOSUPPORT", -1)):
        return BIND_UNAVAILABLE
    return BIND_ERROR


def _error_text(step: str, exc: OSError) -> str:
    name = _errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{step}: {name} ({exc.strerror or exc})"


def try_bind(port: int, proto: str, family: int, address: str, reuseaddr: bool) -> BindAttempt:
    """Bind (and for TCP listen on) ``address:port`` as a server would, then close at once.

    The socket lives for the duration of two system calls; nothing is accepted or sent.
    """
    af = _socket.AF_INET if family == 4 else _socket.AF_INET6
    kind = _socket.SOCK_STREAM if proto == "tcp" else _socket.SOCK_DGRAM
    if reuseaddr and IS_WINDOWS:
        # On Windows SO_REUSEADDR lets a socket take over a port in use: the test would mean nothing.
        return BindAttempt(proto, family, address, reuseaddr, BIND_UNAVAILABLE, "SO_REUSEADDR differs on Windows")
    try:
        sock = _socket.socket(af, kind)
    except OSError as exc:
        return BindAttempt(proto, family, address, reuseaddr, BIND_UNAVAILABLE, _error_text("socket", exc))
    step = "setsockopt"
    try:
        if reuseaddr:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        step = "bind"
        sock.bind((address, port))
        if kind == _socket.SOCK_STREAM:
            # A TCP bind can succeed where the listen then fails (two SO_REUSEADDR sockets): a server
            # needs both.
            step = "listen"
            sock.listen(1)
    except OSError as exc:
        return BindAttempt(proto, family, address, reuseaddr, _classify(exc), _error_text(step, exc))
    finally:
        sock.close()
    return BindAttempt(proto, family, address, reuseaddr, BIND_OK)


def probe_binds(port: int, proto: str) -> tuple[BindAttempt, ...]:
    """Every test bind for a port: wildcard and loopback, IPv4 and IPv6, without and with SO_REUSEADDR.

    IPv6 wildcard binds use the system's default (dual-stack on most Linux systems), as a server would.
    """
    if proto not in PROTOCOLS:
        raise ValueError(f"unknown protocol {proto!r}")
    return tuple(
        try_bind(port, proto, family, address, reuse) for family, address in PROBE_ADDRESSES for reuse in (False, True)
    )



def _overlaps(probe_family: int, probe_addr: str, sock: Socket) -> bool:
    """Whether a bind of the probe address would collide with ``sock``'s local address (dual-stack ``::``)."""
    local = sock.local_addr or "0.0.0.0"
    if probe_addr in WILDCARDS:
        return probe_family == 6 or sock.family == 4 or local in WILDCARDS
    if local in WILDCARDS:
        return sock.family == probe_family or (sock.family == 6 and probe_family == 4)
    return local == probe_addr


def simulated_binder(
    sockets: Sequence[Socket], *, ipv6: bool = True, denied_below: int = 0
) -> Binder:
    """A binder that predicts the test binds from a socket list instead of binding (tests and screenshots).

    It follows Linux's rules closely enough for a demo: a listener blocks every overlapping bind;
    other sockets block a plain bind but not one with SO_REUSEADDR. Ports below ``denied_below``
    are refused as for an unprivileged user.
    """

    def binder(port: int, proto: str) -> tuple[BindAttempt, ...]:
        on_port = [s for s in sockets if s.local_port == port and s.proto == proto]
        out: list[BindAttempt] = []
        for family, address in PROBE_ADDRESSES:
            for reuse in (False, True):
                if family == 6 and not ipv6:
                    out.append(BindAttempt(proto, family, address, reuse, BIND_UNAVAILABLE, "socket: EAFNOSUPPORT"))
                    continue
                if port < denied_below:
                    denied = "bind: EACCES (Permission denied)"
                    out.append(BindAttempt(proto, family, address, reuse, BIND_DENIED, denied))
                    continue
                blocked = any(
                    _overlaps(family, address, s) and (not reuse or s.listening or proto == "udp") for s in on_port
                )
                if blocked:
                    in_use = "bind: EADDRINUSE (Address already in use)"
                    out.append(BindAttempt(proto, family, address, reuse, BIND_IN_USE, in_use))
                else:
                    out.append(BindAttempt(proto, family, address, reuse, BIND_OK))
        return tuple(out)

    return binder
