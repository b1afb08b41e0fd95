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
from portmon.collect.tablecache import TableCache, TableRead
from portmon.collect.tables import TABLES, TCP_STATE_NAMES, Key, NetlinkReader, Raw, netlink_works, unpack_messages
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
    keys4, raws4 = reader.read_rows(TABLES[0], True)
    keys6, raws6 = reader.read_rows(TABLES[1], True)
    assert [NetlinkReader.inode(k) for k in keys4] == [7, 8]
    assert [NetlinkReader.inode(k) for k in keys6] == [9]
    assert raws4 == [(1, 2), (1, 2)] and raws6 == [(1, 2)]
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
    keys6, _ = reader.read_rows(TABLES[1], between == "other-counters")
    assert [NetlinkReader.inode(k) for k in keys6] == [10]  # its own dump, not the kept rows
    assert len(fake.sent) == requests


def test_a_kernel_refusing_the_combined_dump_gets_one_dump_per_table() -> None:
    refused = struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -22) + bytes(16)
    v4 = [_diag_message(socket.AF_INET, 10, 80, 7, kind=20) + _DONE]
    v6 = [_diag_message(socket.AF_INET6, 10, 443, 9, kind=20) + _DONE]
    fake = _ScriptedNetlink([[refused], v4, v6])
    reader = NetlinkReader()
    reader._sock = fake  # type: ignore[assignment]
    reader.close = lambda: None  # type: ignore[method-assign]  # keep the scripted socket
    assert [NetlinkReader.inode(k) for k in reader.read_rows(TABLES[0], False)[0]] == [7]
    assert [NetlinkReader.inode(k) for k in reader.read_rows(TABLES[1], False)[0]] == [9]
    assert not reader.combine
    assert [struct.unpack_from("=H", sent, 4)[0] for sent in fake.sent] == [18, 20, 20]


def _mine(rows: tuple[list[Key], list[Raw]], inodes: set[int]) -> list[tuple[Key, Raw]]:
    return sorted((k, r) for k, r in zip(*rows, strict=True) if NetlinkReader.inode(k) in inodes)


@pytest.mark.skipif(not netlink_works(), reason="sock_diag netlink is not available here")
@pytest.mark.parametrize("counters", [True, False], ids=["tcp_info", "no-tcp_info"])
def test_the_combined_dump_reads_what_one_dump_per_table_reads(counters: bool) -> None:
    held: list[socket.socket] = []
    try:
        families = [(socket.AF_INET, "127.0.0.1")]
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
            families.append((socket.AF_INET6, "::1"))
        except OSError:
            pass
        for family, host in families:
            listener = socket.socket(family)
            held.append(listener)
            listener.bind((host, 0))
            listener.listen()
            client = socket.create_connection((host, listener.getsockname()[1]))
            held += [client, listener.accept()[0]]
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
    finally:
        for s in held:
            s.close()


def _row(sport: int, dport: int, src: bytes, dst: bytes, inode: int = 0, state: int = 6) -> bytes:
    ident = struct.pack(">HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0") + bytes(12)
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + ident + struct.pack("=IIIII", 0, 0, 0, 0, inode)
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def _twins_and_sockets(rows: list[bytes]) -> tuple[bool, list[Socket]]:
    """What ``may_have_twins`` says of TCP/IPv4 rows, and the sockets they decode to."""
    keys: list[Key] = []
    unpack_messages(b"".join(rows), keys)
    found = TableRead()
    found.keys = [keys, [], [], []]
    reader = NetlinkReader()
    sockets = []
    for laddr, lport, raddr, rport, state, _uid, inode in reader.decode_all(TABLES[0], keys):
        sockets.append(Socket("tcp", 4, laddr, lport, raddr, rport, TCP_STATE_NAMES[state], inode=inode))
    return TableCache("/proc", "netlink").may_have_twins(found), sockets


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


def test_may_have_twins_leaves_proc_net_tables_to_the_plain_way() -> None:
    found = TableRead()
    found.keys = [[], [], [], []]
    assert TableCache("/proc", "procnet").may_have_twins(found)
