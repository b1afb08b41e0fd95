"""Rates between two snapshots: per connection by cookie, per process, with injected sample times."""

from __future__ import annotations

import itertools
import random

import pytest

from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Holder, Snapshot, Socket
from portmon.query.rates import (
    Sample,
    busiest,
    busiest_processes,
    connection_rates,
    moving_rates,
    process_rates,
)

WEB = Holder(pid=10, name="web", user="www")
DB = Holder(pid=20, name="db", user="pg")


def conn(cookie: int, sent: int, received: int, holder: Holder = WEB, rport: int = 50000) -> Socket:
    return Socket(
        "tcp", 4, "127.0.0.1", 8080, "127.0.0.1", rport, ESTABLISHED, (holder,),
        bytes_sent=sent, bytes_received=received, rtt_ms=0.1, retransmits=0, cookie=cookie,
    )  # fmt: skip


def sample(at: float, *sockets: Socket) -> Sample:
    return Sample(Snapshot(sockets=sockets, taken_at=1000.0 + at), at)


def test_rate_is_the_change_over_the_injected_interval() -> None:
    rates = connection_rates(sample(0.0, conn(1, 1000, 500)), sample(2.0, conn(1, 5000, 900)))
    assert [(r.socket.cookie, r.tx_bps, r.rx_bps) for r in rates] == [(1, 2000.0, 200.0)]


def test_a_reused_address_pair_does_not_inherit_the_old_counters() -> None:
    old = conn(1, 10_000_000, 10_000_000)
    new = conn(2, 300, 100)  # the same addresses and ports, a new socket
    assert old.key[:6] == new.key[:6]
    rates = connection_rates(sample(0.0, old), sample(1.0, new))
    assert [(r.socket.cookie, r.tx_bps, r.rx_bps) for r in rates] == [(2, 300.0, 100.0)]


def test_sockets_without_counters_or_cookie_have_no_rate() -> None:
    listener = Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, accept_queue=0, backlog=128, cookie=3)
    closed = Socket("tcp", 4, "127.0.0.1", 8080, "127.0.0.1", 50001, TIME_WAIT, cookie=4)
    udp = Socket("udp", 4, "127.0.0.1", 53)
    psutil_conn = conn(5, 1, 1)._replace(cookie=None)
    both = (listener, closed, udp, psutil_conn)
    assert connection_rates(sample(0.0, *both), sample(1.0, *both)) == []


def test_a_counter_going_down_gives_no_rate() -> None:
    assert connection_rates(sample(0.0, conn(1, 500, 500)), sample(1.0, conn(1, 400, 600))) == []


def test_samples_must_move_forward() -> None:
    with pytest.raises(ValueError):
        connection_rates(sample(1.0, conn(1, 0, 0)), sample(1.0, conn(1, 0, 0)))


def test_process_rates_sum_the_primary_holders_connections() -> None:
    before = sample(0.0, conn(1, 0, 0), conn(2, 0, 0, rport=50001), conn(3, 0, 0, DB))
    shared = conn(2, 200, 0, rport=50001)._replace(holders=(WEB, DB))
    after = sample(2.0, conn(1, 1000, 400), shared, conn(3, 0, 60, DB))
    procs = busiest_processes(process_rates(connection_rates(before, after)))
    assert [(p.pid, p.process, p.user, p.tx_bps, p.rx_bps, p.connections) for p in procs] == [
        (10, "web", "www", 600.0, 200.0, 2),
        (20, "db", "pg", 0.0, 30.0, 1),
    ]


def test_busiest_orders_by_total_rate_and_limits() -> None:
    before = sample(0.0, conn(1, 0, 0), conn(2, 0, 0, rport=2), conn(3, 0, 0, rport=3))
    after = sample(1.0, conn(1, 10, 0), conn(2, 0, 30, rport=2), conn(3, 20, 0, rport=3))
    assert [r.socket.cookie for r in busiest(connection_rates(before, after), 2)] == [2, 3]


def _moving(before: Sample, after: Sample) -> list[tuple[int | None, float, float]]:
    return [(r.socket.cookie, r.tx_bps, r.rx_bps) for r in moving_rates(before, after)]


def _plain_moving(before: Sample, after: Sample) -> list[tuple[int | None, float, float]]:
    return [(r.socket.cookie, r.tx_bps, r.rx_bps) for r in connection_rates(before, after) if r.tx_bps or r.rx_bps]


def test_moving_rates_leave_out_shared_and_idle_sockets() -> None:
    idle, busy, going_down = conn(1, 100, 100), conn(2, 0, 0, rport=50001), conn(3, 500, 500, rport=50002)
    listener = Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, accept_queue=0, backlog=128, cookie=4)
    before = sample(0.0, idle, busy, going_down, listener)
    # ``idle`` is the very object again (a collector hands back unchanged sockets); ``same`` is an
    # equal copy that moved nothing; a new connection (cookie 5) counts from zero.
    same = conn(1, 100, 100)
    after = sample(2.0, idle, conn(2, 4000, 0, rport=50001), conn(3, 400, 600, rport=50002), listener, conn(5, 0, 60))
    assert _moving(before, after) == [(2, 2000.0, 0.0), (5, 0.0, 30.0)]
    assert _moving(before, after) == _plain_moving(before, after)
    assert _moving(before, sample(1.0, same)) == [] == _plain_moving(before, sample(1.0, same))
    with pytest.raises(ValueError):
        moving_rates(after, before)


def test_moving_rates_equal_the_filtered_plain_rates_on_random_scans() -> None:
    rng = random.Random(18)
    cookies = itertools.count(1)
    live = [conn(next(cookies), 0, 0, rport=40000 + i) for i in range(200)]
    before = sample(0.0, *live)
    for step in range(1, 30):
        after_socks: list[Socket] = []
        for sock in before.snapshot.sockets:
            roll = rng.random()
            if roll < 0.6:
                after_socks.append(sock)  # unchanged: the same object
            elif roll < 0.7:
                after_socks.append(sock._replace())  # an equal copy
            elif roll < 0.9 and sock.bytes_sent is not None and sock.bytes_received is not None:
                after_socks.append(
                    sock._replace(
                        bytes_sent=sock.bytes_sent + rng.choice((0, 10, 1000)),
                        bytes_received=sock.bytes_received + rng.choice((0, 7)),
                    )
                )
            elif roll < 0.95:
                after_socks.append(sock._replace(bytes_sent=None, bytes_received=None, state=TIME_WAIT))
            # else: closed and gone
        after_socks += [conn(next(cookies), rng.choice((0, 5)), 0, rport=rng.randrange(1024, 65535)) for _ in range(5)]
        rng.shuffle(after_socks)
        after = sample(float(step), *after_socks)
        assert _moving(before, after) == _plain_moving(before, after)
        before = after
