"""Closing one TCP connection from outside its process: SOCK_DESTROY over sock_diag (Linux, root).

What ``ss -K`` does: the kernel aborts the socket (the peer gets a reset, the holder's next call
fails with ECONNABORTED) and drops it from the socket tables. The request names the connection
by its addresses and ports *and* its cookie, so a connection that closed and was replaced on the
same address pair since the scan is never hit. Listening sockets are never closed this way: that
would stop a server, which is ``portmon kill``'s job, with its own checks.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from portmon.collect.tables import NETLINK_SOCK_DIAG
from portmon.model import LISTEN, TIME_WAIT, Snapshot, Socket

SOCK_DESTROY = 21
"""The sock_diag message type that destroys one socket (linux/sock_diag.h)."""
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLMSG_ERROR = 2
_NLHDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states, then the sockid: ports (network order),
# source and destination addresses (16 bytes each), interface, cookie (two host-order words).
_REQ = struct.Struct("=BBBBI")
_SOCKID = struct.Struct(">HH16s16s")
_IF_COOKIE = struct.Struct("=III")
_ERRNO = struct.Struct("=i")


class Endpoint(NamedTuple):
    """An address and port as given on the command line."""

    addr: str
    """The address in its canonical text form (IPv4, or IPv6 without brackets)."""
    port: int
    family: int
    """4 or 6."""


class EndpointError(ValueError):
    """An ``ADDR:PORT`` that cannot be read."""


def parse_endpoint(text: str) -> Endpoint:
    """``ADDR:PORT`` or ``[V6ADDR]:PORT`` (an IPv6 address needs the brackets)."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise EndpointError(f"{text!r}: expected [V6ADDR]:PORT")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise EndpointError(f"{text!r}: expected ADDR:PORT, or [V6ADDR]:PORT for IPv6")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise EndpointError(f"{text!r}: {host!r} is not an IP address") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EndpointError(f"{text!r}: the port must be a number from 1 to 65535")
    return Endpoint(str(addr), int(port_text), addr.version)


def _same_addr(sock_addr: str | None, want: str) -> bool:
    """Equal addresses, an IPv4 address also matching its IPv4-mapped IPv6 form."""
    if sock_addr is None:
        return False
    if sock_addr == want:
        return True
    try:
        a, b = ipaddress.ip_address(sock_addr), ipaddress.ip_address(want)
    except ValueError:
        return False
    a4 = a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) else a
    b4 = b.ipv4_mapped if isinstance(b, ipaddress.IPv6Address) else b
    return (a4 or a) == (b4 or b)


def find_connections(sockets: Sequence[Socket], local: Endpoint, remote: Endpoint) -> list[Socket]:
    """Every TCP socket from ``local`` to ``remote`` (TIME_WAIT remnants last)."""
    found = [
        s
        for s in sockets
        if s.proto == "tcp"
        and s.local_port == local.port
        and s.remote_port == remote.port
        and _same_addr(s.local_addr, local.addr)
        and _same_addr(s.remote_addr, remote.addr)
    ]
    return sorted(found, key=lambda s: s.state == TIME_WAIT)


class ClosePlan(NamedTuple):
    """What ``close`` would do: the connection to close, or why there is none."""

    target: Socket | None
    problem: str | None
    """Why nothing can be closed (None when ``target`` is set)."""
    code: int
    """The exit code when there is a problem: 1 nothing to close, 2 refused."""


def plan_close(sockets: Sequence[Socket], local: Endpoint, remote: Endpoint) -> ClosePlan:
    """Pick the one live connection from ``local`` to ``remote`` in a scan, or say why not."""
    label = f"{_text(local)} -> {_text(remote)}"
    found = find_connections(sockets, local, remote)
    if not found:
        if any(s.proto == "tcp" and s.state == LISTEN and s.local_port == local.port for s in sockets):
            return ClosePlan(
                None, f"no TCP connection {label}; {_text(local)} is a listening socket, which close never stops "
                "(portmon kill stops a server)", 2
            )  # fmt: skip
        return ClosePlan(None, f"no TCP connection {label}", 1)
    sock = found[0]
    if sock.state == LISTEN:
        return ClosePlan(None, f"{label} is a listening socket: close never stops a server (see portmon kill)", 2)
    if sock.state == TIME_WAIT:
        return ClosePlan(None, f"{label} is already closed (TIME_WAIT): the kernel clears it by itself", 1)
    if sock.cookie is None:
        return ClosePlan(None, f"{label}: this collector does not give socket cookies (needs Linux sock_diag)", 1)
    return ClosePlan(sock, None, 0)


def _text(e: Endpoint) -> str:
    return f"[{e.addr}]:{e.port}" if e.family == 6 else f"{e.addr}:{e.port}"


def _packed(addr: str | None, family: int) -> bytes:
    """An address as the sockid carries it: 4 bytes (IPv4) or 16 (IPv6), padded to 16."""
    if family == 4:
        return socket.inet_pton(socket.AF_INET, addr or "0.0.0.0").ljust(16, b"\0")
    return socket.inet_pton(socket.AF_INET6, addr or "::")


def destroy_request(sock: Socket, seq: int = 1) -> bytes:
    """The SOCK_DESTROY message for ``sock``, naming it by addresses, ports and cookie."""
    if sock.cookie is None or sock.remote_port is None:
        raise ValueError("only a connected socket with a cookie can be named")
    family = socket.AF_INET if sock.family == 4 else socket.AF_INET6
    body = (
        _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        + _SOCKID.pack(
            sock.local_port,
            sock.remote_port,
            _packed(sock.local_addr, sock.family),
            _packed(sock.remote_addr, sock.family),
        )
        + _IF_COOKIE.pack(0, sock.cookie & 0xFFFFFFFF, sock.cookie >> 32)
    )
    return _NLHDR.pack(_NLHDR.size + len(body), SOCK_DESTROY, _NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body


def destroy(sock: Socket) -> None:
    """Ask the kernel to abort ``sock``; OSError with the kernel's errno when it refuses."""
    request = destroy_request(sock)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5.0)
        nl.send(request)
        reply = nl.recv(4096)
    if len(reply) < _NLHDR.size + _ERRNO.size:
        raise OSError(errno.EIO, "sock_diag: short reply")
    kind = _NLHDR.unpack_from(reply)[1]
    if kind != _NLMSG_ERROR:
        raise OSError(errno.EIO, f"sock_diag: unexpected reply type {kind}")
    err = -_ERRNO.unpack_from(reply, _NLHDR.size)[0]
    if err:
        raise OSError(err, os.strerror(err))


def explain_error(exc: OSError) -> str:
    """What a refusal means, in words."""
    if exc.errno == errno.EPERM:
        return "not permitted: closing a connection needs root (CAP_NET_ADMIN)"
    if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
        return "this kernel cannot close sockets from outside (built without CONFIG_INET_DIAG_DESTROY)"
    if exc.errno == errno.ENOENT:
        return "the connection is gone already (it closed, or was replaced, since the scan)"
    return f"the kernel refused: {exc.strerror or exc}"


class CloseOutcome(NamedTuple):
    """What happened: whether the connection is gone from a new scan, and the error if the kernel refused."""

    closed: bool
    error: str | None
    errno: int | None
    after: Socket | None
    """The connection (same cookie) in the re-scan, if still there."""


def close_connection(
    target: Socket, scan: Callable[[], Snapshot], destroyer: Callable[[Socket], None] = destroy
) -> CloseOutcome:
    """Destroy ``target`` and re-scan to confirm it is gone (``destroyer`` and ``scan`` are injectable)."""
    try:
        destroyer(target)
    except OSError as exc:
        return CloseOutcome(False, explain_error(exc), exc.errno, None)
    still = next((s for s in scan().sockets if s.cookie == target.cookie), None)
    if still is not None:
        return CloseOutcome(False, f"the connection is still there ({still.state})", None, still)
    return CloseOutcome(True, None, None, None)
