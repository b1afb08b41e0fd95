"""Network namespaces: a listener in an ``unshare -n`` namespace on the same port as one in ours (root only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from listener_child import ListenerChild
from ownership_procs import Tree, ready_pids

from portmon.model import LISTEN
from portmon.ownership.netns import HOST_ONLY_NOTE, list_namespaces, scan_namespaces

UNSHARE = shutil.which("unshare")

# Bring lo up inside the new namespace (SIOCGIFFLAGS / SIOCSIFFLAGS), then become the listener.
LO_UP = r"""
import fcntl, os, socket, struct, sys
s = socket.socket()
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
s.close()
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if UNSHARE is None:
        return "unshare is not installed"
    done = subprocess.run([UNSHARE, "-n", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"unshare -n is not allowed here: {done.stderr.strip()}"
    return None


@pytest.fixture
def trees() -> Iterator[list[Tree]]:
    started: list[Tree] = []
    yield started
    for tree in started:
        tree.stop()


def test_listener_in_another_namespace_on_the_same_port(
    tmp_path: Path, child_script: Path, spawn: Callable[..., ListenerChild], trees: list[Tree]
) -> None:
    why = _can_unshare()
    if why:
        pytest.skip(why)
    host = spawn()
    lo_up = tmp_path / "lo_up.py"
    lo_up.write_text(LO_UP)
    tree = Tree([UNSHARE or "unshare", "-n", sys.executable, str(lo_up), str(child_script), f"port={host.port}"])
    trees.append(tree)
    (pid,) = ready_pids(tree.proc)
    scan = scan_namespaces()
    assert scan.namespaces and all(not n.netns.own for n in scan.namespaces)
    theirs = next(n for n in scan.namespaces if pid in n.netns.pids)
    assert host.pid not in theirs.netns.pids
    listeners = [s for s in theirs.sockets if s.local_port == host.port and s.state == LISTEN]
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    assert [(s.local_addr, s.pid, s.process) for s in listeners] == [("127.0.0.1", pid, comm)]
    assert listeners[0].holders[0].create_time is not None
    # portmon's own namespace is listed first and holds the host listener, not the other one.
    spaces = list_namespaces()
    assert spaces[0].own and host.pid in spaces[0].pids and pid not in spaces[0].pids
    own = scan_namespaces(include_own=True).namespaces[0]
    assert own.netns.own
    assert {s.pid for s in own.sockets if s.local_port == host.port and s.state == LISTEN} == {host.pid}


def test_without_root_only_the_host_namespace_with_a_note() -> None:
    scan = scan_namespaces(privileged=False)
    assert scan == ((), HOST_ONLY_NOTE)


def test_namespaces_of_this_host_include_our_own() -> None:
    spaces = list_namespaces()
    assert spaces[0].own and os.getpid() in spaces[0].pids
    assert len({ns.inode for ns in spaces}) == len(spaces)
