"""Each speed trick of a one-shot scan gives what the plain way gives: the cold walk child, gc off.

(The fd-table tricks are compared with a plain listing in test_fdwalk.py.)
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portmon.collect.sockets import number_duplicates
from portmon.collect.tablecache import TableCache, TableRead, twins_plain, with_traffic
from portmon.collect.tables import (
    TABLES,
    TCP_STATE_NAMES,
    NetlinkReader,
    Row,
    RowScanner,
    netlink_works,
    row_inode,
    row_traffic,
    unpack_rows,
)
from portmon.model import Socket

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cold walk is the procfs collector's")

LAUNCH = "from portmon.cli.launch import main; main()"
"""The ``portmon`` console script: a cold walk child for ``list``, gc off, ``os._exit`` at the end."""
NO_WALK = "import sys; from portmon.cli.main import main; sys.exit(main(exit_hard=True))"
"""The same command with no cold walk child (the scan walks every process itself)."""
GC_ON = "import gc; gc.disable = lambda: None; " + LAUNCH
"""The same command with the cyclic garbage collector left on."""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _list(code: str, port: int) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, "list", f":{port}", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


@pytest.mark.parametrize("plain", [NO_WALK, GC_ON], ids=["without-cold-walk", "gc-on"])
def test_a_trick_gives_the_plain_answer(listener: socket.socket, plain: str) -> None:
    port = listener.getsockname()[1]
    fast = _list(LAUNCH, port)
    assert fast == _list(plain, port)
    assert [(r["local_port"], r["pid"]) for r in fast] == [(port, os.getpid())]


# ---- the steady scan's tricks: one TCP dump for both families, the rates of what moved ----------


def _diag_message(family: int, state: int, sport: int, inode: int, kind: int = 18) -> bytes:
    """One inet_diag entry without attributes, as the kernel sends it (``kind``: the request's type)."""
    ident = struct.pack(">HH", sport, 0) + bytes(32) + bytes(12)
    body = struct.pack("=BBBB", family, state, 0, 0) + ident + struct.pack("=IIIII", 0, 1, 2, 0, inode)
    return struct.pack("=IHHII", 16 + len(body), kind, 2, 1, 0) + body


_DONE = struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0)


class _ScriptedNetlink:
    """A netlink socket that answers each request with the next scripted reads (and records requests)."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []
        self.reads: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self.reads = self.answers.pop(0)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.reads.pop(0)

    def close(self) -> None:
        pass


def test_a_combined_dump_hands_each_family_to_its_table() -> None:
    v4 = [_diag_message(socket.AF_INET, 10, 80, 7), _diag_message(socket.AF_INET, 1, 80, 8)]
    v6 = [_diag_message(socket.AF_INET6, 10, 443, 9)]
    fake = _ScriptedNetlink([[v4[0] + v6[0], v4[1] + _DONE]])
    reader = NetlinkReader()
    reader._sock = fake  # type: ignore[assignment]
    rows4 = reader.read_rows(TABLES[0], True)
    rows6 = reader.read_rows(TABLES[1], True)
    assert list(map(row_inode, rows4)) == [7, 8]
    assert list(map(row_inode, rows6)) == [9]
    # The listeners' accept queue and backlog; the connection has no tcp_info here.
    assert [row_traffic(r)[4:6] for r in rows4 + rows6] == [(1, 2), (None, None), (1, 2)]
    assert len(fake.sent) == 1 and struct.unpack_from("=H", fake.sent[0], 4)[0] == 18  # one TCPDIAG_GETSOCK
    assert fake.sent[0][16] == socket.AF_UNSPEC


@pytest.mark.parametrize("between", ["udp", "other-counters"])
def test_the_ipv6_rows_of_a_combined_dump_serve_only_the_read_right_after(between: str) -> None:
    combined = [_diag_message(socket.AF_INET6, 10, 443, 9) + _DONE]
    alone = [_diag_message(socket.AF_INET6, 10, 443, 10, kind=20) + _DONE]
    answers = [combined, [_DONE], alone] if between == "udp" else [combined, alone]
    requests = len(answers)
    fake = _ScriptedNetlink(answers)
    reader = NetlinkReader()
    reader._sock = fake  # type: ignore[assignment]
    reader.read_rows(TABLES[0], False)
    if between == "udp":
        reader.read_rows(TABLES[2], False)
    rows6 = reader.read_rows(TABLES[1], between == "other-counters")
    assert list(map(row_inode, rows6)) == [10]  # its own dump, not the kept rows
    assert len(fake.sent) == requests


def test_a_kernel_refusing_the_combined_dump_gets_one_dump_per_table() -> None:
    refused = struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -22) + bytes(16)
    v4 = [_diag_message(socket.AF_INET, 10, 80, 7, kind=20) + _DONE]
    v6 = [_diag_message(socket.AF_INET6, 10, 443, 9, kind=20) + _DONE]
    fake = _ScriptedNetlink([[refused], v4, v6])
    reader = NetlinkReader()
    reader._sock = fake  # type: ignore[assignment]
    reader.close = lambda: None  # type: ignore[method-assign]  # keep the scripted socket
    assert list(map(row_inode, reader.read_rows(TABLES[0], False))) == [7]
    assert list(map(row_inode, reader.read_rows(TABLES[1], False))) == [9]
    assert not reader.combine
    assert [struct.unpack_from("=H", sent, 4)[0] for sent in fake.sent] == [18, 20, 20]


def _mine(rows: list[Row], inodes: set[int]) -> list[Row]:
    return sorted(r for r in rows if row_inode(r) in inodes)


def _loopback_hosts() -> list[tuple[int, str]]:
    """(family, loopback address) of IPv4 and, where the host has it, IPv6."""
    hosts = [(socket.AF_INET, "127.0.0.1")]
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        hosts.append((socket.AF_INET6, "::1"))
    except OSError:
        pass
    return hosts


@pytest.fixture
def held() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, closed after it."""
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def _connections(held: list[socket.socket], family: int, host: str, count: int) -> None:
    """A listener on ``host`` and ``count`` connections to it, both ends held."""
    listener = socket.socket(family)
    held.append(listener)
    listener.bind((host, 0))
    listener.listen()
    for _ in range(count):
        client = socket.create_connection(listener.getsockname()[:2])
        held += [client, listener.accept()[0]]


@pytest.mark.skipif(not netlink_works(), reason="sock_diag netlink is not available here")
@pytest.mark.parametrize("counters", [True, False], ids=["tcp_info", "no-tcp_info"])
def test_the_combined_dump_reads_what_one_dump_per_table_reads(counters: bool, held: list[socket.socket]) -> None:
    for family, host in _loopback_hosts():
        _connections(held, family, host, 1)
    inodes = {os.fstat(s.fileno()).st_ino for s in held}
    fast, plain = NetlinkReader(), NetlinkReader(combine=False)
    try:
        got = [_mine(fast.read_rows(t, counters), inodes) for t in TABLES[:2]]
        want = [_mine(plain.read_rows(t, counters), inodes) for t in TABLES[:2]]
    finally:
        fast.close()
        plain.close()
    # Byte counters and RTT of our idle sockets do not move between the two reads.
    assert got == want
    assert sum(map(len, got)) == len(held)
    assert fast.combine


def _row(sport: int, dport: int, src: bytes, dst: bytes, inode: int = 0, state: int = 6) -> bytes:
    ident = struct.pack(">HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0") + bytes(12)
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + ident + struct.pack("=IIIII", 0, 0, 0, 0, inode)
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def _rows(messages: list[bytes]) -> list[Row]:
    read: list[Row] = []
    unpack_rows(b"".join(messages), read)
    return read


def _scripted(reads: list[list[Row]]) -> TableCache:
    """A netlink TableCache whose TCP/IPv4 table reads ``reads`` in turn (the other tables are empty)."""
    cache = TableCache("/proc", "netlink")
    script = iter(reads)
    cache._read_table = lambda ti, table: next(script) if ti == 0 else []  # type: ignore[method-assign]
    return cache


def _read_and_keep(cache: TableCache) -> tuple[TableRead, list[Socket]]:
    """One read, the new rows built as the collector builds them (without holders), kept."""
    found = cache.read()
    sockets = list(found.out)
    for ti, misses in enumerate(found.misses):
        for (pos, _key), row in zip(misses, found.decoded[ti], strict=True):
            laddr, lport, raddr, rport, state, _uid, inode = row
            traffic = found.traffic[ti][misses.index((pos, _key))]
            plain = Socket("tcp", 4, laddr, lport, raddr, rport, TCP_STATE_NAMES[state], inode=inode)
            sockets[pos] = with_traffic(plain, traffic)
    done = [s for s in sockets if s is not None]
    cache.keep(found, done)
    return found, done


def _twins_and_sockets(rows: list[bytes]) -> tuple[bool, list[Socket]]:
    """What ``may_have_twins`` says of TCP/IPv4 rows read once, and the sockets they decode to."""
    cache = _scripted([_rows(rows)])
    found, sockets = _read_and_keep(cache)
    return cache.may_have_twins(found), sockets


def test_may_have_twins_is_false_only_where_there_is_nothing_to_number() -> None:
    lo, other = socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2")
    rng = random.Random(18)
    saw = {True: 0, False: 0}
    for _ in range(300):
        rows = []
        for _ in range(rng.randrange(0, 12)):
            rows.append(
                _row(
                    rng.choice((0, 80, 443, 8080)),
                    rng.choice((0, 40000, 40001)),
                    rng.choice((lo, other)),
                    rng.choice((lo, other)),
                    inode=rng.choice((0, 0, 0, rng.randrange(1, 10**6))),
                    state=rng.choice((6, 12, 1)),
                )
            )
        twins, sockets = _twins_and_sockets(rows)
        numbered = number_duplicates(list(sockets))
        if not twins:
            assert numbered == sockets  # nothing to number: skipping number_duplicates changes nothing
        saw[twins] += 1
    assert saw[True] and saw[False]
    # Twins (a TIME_WAIT and a request socket on one address pair) and a zero port are both noticed.
    assert _twins_and_sockets([_row(80, 40000, lo, lo), _row(80, 40000, lo, lo, state=12)])[0]
    assert _twins_and_sockets([_row(80, 0, lo, lo), _row(80, 0, lo, other)])[0]
    assert not _twins_and_sockets([_row(80, 40000, lo, lo), _row(80, 40001, lo, lo), _row(80, 40000, lo, lo, 7)])[0]


def test_may_have_twins_follows_rows_that_come_go_and_change() -> None:
    lo, other = socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2")
    rng = random.Random(1818)

    def message(cookie: int) -> bytes:
        inode = rng.choice((0, 0, rng.randrange(1, 10**6)))
        state = rng.choice((6, 12, 1, 10))
        msg = _row(rng.choice((0, 80, 8080)), rng.choice((0, 40000, 40001)), rng.choice((lo, other)), lo, inode, state)
        return msg[:60] + struct.pack("=Q", cookie) + msg[68:]  # each socket its own cookie, as the kernel gives

    live: dict[int, bytes] = {}
    reads: list[list[Row]] = []
    for step in range(200):
        for cookie in rng.sample(sorted(live), k=min(len(live), rng.randrange(0, 4))):
            del live[cookie]  # closed
        for cookie in rng.sample(sorted(live), k=min(len(live), rng.randrange(0, 3))):
            msg = live[cookie]  # only its queues moved: the same socket, new numbers
            live[cookie] = msg[:72] + struct.pack("=II", step, step + 1) + msg[80:]
        for cookie in rng.sample(sorted(live), k=min(len(live), rng.randrange(0, 2))):
            msg = live[cookie]  # the same socket (cookie) in another state, or given an inode (accepted)
            if rng.random() < 0.5:
                live[cookie] = msg[:17] + bytes([rng.choice((1, 8, 9))]) + msg[18:]
            else:
                live[cookie] = msg[:84] + struct.pack("=I", rng.randrange(1, 10**6)) + msg[88:]
        for _ in range(rng.randrange(0, 4)):
            live[10 + len(reads) * 10 + _] = message(10 + len(reads) * 10 + _)
        reads.append(_rows(list(live.values())))
    cache = _scripted(list(reads))
    saw = {True: 0, False: 0}
    for rows in reads:
        found, sockets = _read_and_keep(cache)
        assert cache.may_have_twins(found) == twins_plain(rows)
        assert cache.present(found) == cache.present_plain(found)
        fresh = _scripted([rows])
        assert _read_and_keep(fresh)[1] == sockets  # the cache's sockets are those of a first read
        saw[twins_plain(rows)] += 1
    assert saw[True] and saw[False]


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_first_read_in_bulk_leaves_what_the_plain_loop_leaves(seed: int) -> None:
    lo, other = socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.2")
    rng = random.Random(seed)
    reads = []
    live: dict[int, bytes] = {}
    for step in range(6):
        for cookie in rng.sample(sorted(live), k=min(len(live), rng.randrange(0, 30))):
            del live[cookie]
        for i in range(rng.randrange(50, 400)):
            cookie = 1 + step * 1000 + i
            ports = rng.choice((0, 80, 8080, 9000)), rng.choice((0, 40000, 40001, 40002))
            inode = rng.choice((0, 0, rng.randrange(1, 500)))
            msg = _row(*ports, rng.choice((lo, other)), lo, inode, rng.choice((6, 12, 1, 10)))
            live[cookie] = msg[:60] + struct.pack("=Q", cookie) + msg[68:]
        reads.append(_rows(list(live.values())))
    bulk, plain = _scripted(list(reads)), _scripted(list(reads))
    plain.bulk_first = False
    for rows in reads:
        got, want = bulk.read(), plain.read()
        assert (got.out, got.decoded, got.traffic, got.new_inodes, got.dropped) == (
            want.out, want.decoded, want.traffic, want.new_inodes, want.dropped
        )
        assert [[pos for pos, _ in m] for m in got.misses] == [[pos for pos, _ in m] for m in want.misses]
        assert _keep_built(bulk, got) == _keep_built(plain, want)
        assert bulk.may_have_twins(got) == plain.may_have_twins(want) == twins_plain(rows)
        assert bulk.present(got) == plain.present(want) == bulk.present_plain(got)
    assert bulk._inodes == plain._inodes and bulk._places == plain._places


def _keep_built(cache: TableCache, found: TableRead) -> list[Socket]:
    sockets = list(found.out)
    for ti, misses in enumerate(found.misses):
        for (pos, _key), row, traffic in zip(misses, found.decoded[ti], found.traffic[ti], strict=True):
            laddr, lport, raddr, rport, state, _uid, inode = row
            plain = Socket("tcp", 4, laddr, lport, raddr, rport, TCP_STATE_NAMES[state], inode=inode)
            sockets[pos] = with_traffic(plain, traffic)
    done = [s for s in sockets if s is not None]
    cache.keep(found, done)
    return done


def test_present_counts_proc_net_rows_as_they_come_and_go() -> None:
    rng = random.Random(15)
    live: dict[int, tuple[bytes, bytes, bytes]] = {}
    reads = []
    for step in range(100):
        for n in rng.sample(sorted(live), k=min(len(live), rng.randrange(0, 4))):
            del live[n]
        for i in range(rng.randrange(0, 4)):
            inode = rng.choice((0, rng.randrange(1, 50)))  # inode numbers shared by two rows now and then
            live[step * 10 + i] = (b"0100007F:%04X 00000000:0000 0A" % (step * 10 + i), b"0", b"%d" % inode)
        reads.append(list(live.values()))
    cache = TableCache("/proc", "procnet")
    script = iter(reads)
    cache._read_table = lambda ti, table: next(script) if ti == 0 else []  # type: ignore[method-assign]
    for _ in reads:
        found = cache.read()
        assert cache.present(found) == cache.present_plain(found)
        cache.keep(found, [Socket("tcp", 4, "127.0.0.1", 1, None, None, "LISTEN")] * len(found.out))


def test_may_have_twins_leaves_proc_net_tables_to_the_plain_way() -> None:
    found = TableRead()
    found.keys = [[], [], [], []]
    assert TableCache("/proc", "procnet").may_have_twins(found)


# ---- RowScanner: messages cut by one regular expression give unpack_rows's rows ---------------------


def _message(family: int, state: int, cookie: int, attrs: bytes = b"", kind: int = 18, tail: int = 0) -> bytes:
    """One inet_diag entry with ``attrs`` after it and ``tail`` bytes of padding (an odd length)."""
    ident = struct.pack(">HH", 1000 + cookie % 5000, 80) + bytes(32) + struct.pack("=IQ", 0, cookie)
    body = struct.pack("=BBBB", family, state, 3, 0) + ident + struct.pack("=IIIII", cookie, 1, 2, 0, cookie * 7)
    body += attrs + bytes(tail)
    length = 16 + len(body)
    return (struct.pack("=IHHII", length, kind, 2, 1, 0) + body).ljust((length + 3) & ~3, b"\0")


def _attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload.ljust((len(payload) + 3) & ~3, b"\0")


def _tcp_info(seed: int, size: int = 232) -> bytes:
    return bytes((seed * 31 + i) % 256 for i in range(size))


def test_row_scanner_gives_the_rows_unpack_rows_gives() -> None:
    rng = random.Random(2018)
    shutdown = _attr(8, b"\0")
    v6only = _attr(14, b"\1")
    kinds = [
        lambda c: _message(socket.AF_INET, 6, c),  # TIME_WAIT: no attributes
        lambda c: _message(socket.AF_INET, 1, c, shutdown),
        lambda c: _message(socket.AF_INET, 1, c, shutdown + _attr(2, _tcp_info(c))),  # with tcp_info
        lambda c: _message(socket.AF_INET6, 1, c, shutdown + v6only + _attr(2, _tcp_info(c))),  # it, further on
        lambda c: _message(socket.AF_INET, 10, c, shutdown + _attr(2, _tcp_info(c))),  # a listener's queues
        lambda c: _message(socket.AF_INET, 1, c, shutdown + _attr(2, _tcp_info(c, 100))),  # tcp_info too short
        lambda c: _message(socket.AF_INET6, 7, c, v6only, tail=3),  # a length not a multiple of 4
        lambda c: _message(socket.AF_INET, 1, c, shutdown + _attr(9, bytes(12)) + _attr(2, _tcp_info(c))),
        lambda c: _message(socket.AF_INET, 1, c, _attr(2, _tcp_info(c)) + shutdown),  # something after it
        lambda c: _message(socket.AF_INET, 1, c, bytes(256 - 88 - 8) + shutdown),  # 256: low byte 0
        lambda c: _message(socket.AF_INET, 1, c, bytes(352 - 88 - 8) + shutdown),  # 352: low byte 96, as 96
    ]
    done = struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0)
    scanner = RowScanner(18)
    fast_reads = 0
    for read in range(400):
        allowed = kinds[: 3 + read // 40]  # lengths keep coming that the pattern has not seen
        messages = [rng.choice(allowed)(read * 100 + i) for i in range(rng.randrange(0, 40))]
        buf = b"".join(messages) + (done if rng.random() < 0.2 else b"")
        want: tuple[list[Row], list[Row]] = ([], [])
        got: tuple[list[Row], list[Row]] = ([], [])
        assert scanner.rows(buf, *got) == unpack_rows(buf, want[0], 18, want[1])
        assert got == want
        fast_reads += scanner._split is not None and bool(messages)
    assert fast_reads > 200
    assert [row_traffic(r)[4:] for r in _rows_of(kinds[4](3))] == [(1, 2, 3)]
    rtt, retransmits, sent, received = struct.unpack_from("=I28xI16xQQ", _tcp_info(3), 68)
    assert row_traffic(_rows_of(kinds[2](3))[0]) == (sent, received, rtt / 1000.0, retransmits, None, None, 3)


def _rows_of(message: bytes) -> list[Row]:
    rows: list[Row] = []
    unpack_rows(message, rows, 18)
    return rows


def test_row_scanner_stops_at_an_error_as_the_plain_way() -> None:
    scanner = RowScanner(20)
    good = _message(socket.AF_INET, 6, 1, kind=20)
    scanner.rows(good, [])  # learnt
    error = struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -22) + bytes(16)
    with pytest.raises(OSError) as info:
        scanner.rows(good + error, [])
    assert info.value.errno == 22


@pytest.mark.skipif(not netlink_works(), reason="sock_diag netlink is not available here")
def test_the_fast_reader_reads_what_the_plain_one_reads(held: list[socket.socket]) -> None:
    hosts = _loopback_hosts()
    for family, host in hosts:
        _connections(held, family, host, 30)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        held.append(udp)
        udp.bind((host, 0))
    inodes = {os.fstat(s.fileno()).st_ino for s in held}
    fast, plain = NetlinkReader(), NetlinkReader(fast=False)
    try:
        for table in TABLES:
            for _ in range(2):  # the second read goes through the learnt pattern
                got = _mine(fast.read_rows(table, True), inodes)
                assert got == _mine(plain.read_rows(table, True), inodes)
                assert got or (table.family == 6 and len(hosts) == 1)
        assert fast._scanners[18]._split is not None
    finally:
        fast.close()
        plain.close()
