"""Port arguments (``8080``, ``8080/tcp``) and exact matching of sockets to a port."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from portmon.model import Socket

PROTOCOLS = ("tcp", "udp")


class PortSpecError(ValueError):
    """A port argument that is not ``PORT`` or ``PORT/tcp`` / ``PORT/udp``."""


class PortSpec(NamedTuple):
    """A port number and, optionally, the protocol it was given with.

    A named tuple, like the model's values: ``portmon who`` then never imports dataclasses (~6 ms).
    """

    port: int
    proto: str | None = None

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}" if self.proto else str(self.port)

    def matches(self, sock: Socket) -> bool:
        """True when the socket is bound to exactly this local port (and protocol, when given)."""
        return sock.local_port == self.port and (self.proto is None or sock.proto == self.proto)


def parse_port_spec(text: str) -> PortSpec:
    """Parse ``PORT`` or ``PORT/PROTO``; raise PortSpecError with a one-line reason."""
    raw = text.strip()
    port_text, sep, proto = raw.partition("/")
    proto = proto.lower()
    if sep and proto not in PROTOCOLS:
        raise PortSpecError(f"invalid port '{text}': protocol must be tcp or udp")
    if not port_text.isdigit() or not port_text.isascii():
        raise PortSpecError(f"invalid port '{text}': expected a port number 0-65535, optionally with /tcp or /udp")
    port = int(port_text)
    if port > 65535:
        raise PortSpecError(f"invalid port '{text}': expected a port number 0-65535")
    return PortSpec(port, proto or None)


def sockets_on_port(sockets: Iterable[Socket], spec: PortSpec) -> list[Socket]:
    """Every socket bound locally to exactly the given port (8080 never matches 18080 or 80800)."""
    return [s for s in sockets if spec.matches(s)]
