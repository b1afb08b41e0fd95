"""``portmon kill`` end to end: real listeners on loopback, the real command in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="these tests use POSIX signals")

from listener_child import ListenerChild  # noqa: E402  (the shared listener child; fixtures in conftest)


def portmon(*args: str, stdin: object = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run ``python -m portmon`` from the repo root."""
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        cwd=ROOT,
        stdin=stdin,  # type: ignore[arg-type]
        capture_output=True,
        text=True,
        timeout=60,
    )


def kill(*args: str) -> subprocess.CompletedProcess[str]:
    return portmon("kill", *args)


# -- the main paths --------------------------------------------------------------------------------


def test_sigterm_frees_a_plain_listener(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    res = kill(f"{child.port}/tcp", "--yes", "--timeout", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"pid {child.pid} exited after SIGTERM" in res.stdout
    assert res.stdout.splitlines()[-1] == f"port {child.port}/tcp freed"
    assert record_file.read_text() == "SIGTERM\n"
    assert not child.alive()


def test_listener_ignoring_sigterm_is_reported_then_freed_with_force(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    res = kill(str(child.port), "--yes", "--timeout", "1")
    assert res.returncode == 1
    assert f"pid {child.pid} ignores SIGTERM (still running after 1 s)" in res.stdout
    assert f"port {child.port}/tcp still held by {child.pid} (ignores SIGTERM)" in res.stdout
    assert "--force" in res.stdout
    assert child.alive()

    res = kill(str(child.port), "--yes", "--timeout", "1", "--force")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"pid {child.pid} exited after SIGKILL" in res.stdout
    assert res.stdout.splitlines()[-1] == f"port {child.port}/tcp freed"
    assert not child.alive()


@pytest.mark.parametrize("collector", ["auto", "psutil"])
def test_parent_and_forked_children_sharing_the_socket_are_all_signalled(spawn, record_file, collector: str) -> None:  # type: ignore[no-untyped-def]
    child = spawn("fork=2", f"record={record_file}")
    assert len(child.pids) == 3
    res = kill(str(child.port), "--yes", "--timeout", "2", "--json", "--collector", collector)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert sorted(t["pid"] for t in doc["targets"]) == sorted(child.pids)
    assert sorted(r["pid"] for r in doc["results"]) == sorted(child.pids)
    assert {r["result"] for r in doc["results"]} == {"exited"}
    assert doc["verdict"] == "freed"
    assert record_file.read_text().splitlines() == ["SIGTERM"] * 3
    assert not any(child.alive(pid) for pid in child.pids)


def _time_wait_port() -> int:
    """A port with only a TIME_WAIT socket left: the server side closes an accepted connection first."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the active close: this side ends in TIME_WAIT
    client.recv(1)  # sees the FIN
    client.close()
    server.close()
    time.sleep(0.1)
    return port


def test_time_wait_only_port_is_refused_with_the_explanation() -> None:
    port = _time_wait_port()
    res = kill(str(port), "--yes")
    if "TIME_WAIT" not in res.stdout:
        pytest.skip(f"no TIME_WAIT socket seen on the port: {res.stdout!r}")
    assert res.returncode == 1
    assert "refused:" in res.stdout
    assert "kernel-owned, no process holds it" in res.stdout
    assert "60 s on Linux" in res.stdout and "SO_REUSEADDR" in res.stdout
    assert "nothing was signalled" in res.stdout


def test_a_stopped_listener_gets_sigcont_and_is_freed(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")  # handles SIGTERM, so it must run again to act on it
    os.kill(child.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
        time.sleep(0.01)
    res = kill(str(child.port), "--yes", "--timeout", "2", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["results"][0]["signals"] == ["SIGTERM", "SIGCONT"]
    assert doc["verdict"] == "freed"
    assert record_file.read_text() == "SIGTERM\n"


def _pair(script: Path) -> tuple[ListenerChild, ListenerChild]:
    """Two listeners on N and 1N (like 8080 and 18080), both out of the ephemeral range."""
    rng = random.Random()
    for _ in range(50):
        n = rng.randrange(2000, 5536)
        short = ListenerChild(f"port={n}", script=script)
        if not short.ok:
            short.stop()
            continue
        long = ListenerChild(f"port=1{n}", script=script)
        if not long.ok:
            short.stop()
            long.stop()
            continue
        return short, long
    pytest.skip("no free N/1N port pair found")


def test_only_the_exact_ports_holder_is_signalled(child_script: Path) -> None:
    short, long = _pair(child_script)
    try:
        res = kill(str(short.port), "--yes", "--timeout", "2", "--json")
        doc = json.loads(res.stdout)
        assert [t["pid"] for t in doc["targets"]] == [short.pid]
        assert res.returncode == 0 and doc["verdict"] == "freed"
        assert not short.alive() and long.alive()
        assert str(long.port).endswith(str(short.port))
        dry = kill(str(short.port), "--dry-run")  # nobody holds it now; the longer port is not matched
        assert dry.returncode == 1 and dry.stdout.strip() == f"nobody holds port {short.port}"
        assert long.alive()
    finally:
        short.stop()
        long.stop()


# -- refusals and confirmation --------------------------------------------------------------------------


ANCESTOR = r"""
import socket, subprocess, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
port = s.getsockname()[1]
res = subprocess.run([sys.executable, "-m", "portmon", "kill", str(port), "--yes", "--timeout", "1"],
                     capture_output=True, text=True, timeout=60)
print(res.returncode)
print(res.stdout, end="")
"""


def test_an_ancestor_holding_the_port_is_refused() -> None:
    # The process holding the port is the parent of the portmon run: it must never be signalled.
    res = subprocess.run([sys.executable, "-c", ANCESTOR], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, "the ancestor survived and reported"
    code, *out = res.stdout.splitlines()
    assert code == "1"
    assert any("refused:" in line and "portmon's ancestors" in line for line in out)
    assert "nothing was signalled" in out[-1]


def test_not_a_terminal_and_no_yes_exits_2_and_signals_nothing(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    res = kill(str(child.port))
    assert res.returncode == 2
    # One error line (warnings about hidden owners may come before it when not root).
    assert res.stderr.splitlines()[-1].startswith("portmon: confirmation needed: stdin is not a terminal; pass --yes")
    assert str(child.pid) in res.stdout  # the holders were shown
    assert child.alive() and record_file.read_text() == ""


def test_dry_run_lists_the_holders_and_signals_nothing(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    res = kill(str(child.port), "--dry-run", "--yes")
    assert res.returncode == 0
    assert f"dry run: would send SIGTERM to {child.pid}" in res.stdout
    assert child.alive() and record_file.read_text() == ""


def test_nobody_holds_the_port_exits_1() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    res = kill(f"{port}/udp", "--yes")
    assert res.returncode == 1 and res.stdout.strip() == f"nobody holds port {port}/udp"
    res = kill(f"{port}/udp", "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["verdict"] == "nobody"


@pytest.mark.parametrize(
    "args",
    [
        ["99999"],
        ["80/sctp"],
        ["no-such-service-xq"],
        ["0"],
        ["80", "0"],
        ["80", "--signal", "USR1"],
        ["80", "--timeout", "0"],
        ["80", "--timeout", "x"],
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    res = kill(*args)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_json_shape(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    res = kill(str(child.port), "--yes", "--timeout", "1", "--json")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert set(doc) == {
        "port", "proto", "label", "signal", "dry_run", "sockets", "targets", "refusals", "notes",
        "other_users", "results", "verdict", "message", "still_held_by", "rebound_by", "exit_code",
        "manager", "preflight", "manager_stop", "other_netns",
    }
    assert doc["port"] == child.port and doc["proto"] is None and doc["label"] == f"{child.port}/tcp"
    assert doc["signal"] == "SIGTERM" and doc["dry_run"] is False
    (target,) = doc["targets"]
    proc = psutil.Process(child.pid)
    assert target["pid"] == child.pid and target["exe"] == proc.exe() and target["user"] == proc.username()
    assert abs(target["create_time"] - proc.create_time()) < 0.5
    assert target["cmdline"][:2] == [sys.executable, str(child.script)]
    assert target["sockets"] == [f"tcp4 127.0.0.1:{child.port} LISTEN"]
    assert doc["results"] == [
        {
            "pid": child.pid,
            "result": "survived",
            "signals": ["SIGTERM"],
            "detail": f"pid {child.pid} ignores SIGTERM (still running after 1 s)",
        }
    ]
    assert doc["verdict"] == "still-held" and doc["still_held_by"] == [child.pid] and doc["exit_code"] == 1
    assert doc["message"] == f"port {child.port}/tcp still held by {child.pid} (ignores SIGTERM)"

    dry = json.loads(kill(str(child.port), "--json", "--dry-run").stdout)
    assert dry["verdict"] == "dry-run" and dry["results"] == [] and dry["exit_code"] == 0


def test_signal_option_sends_that_signal(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    res = kill(str(child.port), "--yes", "--signal", "HUP", "--timeout", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert record_file.read_text() == "SIGHUP\n"


def test_udp_listener_is_freed(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("proto=udp")
    res = kill(f"{child.port}/udp", "--yes", "--timeout", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == f"port {child.port}/udp freed"


def test_untrusted_command_line_is_printed_escaped(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("\x1b]0;owned\x07\x1b[2J[/]")
    res = kill(str(child.port), "--dry-run")
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout
    assert "\\x1b]0;owned\\x07\\x1b[2J[/]" in res.stdout


# -- the interactive question --------------------------------------------------------------------------


def _interactive(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run portmon with a pseudo-terminal as stdin and stdout, answering the question."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", *args], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    out = b""
    answered = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
                if not answered and b"[y/N]" in out:
                    os.write(master, answer)
                    answered = True
            elif proc.poll() is not None:
                break
        code = proc.wait(10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out.decode(errors="replace")


def test_terminal_question_no_signals_nothing(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    code, out = _interactive(["kill", str(child.port)], b"n\n")
    assert f"send SIGTERM to 1 process holding port {child.port}/tcp? [y/N]" in out
    assert "cancelled: nothing was signalled" in out and code == 1
    assert child.alive() and record_file.read_text() == ""


def test_terminal_question_yes_frees_the_port(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    code, out = _interactive(["kill", str(child.port), "--timeout", "2"], b"y\n")
    assert code == 0, out
    assert f"port {child.port}/tcp freed" in out
    assert record_file.read_text() == "SIGTERM\n"


def test_a_port_with_thousands_of_connections_lists_the_listener_and_a_few(spawn) -> None:  # type: ignore[no-untyped-def]
    from portmon.actions.kill.plan import plan_kill
    from portmon.actions.kill.text import MAX_SOCKETS_LISTED
    from portmon.cli.kill import _plan_text
    from portmon.model import ESTABLISHED
    from portmon.portspec import PortSpec

    child = spawn()
    listening = child.holders()
    conns = [
        listening._replace(remote_addr="127.0.0.1", remote_port=40000 + i, state=ESTABLISHED) for i in range(2500)
    ]
    plan = plan_kill([*conns, listening], PortSpec(child.port, "tcp"))
    assert [t.pid for t in plan.targets] == [child.pid] and len(plan.sockets) == 2501
    lines = _plan_text(plan)
    listed = lines[lines.index("sockets:") + 1 :]
    assert listed[0] == f"  tcp4 127.0.0.1:{child.port} LISTEN  held by {child.pid}"  # first, though last in
    assert len(listed) == MAX_SOCKETS_LISTED + 1
    assert listed[-1] == f"  … and {2501 - MAX_SOCKETS_LISTED:,} more on this port (--json lists them all)"


def test_thousands_of_time_wait_sockets_give_one_line_with_the_count() -> None:
    from portmon.actions.kill.plan import plan_kill
    from portmon.actions.kill.text import MAX_SOCKETS_LISTED
    from portmon.cli.kill import _plan_text
    from portmon.model import OWNER_KERNEL, TIME_WAIT, Socket
    from portmon.portspec import PortSpec

    remnants = [
        Socket("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 40000 + i, TIME_WAIT, (), OWNER_KERNEL) for i in range(3000)
    ]
    plan = plan_kill(remnants, PortSpec(8000, "tcp"))
    assert plan.targets == () and len(plan.notes) + len(plan.refusals) == 3000
    lines = _plan_text(plan)
    about = [line for line in lines if line.startswith(("note: ", "refused: "))]
    assert about == [
        "refused: 3,000 sockets (3,000 TIME_WAIT): kernel-owned, no process holds it; it clears by itself within "
        "the kernel's TIME_WAIT period (60 s on Linux), and a new server can bind the port now with SO_REUSEADDR"
    ]
    assert sum(line == "sockets:" for line in lines) == 1 and len(lines) <= MAX_SOCKETS_LISTED + 4


def test_repeated_notes_are_said_once_and_distinct_ones_each() -> None:
    from portmon.actions.kill.text import grouped_lines

    same = "kernel-owned, no process holds it; the kernel finishes and drops it by itself"
    lines = grouped_lines(
        [
            f"tcp4 127.0.0.1:8000 -> 127.0.0.1:40001 FIN_WAIT2: {same}",
            "pid 7 (a) has exited since the scan",
            f"tcp6 [::1]:8000 -> [::1]:40002 LAST_ACK: {same}",
            f"tcp4 127.0.0.1:8000 -> 127.0.0.1:40003 FIN_WAIT2: {same}",
            "pid 8 (b) belongs to bob: permission denied",
            "pid 9 (c) belongs to bob: permission denied",
            "udp4 127.0.0.1:8000: alone",
        ]
    )
    assert lines == [
        f"3 sockets (2 FIN_WAIT2, 1 LAST_ACK): {same}",
        "pid 7 (a) has exited since the scan",
        "pid 8 (b) belongs to bob: permission denied",  # about a process, not a socket: never merged
        "pid 9 (c) belongs to bob: permission denied",
        "udp4 127.0.0.1:8000: alone",
    ]


# -- the deferred import of the kill engine ----------------------------------------------------------

_MAIN = "import sys\n{pre}\nfrom portmon.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
_KILL_ENGINE = "import portmon.actions.kill.execute, portmon.actions.kill.plan"


def test_deferred_engine_gives_the_same_answer_as_an_eager_import(spawn) -> None:  # type: ignore[no-untyped-def]
    # cli/kill.py imports planning and signalling inside run() only (a start-up trick): the plain version,
    # with the engine imported up front, must answer exactly the same.
    child = spawn()
    answers = []
    for pre in ("", _KILL_ENGINE):
        res = subprocess.run(
            [sys.executable, "-c", _MAIN.format(pre=pre), "kill", str(child.port), "--dry-run", "--json"],
            cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )
        answers.append((res.returncode, json.loads(res.stdout), res.stderr))
    assert answers[0] == answers[1]
    assert answers[0][0] == 0 and [t["pid"] for t in answers[0][1]["targets"]] == [child.pid]
    # And the trick is in force: building the parser loads neither the engine nor psutil.
    probe = "import sys\nfrom portmon.cli.main import build_parser\nbuild_parser()\nprint(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not {"psutil", "portmon.actions.kill.execute", "portmon.actions.kill.plan"} & set(loaded.stdout.split())


# -- a supervisor restarts the listener ----------------------------------------------------------------


@pytest.fixture
def handoff():  # type: ignore[no-untyped-def]
    from handoff_supervisor import Handoff

    sup = Handoff()
    yield sup
    sup.close()


def test_a_restarted_listener_is_rebound_by_the_new_pid_in_json_too(handoff) -> None:  # type: ignore[no-untyped-def]
    # The supervisor's new child holds the port before the old one exits: the re-scan must call it
    # re-bound (not "still held ... not seen holding it before") and name it in rebound_by.
    res = kill(str(handoff.port), "--yes", "--json", "--timeout", "5")
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and doc["exit_code"] == 1
    assert [r["result"] for r in doc["results"]] == ["exited"]
    assert doc["verdict"] == "rebound", doc["message"]
    (new,) = doc["rebound_by"]
    assert new["pid"] != handoff.first and new["parent_pid"] == handoff.proc.pid
    assert doc["message"].startswith(f"port {handoff.port}/tcp re-bound by new pid {new['pid']} (")
    assert f"child of {handoff.proc.pid} (" in doc["message"]
    assert "not seen holding it" not in doc["message"]


def test_a_connection_waiting_to_be_accepted_is_named_as_such(spawn) -> None:  # type: ignore[no-untyped-def]
    # The child never accepts: the connection waits in its backlog, held by no process.
    child = spawn()
    with socket.create_connection(("127.0.0.1", child.port), timeout=10):
        res = kill(str(child.port), "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    if "ESTABLISHED" not in res.stdout:
        pytest.skip("this collector does not list the server side of an unaccepted connection")
    assert f"not yet accepted (in the backlog of pid {child.pid})" in res.stdout
    assert "PID namespace" not in res.stdout and "cannot see" not in res.stdout


def test_portmon_and_its_walk_child_are_never_holders_of_an_inherited_socket() -> None:
    # portmon inherits a listening socket (as under socket activation): neither it nor the short-lived
    # child that walks every fd for the first scan may be listed as a holder to signal.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", "kill", str(port), "--dry-run", "--json"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            pass_fds=[sock.fileno()],
        )
        out, err = proc.communicate(timeout=60)
    doc = json.loads(out)
    (listener,) = [s for s in doc["sockets"] if "LISTEN" in s["socket"]]
    assert set(listener["pids"]) <= {os.getpid(), proc.pid}, "the walk child was listed as a holder"
    assert proc.pid not in [t["pid"] for t in doc["targets"]] + [r["pid"] for r in doc["refusals"]]
    assert any(f"portmon itself (pid {proc.pid}) holds an inherited copy" in n for n in doc["notes"])


def test_the_walk_child_is_not_the_holder_of_a_socket_portmon_inherited() -> None:
    # On main the short-lived child that walks the fds for the first scan kept portmon's inherited
    # fds and showed up as the socket's holder (process name unknown, since it had exited).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", "list", f":{port}", "--json"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            pass_fds=[sock.fileno()],
        )
        out, err = proc.communicate(timeout=60)
    (row,) = json.loads(out)
    assert row["pid"] in (os.getpid(), proc.pid), err


# -- several ports, service names ----------------------------------------------------------------------


def test_several_ports_are_planned_in_one_question_and_all_freed(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    a = spawn(f"record={record_file}")
    b = spawn(f"record={record_file}")
    res = kill(str(a.port), f":{b.port}", "--yes", "--timeout", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"port {a.port}/tcp freed" in res.stdout and f"port {b.port}/tcp freed" in res.stdout
    assert record_file.read_text() == "SIGTERM\nSIGTERM\n"
    assert not a.alive() and not b.alive()


def test_several_ports_ask_once_naming_them_all(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    a = spawn(f"record={record_file}")
    b = spawn(f"record={record_file}")
    code, out = _interactive(["kill", str(a.port), str(b.port)], b"n\n")
    assert out.count("[y/N]") == 1
    assert f"send SIGTERM to 2 processes holding ports {a.port}/tcp, {b.port}/tcp? [y/N]" in out
    assert code == 1 and a.alive() and b.alive() and record_file.read_text() == ""


def test_the_exit_code_is_the_worst_ports(spawn) -> None:  # type: ignore[no-untyped-def]
    held = spawn()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    nobody = probe.getsockname()[1]
    probe.close()  # bound, never listened: nobody holds it once closed
    res = kill(str(held.port), str(nobody), "--yes", "--timeout", "2", "--json")
    docs = json.loads(res.stdout)
    assert [d["port"] for d in docs] == [held.port, nobody]
    assert docs[0]["verdict"] == "freed" and docs[0]["exit_code"] == 0
    if docs[1]["verdict"] != "nobody":
        pytest.skip(f"something else took port {nobody} meanwhile")
    assert docs[1]["exit_code"] == 1 and res.returncode == 1
    assert not held.alive()


def test_a_service_name_kills_every_port_registered_under_it(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = spawn()
    b = spawn()
    registry = tmp_path / "services"
    registry.write_text(f"pmtest-svc {a.port}/tcp\npmtest-svc {b.port}/tcp\n")
    res = kill("--registry", str(registry), "pmtest-svc", "--yes", "--timeout", "2", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(d["port"] for d in json.loads(res.stdout)) == sorted([a.port, b.port])
    assert not a.alive() and not b.alive()


def test_a_bad_port_among_several_points_at_kill_help() -> None:
    res = kill("80", "nope-not-a-service-xq")
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
    assert "nope-not-a-service-xq" in res.stderr and "(see 'portmon kill --help')" in res.stderr


def test_time_wait_remnants_give_one_note_with_the_count() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the active close: this side ends in TIME_WAIT
        client.recv(1)
        client.close()
    server.close()
    res = kill(str(port), "--yes")
    about = [line for line in res.stdout.splitlines() if "TIME_WAIT period" in line]
    if not about:
        pytest.skip(f"no TIME_WAIT socket seen on the port: {res.stdout!r}")
    assert len(about) == 1, res.stdout
    assert about[0].startswith("refused: ") and "TIME_WAIT)" in about[0]
    assert res.returncode == 1


# -- the second question: SIGKILL for a holder that ignores SIGTERM -----------------------------------


def _interactive_answers(args: list[str], answers: list[bytes]) -> tuple[int, str]:
    """Like _interactive, answering each ``[y/N]`` question in turn with the next of ``answers``."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", *args], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
                if pending and out.count(b"[y/N]") > len(answers) - len(pending):
                    os.write(master, pending.pop(0))
            elif proc.poll() is not None:
                break
        code = proc.wait(10)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out.decode(errors="replace")


def test_on_a_terminal_a_sigterm_ignoring_holder_brings_the_sigkill_question(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    name = psutil.Process(child.pid).name()
    code, out = _interactive_answers(["kill", str(child.port), "--timeout", "1"], [b"y\n", b"y\n"])
    assert f"pid {child.pid} ignores SIGTERM (still running after 1 s)" in out
    assert f"{child.pid} ({name}) ignores SIGTERM: send SIGKILL now? [y/N]" in out
    assert "hint: pass --force" not in out
    assert f"pid {child.pid} exited after SIGKILL" in out
    assert code == 0, out
    assert not child.alive()


def test_answering_no_to_sigkill_leaves_the_holder_running(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    code, out = _interactive_answers(["kill", str(child.port), "--timeout", "1"], [b"y\n", b"n\n"])
    assert "send SIGKILL now? [y/N]" in out
    assert f"not sent: {child.pid} still running" in out
    assert code == 1 and child.alive()


def test_without_a_terminal_the_hint_stays_and_nothing_is_asked(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    res = kill(str(child.port), "--yes", "--timeout", "1")
    assert "send SIGKILL now?" not in res.stdout
    assert f"hint: pass --force to send SIGKILL to {child.pid}" in res.stdout
    assert res.returncode == 1 and child.alive()


def test_several_ports_without_a_terminal_need_yes_and_signal_nothing(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    a = spawn(f"record={record_file}")
    b = spawn(f"record={record_file}")
    res = kill(str(a.port), str(b.port), "--json")
    assert res.returncode == 2
    assert f"holding ports {a.port}/tcp, {b.port}/tcp" in res.stderr and len(res.stderr.splitlines()) == 1
    docs = json.loads(res.stdout)
    assert [d["verdict"] for d in docs] == ["confirmation-needed"] * 2
    assert a.alive() and b.alive() and record_file.read_text() == ""
