"""The ownership facts commands show: family order and roles, the manager object, the managed-by text."""

from __future__ import annotations

import json
from pathlib import Path

from portmon.model import Holder, Socket
from portmon.ownership import manager as mk
from portmon.ownership.view import (
    Ownership,
    managed_by_text,
    managed_matcher,
    manager_facts,
    managers_json,
    marked_chain,
)


def fake_proc(root: Path, pid: int, name: str, ppid: int, cgroup: str, start: int = 100) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 0 " + "0 " * 13 + f"{start} 0 0\n")
    (d / "cgroup").write_text(cgroup)
    (d / "cmdline").write_bytes(name.encode() + b"\0")


def test_record_extra_for_a_prefork_unit(tmp_path: Path) -> None:
    fake_proc(tmp_path, 500, "gunicorn", 1, "0::/system.slice/shop.service\n", start=10)
    for pid in (120, 121):
        fake_proc(tmp_path, pid, "gunicorn", 500, "0::/system.slice/shop.service\n", start=20)
    own = Ownership(str(tmp_path))
    hs = (Holder(120, "gunicorn", "www"), Holder(500, "gunicorn", "www"), Holder(121, "gunicorn", "www"))
    (sock,) = own.order([Socket("tcp", 4, "0.0.0.0", 80, state="LISTEN", holders=hs)])
    assert sock.pid == 500
    extra = own.record_extra(sock)
    assert extra["holders"] == [
        {"pid": 500, "process": "gunicorn", "user": "www", "role": "main"},
        {"pid": 120, "process": "gunicorn", "user": "www", "role": "worker"},
        {"pid": 121, "process": "gunicorn", "user": "www", "role": "worker"},
    ]
    manager = extra["manager"]
    assert (manager["kind"], manager["name"], manager["stop_command"], manager["outer"]) == (
        mk.SYSTEMD_UNIT, "shop.service", "systemctl stop shop.service", [])
    json.dumps(extra)
    assert managed_by_text(own.socket_managers(sock)) == "systemd unit shop.service"


def test_no_manager_is_null_and_empty_text() -> None:
    assert managers_json(()) is None
    assert managed_by_text(()) == ""
    loop = mk.Manager(mk.SHELL, "bash loop", "parents", pid=7)
    session = mk.Manager(mk.SESSION, "session-3.scope", "cgroup")
    assert managed_by_text((loop, session)) == "bash loop (pid 7) in session-3.scope"
    doc = managers_json((loop, session))
    assert doc is not None and [o["name"] for o in doc["outer"]] == ["session-3.scope"]


def test_hostile_names_are_escaped_in_text() -> None:
    evil = mk.Manager(mk.SYSTEMD_UNIT, "x\x1b[31m.service", "cgroup")
    assert "\x1b" not in managed_by_text((evil,))


def test_managed_matcher(tmp_path: Path) -> None:
    fake_proc(tmp_path, 10, "nginx", 1, "0::/system.slice/nginx.service\n")
    fake_proc(tmp_path, 20, "python3", 1, "0::/user.slice/user-1000.slice/session-4.scope\n")
    fake_proc(tmp_path, 30, "app", 1, f"0::/system.slice/docker-{'ab' * 32}.scope\n")
    own = Ownership(str(tmp_path))
    socks = [Socket("tcp", 4, "127.0.0.1", port, state="LISTEN", holders=(Holder(pid),))
             for port, pid in ((80, 10), (8000, 20), (9000, 30))]
    kernel = Socket("tcp", 4, "127.0.0.1", 1, state="TIME_WAIT")

    def ports(*values: str) -> list[int]:
        test = managed_matcher(values, own)
        return [s.local_port for s in [*socks, kernel] if test(s)]

    assert ports("any") == [80, 9000]
    assert ports("none") == [8000, 1]
    assert ports("nginx") == [80]
    assert ports("SYSTEMD") == [80]
    assert ports("session") == [8000]
    assert ports("docker", "nginx") == [80, 9000]
    assert ports("abab") == [9000]
    assert ports("nothing-like-this") == []


def test_manager_facts_and_marked_chain(tmp_path: Path) -> None:
    unit = mk.Manager(mk.SYSTEMD_UNIT, "nginx.service", "cgroup+systemd", restart=mk.RESTART_YES,
                      stop="systemctl stop nginx.service", details=(("Restart", "always"), ("NRestarts", "2")))
    web = mk.Manager(mk.DOCKER, "web", "engine", stop="docker stop web",
                     details=(("compose_project", "shop"), ("compose_service", "web"), ("restart_policy", "always")))
    assert manager_facts([web, unit]) == [
        ("managed by", "docker container web"), ("restart policy", "always"), ("compose project", "shop"),
        ("compose service", "web"), ("stop with", "docker stop web"),
        ("inside", "systemd unit nginx.service"), ("restart policy", "always"), ("restarts so far", "2"),
        ("stop with", "systemctl stop nginx.service"),
    ]
    fake_proc(tmp_path, 1, "init", 0, "0::/\n")
    fake_proc(tmp_path, 40, "bash", 1, "0::/\n")
    fake_proc(tmp_path, 41, "python3", 40, "0::/\n")
    loop = mk.Manager(mk.SHELL, "bash loop", "parents", pid=40)
    assert marked_chain(41, [loop], str(tmp_path)) == [(40, "bash", True), (1, "init", False)]


def test_rebind_rescan_waits_for_a_holder_or_the_deadline() -> None:
    from portmon.model import Snapshot
    from portmon.ownership.preflight import rebind_rescan
    from portmon.portspec import PortSpec

    now = [0.0]
    free = Snapshot((), 0.0)
    held = Snapshot((Socket("tcp", 4, "127.0.0.1", 8000, state="LISTEN", holders=(Holder(77),)),), 0.0)
    other_port = Snapshot((Socket("tcp", 4, "127.0.0.1", 9000, state="LISTEN", holders=(Holder(78),)),), 0.0)
    answers = [free, other_port, free, held, free]
    scans: list[float] = []

    def scan() -> Snapshot:
        scans.append(now[0])
        return answers[len(scans) - 1]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    got = rebind_rescan(scan, PortSpec(8000, "tcp"), 3.0, interval=0.5, clock=lambda: now[0], sleep=sleep)()
    assert got is held and scans == [0.0, 0.5, 1.0, 1.5]
    scans.clear()
    answers[:] = [free] * 10
    now[0] = 0.0
    got = rebind_rescan(scan, PortSpec(8000, "tcp"), 1.2, interval=0.5, clock=lambda: now[0], sleep=sleep)()
    assert got is free and scans == [0.0, 0.5, 1.0, 1.2]
