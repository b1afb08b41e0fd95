"""Tests of the Linux collector: table parsers, incremental owner resolution on a fake /proc, real loopback."""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portmon.collect import fdwalk, holders, owners
from portmon.collect import procfs as linux_collector
from portmon.collect.base import owner_note
from portmon.collect.procfs import ProcfsCollector
from portmon.collect.tables import (
    TABLES,
    TCP_STATE_NAMES,
    NetlinkReader,
    ProcNetReader,
    RawSocket,
    decode_hex_addr,
    decode_hex_endpoint,
    netlink_works,
    parse_proc_net,
    row_inode,
)
from portmon.model import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    OWNER_HIDDEN,
    OWNER_KERNEL,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    Holder,
    Snapshot,
    Socket,
)

LINUX = sys.platform.startswith("linux")
little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="hand-written /proc/net lines are little-endian")
TCP4, TCP6, UDP4, UDP6 = TABLES

# Real lines from a 6.18 kernel (x86-64), padding included.
TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    "                                                     "
)
TCP4_TEXT = (
    TCP_HEADER + "\n"
    "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 646 1"
    " 00000000f14c15c6 100 0 0 10 0                       \n"
    "   1: 0100007F:847D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 140804 1"
    " 00000000b3807336 100 0 0 10 0                    \n"
    "   2: 0100007F:AB97 0100007F:CF8A 06 00000000:00000000 03:00000974 00000000     0        0 0 3"
    " 00000000dc22e780                                      \n"
)
TCP6_TEXT = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr"
    " tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0000000000000000FFFF00000100007F:EA51 00000000000000000000000000000000:0000 0A 00000000:00000000"
    " 00:00000000 00000000     0        0 140177 1 00000000fec78ab2 100 0 0 10 0\n"
    "   1: 0000000000000000FFFF00000100007F:EA51 0000000000000000FFFF00000100007F:AC80 01 00000000:00000000"
    " 00:00000000 00000000     0        0 140179 1 00000000506795a1 20 0 0 10 -1\n"
    "   2: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:C350 01 00000000:00000000"
    " 00:00000000 00000000     0        0 7 1 00000000506795a1 20 0 0 10 -1\n"
)
UDP4_TEXT = (
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref"
    " pointer drops            \n"
    " 4662: 0100007F:8821 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 140176 2"
    " 00000000d23d07bc 0        \n"
)
UDP6_TEXT = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue tr"
    " tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
    "15595: 00000000000000000000000001000000:B2D6 00000000000000000000000000000000:0000 07 00000000:00000000"
    " 00:00000000 00000000     0        0 140175 2 00000000a9901ecc 0\n"
)


# ----- parsers


@little_endian
def test_decode_hex_addresses() -> None:
    assert decode_hex_addr("0100007F", 4) == "127.0.0.1"
    assert decode_hex_addr(b"0500000A", 4) == "10.0.0.5"
    assert decode_hex_addr("00000000000000000000000001000000", 6) == "::1"
    assert decode_hex_addr("0000000000000000FFFF00000100007F", 6) == "::ffff:127.0.0.1"
    assert decode_hex_addr("B80D0120000000000000000001000000", 6) == "2001:db8::1"
    assert decode_hex_endpoint("0100007F:1F90", 4) == ("127.0.0.1", 8080)
    assert decode_hex_endpoint("00000000:0000", 4) == (None, None)
    assert decode_hex_endpoint("0100007F:0000", 4) == (None, None)
    with pytest.raises(ValueError):
        decode_hex_addr("0100007F00", 4)


@pytest.mark.parametrize("addr", ["127.0.0.1", "10.1.2.3", "255.0.0.254"])
def test_decode_v4_any_byte_order(addr: str) -> None:
    # How the kernel prints it: the in-memory (network order) word read as a host-order integer.
    word = struct.unpack("=I", socket.inet_aton(addr))[0]
    assert decode_hex_addr(f"{word:08X}", 4) == addr


@pytest.mark.parametrize("addr", ["::1", "fe80::1:2:3:4", "2001:db8:85a3::8a2e:370:7334", "::ffff:192.168.1.9"])
def test_decode_v6_any_byte_order(addr: str) -> None:
    words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, addr))
    assert decode_hex_addr("".join(f"{w:08X}" for w in words), 6) == addr


@little_endian
def test_parse_tcp4_listen_and_time_wait() -> None:
    rows = parse_proc_net(TCP4_TEXT.encode(), TCP4)
    assert rows == [
        RawSocket("tcp", 4, "0.0.0.0", 2024, None, None, LISTEN, 0, 646),
        RawSocket("tcp", 4, "127.0.0.1", 33917, None, None, LISTEN, 1000, 140804),
        RawSocket("tcp", 4, "127.0.0.1", 43927, "127.0.0.1", 53130, TIME_WAIT, 0, 0),
    ]


@little_endian
def test_parse_tcp6_mapped_and_global() -> None:
    rows = parse_proc_net(TCP6_TEXT.encode(), TCP6)
    assert rows == [
        RawSocket("tcp", 6, "::ffff:127.0.0.1", 59985, None, None, LISTEN, 0, 140177),
        RawSocket("tcp", 6, "::ffff:127.0.0.1", 59985, "::ffff:127.0.0.1", 44160, ESTABLISHED, 0, 140179),
        RawSocket("tcp", 6, "2001:db8::1", 22, "2001:db8::2", 50000, ESTABLISHED, 0, 7),
    ]


@little_endian
def test_parse_udp_has_no_state() -> None:
    assert parse_proc_net(UDP4_TEXT.encode(), UDP4) == [
        RawSocket("udp", 4, "127.0.0.1", 34849, "127.0.0.1", 53, None, 0, 140176)
    ]
    assert parse_proc_net(UDP6_TEXT.encode(), UDP6) == [RawSocket("udp", 6, "::1", 45782, None, None, None, 0, 140175)]


def _tcp_line(sl: int, local: str, remote: str, state: int, uid: int = 0, inode: int = 0) -> str:
    return (
        f"{sl:4d}: {local} {remote} {state:02X} 00000000:00000000 00:00000000 00000000 {uid:5d}        0 {inode} 1"
        " 0000000000000000 100 0 0 10 0"
    )


def test_every_tcp_state_is_named() -> None:
    lines = [TCP_HEADER] + [_tcp_line(st, "0100007F:0050", "0100007F:C000", st, inode=100 + st) for st in range(1, 13)]
    rows = parse_proc_net(("\n".join(lines) + "\n").encode(), TCP4)
    assert [r.state for r in rows] == [
        ESTABLISHED,
        SYN_SENT,
        SYN_RECV,
        FIN_WAIT1,
        FIN_WAIT2,
        TIME_WAIT,
        CLOSE,
        CLOSE_WAIT,
        LAST_ACK,
        LISTEN,
        CLOSING,
        SYN_RECV,
    ]
    assert TCP_STATE_NAMES[0x0C] == SYN_RECV
    assert [r.inode for r in rows] == list(range(101, 113))


def test_rows_the_fast_pattern_misses_are_parsed_or_refused() -> None:
    # Tabs instead of spaces: the regex does not match, the line-by-line parser still reads it.
    row = _tcp_line(0, "0100007F:0050", "00000000:0000", 0x0A, uid=7, inode=42)
    odd = TCP_HEADER + "\n" + row.replace(" ", "\t") + "\n"
    keys = ProcNetReader.keys_of(odd.encode())
    assert len(keys) == 1
    assert ProcNetReader.inode(keys[0]) == 42 and ProcNetReader.uid(keys[0]) == 7
    with pytest.raises(ValueError):
        ProcNetReader.keys_of((TCP_HEADER + "\n   0: garbage\n").encode())


def test_keys_ignore_queues_and_timers() -> None:
    a = _tcp_line(0, "0100007F:0050", "0100007F:C000", 1, inode=5)
    b = a.replace("00000000:00000000 00:00000000", "0000001A:00000002 01:00000010").replace("   0:", "   9:")
    before = ProcNetReader.keys_of(f"{TCP_HEADER}\n{a}\n".encode())
    assert before == ProcNetReader.keys_of(f"{TCP_HEADER}\n{b}\n".encode())


def _nl_message(state: int, sport: int, dport: int, src: bytes, dst: bytes, uid: int, inode: int) -> bytes:
    ident = struct.pack(">HH", sport, dport) + src.ljust(16, b"\0") + dst.ljust(16, b"\0") + bytes(12)
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + ident + struct.pack("=IIIII", 0, 0, 0, uid, inode)
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


class _FakeNetlink:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0)


def test_netlink_messages_are_unpacked_and_decoded() -> None:
    lo = socket.inet_aton("127.0.0.1")
    done = struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0)
    chunks = [
        _nl_message(10, 8080, 0, lo, bytes(4), 1000, 77) + _nl_message(1, 8080, 40000, lo, lo, 1000, 78),
        _nl_message(6, 8080, 40001, lo, lo, 0, 0) + done,
    ]
    reader = NetlinkReader()
    rows = reader.receive(_FakeNetlink(chunks))  # type: ignore[arg-type]
    decoded = reader.decode_rows(TCP4, rows)
    assert decoded == [
        ("127.0.0.1", 8080, None, None, 10, 1000, 77),
        ("127.0.0.1", 8080, "127.0.0.1", 40000, 1, 1000, 78),
        ("127.0.0.1", 8080, "127.0.0.1", 40001, 6, 0, 0),
    ]
    assert list(map(row_inode, rows)) == [77, 78, 0]


def test_netlink_error_raises() -> None:
    error = struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -2) + bytes(16)
    with pytest.raises(OSError) as info:
        NetlinkReader().receive(_FakeNetlink([error]))  # type: ignore[arg-type]
    assert info.value.errno == 2


def test_socket_field_order_matches_the_fast_constructor() -> None:
    # ProcfsCollector builds Sockets positionally on its hot path.
    assert list(Socket._fields)[:12] == [
        "proto",
        "family",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "holders",
        "owner_note",
        "inode",
        "local_service",
        "remote_service",
    ]


# ----- a fake /proc


def _hex4(addr: str, port: int) -> str:
    return f"{struct.unpack('=I', socket.inet_aton(addr))[0]:08X}:{port:04X}"


def _hex6(addr: str, port: int) -> str:
    words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, addr))
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


class FakeProc:
    """A /proc tree in a temporary directory: socket tables plus processes with fd symlinks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "net").mkdir(parents=True)
        self.rows: dict[str, list[tuple]] = {"tcp": [], "tcp6": [], "udp": [], "udp6": []}
        self.write_tables()

    def add_socket(
        self,
        table: str,
        local: tuple[str, int],
        remote: tuple[str, int] | None = None,
        state: int = 0x0A,
        inode: int = 0,
        uid: int | None = None,
    ) -> None:
        """A row in a table; the socket belongs to our own uid unless ``uid`` says otherwise."""
        self.rows[table].append((local, remote, state, inode, os.geteuid() if uid is None else uid))
        self.write_tables()

    def remove_socket(self, inode: int) -> None:
        for rows in self.rows.values():
            rows[:] = [r for r in rows if r[3] != inode]
        self.write_tables()

    def write_tables(self) -> None:
        for name, rows in self.rows.items():
            v6 = name.endswith("6")
            enc = _hex6 if v6 else _hex4
            zero = ("::", 0) if v6 else ("0.0.0.0", 0)
            lines = [TCP_HEADER]
            for i, (local, remote, state, inode, uid) in enumerate(rows):
                lines.append(_tcp_line(i, enc(*local), enc(*(remote or zero)), state, uid=uid, inode=inode))
            (self.root / "net" / name).write_text("\n".join(lines) + "\n")

    def add_process(self, pid: int, start: int, name: str, fds: dict[int, str], ppid: int = 1) -> None:
        """``fds``: fd number -> link target, e.g. ``{3: "socket:[1000]", 4: "/dev/null"}``."""
        pdir = self.root / str(pid)
        (pdir / "fd").mkdir(parents=True)
        (pdir / "stat").write_text(f"{pid} ({name}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0 0\n")
        for fd, target in fds.items():
            os.symlink(target, pdir / "fd" / str(fd))

    def set_fd(self, pid: int, fd: int, target: str | None) -> None:
        link = self.root / str(pid) / "fd" / str(fd)
        if link.is_symlink():
            link.unlink()
        if target is not None:
            os.symlink(target, link)

    def remove_process(self, pid: int) -> None:
        pdir = self.root / str(pid)
        for link in (pdir / "fd").iterdir():
            link.unlink()
        (pdir / "fd").rmdir()
        (pdir / "stat").unlink()
        pdir.rmdir()


def sock(n: int) -> str:
    return f"socket:[{n}]"


@pytest.fixture
def fake(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


@pytest.fixture(params=[True, False], ids=["root", "user"])
def privileged(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(linux_collector, "is_privileged", lambda: request.param)
    return request.param


def collector(fake: FakeProc, **kwargs: object) -> ProcfsCollector:
    return ProcfsCollector(procfs=str(fake.root), **kwargs)  # type: ignore[arg-type]


def by_inode(snap: Snapshot) -> dict[int, Socket]:
    return {s.inode: s for s in snap.sockets if s.inode}


def pids(s: Socket) -> list[int]:
    return [h.pid for h in s.holders]


def answer(snap: Snapshot) -> list[tuple]:
    """Everything that must not depend on how the collector got there."""
    return sorted(
        (s.proto, s.family, s.local_addr, s.local_port, s.remote_addr or "", s.remote_port or 0, s.state or "",
         s.inode, tuple(pids(s)), s.owner_note or "")
        for s in snap.sockets
    )


OTHER_UID = os.geteuid() + 4242


def populate(fake: FakeProc) -> None:
    fake.add_socket("tcp", ("127.0.0.1", 8080), state=0x0A, inode=1000)
    fake.add_socket("tcp", ("127.0.0.1", 8080), ("127.0.0.1", 50000), state=0x01, inode=1001)
    fake.add_socket("tcp", ("0.0.0.0", 9000), state=0x0A, inode=2000)
    fake.add_socket("tcp", ("127.0.0.1", 8080), ("127.0.0.1", 50001), state=0x06, inode=0)
    fake.add_socket("tcp6", ("::1", 7000), state=0x0A, inode=3000, uid=OTHER_UID)
    fake.add_socket("udp", ("127.0.0.1", 5353), state=0x07, inode=4000)
    fake.add_socket("udp6", ("::1", 6000), ("::1", 53), state=0x01, inode=4001)
    fake.add_process(100, 500, "web", {0: "/dev/null", 3: sock(1000), 4: sock(1001), 5: "pipe:[9]"})
    fake.add_process(200, 600, "master", {3: sock(2000), 4: sock(4000)})
    fake.add_process(201, 601, "worker", {3: sock(2000)})
    fake.add_process(150, 610, "worker", {7: sock(2000), 8: sock(4001)})


def test_fake_scan_reports_every_socket_and_holder(fake: FakeProc, privileged: bool) -> None:
    populate(fake)
    snap = collector(fake, services=lambda port, proto: f"{proto}-{port}").scan()
    assert snap.collector == "procfs"
    assert snap.scan_ms > 0 and abs(snap.taken_at - time.time()) < 60
    socks = by_inode(snap)
    assert sorted(socks) == [1000, 1001, 2000, 3000, 4000, 4001]
    assert pids(socks[1000]) == [100] and pids(socks[1001]) == [100]
    # The highest pid first (the one psutil names), then the rest by pid.
    assert pids(socks[2000]) == [201, 150, 200]
    assert [h.name for h in socks[2000].holders] == ["worker", "worker", "master"]
    assert socks[2000].holders[0].create_time == pytest.approx(601 / os.sysconf("SC_CLK_TCK"))
    assert pids(socks[4000]) == [200] and socks[4000].state is None and socks[4000].remote_addr is None
    assert (socks[4001].remote_addr, socks[4001].remote_port, socks[4001].proto) == ("::1", 53, "udp")
    assert socks[1001].local_service == "tcp-8080" and socks[1001].remote_service == "tcp-50000"
    assert socks[4000].local_service == "udp-5353"
    # Nobody we can see holds 3000 (another user's socket): the note is the shared rule's answer.
    assert socks[3000].holders == ()
    assert socks[3000].owner_note == owner_note(LISTEN, privileged)
    assert (socks[3000].owner_note == OWNER_HIDDEN) is not privileged
    assert snap.hidden_owners == (0 if privileged else 1)
    (tw,) = [s for s in snap.sockets if s.state == TIME_WAIT]
    assert tw.holders == () and tw.owner_note == OWNER_KERNEL and tw.inode == 0
    assert all(s.owner_note is None for s in snap.sockets if s.holders)


def test_missing_ipv6_tables_are_fine_but_tcp_is_required(fake: FakeProc) -> None:
    populate(fake)
    (fake.root / "net" / "tcp6").unlink()
    (fake.root / "net" / "udp6").unlink()
    c = collector(fake)
    assert sorted(by_inode(c.scan())) == [1000, 1001, 2000, 4000]
    (fake.root / "net" / "tcp").unlink()
    with pytest.raises(FileNotFoundError):
        c.scan()


def test_new_socket_in_a_known_process_is_found_without_a_full_walk(fake: FakeProc) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    fake.add_process(300, 700, "idle", dict.fromkeys(range(50), "/dev/null"))
    c.scan()
    fake.set_fd(100, 9, sock(1002))
    fake.add_socket("tcp", ("127.0.0.1", 8080), ("127.0.0.1", 50002), state=0x01, inode=1002)
    snap = c.scan()
    assert pids(by_inode(snap)[1002]) == [100]
    # The search tries processes that gained sockets before first: the idle process's 50 fds are not read.
    assert int(dict(snap.extra)["fd_reads"]) < 50
    assert answer(snap) == answer(collector(fake).scan())


def test_closed_socket_fd_is_reused_for_a_new_socket(fake: FakeProc) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    fake.remove_socket(1001)
    fake.set_fd(100, 4, sock(1003))
    fake.add_socket("tcp", ("127.0.0.1", 8080), ("127.0.0.1", 50003), state=0x01, inode=1003)
    snap = c.scan()
    assert 1001 not in by_inode(snap)
    assert pids(by_inode(snap)[1003]) == [100]
    assert dict(snap.extra)["fd_reads"] == "1"  # just the fd that held the vanished socket


def test_reused_pid_does_not_inherit_the_old_process_sockets(fake: FakeProc, privileged: bool) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    # Process 100 exits; its listener lives on (say, passed to a process we cannot see); a new
    # process gets pid 100 and opens a different socket.
    fake.remove_process(100)
    fake.add_process(100, 9999, "imposter", {3: sock(5000)})
    fake.add_socket("udp", ("127.0.0.1", 9999), state=0x07, inode=5000)
    snap = c.scan()
    socks = by_inode(snap)
    assert socks[1000].holders == () and socks[1001].holders == ()
    assert socks[1000].owner_note == owner_note(LISTEN, privileged)
    assert pids(socks[5000]) == [100] and socks[5000].holders[0].name == "imposter"
    assert answer(snap) == answer(collector(fake).scan())


def test_reused_inode_gets_its_new_holder(fake: FakeProc) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    # Between two scans the 8080 connection closes and its inode number comes back for a
    # different socket, opened by process 201 at an fd that held something else.
    fake.remove_socket(1001)
    fake.set_fd(100, 4, None)
    fake.set_fd(201, 5, "/dev/null")
    c.scan()
    fake.set_fd(201, 5, sock(1001))
    fake.add_socket("tcp", ("127.0.0.1", 7777), state=0x0A, inode=1001)
    snap = c.scan()
    assert pids(by_inode(snap)[1001]) == [201]
    # Same inode, same scan: the old socket disappears and the number is reused at once.
    fake.remove_socket(1001)
    fake.set_fd(201, 5, "/dev/null")
    fake.set_fd(100, 4, sock(1001))
    fake.add_socket("udp", ("127.0.0.1", 1234), state=0x07, inode=1001)
    snap = c.scan()
    assert pids(by_inode(snap)[1001]) == [100]
    assert answer(snap) == answer(collector(fake).scan())


def test_vanished_process_is_dropped(fake: FakeProc, privileged: bool) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    fake.remove_process(201)
    fake.remove_process(100)
    fake.remove_socket(1000)
    fake.remove_socket(1001)
    snap = c.scan()
    assert pids(by_inode(snap)[2000]) == [200, 150]
    assert 1000 not in by_inode(snap)
    assert answer(snap) == answer(collector(fake).scan())


@pytest.mark.parametrize("error", [FileNotFoundError, ProcessLookupError, PermissionError])
def test_fd_dir_that_fails_is_skipped(
    fake: FakeProc, monkeypatch: pytest.MonkeyPatch, privileged: bool, error: type
) -> None:
    populate(fake)
    bad = str(fake.root / "200" / "fd")
    real_open = os.open

    def failing_open(path: object, *args: object, **kwargs: object) -> int:
        if path == bad:
            raise error(13, "injected", bad)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    snap = collector(fake).scan()
    socks = by_inode(snap)
    assert pids(socks[2000]) == [201, 150]  # 200 is skipped, the others still count
    assert socks[4000].holders == ()
    assert pids(socks[1000]) == [100]
    assert socks[4000].owner_note == owner_note(None, privileged)


def test_process_that_vanishes_between_listing_and_reading(fake: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(fake)
    c = collector(fake)
    c.scan()
    fake.set_fd(150, 9, sock(6000))
    fake.add_socket("tcp", ("127.0.0.1", 6000), state=0x0A, inode=6000)
    real_listdir = os.listdir
    target = str(fake.root / "150" / "fd")

    def vanishing_listdir(path: object = ".") -> list[str]:
        if isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}") == target:
            raise ProcessLookupError(3, "No such process")
        return real_listdir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "listdir", vanishing_listdir)
    snap = c.scan()  # never fatal
    assert by_inode(snap)[6000].holders == ()
    assert pids(by_inode(snap)[2000]) == [201, 200]


def test_hidden_sockets_of_other_users_are_not_searched_for(fake: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linux_collector, "is_privileged", lambda: False)
    populate(fake)
    c = collector(fake)
    c.scan()
    fake.add_process(400, 800, "big", dict.fromkeys(range(40), "/dev/null"))
    c.scan()
    fake.add_socket("tcp", ("127.0.0.1", 4444), state=0x0A, inode=7000, uid=OTHER_UID)
    snap = c.scan()
    assert by_inode(snap)[7000].owner_note == OWNER_HIDDEN
    assert snap.hidden_owners == 2  # 3000 and 7000
    assert int(dict(snap.extra)["fd_reads"]) < 40
    assert answer(snap) == answer(collector(fake).scan())


def test_rolling_rescan_bounds_drift(fake: FakeProc) -> None:
    populate(fake)
    every = 5
    c = collector(fake, full_rescan_every=every)
    c.scan()
    # A known socket is passed to an existing process: no new inode, no new process, nothing the
    # incremental rules look at. The rolling full rescan must catch it within `every` scans.
    fake.set_fd(100, 20, sock(2000))
    seen = []
    for _ in range(every):
        seen.append(pids(by_inode(c.scan())[2000]))
    assert seen[-1] == [201, 100, 150, 200]
    assert answer(c.scan()) == answer(collector(fake).scan())


def test_full_rescan_every_scan_equals_fresh(fake: FakeProc) -> None:
    populate(fake)
    c = collector(fake, full_rescan_every=1)
    c.scan()
    fake.set_fd(100, 20, sock(2000))
    assert pids(by_inode(c.scan())[2000]) == [201, 100, 150, 200]


def test_random_churn_matches_a_fresh_scan(fake: FakeProc, privileged: bool) -> None:
    """Sockets open/close, processes fork/exit, pids and inodes are reused: incremental == fresh."""
    rng = random.Random(5)
    procs: dict[int, dict[int, int]] = {}  # pid -> fd -> inode
    starts = iter(range(1000, 100000))
    next_inode = iter(range(20000, 90000))
    free_inodes: list[int] = []
    live: dict[int, int] = {}  # inode -> port

    def spawn(pid: int, fds: dict[int, int], ppid: int = 1) -> None:
        procs[pid] = dict(fds)
        fake.add_process(pid, next(starts), f"p{pid}", {fd: sock(i) for fd, i in fds.items()}, ppid=ppid)

    def open_socket(pid: int) -> None:
        ino = free_inodes.pop() if free_inodes and rng.random() < 0.5 else next(next_inode)
        fd = min(set(range(3, 200)) - set(procs[pid]))
        procs[pid][fd] = ino
        fake.set_fd(pid, fd, sock(ino))
        port = rng.randrange(1024, 60000)
        live[ino] = port
        fake.add_socket(rng.choice(["tcp", "udp"]), ("127.0.0.1", port), state=0x0A, inode=ino)

    def close_all(ino: int) -> None:
        for pid, fds in procs.items():
            for fd in [fd for fd, i in fds.items() if i == ino]:
                del fds[fd]
                fake.set_fd(pid, fd, None)
        fake.remove_socket(ino)
        del live[ino]
        free_inodes.append(ino)

    for pid in (10, 11, 12):
        spawn(pid, {})
        open_socket(pid)
    c = collector(fake, full_rescan_every=1000)  # no help from the rolling rescan
    for step in range(120):
        for _ in range(rng.randrange(1, 4)):
            op = rng.random()
            if op < 0.35 and procs:
                open_socket(rng.choice(sorted(procs)))
            elif op < 0.6 and live:
                close_all(rng.choice(sorted(live)))
            elif op < 0.75 and procs:
                parent = rng.choice(sorted(procs))
                child = max(procs) + 1 if rng.random() < 0.7 or not procs else rng.randrange(10, 40)
                if child not in procs:
                    spawn(child, procs[parent], ppid=parent)  # a fork inherits every fd
            elif op < 0.9 and len(procs) > 1:
                pid = rng.choice(sorted(procs))
                fake.remove_process(pid)
                del procs[pid]
                if rng.random() < 0.5:
                    spawn(pid, {})  # the pid comes back at once as a new process
                    open_socket(pid)
                for ino in [i for i in live if not any(i in f.values() for f in procs.values())]:
                    if rng.random() < 0.5:
                        close_all(ino)  # the last holder gone: usually the socket goes too
        assert answer(c.scan()) == answer(collector(fake).scan()), f"step {step}"


# ----- the real machine (loopback only)

linux_only = pytest.mark.skipif(not LINUX or not ProcfsCollector.available(), reason="needs Linux /proc/net")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def sees_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the collector name the test process as a holder: these tests hold their sockets themselves.

    portmon's own pid is never a holder (tests/test_self_holder.py); here the test process stands for
    any other process, so the collector is told it is not portmon.
    """
    monkeypatch.setattr(owners, "own_pids", frozenset)


@pytest.fixture
def open_sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def _table_sources() -> list[str]:
    return ["procnet", "netlink"] if LINUX and netlink_works() else ["procnet"]


@pytest.mark.usefixtures("sees_itself")
@linux_only
@pytest.mark.parametrize("tables", _table_sources())
def test_real_loopback_sockets(open_sockets: list[socket.socket], tables: str) -> None:
    listener = socket.socket()
    open_sockets.append(listener)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    open_sockets += [client, server, udp]
    c = ProcfsCollector(tables=tables)
    snap = c.scan()
    assert c.table_source == tables
    mine = {s.inode: s for s in snap.sockets if s.inode}
    me = os.getpid()
    for s, state in ((listener, LISTEN), (client, ESTABLISHED), (server, ESTABLISHED), (udp, None)):
        got = mine[os.fstat(s.fileno()).st_ino]
        assert got.state == state
        assert pids(got) == [me]
        assert got.local_addr == "127.0.0.1" and got.local_port == s.getsockname()[1]
    assert mine[os.fstat(client.fileno()).st_ino].remote_port == port
    assert mine[os.fstat(udp.fileno()).st_ino].remote_addr is None


@pytest.mark.usefixtures("sees_itself")
@linux_only
def test_real_incremental_open_close_fork(open_sockets: list[socket.socket]) -> None:
    c = ProcfsCollector()
    c.scan()
    listener = socket.socket()
    open_sockets.append(listener)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    ino = os.fstat(listener.fileno()).st_ino
    assert pids(by_inode(c.scan())[ino]) == [os.getpid()]
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only waits
        try:
            os.close(w)
            os.read(r, 1)
        finally:
            os._exit(0)
    try:
        os.close(r)
        shared = pids(by_inode(c.scan())[ino])
        assert sorted(shared) == sorted([os.getpid(), child]) and shared[0] == max(shared)
    finally:
        os.close(w)
        os.waitpid(child, 0)
    assert pids(by_inode(c.scan())[ino]) == [os.getpid()]
    listener.close()
    open_sockets.clear()
    assert ino not in by_inode(c.scan())


@linux_only
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_real_ipv6_and_mapped(open_sockets: list[socket.socket]) -> None:
    v6 = socket.socket(socket.AF_INET6)
    v6.bind(("::1", 0))
    v6.listen()
    mapped = socket.socket(socket.AF_INET6)
    mapped.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    mapped.bind(("::ffff:127.0.0.1", 0))
    mapped.listen()
    client = socket.create_connection(("127.0.0.1", mapped.getsockname()[1]))
    accepted, _ = mapped.accept()
    open_sockets += [v6, mapped, client, accepted]
    socks = by_inode(ProcfsCollector().scan())
    got = socks[os.fstat(v6.fileno()).st_ino]
    assert (got.family, got.local_addr, got.state) == (6, "::1", LISTEN)
    got = socks[os.fstat(accepted.fileno()).st_ino]
    assert (got.family, got.local_addr, got.remote_addr) == (6, "::ffff:127.0.0.1", "::ffff:127.0.0.1")
    assert got.remote_port == client.getsockname()[1]


def test_first_search_is_budgeted_then_full(fake: FakeProc) -> None:
    populate(fake)
    fake.add_process(500, 900, "big", dict.fromkeys(range(3, 2600), "/dev/null"))
    c = collector(fake)
    c.scan()
    # A socket no cheap rule finds (fake fd dirs have no fd count): the first search reads only
    # the small processes, the socket stays owner-less for one scan, the next scan searches all.
    fake.set_fd(500, 2700, sock(8000))
    fake.add_socket("tcp", ("127.0.0.1", 8000), state=0x0A, inode=8000)
    first = c.scan()
    assert by_inode(first)[8000].holders == ()
    assert int(dict(first.extra)["fd_reads"]) < 2000
    assert pids(by_inode(c.scan())[8000]) == [500]


def test_a_socket_gone_before_the_next_scan_costs_no_full_search(fake: FakeProc) -> None:
    populate(fake)
    fake.add_process(500, 900, "big", dict.fromkeys(range(3, 2600), "/dev/null"))
    c = collector(fake)
    c.scan()
    fake.add_socket("tcp", ("127.0.0.1", 8001), state=0x0A, inode=8001)  # its process already exited
    assert int(dict(c.scan().extra)["fd_reads"]) < 2000
    fake.remove_socket(8001)
    assert int(dict(c.scan().extra)["fd_reads"]) < 2000


@pytest.mark.usefixtures("sees_itself")
@linux_only
def test_big_fd_table_is_read_by_two_threads(open_sockets: list[socket.socket], fd_room: Callable[[int], None]) -> None:
    need = fdwalk.PARALLEL_FDS + 200
    fd_room(need + 1000)
    dups: list[int] = []
    try:
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        first.listen()
        open_sockets.append(first)
        dups = [os.dup(first.fileno()) for _ in range(need)]
        last = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        last.bind(("127.0.0.1", 0))
        open_sockets.append(last)
        socks = by_inode(ProcfsCollector().scan())
        for s in (first, last):
            assert pids(socks[os.fstat(s.fileno()).st_ino]) == [os.getpid()]
    finally:
        for fd in dups:
            os.close(fd)


def test_rescan_of_a_big_fd_table_is_spread_over_scans(fake: FakeProc) -> None:
    populate(fake)
    size = owners.RESCAN_CHUNK + 300
    fake.add_process(600, 990, "huge", dict.fromkeys(range(3, size), "/dev/null"))
    every = 3
    c = collector(fake, full_rescan_every=every)
    c.scan()
    # A known socket lands in the big process at an fd that held a file: only the rescan sees it.
    fake.set_fd(600, 10, sock(2000))
    reads = []
    for _ in range(every + 2):
        snap = c.scan()
        reads.append(int(dict(snap.extra)["fd_reads"]))
    assert 600 in pids(by_inode(snap)[2000])
    assert max(reads) <= owners.RESCAN_CHUNK + 100  # never the whole table in one scan
    assert sum(reads) >= size  # but all of it, over the scans
    assert answer(snap) == answer(collector(fake).scan())


def test_decoding_many_rows_equals_decoding_each() -> None:
    lo = socket.inet_aton("127.0.0.1")
    done = struct.pack("=IHHIIi", 20, 3, 2, 1, 0, 0)
    chunks = [
        _nl_message(10, 8080, 0, lo, bytes(4), 1000, 77)
        + _nl_message(1, 8080, 40000, lo, lo, 1000, 78)
        + _nl_message(7, 0, 0, bytes(4), bytes(4), 0, 0)
        + done
    ]
    reader = NetlinkReader()
    rows = reader.receive(_FakeNetlink(chunks))  # type: ignore[arg-type]
    assert reader.decode_rows(TCP4, rows) == [NetlinkReader().decode_rows(TCP4, [r])[0] for r in rows]
    assert reader.decode_rows(TCP4, rows)[2] == ("", 0, None, None, 7, 0, 0)
    for table, text in ((TCP4, TCP4_TEXT), (TCP6, TCP6_TEXT), (UDP4, UDP4_TEXT), (UDP6, UDP6_TEXT)):
        procnet = ProcNetReader()
        text_keys = procnet.keys_of(text.encode())
        assert text_keys
        assert procnet.decode_all(table, text_keys) == [procnet.decode(table, k) for k in text_keys]


@pytest.mark.parametrize(
    ("cmdline", "program"),
    [
        ("/usr/bin/gnome-keyring-daemon\0--start\0", "gnome-keyring-daemon"),
        ("/usr/bin/prog\0", "prog"),
        ("nginx: worker process", "nginx:"),  # rewritten title, no NUL: split on spaces
        ("postgres: checkpointer   \0", "postgres:"),  # NUL-terminated, spaces inside: split on spaces
        ("", ""),
        ("\0", ""),
    ],
)
def test_program_name_splits_the_command_line_as_psutil_does(cmdline: str, program: str) -> None:
    assert holders.program_name(cmdline) == program


@linux_only
def test_native_holder_of_this_process_matches_psutil() -> None:
    psutil = pytest.importorskip("psutil")
    details = holders.ProcessDetails()
    me = psutil.Process()
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        data = f.read()
    ticks = int(data[data.rindex(b")") + 2 :].split()[19])
    holder = details.native_holder(os.getpid(), ticks / os.sysconf("SC_CLK_TCK"))
    assert (holder.pid, holder.name, holder.user) == (me.pid, me.name(), me.username())
    assert holder.create_time is not None and abs(holder.create_time - me.create_time()) < 0.5
    # Another start time: the pid names some other process now, so nothing but the pid is given.
    assert details.native_holder(os.getpid(), ticks / os.sysconf("SC_CLK_TCK") + 1.0) == Holder(
        pid=os.getpid()
    )
