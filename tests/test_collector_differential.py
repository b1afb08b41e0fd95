"""The procfs collector and the psutil collector must see the same real sockets, states and holders."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from portmon.collect.procfs import ProcfsCollector
from portmon.collect.psutil_collector import PsutilCollector
from portmon.collect.tables import netlink_works
from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Snapshot, Socket

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not ProcfsCollector.available(), reason="the procfs collector needs Linux"
)

# Run in a child process we start: a listener shared with two forked children (forked before
# anything else is opened, so they hold only that one), then TCP listen/established/TIME_WAIT, UDP
# bound and connected, on 127.0.0.1 and (when there is one) ::1, and an IPv4-mapped connection.
# It prints what it opened as one JSON line, then holds everything until its stdin closes.
SCRIPT = r"""
import json, os, socket, sys, time

def has_v6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False

out = {"pid": os.getpid(), "children": [], "sockets": []}
keep = []
# The kernel keeps 15 characters of a name; the program name on the command line (argv[0]) is
# longer and begins with them, so the full name is the command line's (the forks inherit both).
with open("/proc/self/comm", "w") as f:
    f.write(LONG_NAME[:15])

def note(kind, s, state):
    keep.append(s)
    local = s.getsockname()
    try:
        remote = s.getpeername()
    except OSError:
        remote = None
    out["sockets"].append({
        "kind": kind, "proto": "tcp" if s.type == socket.SOCK_STREAM else "udp",
        "family": 6 if s.family == socket.AF_INET6 else 4,
        "local": [local[0], local[1]], "remote": [remote[0], remote[1]] if remote else None,
        "state": state, "inode": os.fstat(s.fileno()).st_ino,
    })

shared = socket.socket()
shared.bind(("127.0.0.1", 0))
shared.listen()
release_r, release_w = os.pipe()
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os.close(release_w)
        os.read(release_r, 1)  # EOF when the parent exits
        os._exit(0)
    out["children"].append(pid)
os.close(release_r)
note("shared", shared, "LISTEN")

def tcp_set(family, host, tag):
    lst = socket.socket(family)
    lst.bind((host, 0))
    lst.listen()
    note("listen" + tag, lst, "LISTEN")
    c = socket.socket(family)
    c.connect(lst.getsockname()[:2])
    s, _ = lst.accept()
    note("client" + tag, c, "ESTABLISHED")
    note("server" + tag, s, "ESTABLISHED")
    # TIME_WAIT lands on the side that closes first: here the accepting side.
    c2 = socket.socket(family)
    c2.connect(lst.getsockname()[:2])
    s2, _ = lst.accept()
    tw_local, tw_remote = s2.getsockname()[:2], s2.getpeername()[:2]
    s2.close()
    time.sleep(0.05)
    c2.close()
    out["sockets"].append({"kind": "time_wait" + tag, "proto": "tcp", "family": 6 if family == socket.AF_INET6 else 4,
                           "local": list(tw_local), "remote": list(tw_remote), "state": "TIME_WAIT", "inode": 0})
    u1 = socket.socket(family, socket.SOCK_DGRAM)
    u1.bind((host, 0))
    note("udp" + tag, u1, None)
    u2 = socket.socket(family, socket.SOCK_DGRAM)
    u2.bind((host, 0))
    u2.connect(u1.getsockname()[:2])
    note("udp_connected" + tag, u2, None)

tcp_set(socket.AF_INET, "127.0.0.1", "4")
out["v6"] = has_v6()
if out["v6"]:
    tcp_set(socket.AF_INET6, "::1", "6")
mapped = socket.socket(socket.AF_INET6)
try:
    mapped.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    mapped.bind(("::ffff:127.0.0.1", 0))
except OSError:
    mapped.close()
else:
    mapped.listen()
    note("listen_mapped", mapped, "LISTEN")
    c = socket.create_connection(("127.0.0.1", mapped.getsockname()[1]))
    s, _ = mapped.accept()
    note("client_mapped", c, "ESTABLISHED")
    note("server_mapped", s, "ESTABLISHED")
time.sleep(0.05)
print(json.dumps(out), flush=True)
sys.stdin.read()
"""

LONG_NAME = "portmon-differential-holder"
"""argv[0] of the socket script: more than the 15 characters the kernel keeps of a process name."""

Key = tuple[str, int, str, int, str | None, int | None, str | None]


def key(s: Socket) -> Key:
    return (s.proto, s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.state)


def expected_key(e: dict) -> Key:
    remote = e["remote"]
    return (e["proto"], e["family"], e["local"][0], e["local"][1], remote[0] if remote else None,
            remote[1] if remote else None, e["state"])


class Opened:
    """The child's sockets, and a collector that had already scanned before they existed."""

    def __init__(self, info: dict, warm: ProcfsCollector) -> None:
        self.info = info
        self.warm = warm
        self.pid: int = info["pid"]
        self.children: list[int] = info["children"]
        self.expected = {expected_key(e): e for e in info["sockets"]}
        self.ports = {e["local"][1] for e in info["sockets"]} | {e["remote"][1] for e in info["sockets"] if e["remote"]}
        self.shared = next(expected_key(e) for e in info["sockets"] if e["kind"] == "shared")

    def ours(self, snap: Snapshot) -> dict[Key, Socket]:
        """The test's own sockets in a snapshot (others on the machine may change between scans)."""
        found: dict[Key, Socket] = {}
        for s in snap.sockets:
            if (
                s.local_port in self.ports
                and (s.remote_port is None or s.remote_port in self.ports)
                and key(s) in self.expected
            ):
                assert key(s) not in found, f"reported twice: {key(s)}"
                found[key(s)] = s
        return found


@pytest.fixture(scope="module")
def opened() -> Iterator[Opened]:
    warm = ProcfsCollector()
    warm.scan()
    proc = subprocess.Popen(
        [LONG_NAME, "-c", f"LONG_NAME = {LONG_NAME!r}\n" + SCRIPT],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its forked children share its process group: one killpg ends all
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, f"socket script failed (exit {proc.wait()})"
        yield Opened(json.loads(line), warm)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def holder_pids(s: Socket) -> set[int]:
    return {h.pid for h in s.holders}


def procfs_collectors(opened: Opened) -> list[tuple[str, ProcfsCollector]]:
    out = [("procfs/procnet", ProcfsCollector(tables="procnet")), ("procfs/warm", opened.warm)]
    if netlink_works():
        out.append(("procfs/netlink", ProcfsCollector(tables="netlink")))
    # A first scan that takes a forked child's walk of every fd (what portmon list does).
    cold = ProcfsCollector()
    assert cold.start_cold_walk()
    out.append(("procfs/cold", cold))
    return out


def test_procfs_sees_exactly_what_was_opened(opened: Opened) -> None:
    for name, collector in procfs_collectors(opened):
        ours = opened.ours(collector.scan())
        assert set(ours) == set(opened.expected), name
        for k, s in ours.items():
            e = opened.expected[k]
            assert s.inode == e["inode"], (name, k)
            if e["state"] == TIME_WAIT:
                assert s.holders == () and s.owner_note == "kernel", (name, k)
            elif k == opened.shared:
                assert holder_pids(s) == {opened.pid, *opened.children}, (name, k)
                assert s.pid == max(holder_pids(s))
            else:
                assert [h.pid for h in s.holders] == [opened.pid], (name, k)
                assert s.owner_note is None
    kinds = {e["kind"] for e in opened.info["sockets"]}
    assert {"listen4", "client4", "server4", "time_wait4", "udp4", "udp_connected4"} <= kinds
    if opened.info["v6"]:
        assert {"listen6", "client6", "time_wait6", "udp6"} <= kinds


def test_time_wait_lands_on_the_side_that_closed_first(opened: Opened) -> None:
    tw = next(e for e in opened.info["sockets"] if e["kind"] == "time_wait4")
    listener = next(e for e in opened.info["sockets"] if e["kind"] == "listen4")
    assert tw["local"][1] == listener["local"][1]  # the accepted (server) side closed first
    ours = opened.ours(ProcfsCollector().scan())
    assert ours[expected_key(tw)].state == TIME_WAIT


def test_procfs_and_psutil_agree(opened: Opened) -> None:
    reference = opened.ours(PsutilCollector().scan())
    assert set(reference) == set(opened.expected)
    for name, collector in procfs_collectors(opened):
        ours = opened.ours(collector.scan())
        assert set(ours) == set(reference), name
        for k, s in ours.items():
            assert s.state == reference[k].state, (name, k)
            assert s.owner_note == reference[k].owner_note, (name, k)
            # Same holders in the same order: the one psutil names first, the rest by pid; the same
            # names (the 15-character kernel name completed from the command line) and users.
            assert [h.pid for h in s.holders] == [h.pid for h in reference[k].holders], (name, k)
            assert [(h.name, h.user) for h in s.holders] == [(h.name, h.user) for h in reference[k].holders]
            for ours_h, ref_h in zip(s.holders, reference[k].holders, strict=True):
                assert ours_h.create_time is not None and ref_h.create_time is not None
                assert abs(ours_h.create_time - ref_h.create_time) < 0.5, (name, k)
            if s.holders:
                assert {h.name for h in s.holders} == {LONG_NAME}, (name, k)
    states = {s.state for s in reference.values()}
    assert {LISTEN, ESTABLISHED, TIME_WAIT, None} <= states


def test_closing_is_seen_by_the_warm_collector(opened: Opened) -> None:
    # The warm collector saw everything appear; a socket of our own closing must disappear from it.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    probe.listen()
    ino = os.fstat(probe.fileno()).st_ino
    assert {s.inode for s in opened.warm.scan().sockets} >= {ino}
    probe.close()  # a listener leaves the table during close()
    assert ino not in {s.inode for s in opened.warm.scan().sockets}
