"""SO_REUSEPORT groups: two processes listening on the same 127.0.0.1 port are one group."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from ownership_procs import Tree, read_line, ready_pids

from portmon.collect.procfs import ProcfsCollector
from portmon.model import Holder, Socket
from portmon.ownership import manager as mk
from portmon.ownership.families import reuseport_groups
from portmon.ownership.resolve import ManagerCache
from portmon.ownership.reuseport import check_reuseport, reuseport_record

REUSEPORT = r"""
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("READY", s.getsockname()[1], os.getpid(), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")
def test_two_reuseport_listeners_form_one_group(tmp_path: Path, trees: list[Tree]) -> None:
    script = tmp_path / "reuseport.py"
    script.write_text(REUSEPORT)
    first = Tree([sys.executable, str(script), "0"])
    trees.append(first)
    words = read_line(first.proc).split()
    port, a = int(words[1]), int(words[2])
    second = Tree([sys.executable, str(script), str(port)])
    trees.append(second)
    (b,) = ready_pids(second.proc)
    sockets = ProcfsCollector().scan().sockets
    groups = [g for g in reuseport_groups(sockets) if g[0].local_port == port]
    assert len(groups) == 1
    (group,) = groups
    assert [s.pid for s in group] == [a, b]  # the older first
    assert len({s.inode for s in group}) == 2
    # A plain listener elsewhere is no group.
    assert all(len(g) > 1 for g in reuseport_groups(sockets))


def test_groups_need_the_same_address_and_protocol() -> None:
    h1, h2 = Holder(1, create_time=5.0), Holder(2, create_time=3.0)
    a = Socket("tcp", 4, "127.0.0.1", 80, state="LISTEN", holders=(h1,), inode=1)
    b = Socket("tcp", 4, "127.0.0.1", 80, state="LISTEN", holders=(h2,), inode=2)
    c = Socket("tcp", 4, "127.0.0.2", 80, state="LISTEN", holders=(h2,), inode=3)
    d = Socket("tcp", 4, "127.0.0.1", 80, "127.0.0.1", 5000, "ESTABLISHED", holders=(h2,), inode=4)
    assert reuseport_groups([a, b, c, d]) == [(b, a)]


def test_manager_cache_remembers_per_identity(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    d = procfs / "10"
    d.mkdir(parents=True)
    (d / "stat").write_text("10 (app) S 1 10 10 0 -1 0 " + "0 " * 13 + "77 0 0\n")
    (d / "cgroup").write_text("0::/system.slice/app.service\n")
    cache = ManagerCache(str(procfs))
    first = cache.get(10, 1.0)
    assert [(m.kind, m.name) for m in first] == [(mk.SYSTEMD_UNIT, "app.service")]
    (d / "cgroup").write_text("0::/system.slice/other.service\n")
    assert cache.get(10, 1.0) is first  # same process: remembered
    assert cache.get(10, 2.0)[0].name == "other.service"  # a reused pid is looked up again


PLAIN = r"""
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("READY", s.getsockname()[1], os.getpid(), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")
def test_a_reuseport_listener_can_be_joined_and_a_plain_one_cannot(tmp_path: Path, trees: list[Tree]) -> None:
    shared = tmp_path / "reuseport.py"
    shared.write_text(REUSEPORT)
    plain = tmp_path / "plain.py"
    plain.write_text(PLAIN)
    one = Tree([sys.executable, str(shared), "0"])
    trees.append(one)
    words = read_line(one.proc).split()
    port, a = int(words[1]), int(words[2])
    sock = Socket("tcp", 4, "127.0.0.1", port, state="LISTEN", holders=(Holder(a, "python3"),), inode=1)
    check = check_reuseport(port, "tcp", [sock])
    assert check.joinable and check.binds == ((4, "127.0.0.1", True, None),)
    assert check.groups == ()
    assert any(line.startswith(f"a new server that sets SO_REUSEPORT would start on 127.0.0.1:{port} and silently "
                               "take a share of the connections") for line in check.lines)
    # The probe bound without listening: the real listener still takes every connection.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass

    other = Tree([sys.executable, str(plain)])
    trees.append(other)
    words = read_line(other.proc).split()
    port2, b = int(words[1]), int(words[2])
    sock2 = Socket("tcp", 4, "127.0.0.1", port2, state="LISTEN", holders=(Holder(b, "python3"),), inode=2)
    check2 = check_reuseport(port2, "tcp", [sock2])
    assert not check2.joinable and check2.lines == ()
    assert check2.binds[0][3] is not None and "EADDRINUSE" in check2.binds[0][3]


def test_group_lines_from_the_table_and_the_record() -> None:
    h1, h2 = Holder(11, "node", create_time=1.0), Holder(12, "node\x1b[2J", create_time=2.0)
    a = Socket("tcp", 4, "127.0.0.1", 3000, state="LISTEN", holders=(h1,), inode=1)
    b = Socket("tcp", 4, "127.0.0.1", 3000, state="LISTEN", holders=(h2,), inode=2)
    check = check_reuseport(3000, "tcp", [a, b], binder=lambda port, family, address: (False, "bind: EADDRINUSE"))
    assert check.lines[0].startswith("2 sockets listen on 127.0.0.1:3000 together (SO_REUSEPORT): node (11), node")
    assert "\x1b" not in "".join(check.lines)
    assert check.lines[1] == "the test bind with SO_REUSEPORT failed: only the same user's servers can join the group"
    record = reuseport_record(check)
    assert record["joinable"] is False and [g["pid"] for g in record["groups"][0]] == [11, 12]
    udp = check_reuseport(3000, "udp", [a._replace(proto="udp", state=None), b._replace(proto="udp", state=None)],
                          binder=lambda port, family, address: (True, None))
    assert udp.binds == () and len(udp.groups) == 1
