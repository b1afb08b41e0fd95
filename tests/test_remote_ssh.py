"""Remote hosts through a real sshd on 127.0.0.1: portmon's stream, the agentless fallback, a host that is
down and one that never answers. The sshd, its keys and the client config are made by the tests."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff_listener import Handoff
from ptyterm import HAVE_PTY, Terminal
from sshd import MISSING, Sshd

from portmon.collect.fake import ScriptedCollector, demo_snapshot
from portmon.model import Snapshot
from portmon.remote.collector import MultiHostCollector
from portmon.remote.hosts import parse_host
from portmon.remote.session import MODE_AGENTLESS, MODE_PORTMON, HostSession
from portmon.remote.ssh import Ssh

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

LISTENER = "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); " \
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"  # fmt: skip


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sshd, Sshd]]:
    """Two sshds: one whose sessions find this checkout's portmon on PATH, one whose sessions do not."""
    if not (BIN / "portmon").exists():
        pytest.skip(f"no portmon script beside {sys.executable}: install the checkout (pip install -e .)")
    base = tmp_path_factory.mktemp("sshd")
    with_portmon = Sshd(base / "portmon", f"{BIN}:{SYSTEM_PATH}")
    try:
        agentless = Sshd(base / "agentless", SYSTEM_PATH)
    except BaseException:
        with_portmon.stop()
        raise
    try:
        yield with_portmon, agentless
    finally:
        with_portmon.stop()
        agentless.stop()


@pytest.fixture
def listener() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(10)


def portmon(*args: str, ssh_command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PORTMON_SSH_COMMAND=ssh_command)
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _session(server: Sshd, interval: float = 0.2) -> tuple[HostSession, Ssh]:
    ssh = Ssh(env={"PORTMON_SSH_COMMAND": server.ssh_command})
    return HostSession(parse_host(server.host), ssh, interval=interval), ssh


def _until(session: HostSession, wanted: object, seconds: float = 300) -> Snapshot:
    """The session's snapshots until one has a socket for which ``wanted(sock)`` holds (or fail at the deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = session.state()
        snap = state.snapshot
        if snap is not None and any(wanted(s) for s in snap.sockets):  # type: ignore[operator]
            return snap
        time.sleep(0.05)
    pytest.fail(f"no matching socket from {session.label} (last state: mode {state.mode}, error {state.error})")


@pytest.mark.parametrize("mode", [MODE_PORTMON, MODE_AGENTLESS])
def test_a_session_streams_the_hosts_sockets_and_sees_changes(servers: tuple[Sshd, Sshd], mode: str) -> None:
    server = servers[0] if mode == MODE_PORTMON else servers[1]
    session, ssh = _session(server)
    session.start()
    try:
        assert session.wait_ready(300)
        # The sshd itself listens on the host, under its own name, with the host on every row.
        snap = _until(session, lambda s: s.local_port == server.port and s.state == "LISTEN")
        assert session.state().mode == mode and session.state().error is None
        assert all(s.host == server.host for s in snap.sockets)
        sshd = [s for s in snap.sockets if s.local_port == server.port and s.state == "LISTEN"]
        assert sshd[0].process == "sshd" and sshd[0].pid == server.proc.pid  # type: ignore[union-attr]
        # A listener opened now shows up in a later snapshot, and goes when it closes.
        proc = subprocess.Popen(
            [sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        _until(session, lambda s: s.local_port == port and s.pid == proc.pid)
        proc.stdin.close()
        proc.wait(10)
        _until(session, lambda s: s.local_port == server.port)  # still streaming
    finally:
        session.stop()
        ssh.close()
    assert session.state().snapshot is not None


def test_list_merges_this_machine_and_both_hosts_in_one_table(servers: tuple[Sshd, Sshd], listener: int) -> None:
    a, b = servers
    # Both servers accept the same client key config: each host's own config file is passed by -F,
    # so run one command per server pair with a wrapper picking the config by port.
    wrapper = Path(a.dir).parent / "ssh-both"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *" -p {b.port} "*) exec {b.ssh_command} "$@";; *) exec {a.ssh_command} "$@";; esac\n'
    )
    wrapper.chmod(0o755)
    hosts = ["--host", a.host, "--host", b.host, "--host-timeout", "300"]  # ss -p is slow on a loaded host
    res = portmon("list", "-l", f":{listener}", *hosts, ssh_command=str(wrapper))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["HOST", "PROTO"]
    seen = sorted(line.split()[0] for line in lines[1:])
    assert seen == sorted(["local", a.host, b.host])  # the same listener, seen from three places
    assert f"host {a.host}: portmon runs there" in res.stderr
    assert f"host {b.host}: agentless" in res.stderr
    res = portmon("list", "--json", f"host:{b.host}", f":{listener}", *hosts, ssh_command=str(wrapper))
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["host"] for r in rows] == [b.host] and rows[0]["process"].startswith("python")


def test_an_unreachable_host_is_one_stderr_line_and_exit_1_with_the_other_rows(
    servers: tuple[Sshd, Sshd], listener: int
) -> None:
    a = servers[0]
    with __import__("socket").socket() as probe:  # a port nobody listens on while the test runs
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
        res = portmon(
            "list", "-l", f":{listener}", "--host", dead, "--host", a.host, "--host-timeout", "300",
            ssh_command=a.ssh_command,
        )  # fmt: skip
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if dead in line]
    assert len(errors) == 1 and "refused" in errors[0]
    assert "Traceback" not in res.stderr
    assert sorted(line.split()[0] for line in res.stdout.splitlines()[1:]) == sorted(["local", a.host])


def test_a_host_that_never_answers_is_given_up_after_the_timeout(tmp_path: Path, listener: int) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    res = portmon("list", "-l", f":{listener}", "--host", "stuck.example", "--host-timeout", "1",
                  ssh_command=str(hang), timeout=60)  # fmt: skip
    assert res.returncode == 1
    assert "host stuck.example: no answer within 1 s" in res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()[1:]] == ["local"]


def test_a_hung_host_never_stalls_a_scan(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    ssh = Ssh(env={"PORTMON_SSH_COMMAND": str(hang)})
    now = [1000.0]
    stuck = HostSession(parse_host("stuck.example"), ssh, interval=1.0, clock=lambda: now[0], stale_after=5)
    local = ScriptedCollector([demo_snapshot()])
    multi = MultiHostCollector(local, [stuck], on_close=ssh.close)
    multi.start()
    try:
        snap = multi.scan()  # returns with this machine's rows while the host says nothing
        assert snap.sockets and all(s.host is None for s in snap.sockets)
        assert snap.error is None and ("host stuck.example", "connecting") in snap.extra
        now[0] += 6
        snap = multi.scan()
        assert snap.warning is not None and "stuck.example: no answer for 6 s" in snap.warning
    finally:
        multi.close()


def test_why_and_kill_with_host_run_on_that_host_and_name_it(servers: tuple[Sshd, Sshd], listener: int) -> None:
    a = servers[0]
    res = portmon("why", f"{listener}/tcp", "--host", a.host, ssh_command=a.ssh_command)
    assert res.returncode == 1, res.stderr  # taken: the remote portmon's verdict and exit status
    assert res.stdout.startswith(f"host {a.host}:\n") and f"port {listener}/tcp is taken" in res.stdout
    res = portmon("kill", f"{listener}/tcp", "--host", a.host, ssh_command=a.ssh_command)
    assert res.returncode == 2 and "--yes" in res.stderr and a.host in res.stderr  # no terminal to ask on
    assert "dry run: would send SIGTERM" in res.stdout  # the remote plan was shown first


def test_kill_with_host_frees_the_port_there(servers: tuple[Sshd, Sshd]) -> None:
    a = servers[0]
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        res = portmon("kill", f"{port}/tcp", "--host", a.host, "--yes", ssh_command=a.ssh_command)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"port {port}/tcp freed" in res.stdout
        assert proc.wait(60) != 0  # it was signalled (by the portmon on the "remote" host)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_why_on_an_agentless_host_says_it_cannot(servers: tuple[Sshd, Sshd], listener: int) -> None:
    b = servers[1]
    res = portmon("why", str(listener), "--host", b.host, ssh_command=b.ssh_command)
    assert res.returncode == 1
    assert f"host {b.host}: portmon is not installed there (agentless host)" in res.stderr


@pytest.mark.skipif(not HAVE_PTY, reason="needs a pseudo-terminal (POSIX)")
def test_the_live_monitor_shows_this_machine_and_the_host_in_one_table(servers: tuple[Sshd, Sshd]) -> None:
    a = servers[0]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PORTMON_SSH_COMMAND=a.ssh_command, TERM="xterm-256color")
    term = Terminal(["--host", a.host, "--interval", "0.5"], env)
    try:
        # The host's sshd listener, on a row of its own under the Host column, beside this machine's rows.
        # The status line can name the host's mode a frame before the table shows its column: wait for both.
        term.wait_for(
            lambda s: f"hosts: {a.host} portmon" in s.text
            and s.find("Host") is not None
            and s.find("local") is not None,
            "the host's mode, the Host column and this machine's rows",
            timeout=300,
        )
        term.send("/")
        term.send(f"host:{a.host.split('@')[1].split(':')[0]} :{a.port}\r")

        def sshd_row(screen: object) -> str | None:
            lines = screen.text.splitlines()  # type: ignore[attr-defined]
            return next(
                (ln for ln in lines if ln.lstrip(" +~×").startswith(a.host) and f" {a.port} " in ln and "LISTEN" in ln),
                None,
            )

        screen = term.wait_for(lambda s: sshd_row(s) is not None, "the sshd row, filtered to the host")
        assert "sshd" in (sshd_row(screen) or "")
    finally:
        term.close()


def _read_until(fd: int, text: str, seconds: float = 300) -> str:
    """What ``fd`` gives until ``text`` appears in it (or fail at the deadline)."""
    got = b""
    deadline = time.monotonic() + seconds
    while text.encode() not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {text!r} within {seconds} s; got {got.decode(errors='replace')!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"output ended before {text!r}: {got.decode(errors='replace')!r}")
            got += chunk
    return got.decode(errors="replace")


@pytest.mark.skipif(not HAVE_PTY, reason="needs a pseudo-terminal to answer the question on")
def test_a_remote_kill_signals_only_the_processes_confirmed(servers: tuple[Sshd, Sshd]) -> None:
    # The user confirms the holders the remote dry run listed; before the answer, the listener passes to
    # a new process. The remote kill must not signal that one (it used to plan again and signal it).
    import pty

    a = servers[0]
    holder = Handoff()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", "kill", f"{holder.port}/tcp", "--host", a.host],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PORTMON_SSH_COMMAND=a.ssh_command),
    )  # fmt: skip
    os.close(slave)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        shown = _read_until(proc.stdout.fileno(), "[y/N] ")
        assert f"pid {holder.pid}" in shown and a.host in shown and "exact identities" not in shown
        heir = holder.hand_off()
        os.write(master, b"y\n")
        rest = proc.stdout.read().decode(errors="replace")
        code = proc.wait(300)
        err = proc.stderr.read().decode(errors="replace")
        assert code == 1, rest + err
        assert "holds the port now but was not among the processes confirmed: left alone" in rest, rest + err
        assert f"pid {heir} (python" in rest and f"pid {holder.pid} (confirmed) has exited" in rest
        assert holder.heir_alive()  # never signalled
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.close()


def test_a_remote_kill_refuses_a_pid_replaced_since_the_confirmation(servers: tuple[Sshd, Sshd]) -> None:
    # kill --pids on the host's portmon (what a confirmed remote kill sends): the pid with another start
    # time than the one confirmed is a reused pid to portmon; refused, nothing signalled, exit 1.
    a = servers[0]
    holder = Handoff()
    try:
        ticks = int(Path(f"/proc/{holder.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])
        res = portmon(
            "kill", f"{holder.port}/tcp", "--host", a.host, "--yes", "--pids", f"{holder.pid}:{ticks + 7}",
            ssh_command=a.ssh_command,
        )  # fmt: skip
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stdout.startswith(f"host {a.host}:\n")
        assert f"pid {holder.pid} (python" in res.stdout and "is not the process confirmed" in res.stdout
        assert f"the one confirmed at tick {ticks + 7}" in res.stdout and "nothing was signalled" in res.stdout
        assert holder.proc.poll() is None  # never signalled
        res = portmon(
            "kill", f"{holder.port}/tcp", "--host", a.host, "--yes", "--pids", f"{holder.pid}:{ticks}",
            ssh_command=a.ssh_command,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"port {holder.port}/tcp freed" in res.stdout and holder.proc.wait(60) != 0
    finally:
        holder.close()
