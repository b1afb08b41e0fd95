"""Port arguments (``8080``, ``:8080``, ``8080/tcp``, ``ssh``) and exact matching of sockets to a port."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from portmon.model import Socket
from portmon.textsafe import echo

PROTOCOLS = ("tcp", "udp")

PORT_MIN = 1
PORT_MAX = 65535

PORT_HELP = "a port 1-65535 (8080 or :8080) or a service name (http-alt), optionally with /tcp or /udp"
"""What a port argument may be, for help texts and errors."""


class PortSpecError(ValueError):
    """A port argument that is neither a port number nor a known service name; str() is one escaped line."""


class PortSpec(NamedTuple):
    """A port number and, optionally, the protocol it was given with.

    A named tuple, like the model's values: ``portmon who`` then never imports dataclasses (~6 ms).
    """

    port: int
    proto: str | None = None
    netns: int | None = None
    """The network namespace (nsfs inode) the port is in; None for portmon's own. A port typed on the command
    line is always portmon's own namespace's: the same number in a container's namespace is another port."""

    def __str__(self) -> str:
        text = f"{self.port}/{self.proto}" if self.proto else str(self.port)
        return text if self.netns is None else f"{text} in net:[{self.netns}]"

    def matches(self, sock: Socket) -> bool:
        """True when the socket is bound to exactly this local port (and protocol, when given) in the spec's
        network namespace."""
        ns = sock.netns
        return (
            sock.local_port == self.port
            and (self.proto is None or sock.proto == self.proto)
            and (ns.inode if ns is not None else None) == self.netns
        )

    def matches_in_any_netns(self, sock: Socket) -> bool:
        """:meth:`matches` in whichever network namespace the socket is."""
        return sock.local_port == self.port and (self.proto is None or sock.proto == self.proto)


class ServiceNames(Protocol):
    """What resolving a service name needs (``portmon.registry.Registry`` is one)."""

    def ports_named(self, name: str, proto: str | None = None) -> list[tuple[int, str]]: ...


def _split(text: str) -> tuple[str, str | None]:
    """``':8080/TCP'`` -> ``('8080', 'tcp')``; raise PortSpecError for a protocol other than tcp or udp."""
    raw = text.strip()
    body, sep, proto = raw.partition("/")
    proto = proto.strip().lower()
    if sep and proto not in PROTOCOLS:
        raise PortSpecError(f"invalid port {echo(text)}: the protocol must be tcp or udp")
    body = body.strip()
    if body.startswith(":"):
        body = body[1:]
    return body, (proto or None)


def _port_number(body: str, text: str) -> int:
    """The number in ``body`` (ASCII digits only, never more than five: int() of thousands of digits is slow)."""
    if len(body) > 5:
        raise PortSpecError(f"invalid port {echo(text)}: expected {PORT_HELP}; ports go up to {PORT_MAX}")
    port = int(body)
    if port == 0:
        raise PortSpecError(
            f"invalid port {echo(text)}: port 0 means 'any free port' to bind(), so no socket is ever bound to it"
        )
    if port > PORT_MAX:
        raise PortSpecError(f"invalid port {echo(text)}: ports go from {PORT_MIN} to {PORT_MAX}")
    return port


def _is_number(body: str) -> bool:
    return body.isascii() and body.isdigit()


def parse_port_spec(text: str) -> PortSpec:
    """Parse ``PORT``, ``:PORT`` or either with ``/tcp`` or ``/udp``; raise PortSpecError with a one-line reason.

    Port 0 is refused by every command alike: binding port 0 asks for any free port.
    """
    body, proto = _split(text)
    if not _is_number(body):
        raise PortSpecError(f"invalid port {echo(text)}: expected a port number {PORT_MIN}-{PORT_MAX} (8080 or :8080)")
    return PortSpec(_port_number(body, text), proto)


def parse_port_specs(texts: Sequence[str], services: ServiceNames | None = None) -> list[PortSpec]:
    """Every port the arguments name, in order and without repeats.

    Each argument is a port (``8080``, ``:8080``), or a service name resolved through ``services``
    to all of its ports (``ssh`` -> 22; ``http-alt`` -> every port registered under that name), each
    optionally with ``/tcp`` or ``/udp``. A name registered on a port for both protocols gives
    that port without a protocol (both are checked). Raises PortSpecError naming the first bad one.
    """
    specs: list[PortSpec] = []
    for text in texts:
        body, proto = _split(text)
        if _is_number(body):
            found = [PortSpec(_port_number(body, text), proto)]
        else:
            found = _named(body, proto, text, services)
        specs.extend(s for s in found if s not in specs)
    return specs


def _named(name: str, proto: str | None, text: str, services: ServiceNames | None) -> list[PortSpec]:
    """The ports of service ``name`` (for ``proto`` when given), as PortSpecs."""
    if not name or services is None or not all(c.isalnum() or c in "-_.+" for c in name):
        raise PortSpecError(f"invalid port {echo(text)}: expected {PORT_HELP}")
    pairs = services.ports_named(name, proto)
    if not pairs:
        where = f" over {proto}" if proto else ""
        raise PortSpecError(
            f"invalid port {echo(text)}: not a number, and no service of that name{where} in the registry "
            f"(expected {PORT_HELP})"
        )
    protos_of: dict[int, set[str]] = {}
    for port, p in pairs:
        if p in PROTOCOLS and port != 0:
            protos_of.setdefault(port, set()).add(p)
    if not protos_of:
        raise PortSpecError(f"invalid port {echo(text)}: the service has no TCP or UDP port in the registry")
    out: list[PortSpec] = []
    for port in sorted(protos_of):
        protos = protos_of[port]
        if proto is None and len(protos) == len(PROTOCOLS):
            out.append(PortSpec(port))
        else:
            out.extend(PortSpec(port, p) for p in sorted(protos))
    return out


def sockets_on_port(sockets: Iterable[Socket], spec: PortSpec, every_netns: bool = False) -> list[Socket]:
    """Every socket bound locally to exactly the given port (8080 never matches 18080 or 80800), in the spec's
    network namespace, or in any with ``every_netns``."""
    if every_netns:
        return [s for s in sockets if spec.matches_in_any_netns(s)]
    return [s for s in sockets if spec.matches(s)]


def spec_of(sock: Socket) -> PortSpec:
    """The port spec naming ``sock``'s local port and protocol in its own network namespace."""
    return PortSpec(sock.local_port, sock.proto, sock.netns.inode if sock.netns is not None else None)
