"""portmon is never a holder (issue 13, item 9): a socket portmon inherited (socket activation, a leaked fd)
names neither portmon nor its short-lived fd-walk child as a holder, under every collector; the walk child
closes every inherited fd before it walks; ``who``, ``why`` and ``kill`` say what holds a socket only
portmon's inherited copy holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portmon.collect import fdwalk
from portmon.collect.procfs import ProcfsCollector

ROOT = Path(__file__).resolve().parents[1]
LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX or not ProcfsCollector.available(), reason="needs Linux /proc/net")

BECOME_PORTMON = """\
import os, socket, sys
# Become portmon holding a listening socket nobody else holds (as under socket activation).
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); port = s.getsockname()[1]
fd = s.detach(); os.set_inheritable(fd, True)
print(port, os.getpid(), flush=True)
args = [a.replace("PORT", str(port)) for a in sys.argv[1:]]
os.execv(sys.executable, [sys.executable, "-m", "portmon", *args])
"""


def _portmon(*args: str, pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.CompletedProcess[str], int]:
    """``python -m portmon ARGS`` given ``pass_fds``: (its result, its pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", *args],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=pass_fds,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def _solo(*args: str) -> tuple[subprocess.CompletedProcess[str], int, int]:
    """portmon ARGS ("PORT" replaced) holding the only copy of a listening socket: (result, port, portmon's pid)."""
    res = subprocess.run(
        [sys.executable, "-c", BECOME_PORTMON, *args],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    first, _, rest = res.stdout.partition("\n")
    port, pid = (int(w) for w in first.split())
    return subprocess.CompletedProcess(res.args, res.returncode, rest, res.stderr), port, pid


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """A loopback listener, a client connected to it and the accepted end, all held by this test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with client, server:
            yield listener, client, server


@linux_only
@pytest.mark.parametrize("collector", ["procfs", "psutil"])
@pytest.mark.parametrize("kind", ["listener", "client"])
def test_a_socket_portmon_inherited_names_the_real_holder_and_not_portmon(
    connection: tuple[socket.socket, socket.socket, socket.socket], collector: str, kind: str
) -> None:
    # This test holds the socket and passes a copy to portmon (and so to its walk child). psutil names one
    # pid per socket, the highest: portmon's; for a connection no holder search brings the real one back.
    listener, client, _ = connection
    sock = listener if kind == "listener" else client
    port = sock.getsockname()[1]
    res, portmon_pid = _portmon("--collector", collector, "list", "--json", f":{port}", pass_fds=(sock.fileno(),))
    assert res.returncode == 0, res.stderr
    # netns null: another network namespace (a container, as root) may use the same port number. A client's
    # local port may also be in an older connection's TIME_WAIT (ports are reused): matched by both ends.
    peer = listener.getsockname()[1]
    (row,) = [
        r for r in json.loads(res.stdout)
        if r["local_port"] == port and r["netns"] is None
        and (r["state"] == "LISTEN" if kind == "listener" else (r["state"], r["remote_port"]) == ("ESTABLISHED", peer))
    ]  # fmt: skip
    holders = [h["pid"] for h in row["holders"]]
    assert portmon_pid not in holders
    assert holders == [os.getpid()], res.stdout  # the real holder is still named (and nobody else: no walk child)


@linux_only
@pytest.mark.parametrize("collector", ["procfs", "psutil"])
def test_a_socket_only_portmon_holds_has_no_holder(collector: str) -> None:
    res, port, pid = _solo("--collector", collector, "list", "--json", ":PORT")
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["local_port"] == port and row["holders"] == [] and row["pid"] is None


@linux_only
def test_who_why_and_kill_say_only_portmons_inherited_copy_holds_it() -> None:
    res, port, pid = _solo("who", "PORT")
    assert res.returncode == 0, res.stderr
    assert "held only by portmon itself (an inherited copy)" in res.stdout
    assert str(pid) not in res.stdout and "PID namespace" not in res.stdout
    res, port, pid = _solo("why", "PORT/tcp")
    assert f"port {port}/tcp is in use only by portmon's own inherited copy" in res.stdout, res.stdout
    assert f"portmon itself (pid {pid}) holds an inherited copy" in res.stdout
    res, port, pid = _solo("kill", "PORT", "--dry-run")
    assert res.returncode == 1
    assert "held only by portmon itself (an inherited copy)" in res.stdout
    assert f"note: portmon itself (pid {pid}) holds an inherited copy" in res.stdout
    assert "another container" not in res.stdout and "refused" not in res.stdout
    res, port, pid = _solo("kill", "PORT", "--dry-run", "--json")
    doc = json.loads(res.stdout)
    assert doc["targets"] == [] and doc["refusals"] == [] and doc["sockets"][0]["pids"] == []


@linux_only
def test_a_collector_in_a_process_never_names_that_process(
    connection: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    # The collector runs in this test process: the sockets it holds have no holder, one shared with a
    # child names only the child.
    listener, _, _ = connection
    ino = os.fstat(listener.fileno()).st_ino
    c = ProcfsCollector()
    assert [s.holders for s in c.scan().sockets if s.inode == ino] == [()]
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(listener.fileno(),)
    )
    try:
        assert child.stdin is not None
        assert [[h.pid for h in s.holders] for s in c.scan().sockets if s.inode == ino] == [[child.pid]]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)


@pytest.mark.skipif(not LINUX or not hasattr(os, "fork"), reason="the fd walk child is forked on Linux")
def test_the_walk_child_is_one_of_portmons_own_until_reaped() -> None:
    walk = fdwalk.ColdWalk()
    pid = walk.pid
    assert pid and {os.getpid(), pid} <= fdwalk.own_pids()
    walk.cancel()
    assert pid not in fdwalk.own_pids() and os.getpid() in fdwalk.own_pids()


CLOSES_INHERITED = """\
import json, os, resource, socket
from portmon.collect import fdwalk
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
high = min(hard, 4096) - 1
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
os.dup2(s.fileno(), high, inheritable=False)  # close-on-exec is no help: the walk child is forked, not exec'd
low = os.dup2(s.fileno(), 10)
# A fd above the soft limit: opened before the limit was lowered (a service manager may do this).
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, high), hard))
walk = fdwalk.ColdWalk()
child = walk.pid
answer = walk.result()
start, names, fds = answer[child]
print(json.dumps({"high": high, "low": low, "names": names, "sockets": sorted(fds.values()),
                  "inode": os.fstat(s.fileno()).st_ino}))
"""


@pytest.mark.skipif(not LINUX or not hasattr(os, "fork"), reason="the fd walk child is forked on Linux")
def test_the_walk_child_closes_every_inherited_fd_before_it_walks() -> None:
    # The child's own entry in its answer is its fd table as it walked: only stdin/out/err and its pipe
    # (3), plus the directories it lists itself with (4, 5); no socket, not even one above RLIMIT_NOFILE's
    # soft limit.
    res = subprocess.run(
        [sys.executable, "-c", CLOSES_INHERITED], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    if got["high"] <= 256:
        pytest.skip("the hard fd limit leaves no room above the soft one")
    assert got["sockets"] == [], got
    assert str(got["high"]) not in got["names"] and str(got["low"]) not in got["names"]
    assert {int(n) for n in got["names"]} <= {0, 1, 2, 3, 4, 5}, got


@linux_only
@pytest.mark.parametrize("search", ["_holders_by_inode", "_holders_by_address"])
def test_the_psutil_collectors_holder_searches_find_the_other_holder(
    connection: tuple[socket.socket, socket.socket, socket.socket], search: str
) -> None:
    # By inode (Linux) or by address (elsewhere): the other process holding a socket this process holds.
    from portmon.collect import psutil_collector

    listener, _, _ = connection
    ident = ("tcp", 4, "127.0.0.1", listener.getsockname()[1], None, None)
    find = getattr(psutil_collector, search)
    assert find({ident}, fdwalk.own_pids()) == {}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(listener.fileno(),)
    )
    try:
        assert find({ident}, fdwalk.own_pids()) == {ident: child.pid}
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(60)
