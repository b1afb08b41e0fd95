"""Serving the metrics: the HTTP endpoint (loopback unless asked otherwise) and the atomic textfile."""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import NamedTuple

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile

from portmon.export.metrics import MetricsState, SnapshotMetrics

DEFAULT_PORT = 9842


class AddressError(ValueError):
    """A --metrics address that cannot be used; str() says why."""


class ListenAddress(NamedTuple):
    """Where to serve: a host (name or address) and a port (0: any free one)."""

    host: str
    port: int


def parse_listen_address(text: str) -> ListenAddress:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (loopback) or ``PORT``; the host defaults to 127.0.0.1."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise AddressError(f"invalid address '{text}': expected [ADDRESS]:PORT")
        port_text = rest[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise AddressError(f"invalid address '{text}': write an IPv6 address as [ADDRESS]:PORT")
    else:
        host, port_text = "", text
    if not port_text.isdigit() or int(port_text) > 65535:
        raise AddressError(f"invalid port in '{text}': expected 0-65535")
    return ListenAddress(host or "127.0.0.1", int(port_text))


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).partition("%")[0]).is_loopback for info in infos)


def metrics_registry(state: MetricsState) -> CollectorRegistry:
    """A registry holding portmon's metrics only (not the client's default process and GC metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotMetrics(state))
    return registry


class MetricsServer:
    """The HTTP endpoint, serving ``registry`` on ``/metrics`` (and ``/``) from its own thread."""

    def __init__(self, address: ListenAddress, registry: CollectorRegistry) -> None:
        try:
            self._server, self._thread = start_http_server(address.port, addr=address.host, registry=registry)
        except OSError as exc:
            raise AddressError(f"cannot listen on {address.host}:{address.port}: {exc.strerror or exc}") from None
        bound = self._server.server_address
        self.host = str(bound[0])
        self.port = int(bound[1])

    @property
    def url(self) -> str:
        """The scrape URL, with the port really bound (port 0 picks one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and close the socket."""
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=5)
        self._server.server_close()


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """Write the metrics for node_exporter's textfile collector: to a temporary file, then renamed over ``path``."""
    write_to_textfile(path, registry)
