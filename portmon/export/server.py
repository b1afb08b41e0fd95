"""Serving the metrics: the HTTP endpoint (loopback unless asked otherwise) and the atomic textfile."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, write_to_textfile

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


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_CACHED_KEYS = 16
"""Distinct requests (format, compression, name[] filter) remembered per poll."""


def cached_app(registry: CollectorRegistry, version: Callable[[], int]) -> WsgiApp:
    """prometheus_client's WSGI app, its answers kept until ``version()`` moves on (the next poll).

    The exposition of a poll never changes, yet rendering it costs tens of milliseconds at
    thousands of listeners: a scrape storm then costs a dictionary lookup per scrape. Requests
    are told apart by what changes the answer (Accept, Accept-Encoding, the query string).
    """
    app = make_wsgi_app(registry)
    cache: dict[tuple[object, ...], tuple[str, list[tuple[str, str]], bytes]] = {}
    seen = [-1]
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)  # type: ignore[no-any-return]  # WSGI's own types
        key = tuple(environ.get(k) for k in ("PATH_INFO", "QUERY_STRING", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING"))
        with lock:
            current = version()
            if seen[0] != current:
                cache.clear()
                seen[0] = current
            hit = cache.get(key)
            if hit is None:
                answer: dict[str, Any] = {}

                def record(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
                    answer["status"], answer["headers"] = status, list(headers)

                body = b"".join(app(environ, record))
                hit = (answer["status"], answer["headers"], body)
                if len(cache) < _CACHED_KEYS:
                    cache[key] = hit
        start_response(hit[0], hit[1])
        return [hit[2]]

    return serve


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer:
    """The HTTP endpoint, serving ``registry`` on ``/metrics`` (any path) from its own threads."""

    def __init__(self, address: ListenAddress, registry: CollectorRegistry, version: Callable[[], int]) -> None:
        try:
            infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError) as exc:
            raise AddressError(f"cannot listen on {address.host}:{address.port}: {exc}") from None
        family, _, _, _, sockaddr = infos[0]

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = family

        try:
            self._server = make_server(
                str(sockaddr[0]), address.port, cached_app(registry, version), Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise AddressError(f"cannot listen on {address.host}:{address.port}: {exc.strerror or exc}") from None
        bound = self._server.server_address
        self.host = str(bound[0])
        self.port = int(bound[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="portmon-metrics-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The scrape URL, with the port really bound (port 0 picks one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._thread.join(timeout=5)
        self._server.server_close()


def write_textfile(path: str, registry: CollectorRegistry) -> None:
    """Write the metrics for node_exporter's textfile collector: to a temporary file, then renamed over ``path``."""
    write_to_textfile(path, registry)
