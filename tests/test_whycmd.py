"""``portmon why`` end to end: real sockets on loopback (held, free, TIME_WAIT only, bound on 127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IS_LINUX = sys.platform.startswith("linux")

# A server this test starts: listens on 127.0.0.1 (and ::1 with "both") on one port, until stdin closes.
SERVER = textwrap.dedent(
    """
    import socket, sys
    both = sys.argv[1] == "both"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    held = [s]
    if both:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s6.bind(("::1", port))
        s6.listen()
        held.append(s6)
    print(port, flush=True)
    sys.stdin.read()
    """
)


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def portmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )


class Server:
    """A listener in a child process this test started; it exits when its stdin closes."""

    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip():
            self.close()
            raise RuntimeError("the test server did not start")
        self.port = int(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(30)


@pytest.fixture
def server() -> Iterator[Any]:
    servers: list[Server] = []

    def start(mode: str = "v4") -> Server:
        s = Server(mode)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def test_a_held_port_names_the_holder_and_the_kill_command(server: Any) -> None:
    if not ipv6_loopback():
        pytest.skip("needs ::1 to hold every loopback address of the port")
    srv = server("both")
    res = portmon("why", f"{srv.port}/tcp")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"port {srv.port}/tcp is in use: held by ")
    assert f"({srv.proc.pid})" in lines[0]
    assert f"  pid {srv.proc.pid}  " in res.stdout and " up " in res.stdout
    assert "cmd " in res.stdout and "import socket" in res.stdout  # the command line, escaped onto one line
    assert f"to free it: portmon kill {srv.port}/tcp" in res.stdout or f"sudo portmon kill {srv.port}/tcp" in res.stdout

    doc = json.loads(portmon("why", f"{srv.port}/tcp", "--json").stdout)
    assert doc["port"] == srv.port and doc["proto"] == "tcp" and doc["free"] is False and doc["reason"] == "held"
    holder = doc["holders"][0]
    assert holder["pid"] == srv.proc.pid and holder["process"]
    assert holder["cmdline"][0] == sys.executable and holder["uptime_seconds"] >= 0
    assert {b["address"] for b in doc["binds"] if b["result"] == "in-use"} >= {"127.0.0.1", "::1"}


def test_a_free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = portmon("why", f"{port}/tcp")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == f"port {port}/tcp is free: a server can bind it now"
    doc = json.loads(portmon("why", str(port), "--json").stdout)
    assert doc["free"] is True and doc["reason"] == "free" and doc["holders"] == []
    assert doc["proto_given"] is False and [a["proto"] for a in doc["also_checked"]] == ["udp"]
    assert all(b["result"] in ("ok", "unavailable") for b in doc["binds"])


def _time_wait_port(reuseaddr: bool) -> int:
    """A port left with only a TIME_WAIT socket: the server side closes an accepted connection first."""
    listener = socket.socket()
    if reuseaddr:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first, so its side of the connection ends in TIME_WAIT
    client.recv(1)  # the FIN arrived
    client.close()
    listener.close()
    return port


@pytest.mark.parametrize("reuseaddr", [False, True])
def test_a_time_wait_only_port(reuseaddr: bool) -> None:
    port = _time_wait_port(reuseaddr)
    res = portmon("why", f"{port}/tcp", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["reason"] == "time-wait" and doc["free"] is False and doc["holders"] == []
    assert any(s["state"] == "TIME_WAIT" for s in doc["sockets"])
    assert doc["time_wait_seconds"] == 60
    if IS_LINUX:
        # Linux lets SO_REUSEADDR bind past TIME_WAIT only when the old server set it too.
        assert doc["reuseaddr_bind_ok"] is reuseaddr
    text = portmon("why", f"{port}/tcp").stdout
    assert "held only by the kernel" in text and "60 s on Linux" in text
    assert ("can bind the port now" in text) == bool(doc["reuseaddr_bind_ok"])


def test_a_port_bound_on_127_0_0_1_only(server: Any) -> None:
    if not ipv6_loopback():
        pytest.skip("needs ::1 as the address that is still free")
    srv = server("v4")
    res = portmon("why", f"{srv.port}/tcp", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["reason"] == "partial"
    assert "127.0.0.1" in doc["taken_addresses"] and doc["free_addresses"] == ["::1"]
    assert doc["holders"][0]["pid"] == srv.proc.pid
    text = portmon("why", f"{srv.port}/tcp").stdout
    assert text.splitlines()[0].startswith(f"port {srv.port}/tcp is taken on 127.0.0.1 only, by ")
    assert text.splitlines()[0].endswith("; still free on ::1")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="needs a non-root user")
def test_a_system_port_needs_privileges_without_root() -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") if IS_LINUX else open(os.devnull) as fh:
        start = int(fh.read().strip() or 1024)
    if start <= 1:
        pytest.skip("this system lets every user bind low ports")
    doc = json.loads(portmon("why", "1/tcp", "--json").stdout)
    if doc["sockets"]:
        pytest.skip("something holds port 1 here")
    assert doc["reason"] == "privileged" and doc["free"] is False
    assert {b["result"] for b in doc["binds"]} <= {"denied", "unavailable"}


@pytest.mark.parametrize("arg", ["abc", "0", "70000", "80/sctp"])
def test_bad_ports_are_exit_2_with_one_line(arg: str) -> None:
    res = portmon("why", arg)
    assert res.returncode == 2
    assert res.stdout == "" and res.stderr.count("\n") == 1 and res.stderr.startswith("portmon: ")


def test_why_and_watch_run_without_textual() -> None:
    code = (
        "import sys, io\n"
        "from portmon.cli.main import main\n"
        "main(['why', '1', '--json'], stdout=io.StringIO(), stderr=io.StringIO())\n"
        "import portmon.cli.watch\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "portmon.cli.why" in loaded and "portmon.actions.why" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich")}


def test_deferred_engine_gives_the_same_answer_as_an_eager_import(server: Any) -> None:
    # cli/why.py imports portmon.actions.why inside run() only (a start-up trick): the plain version,
    # with it imported up front, must answer exactly the same.
    s = server()
    main = "import sys\n{pre}\nfrom portmon.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    answers = []
    for pre in ("", "import portmon.actions.why"):
        res = subprocess.run(
            [sys.executable, "-c", main.format(pre=pre), "why", f"{s.port}/tcp", "--json"],
            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        doc = json.loads(res.stdout)
        for holder in doc["holders"]:
            holder.pop("uptime_seconds")  # the one field that moves between the two runs
        answers.append((res.returncode, doc, res.stderr))
    assert answers[0] == answers[1]
    assert answers[0][0] == 1 and [h["pid"] for h in answers[0][1]["holders"]] == [s.proc.pid]
    probe = "import sys\nfrom portmon.cli.main import build_parser\nbuild_parser()\nprint(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not {"psutil", "portmon.actions.why"} & set(loaded.stdout.split())


def test_a_connection_waiting_to_be_accepted_is_named_as_such(server: Any) -> None:
    s = server()  # listens and never accepts
    with socket.create_connection(("127.0.0.1", s.port), timeout=10):
        res = portmon("why", f"{s.port}/tcp")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"1 connection not yet accepted (in the backlog of pid {s.proc.pid})" in res.stdout
    assert "owner not visible" not in res.stdout


def test_unseen_sockets_name_the_fd_tables_that_could_not_be_read() -> None:
    from portmon.actions.binds import BIND_IN_USE, BindAttempt
    from portmon.actions.why import judge
    from portmon.model import LISTEN, OWNER_UNSEEN, Socket

    sock = Socket("tcp", 4, "0.0.0.0", 7000, state=LISTEN, owner_note=OWNER_UNSEEN)
    binds = [BindAttempt("tcp", 4, "0.0.0.0", False, BIND_IN_USE, "bind: EADDRINUSE")]
    answer = judge(7000, "tcp", binds, [sock], privileged=True, unreadable=lambda: 2)
    assert answer.message == (
        "port 7000/tcp is in use, but no process in portmon's view holds it: "
        "the fds of 2 processes could not be read, even as root, and one of them may hold it"
    )
    assert "PID namespace" in judge(7000, "tcp", binds, [sock], privileged=True, unreadable=lambda: 0).message


def test_portmon_itself_is_never_named_as_a_holder() -> None:
    # portmon's own (inherited) copy of a socket is not a holder; a real holder next to it still is.
    from portmon.actions.binds import BIND_IN_USE, BindAttempt
    from portmon.actions.why import HELD, judge
    from portmon.model import LISTEN, Holder, Socket
    from portmon.procinfo import ProcessDetail

    me = Holder(os.getpid(), "portmon")
    binds = [BindAttempt("tcp", 4, "0.0.0.0", False, BIND_IN_USE, "bind: EADDRINUSE")]
    only_me = Socket("tcp", 4, "0.0.0.0", 7000, state=LISTEN, holders=(me,))
    answer = judge(7000, "tcp", binds, [only_me], privileged=True, reader=lambda pid, ct: ProcessDetail(pid))
    assert answer.reason == HELD and answer.holders == () and answer.kill_command is None
    assert answer.message == (
        "port 7000/tcp is in use only by portmon's own inherited copy: it is free once portmon exits"
    )
    shared = only_me._replace(holders=(me, Holder(4_000_000, "srv")))
    answer = judge(7000, "tcp", binds, [shared], privileged=True, reader=lambda pid, ct: ProcessDetail(pid))
    assert [h.pid for h in answer.holders] == [4_000_000]


# -- both protocols, several ports, service names, the JSON fields ------------------------------------


def test_without_a_protocol_a_udp_holder_makes_the_port_busy(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("proto=udp")
    res = portmon("why", str(child.port))
    doc = json.loads(portmon("why", str(child.port), "--json").stdout)
    if doc["held_protocols"] != ["udp"]:
        pytest.skip(f"something else holds {child.port}/tcp here: {doc['held_protocols']}")
    assert res.returncode == 1, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"port {child.port} is in use over udp; free over tcp"
    assert lines[1].startswith(f"port {child.port}/udp is ")
    assert f"also checked {child.port}/tcp" in lines[-1] and "is free" in lines[-1]
    assert doc["proto"] == "udp" and doc["free"] is False and doc["port_free"] is False
    assert doc["holders"][0]["pid"] == child.pid
    assert [a["proto"] for a in doc["also_checked"]] == ["tcp"] and doc["also_checked"][0]["free"] is True


def test_a_free_port_over_both_protocols_has_no_headline() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = portmon("why", f":{port}", "--json")
    doc = json.loads(res.stdout)
    if not doc["port_free"]:
        pytest.skip(f"something took port {port} meanwhile")
    assert res.returncode == 0 and doc["held_protocols"] == [] and doc["proto"] == "tcp"


def test_several_ports_get_one_answer_each_and_the_worst_exit_code(server: Any) -> None:
    srv = server()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    res = portmon("why", f"{free}/tcp", f"{srv.port}/tcp")
    assert res.returncode == 1, res.stdout + res.stderr
    blocks = res.stdout.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].startswith(f"port {free}/tcp is ")
    assert blocks[1].startswith(f"port {srv.port}/tcp is taken on 127.0.0.1")
    docs = json.loads(portmon("why", f"{free}/tcp", f"{srv.port}/tcp", "--json").stdout)
    assert [d["port"] for d in docs] == [free, srv.port]
    assert docs[1]["free"] is False and docs[1]["holders"][0]["pid"] == srv.proc.pid


def test_a_service_name_answers_for_each_of_its_ports(server: Any, tmp_path: Path) -> None:
    a, b = server(), server()
    registry = tmp_path / "services"
    registry.write_text(f"pmtest-why {a.port}/tcp\npmtest-why {b.port}/tcp\n")
    res = portmon("why", "--registry", str(registry), "pmtest-why", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    docs = json.loads(res.stdout)
    assert sorted(d["port"] for d in docs) == sorted([a.port, b.port])
    assert all(d["proto"] == "tcp" and not d["free"] for d in docs)


def test_running_as_root_is_its_own_field_apart_from_the_privileged_reason() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doc = json.loads(portmon("why", f"{port}/tcp", "--json").stdout)
    assert "privileged" not in doc
    assert doc["running_as_root"] is (os.geteuid() == 0)
    assert doc["time_wait_seconds"] == 60


@pytest.mark.parametrize("args", [["0"], ["80", "0"], ["nope-not-a-service-xq"]])
def test_bad_ports_point_at_why_help(args: list[str]) -> None:
    res = portmon("why", *args)
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "(see 'portmon why --help')" in res.stderr
