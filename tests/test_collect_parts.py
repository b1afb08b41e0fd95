"""The parts of the procfs collector on their own: the table cache, the owner index, the socket builder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from portmon.collect.owners import OwnerIndex
from portmon.collect.sockets import SocketBuilder, number_duplicates
from portmon.collect.tablecache import TableCache
from portmon.collect.tables import TABLES
from portmon.model import Holder, Socket
from tests.test_linux_collector import FakeProc, populate, sock

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the procfs collector is Linux's")


@pytest.fixture
def fake(tmp_path: Path) -> FakeProc:
    return FakeProc(tmp_path / "proc")


def _index(fake: FakeProc, every: int = 30) -> OwnerIndex:
    return OwnerIndex(str(fake.root), every)


def _update(index: OwnerIndex, scan: int, dropped: set[int] | None = None, new: dict[int, int] | None = None) -> None:
    index.update(scan, dropped or set(), new or {}, set, privileged=True, sockets=10)


def test_table_cache_decodes_only_new_rows_and_reports_dropped_inodes(fake: FakeProc) -> None:
    populate(fake)
    tables = TableCache(str(fake.root), "procnet")
    first = tables.read()
    assert first.new_rows == len(first.out) == 7
    assert all(s is None for s in first.out)
    assert set(first.new_inodes) == {1000, 1001, 2000, 3000, 4000, 4001}
    # Stand-ins for what the builder makes of each row (its inode is what the cache reports back).
    built = [Socket("tcp", 4, "x", 0, inode=row[6]) for rows in first.decoded for row in rows]
    tables.keep(first, built)
    again = tables.read()
    assert again.new_rows == 0 and again.dropped == set()
    assert again.out == built  # the very sockets of the last scan, no decoding
    fake.remove_socket(1001)
    fake.add_socket("tcp", ("127.0.0.1", 8081), state=0x0A, inode=5000)
    changed = tables.read()
    assert changed.dropped == {1001}
    assert changed.new_inodes == {5000: changed.new_inodes[5000]}
    assert tables.source == "procnet"


def test_table_cache_present_lists_every_inode(fake: FakeProc) -> None:
    populate(fake)
    tables = TableCache(str(fake.root), "procnet")
    found = tables.read()
    assert tables.present(found) == {1000, 1001, 2000, 3000, 4000, 4001}  # 0 (no inode) left out
    assert tables.present(found) == tables.present_plain(found)


def test_owner_index_maps_inodes_to_every_holder(fake: FakeProc) -> None:
    populate(fake)
    index = _index(fake)
    _update(index, 1)
    assert index.where[1000] == {100}
    assert index.where[2000] == {150, 200, 201}
    assert index.stats["full_walks"] == 4


def test_owner_index_reused_pid_does_not_inherit_sockets(fake: FakeProc) -> None:
    populate(fake)
    index = _index(fake)
    _update(index, 1)
    fake.remove_process(100)
    fake.add_process(100, 999, "other", {3: "/dev/null"})  # same pid, new start time
    _update(index, 2)
    assert 1000 not in index.where and 1001 not in index.where
    assert {1000, 1001} <= index.dirty


def test_owner_index_rereads_the_fds_of_vanished_sockets(fake: FakeProc) -> None:
    populate(fake)
    index = _index(fake)
    _update(index, 1)
    # The process swaps a socket for another at the same fd: its fd count stays the same.
    fake.set_fd(100, 4, sock(1234))
    _update(index, 2, dropped={1001}, new={1234: 0})
    assert index.where[1234] == {100}
    assert 1001 not in index.where
    assert index.stats["full_walks"] == 0


def test_socket_builder_shares_holder_tuples_and_names_services(fake: FakeProc) -> None:
    populate(fake)
    index = _index(fake)
    _update(index, 1)
    builder = SocketBuilder(index, lambda pid, started: Holder(pid=pid, name=f"p{pid}"), 100, lambda p, proto: f"s{p}")
    builder.new_scan()
    tables = TableCache(str(fake.root), "procnet")
    found = tables.read()
    builder.build(TABLES[0], found.misses[0], found.decoded[0], found.traffic[0], found.out, privileged=True)
    tcp = {s.inode: s for s in found.out[: len(found.misses[0])] if s is not None}
    assert [h.pid for h in tcp[2000].holders] == [201, 150, 200]  # the highest pid first, as psutil names it
    assert tcp[1000].holders is tcp[1001].holders  # one tuple for every socket of a process
    assert tcp[1000].local_service == "s8080"
    assert tcp[0].holders == () and tcp[0].owner_note is not None
    # The positional construction puts every field where a keyword construction would.
    established = tcp[1001]
    assert established == Socket(
        proto="tcp",
        family=4,
        local_addr="127.0.0.1",
        local_port=8080,
        remote_addr="127.0.0.1",
        remote_port=50000,
        state="ESTABLISHED",
        holders=(Holder(pid=100, name="p100"),),
        owner_note=None,
        inode=1001,
        local_service="s8080",
        remote_service="s50000",
    )


def test_number_duplicates_counts_only_inode_less_twins() -> None:
    twin = Socket("tcp", 4, "127.0.0.1", 80, "127.0.0.1", 5000, "TIME_WAIT")
    other = twin._replace(remote_port=5001)
    held = twin._replace(inode=7)
    got = number_duplicates([twin, held, twin, other, twin])
    assert [s.seq for s in got] == [0, 0, 1, 0, 2]
