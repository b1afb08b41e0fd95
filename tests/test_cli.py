"""The one-shot CLI on real loopback sockets held by child processes this test starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = [
    "proto",
    "family",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "state",
    "pid",
    "process",
    "user",
    "local_service",
    "remote_service",
    "local_range",
    "bytes_sent",
    "bytes_received",
    "rtt_ms",
    "retransmits",
    "accept_queue",
    "backlog",
    "host",
    "netns",
]

SERVER = textwrap.dedent(
    """
    import os, socket, sys
    name = sys.argv[1].encode("utf-8", "surrogateescape")
    fork = sys.argv[2] == "fork"
    if name:
        with open("/proc/self/comm", "wb") as f:
            f.write(name[:15])
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    child = 0
    if fork:
        child = os.fork()
        if child == 0:
            sys.stdin.read()
            os._exit(0)
    print(tcp.getsockname()[1], udp.getsockname()[1], child, flush=True)
    sys.stdin.read()
    if child:
        os.waitpid(child, 0)
    """
)


class Server:
    """A child process holding a TCP listener and a UDP socket on loopback until closed."""

    def __init__(self, name: str = "", fork: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, name, "fork" if fork else "no"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        tcp, udp, child = self.proc.stdout.readline().split()
        self.tcp_port, self.udp_port, self.child = int(tcp), int(udp), int(child)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def portmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="names processes through /proc/self/comm (Linux)"
)


def test_list_json_reports_the_childs_sockets(server: Server) -> None:
    res = portmon("list", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert rows and all(list(r) == [*KEYS, "holders", "manager"] for r in rows)
    # Another network namespace (a container, as root) may use the same port numbers: ours are netns null.
    tcp = [r for r in rows if r["proto"] == "tcp" and r["local_port"] == server.tcp_port and r["netns"] is None]
    udp = [r for r in rows if r["proto"] == "udp" and r["local_port"] == server.udp_port and r["netns"] is None]
    assert len(tcp) == 1 and len(udp) == 1
    assert tcp[0]["state"] == "LISTEN" and tcp[0]["pid"] == server.proc.pid
    assert tcp[0]["local_addr"] == "127.0.0.1" and tcp[0]["remote_addr"] is None and tcp[0]["remote_port"] is None
    assert tcp[0]["family"] == 4 and tcp[0]["process"] and tcp[0]["user"]
    assert tcp[0]["local_range"] in ("user", "dynamic")
    assert udp[0]["state"] is None and udp[0]["pid"] == server.proc.pid


def test_list_filter_csv_and_text(server: Server) -> None:
    res = portmon("list", f":{server.tcp_port}", "--csv")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split(",") == [*KEYS, "pids"]
    assert len(lines) == 2 and f",{server.tcp_port}," in lines[1] and ",LISTEN," in lines[1]
    res = portmon("list", f"lport:{server.udp_port}", "proto:udp")
    assert res.returncode == 0
    body = res.stdout.strip().splitlines()
    assert body[0].split()[0] == "PROTO" and len(body) == 2 and str(server.proc.pid) in body[1]
    res = portmon("list", "--listening", f"pid:{server.proc.pid}", "--json")
    assert {(r["proto"], r["local_port"]) for r in json.loads(res.stdout)} == {
        ("tcp", server.tcp_port),
        ("udp", server.udp_port),
    }


def test_who_names_every_holder_of_a_shared_listener() -> None:
    s = Server(fork=True)
    try:
        res = portmon("who", f"{s.tcp_port}/tcp", "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert list(doc) == ["port", "proto", "service", "range", "holders", "manager"]
        assert doc["port"] == s.tcp_port and doc["proto"] == "tcp"
        assert {h["pid"] for h in doc["holders"]} == {s.proc.pid, s.child}
        assert all(list(h) == KEYS and h["state"] == "LISTEN" for h in doc["holders"])
        text = portmon("who", str(s.tcp_port))
        assert text.returncode == 0
        assert str(s.proc.pid) in text.stdout and str(s.child) in text.stdout
    finally:
        s.close()


def test_who_a_free_port_exits_1() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    res = portmon("who", f"{port}/udp", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["holders"] == [] and doc["proto"] == "udp"
    assert portmon("who", str(port)).returncode == 1


def test_who_reports_the_registered_service() -> None:
    res = portmon("who", "5432", "--json")
    doc = json.loads(res.stdout)
    assert doc["service"] == "postgresql" and doc["range"] == "user" and doc["proto"] is None


def test_registry_option_before_and_after_the_command(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    first.write_text("alpha 40001/tcp\n")
    second.write_text("beta 40001/tcp\ngamma 40002/tcp\n")
    res = portmon("--registry", str(first), "who", "40001", "--json", "--registry", str(second))
    assert json.loads(res.stdout)["service"] == "alpha"
    res = portmon("--registry", str(first), "who", "40002", "--json", "--registry", str(second))
    assert json.loads(res.stdout)["service"] == "gamma"
    missing = portmon("--registry", str(tmp_path / "nope"), "who", "40001", "--json")
    assert missing.returncode == 1 and "warning" in missing.stderr and "nope" in missing.stderr


@linux_only
def test_hostile_process_names_are_printed_escaped() -> None:
    s = Server(name="[/]\x1b]0;x\x07ev")
    try:
        for args in (["list", f":{s.tcp_port}"], ["who", str(s.tcp_port)], ["list", f":{s.tcp_port}", "--csv"]):
            res = portmon(*args)
            assert res.returncode == 0, res.stderr
            assert "\x1b" not in res.stdout and "\x07" not in res.stdout
            assert "[/]\\x1b]0;x\\x07ev" in res.stdout
        res = portmon("list", f":{s.tcp_port}", "--json")
        assert json.loads(res.stdout)[0]["process"] == "[/]\x1b]0;x\x07ev"
        assert "\x1b" not in res.stdout
    finally:
        s.close()


@pytest.mark.parametrize(
    "args, message",
    [
        (["list", "port:abc"], "invalid filter term 'port:abc': expected a port number 0-65535"),
        (["list", "state:nosuch"], "invalid filter term 'state:nosuch'"),
        (["list", "addr:1.2.3.4/99"], "invalid filter term 'addr:1.2.3.4/99'"),
        (["who", "abc"], "invalid port 'abc'"),
        (["who", "70000"], "invalid port '70000'"),
        (["who", "80/icmp"], "invalid port '80/icmp'"),
        (["--interval", "0", "list"], "--interval"),
        (["list", "--interval", "-1"], "--interval"),
        (["nosuchcommand"], "invalid choice"),
        (["list", "--sort", "nosuch"], "nosuch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = portmon(*args)
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_not_a_terminal_prints_the_list(server: Server) -> None:
    res = portmon()
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[0] == "PROTO"
    assert str(server.tcp_port) in res.stdout


def test_version_and_help() -> None:
    assert portmon("--version").stdout.startswith("portmon ")
    res = portmon("--help")
    assert res.returncode == 0 and "list" in res.stdout and "who" in res.stdout
