"""Traffic and listener health read from the kernel on real loopback sockets (Linux sock_diag)."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from portmon.collect.procfs import ProcfsCollector
from portmon.collect.tables import netlink_works
from portmon.model import ESTABLISHED, LISTEN, Snapshot, Socket
from portmon.query.rates import Sample, connection_rates

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink_works(), reason="needs Linux sock_diag netlink"
)


def scan_until(collector: ProcfsCollector, found: Callable[[Snapshot], Socket | None], what: str) -> Socket:
    """Scan until ``found`` picks a socket out of a snapshot (a deadline, not a sleep)."""
    deadline = time.monotonic() + 10.0
    while True:
        sock = found(collector.scan())
        if sock is not None:
            return sock
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.01)


def by_ports(local: int, remote: int | None, state: str = ESTABLISHED) -> Callable[[Snapshot], Socket | None]:
    def pick(snap: Snapshot) -> Socket | None:
        for s in snap.sockets:
            if s.proto == "tcp" and s.local_port == local and s.remote_port == remote and s.state == state:
                return s
        return None

    return pick


Pick = Callable[[Snapshot], Socket | None]


def where(pick: Pick, ok: Callable[[Socket], bool]) -> Pick:
    """``pick``, but only a socket for which ``ok`` holds."""

    def pick_ok(snap: Snapshot) -> Socket | None:
        sock = pick(snap)
        return sock if sock is not None and ok(sock) else None

    return pick_ok


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback pair: (client, server side)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server:
        yield client, server


def _send_and_drain(sender: socket.socket, receiver: socket.socket, size: int) -> None:
    sender.sendall(b"x" * size)
    got = 0
    while got < size:
        got += len(receiver.recv(1 << 20))


def test_counters_are_the_kernels_tcp_info(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    size = 300_000
    cport, sport = client.getsockname()[1], server.getsockname()[1]
    collector = ProcfsCollector(tables="netlink")
    before = scan_until(collector, by_ports(cport, sport), "the client")
    _send_and_drain(client, server, size)
    _send_and_drain(server, client, 777)
    # The client's count of acknowledged bytes catches up when the server's ACK is processed.
    done = by_ports(cport, sport)
    expected = (before.bytes_sent or 0) + size
    sent = scan_until(collector, where(done, lambda x: x.bytes_sent == expected), "the client's bytes acknowledged")
    assert sent.bytes_received == before.bytes_received + 777
    assert sent.rtt_ms is not None and sent.rtt_ms > 0
    assert sent.retransmits is not None and sent.retransmits >= 0
    assert sent.accept_queue is None and sent.backlog is None
    peer = scan_until(collector, by_ports(sport, cport), "the server side")
    assert peer.bytes_received is not None and peer.bytes_received >= size
    assert sent.cookie is not None and peer.cookie is not None and sent.cookie != peer.cookie


def test_counters_off_reads_no_tcp_info(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    sock = scan_until(
        ProcfsCollector(tables="netlink", counters=False),
        by_ports(client.getsockname()[1], server.getsockname()[1]),
        "the client",
    )
    assert (sock.bytes_sent, sock.bytes_received, sock.rtt_ms, sock.retransmits) == (None, None, None, None)
    assert sock.cookie is not None


def test_procnet_fallback_has_no_counters(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    sock = scan_until(
        ProcfsCollector(tables="procnet"), by_ports(client.getsockname()[1], server.getsockname()[1]), "the client"
    )
    counters = ("bytes_sent", "bytes_received", "rtt_ms", "retransmits", "accept_queue", "backlog", "cookie")
    assert {name: getattr(sock, name) for name in counters} == dict.fromkeys(counters)


def test_a_paced_sender_is_reported_at_its_rate(pair: tuple[socket.socket, socket.socket]) -> None:
    """A sender that moves a known number of bytes between two samples taken a known time apart.

    The sample times are injected (the interval is what the bytes were paced to), so the test
    checks the counters and the rate arithmetic, not the scheduler.
    """
    client, server = pair
    cport, sport = client.getsockname()[1], server.getsockname()[1]
    collector = ProcfsCollector(tables="netlink")
    first = scan_until(collector, by_ports(cport, sport), "the client")
    base = collector.scan()
    rate, seconds = 250_000.0, 4.0
    _send_and_drain(client, server, int(rate * seconds))
    target = (first.bytes_sent or 0) + int(rate * seconds)
    pick = by_ports(cport, sport)
    scan_until(collector, where(pick, lambda x: (x.bytes_sent or 0) >= target), "the bytes acknowledged")
    later = collector.scan()
    rates = {r.socket.cookie: r for r in connection_rates(Sample(base, 10.0), Sample(later, 10.0 + seconds))}
    tx = rates[first.cookie].tx_bps
    assert abs(tx - rate) <= 0.2 * rate
    server_side = next(s for s in later.sockets if s.local_port == sport and s.remote_port == cport)
    assert abs(rates[server_side.cookie].rx_bps - rate) <= 0.2 * rate


def test_a_listener_that_never_accepts_shows_its_queue_and_backlog() -> None:
    backlog = 3
    clients: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        port = listener.getsockname()[1]
        try:
            for _ in range(backlog + 4):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                clients.append(c)
            # Linux queues one more than the backlog (full means "over the backlog"), then drops SYNs.
            full = scan_until(
                ProcfsCollector(tables="netlink"),
                where(by_ports(port, None, LISTEN), lambda x: x.accept_queue == backlog + 1),
                "a full accept queue",
            )
        finally:
            for c in clients:
                c.close()
    assert (full.accept_queue, full.backlog) == (backlog + 1, backlog)
    assert full.accept_queue_full
    assert full.bytes_sent is None and full.rtt_ms is None


def test_a_reused_address_pair_is_a_new_connection_with_its_own_counters() -> None:
    collector = ProcfsCollector(tables="netlink")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        server_addr = listener.getsockname()

        def connect(cport: int) -> tuple[socket.socket, socket.socket]:
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            c.bind(("127.0.0.1", cport))
            c.connect(server_addr)
            s, _ = listener.accept()
            return c, s

        first_client, first_server = connect(0)
        cport = first_client.getsockname()[1]
        _send_and_drain(first_client, first_server, 200_000)
        pick = by_ports(cport, server_addr[1])
        old = scan_until(collector, where(pick, lambda x: (x.bytes_sent or 0) >= 200_000), "the bytes acknowledged")
        before = collector.scan()
        # Reset, not closed: no TIME_WAIT keeps the address pair, so it can be used again at once.
        first_client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        first_client.close()
        first_server.close()
        second_client, second_server = connect(cport)
        with second_client, second_server:
            new = scan_until(collector, where(pick, lambda x: x.cookie != old.cookie), "the new connection")
            after = collector.scan()
    assert new.cookie != old.cookie
    rates = {r.socket.cookie: r for r in connection_rates(Sample(before, 0.0), Sample(after, 1.0))}
    # The new connection counts from zero: nothing of the old one's 200,000 bytes.
    assert rates[new.cookie].tx_bps < 1000
