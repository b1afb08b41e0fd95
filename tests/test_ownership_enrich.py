"""Enrichment: a ``systemctl`` stub on PATH printing recorded ``show`` output, and an Engine API test server
on a unix socket answering the documented endpoints (GET /containers/json, GET /containers/{id}/json)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from portmon.ownership import manager as mk
from portmon.ownership.enrich import Enricher, docker_proxy_target, engine_sockets, parse_list_sockets, parse_show
from portmon.ownership.preflight import managers_for, predict, preflight, preflight_record

# Recorded on a Debian 12 host (systemd 252): `systemctl show --property=... -- UNIT`.
SHOW = {
    "nginx.service": "Restart=always\nMainPID=1287\nNRestarts=2\nActiveState=active\nSubState=running\n",
    "cron.service": "Restart=no\nMainPID=611\nNRestarts=0\nActiveState=active\nSubState=running\n",
    "web.service": "Restart=on-failure\nMainPID=902\nNRestarts=0\nActiveState=active\nSubState=running\n",
    "foo.service": "Restart=no\nMainPID=4410\nNRestarts=0\nTriggeredBy=foo.socket\nActiveState=active\n"
    "SubState=running\n",
    "devserver.service": "Restart=always\nMainPID=5001\nNRestarts=7\nActiveState=active\nSubState=running\n",
}
LIST_SOCKETS = (
    "/run/dbus/system_bus_socket dbus.socket          dbus.service\n"
    "[::]:8080                   foo.socket           foo.service\n"
    "/run/systemd/journal/stdout systemd-journald.socket systemd-journald.service\n"
)

STUB = """#!/bin/sh
echo "$*" >> "{log}"
for last; do :; done
case "$*" in
  *list-sockets*) cat "{dir}/list-sockets" ;;
  *show*)
    if [ -f "{dir}/show-$last" ]; then cat "{dir}/show-$last"; else
      echo "Failed to get properties: Unit $last not found." >&2; exit 1; fi ;;
  *) exit 1 ;;
esac
"""


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``systemctl`` on PATH answering from recorded output; returns the file logging its calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    for unit, text in SHOW.items():
        (data / f"show-{unit}").write_text(text)
    (data / "list-sockets").write_text(LIST_SOCKETS)
    log = tmp_path / "calls.log"
    stub = bindir / "systemctl"
    stub.write_text(STUB.format(log=log, dir=data))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def unit(name: str, kind: str = mk.SYSTEMD_UNIT, **details: str) -> mk.Manager:
    stop = f"systemctl {'--user ' if kind == mk.SYSTEMD_USER_UNIT else ''}stop {name}"
    return mk.Manager(kind, name, "cgroup", stop=stop, details=tuple(details.items()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unit_with_restart_always(systemctl: Path) -> None:
    (m,) = Enricher().enrich([unit("nginx.service")])
    assert (m.restart, m.detail("Restart"), m.detail("NRestarts"), m.detail("ActiveState")) == (
        mk.RESTART_YES, "always", "2", "active")
    assert predict([m], {1287}).message == (
        "systemd will restart nginx.service (Restart=always): stop the unit instead: `systemctl stop nginx.service`"
    )


def test_unit_restart_no_and_on_failure(systemctl: Path) -> None:
    cron, web = Enricher().enrich([unit("cron.service"), unit("web.service")])
    assert cron.restart == mk.RESTART_NO
    assert predict([cron]).message.startswith("runs as systemd unit cron.service (Restart=no): it will stay down")
    assert not predict([cron]).restart_expected
    assert web.restart == mk.RESTART_LIKELY
    assert predict([web]).message.startswith("systemd may restart web.service (Restart=on-failure")


def test_socket_activation_puts_the_socket_unit_first(systemctl: Path) -> None:
    sock, service = Enricher().enrich([unit("foo.service")])
    assert (sock.kind, sock.name, sock.stop) == (mk.SOCKET_UNIT, "foo.socket", "systemctl stop foo.socket foo.service")
    assert service.detail("TriggeredBy") == "foo.socket"
    pre = predict([sock, service])
    assert pre.message.startswith("socket-activated: systemd holds the listener and starts foo.service again")
    assert "stop `foo.socket`: `systemctl stop foo.socket foo.service`" in pre.message
    assert pre.restart_expected


def test_user_unit_asks_the_users_manager(systemctl: Path) -> None:
    (m,) = Enricher().enrich([unit("devserver.service", mk.SYSTEMD_USER_UNIT, uid="0")])
    assert m.restart == mk.RESTART_YES
    assert "--user --machine=root@ show" in systemctl.read_text()
    expected = "systemd will restart devserver.service (Restart=always): stop the user unit"
    assert predict([m]).message.startswith(expected)


def test_answers_are_cached_until_the_ttl(systemctl: Path) -> None:
    clock = Clock()
    enricher = Enricher(clock=clock, ttl=30)
    enricher.enrich([unit("nginx.service")])
    enricher.enrich([unit("nginx.service")])
    assert len(systemctl.read_text().splitlines()) == 1
    clock.now += 31
    enricher.enrich([unit("nginx.service")])
    assert len(systemctl.read_text().splitlines()) == 2


def test_unreachable_systemd_keeps_the_cgroup_answer(systemctl: Path) -> None:
    (m,) = Enricher().enrich([unit("gone.service")])
    assert (m.kind, m.name, m.restart, m.stop) == (mk.SYSTEMD_UNIT, "gone.service", mk.RESTART_UNKNOWN,
                                                    "systemctl stop gone.service")
    assert m.note == "systemd not reachable: Failed to get properties: Unit gone.service not found."
    assert "whether systemd restarts it is unknown (systemd not reachable" in predict([m]).message


def test_no_systemctl_at_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    (m,) = Enricher().enrich([unit("nginx.service")])
    assert m.note == "systemctl is not installed"


def test_a_hanging_systemctl_is_cut_off_by_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = tmp_path / "systemctl"
    stub.write_text(f"#!/bin/sh\nexec {shutil.which('sleep') or '/bin/sleep'} 30\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    (m,) = Enricher(budget=0.3).enrich([unit("nginx.service")])
    assert m.note is not None and "did not answer within" in m.note
    assert m.restart == mk.RESTART_UNKNOWN


def test_socket_units_for_a_listener_held_by_pid_1(systemctl: Path) -> None:
    enricher = Enricher()
    enricher.enrich([])  # starts a budget
    (m,) = enricher.socket_units_on(8080)
    assert (m.kind, m.name, m.stop) == (mk.SOCKET_UNIT, "foo.socket", "systemctl stop foo.socket foo.service")
    assert enricher.socket_units_on(9) == ()


def test_parsers() -> None:
    assert parse_show("A=1\nB=\nbad line\nC=x=y\n") == {"A": "1", "B": "", "C": "x=y"}
    assert parse_list_sockets(LIST_SOCKETS)[1] == ("[::]:8080", "foo.socket", "foo.service")


# -- the Engine API ---------------------------------------------------------------------------------

CID = "3f4e8c2a9b1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"
OTHER = "a" * 64
CONTAINERS = {
    CID: {
        "Id": CID, "Name": "/web",
        "Config": {"Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}},
        "HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
        "State": {"Status": "running", "Pid": 4242},
        "NetworkSettings": {"IPAddress": "172.17.0.2"},
    },
    OTHER: {
        "Id": OTHER, "Name": "/db",
        "Config": {"Labels": {}},
        "HostConfig": {"RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}},
        "State": {"Status": "running", "Pid": 4300},
        "NetworkSettings": {"IPAddress": "172.17.0.2"},
    },
}
LISTING = [
    # Same bridge IP on two networks: the mapping must go by published port, not by IP.
    {"Id": OTHER, "Names": ["/db"], "State": "running", "Labels": {},
     "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 5432, "Type": "tcp"}]},
    {"Id": CID, "Names": ["/web"], "State": "running",
     "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
     "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
               {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}]},
]


class EngineServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    requests: list[tuple[str, str]]


class EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EngineServer

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.server.requests.append(("GET", self.path))
        path = self.path.split("?")[0]
        if path == "/containers/json":
            self._answer(200, LISTING)
            return
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "containers" and parts[2] == "json":
            found = next((c for cid, c in CONTAINERS.items() if cid.startswith(parts[1])), None)
            if found is not None:
                self._answer(200, found)
                return
            self._answer(404, {"message": f"No such container: {parts[1]}"})
            return
        self._answer(404, {"message": "page not found"})

    def do_POST(self) -> None:  # noqa: N802
        self.server.requests.append(("POST", self.path))
        self._answer(405, {"message": "read-only test server"})

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    path = str(tmp_path / "docker.sock")
    server = EngineServer(path, EngineHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def docker(cid: str = CID) -> mk.Manager:
    return mk.Manager(mk.DOCKER, cid[:12], "cgroup", stop=f"docker stop {cid[:12]}", details=(("id", cid),))


def test_container_name_compose_and_restart_policy(engine: EngineServer) -> None:
    enricher = Enricher(env={"DOCKER_HOST": f"unix://{engine.server_address}"}, sockets=engine_sockets)
    (m,) = enricher.enrich([docker()])
    assert (m.name, m.restart, m.stop) == ("web", mk.RESTART_YES, "docker stop web")
    assert (m.detail("compose_project"), m.detail("compose_service"), m.detail("restart_policy")) == (
        "shop", "web", "always")
    assert predict([m]).message == (
        "container web (compose shop/web, restart=always): the engine will restart it: stop the container instead: "
        "`docker stop web`"
    )
    (db,) = enricher.enrich([docker(OTHER)])
    assert (db.name, db.restart) == ("db", mk.RESTART_NO)
    assert predict([db]).message.startswith("container db (restart=no): it stops with its main process")
    assert {method for method, _ in engine.requests} == {"GET"}
    assert ("GET", f"/containers/{CID}/json") in engine.requests


def test_docker_proxy_is_mapped_by_published_port(engine: EngineServer) -> None:
    argv = ["/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
            "-container-ip", "172.17.0.2", "-container-port", "80"]
    assert docker_proxy_target(argv) == ("tcp", 8080, "172.17.0.2", 80)
    enricher = Enricher(env={"DOCKER_HOST": f"unix://{engine.server_address}"})
    enricher.enrich([])
    m = enricher.docker_proxy(777, argv)
    assert m is not None
    assert (m.kind, m.name, m.detail("compose_project"), m.restart, m.stop) == (
        mk.DOCKER, "web", "shop", mk.RESTART_YES, "docker stop web")
    assert ("GET", "/containers/json") in engine.requests
    other = enricher.docker_proxy(778, [*argv[:6], "9999", *argv[7:]])
    assert other is not None and other.note == "no container publishes port 9999/tcp"


def test_podman_uses_container_host(engine: EngineServer) -> None:
    enricher = Enricher(env={"CONTAINER_HOST": f"unix://{engine.server_address}"})
    pod = mk.Manager(mk.PODMAN, CID[:12], "cgroup", stop=f"podman stop {CID[:12]}", details=(("id", CID),))
    (m,) = enricher.enrich([pod])
    assert (m.name, m.stop) == ("web", "podman stop web")


def test_unreachable_engine_keeps_the_cgroup_answer(tmp_path: Path) -> None:
    refusing = tmp_path / "refusing.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(refusing))  # bound, never listening: connect() is refused
    try:
        enricher = Enricher(env={}, sockets=lambda kind, env, uid: [str(tmp_path / "absent.sock"), str(refusing)])
        (m,) = enricher.enrich([docker()])
    finally:
        s.close()
    assert (m.name, m.stop, m.restart) == (CID[:12], f"docker stop {CID[:12]}", mk.RESTART_UNKNOWN)
    assert m.note is not None and m.note.startswith("the docker Engine API is not reachable (")
    assert str(refusing) in m.note
    assert predict([m]).stop_command == f"docker stop {CID[:12]}"
    (none,) = Enricher(env={}, sockets=lambda kind, env, uid: []).enrich([docker()])
    assert none.note == "the docker Engine API is not reachable (no socket found)"


def test_engine_socket_candidates() -> None:
    env = {"DOCKER_HOST": "unix:///custom/docker.sock", "XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/a"}
    paths = engine_sockets(mk.DOCKER, env, 1000)
    assert paths[0] == "/custom/docker.sock"
    assert "/var/run/docker.sock" in paths and "/run/user/1000/docker.sock" in paths
    pod = engine_sockets(mk.PODMAN, {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1001)
    assert pod[:3] == ["/run/user/1000/podman/podman.sock", "/run/user/1001/podman/podman.sock",
                       "/run/podman/podman.sock"]
    assert "tcp" not in " ".join(engine_sockets(mk.DOCKER, {"DOCKER_HOST": "tcp://10.0.0.1:2375"}))


def fake_proc(root: Path, pid: int, *, name: str, ppid: int, cgroup: str, cmdline: list[str],
              environ: dict[str, str] | None = None) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({name}) S {ppid} {pid} {pid} 0 -1 4194560 " + "0 " * 13 + "5000 0 0\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")
    (d / "cgroup").write_text(cgroup)
    (d / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in (environ or {}).items()))
    (d / "status").write_text(f"Name:\t{name}\nUid:\t0\t0\t0\t0\n")


def test_preflight_end_to_end_on_a_recorded_proc_tree(tmp_path: Path, systemctl: Path, engine: EngineServer) -> None:
    procfs = tmp_path / "proc"
    fake_proc(procfs, 1, name="systemd", ppid=0, cgroup="0::/init.scope\n", cmdline=["/sbin/init"])
    fake_proc(procfs, 1287, name="nginx", ppid=1, cgroup="0::/system.slice/nginx.service\n",
              cmdline=["nginx: master process /usr/sbin/nginx"])
    fake_proc(procfs, 4242, name="python3", ppid=4200, cgroup=f"0::/system.slice/docker-{CID}.scope\n",
              cmdline=["python3", "app.py"])
    fake_proc(procfs, 4200, name="containerd-shim", ppid=1, cgroup="0::/system.slice/containerd.service\n",
              cmdline=["/usr/bin/containerd-shim-runc-v2"])
    fake_proc(procfs, 900, name="docker-proxy", ppid=800, cgroup="0::/system.slice/docker.service\n",
              cmdline=["/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip", "0.0.0.0", "-host-port", "8080",
                       "-container-ip", "172.17.0.2", "-container-port", "80"])
    fake_proc(procfs, 800, name="dockerd", ppid=1, cgroup="0::/system.slice/docker.service\n",
              cmdline=["/usr/bin/dockerd"])
    enricher = Enricher(env={"DOCKER_HOST": f"unix://{engine.server_address}"})
    root = str(procfs)
    nginx = preflight([1287], enricher=enricher, procfs=root)
    assert nginx.message == (
        "systemd will restart nginx.service (Restart=always): stop the unit instead: `systemctl stop nginx.service`"
    )
    web = preflight([4242], enricher=enricher, procfs=root)
    assert web.message.startswith("container web (compose shop/web, restart=always): the engine will restart it")
    proxy = preflight([900], enricher=enricher, procfs=root)
    assert proxy.manager is not None and proxy.manager.name == "web"
    # dockerd's own unit comes after the container the proxy forwards to.
    assert [m.name for m in proxy.managers] == ["web", "docker.service"]
    activated = managers_for(1, port=8080, enricher=enricher, procfs=root)
    assert activated[0].name == "foo.socket"
    record = preflight_record(nginx)
    assert record["managers"][0]["kind"] == mk.SYSTEMD_UNIT and record["stop_command"] == "systemctl stop nginx.service"
    json.dumps(record)
