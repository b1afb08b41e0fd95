"""The psutil collector with psutil's faults injected, guarded scans, and the scripted collector."""

from __future__ import annotations

import socket
from collections import namedtuple
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from portmon.collect import psutil_collector as collector_mod
from portmon.collect.base import guarded_scan, owner_note
from portmon.collect.fake import ScriptedCollector
from portmon.collect.psutil_collector import PsutilCollector
from portmon.model import OWNER_HIDDEN, OWNER_KERNEL, OWNER_UNSEEN, Snapshot, Socket

# psutil's result shapes, rebuilt here so the test does not lean on psutil's private modules.
addr = namedtuple("addr", "ip port")
sconn = namedtuple("sconn", "fd family type laddr raddr status pid")
pconn = namedtuple("pconn", "fd family type laddr raddr status")

TCP, UDP = socket.SOCK_STREAM, socket.SOCK_DGRAM
V4, V6 = socket.AF_INET, socket.AF_INET6


class FakeProcess:
    """Stands in for psutil.Process: a table of pid -> (name, user, create_time) or an exception."""

    table: dict[int, Any] = {}

    def __init__(self, pid: int) -> None:
        entry = self.table.get(pid)
        if isinstance(entry, BaseException):
            raise entry
        if entry is None:
            raise psutil.NoSuchProcess(pid)
        self.pid = pid
        self._entry = entry

    def create_time(self) -> float:
        return self._entry[2]

    def oneshot(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def name(self) -> str:
        if isinstance(self._entry[0], BaseException):
            raise self._entry[0]
        return self._entry[0]

    def uids(self) -> Any:
        return SimpleNamespace(real=hash(self._entry[1]) & 0xFFFF)

    def username(self) -> str:
        return self._entry[1]

    def children(self, recursive: bool = False) -> list:
        return []

    def ppid(self) -> int:
        return 0

    def parent(self) -> None:
        return None


@pytest.fixture
def fake_psutil(monkeypatch: pytest.MonkeyPatch) -> Any:
    FakeProcess.table = {}
    monkeypatch.setattr(collector_mod.psutil, "Process", FakeProcess)
    monkeypatch.setattr(collector_mod, "is_privileged", lambda: False)
    state = SimpleNamespace(conns=[])
    monkeypatch.setattr(collector_mod.psutil, "net_connections", lambda kind="inet": list(state.conns))
    return state


def test_maps_psutil_connections_to_sockets(fake_psutil: Any) -> None:
    FakeProcess.table = {10: ("nginx", "www", 1.0), 20: ("dnsmasq", "nobody", 2.0)}
    fake_psutil.conns = [
        sconn(3, V4, TCP, addr("0.0.0.0", 80), (), "LISTEN", 10),
        sconn(4, V6, TCP, addr("::1", 80), addr("::1", 51000), "ESTABLISHED", 10),
        sconn(5, V4, UDP, addr("127.0.0.1", 53), (), "NONE", 20),
    ]
    services = {(80, "tcp"): "http", (53, "udp"): "domain"}
    snap = PsutilCollector(services=lambda p, proto: services.get((p, proto))).scan()
    by_port = {(s.proto, s.family, s.local_port, s.remote_port): s for s in snap.sockets}
    listener = by_port[("tcp", 4, 80, None)]
    assert listener.state == "LISTEN" and listener.remote_addr is None and listener.listening
    assert listener.pid == 10 and listener.process == "nginx" and listener.user == "www"
    assert listener.local_service == "http"
    est = by_port[("tcp", 6, 80, 51000)]
    assert est.remote_addr == "::1" and est.state == "ESTABLISHED" and est.remote_service is None
    udp = by_port[("udp", 4, 53, None)]
    assert udp.state is None and udp.local_service == "domain" and udp.listening
    assert snap.collector == "psutil" and snap.hidden_owners == 0 and snap.error is None


def test_ownerless_sockets_keep_their_row_with_a_reason(fake_psutil: Any) -> None:
    fake_psutil.conns = [
        sconn(-1, V4, TCP, addr("127.0.0.1", 8080), addr("127.0.0.1", 40000), "TIME_WAIT", None),
        sconn(-1, V4, TCP, addr("127.0.0.1", 5432), (), "LISTEN", None),
        sconn(-1, V4, TCP, addr("127.0.0.1", 5433), (), "LISTEN", None),
    ]
    snap = PsutilCollector().scan()
    notes = {s.local_port: s.owner_note for s in snap.sockets}
    assert notes == {8080: OWNER_KERNEL, 5432: OWNER_HIDDEN, 5433: OWNER_HIDDEN}
    assert all(s.holders == () for s in snap.sockets)
    assert snap.hidden_owners == 2
    assert snap.hidden_note == "2 sockets with unknown owner; run as root to see them"


def test_owner_note_tells_kernel_orphans_from_hidden_and_unseen_owners() -> None:
    assert owner_note("TIME_WAIT", privileged=False) == OWNER_KERNEL
    assert owner_note("TIME_WAIT", privileged=True) == OWNER_KERNEL
    assert owner_note("FIN_WAIT2", privileged=True) == OWNER_KERNEL
    assert owner_note("FIN_WAIT2", privileged=False) == OWNER_HIDDEN
    assert owner_note("LISTEN", privileged=False) == OWNER_HIDDEN
    assert owner_note(None, privileged=False) == OWNER_HIDDEN
    # As root an ownerless listener is held from another PID namespace, not by the kernel.
    assert owner_note("LISTEN", privileged=True) == OWNER_UNSEEN
    assert owner_note("ESTABLISHED", privileged=True) == OWNER_UNSEEN


def test_vanished_and_unreadable_owners_do_not_crash(fake_psutil: Any) -> None:
    FakeProcess.table = {
        11: psutil.AccessDenied(11),
        12: psutil.ZombieProcess(12),
        13: (psutil.NoSuchProcess(13), "root", 3.0),  # exits between create_time and name
    }
    fake_psutil.conns = [
        sconn(3, V4, TCP, addr("127.0.0.1", 1111), (), "LISTEN", 11),
        sconn(3, V4, TCP, addr("127.0.0.1", 1112), (), "LISTEN", 12),
        sconn(3, V4, TCP, addr("127.0.0.1", 1113), (), "LISTEN", 13),
        sconn(3, V4, TCP, addr("127.0.0.1", 1114), (), "LISTEN", 14),  # already gone
    ]
    snap = PsutilCollector().scan()
    pids = {s.local_port: (s.pid, s.process) for s in snap.sockets}
    assert pids == {1111: (11, None), 1112: (12, None), 1113: (13, None), 1114: (14, None)}


def test_access_denied_for_the_whole_call_falls_back_to_own_processes(
    fake_psutil: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(kind: str = "inet") -> list:
        raise psutil.AccessDenied()

    class Mine:
        def __init__(self, pid: int, conns: Any) -> None:
            self.pid = pid
            self._conns = conns

        def net_connections(self, kind: str = "inet") -> list:
            if isinstance(self._conns, BaseException):
                raise self._conns
            return self._conns

    FakeProcess.table = {30: ("myserver", "me", 5.0)}
    monkeypatch.setattr(collector_mod.psutil, "net_connections", denied)
    procs = [
        Mine(30, [pconn(3, V4, TCP, addr("127.0.0.1", 9000), (), "LISTEN")]),
        Mine(31, psutil.AccessDenied(31)),
        Mine(32, psutil.NoSuchProcess(32)),
    ]
    monkeypatch.setattr(collector_mod.psutil, "process_iter", lambda *a, **k: iter(procs))
    snap = PsutilCollector().scan()
    assert [(s.local_port, s.pid, s.process) for s in snap.sockets] == [(9000, 30, "myserver")]
    assert snap.warning and "only your own processes" in snap.warning


def test_reused_pid_gets_fresh_details(fake_psutil: Any) -> None:
    col = PsutilCollector()
    FakeProcess.table = {40: ("old", "a", 1.0)}
    fake_psutil.conns = [sconn(3, V4, TCP, addr("127.0.0.1", 7000), (), "LISTEN", 40)]
    assert col.scan().sockets[0].process == "old"
    FakeProcess.table = {40: ("new", "b", 9.0)}
    s = col.scan().sockets[0]
    assert (s.process, s.user, s.holders[0].create_time) == ("new", "b", 9.0)


def test_same_tuple_sockets_get_distinct_keys(fake_psutil: Any) -> None:
    FakeProcess.table = {1: ("a", "u", 1.0), 2: ("b", "u", 1.0)}
    fake_psutil.conns = [
        sconn(3, V4, TCP, addr("0.0.0.0", 443), (), "LISTEN", 1),
        sconn(3, V4, TCP, addr("0.0.0.0", 443), (), "LISTEN", 2),
    ]
    snap = PsutilCollector().scan()
    assert len({s.key for s in snap.sockets}) == 2


def _snap(*ports: int, at: float = 1.0) -> Snapshot:
    return Snapshot(sockets=tuple(Socket("tcp", 4, "127.0.0.1", p, state="LISTEN") for p in ports), taken_at=at)


def test_guarded_scan_keeps_last_good_snapshot_on_failure() -> None:
    good = _snap(1, 2)
    col = ScriptedCollector([PermissionError("/proc/net/tcp: permission denied")])
    out = guarded_scan(col, good)
    assert out.sockets == good.sockets
    assert out.error is not None and "PermissionError" in out.error and "permission denied" in out.error
    first = guarded_scan(col, None)
    assert first.sockets == () and first.error


def test_scripted_collector_plays_steps_in_order_then_repeats_last() -> None:
    a, b = _snap(1), _snap(2)
    col = ScriptedCollector([a, RuntimeError("boom"), lambda: b])
    assert col.scan() is a
    with pytest.raises(RuntimeError):
        col.scan()
    assert col.scan() is b and col.scan() is b and col.calls == 4
    looping = ScriptedCollector([a, b], loop=True)
    assert [looping.scan() for _ in range(4)] == [a, b, a, b]
    with pytest.raises(ValueError):
        ScriptedCollector([])
