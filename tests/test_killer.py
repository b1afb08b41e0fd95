"""The safe-kill core: identity, refusals, signalling real child processes, and the re-scan verdicts."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from portmon.actions.kill import execute as killexec
from portmon.actions.kill import process as killproc
from portmon.actions.kill.execute import execute
from portmon.actions.kill.judge import judge
from portmon.actions.kill.model import (
    CHANGED,
    DENIED,
    EXITED,
    FREED,
    GONE,
    REBOUND,
    REFUSED_ANCESTOR,
    REFUSED_HIDDEN,
    REFUSED_INIT,
    REFUSED_KERNEL_OWNED,
    REFUSED_KERNEL_THREAD,
    REFUSED_NO_PID,
    REFUSED_PERMISSION,
    REFUSED_SELF,
    STILL_HELD,
    SURVIVED,
    TIME_WAIT_ONLY,
    UNINTERRUPTIBLE,
    Identity,
    KillPlan,
    NewHolder,
    Target,
    TargetResult,
)
from portmon.actions.kill.plan import confirmation_lines, plan_for_port, plan_for_socket, plan_kill
from portmon.actions.kill.signals import parse_signal, signal_name
from portmon.collect.psutil_collector import PsutilCollector
from portmon.model import LISTEN, OWNER_HIDDEN, OWNER_KERNEL, TIME_WAIT, Holder, Snapshot, Socket
from portmon.portspec import PortSpec

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="these tests use POSIX signals")

@pytest.fixture
def spawn_script() -> None:
    """``spawn`` runs ``python -c CHILD`` here: the identity test checks that command line, and a child
    started as user nobody could not read the script file in root's private temp directory."""
    return None


def _empty() -> Snapshot:
    return Snapshot(sockets=(), taken_at=time.time())


def _snap(*sockets: Socket) -> Snapshot:
    return Snapshot(sockets=tuple(sockets), taken_at=time.time())


def _real_scan() -> Snapshot:
    return PsutilCollector().scan()


# -- signals ---------------------------------------------------------------------------------------


def test_parse_signal_accepts_the_four_names_in_any_spelling() -> None:
    assert parse_signal("TERM") == signal.SIGTERM
    assert parse_signal("sigkill") == signal.SIGKILL
    assert parse_signal(" int ") == signal.SIGINT
    assert parse_signal("SIGHUP") == signal.SIGHUP
    with pytest.raises(ValueError, match="unknown signal"):
        parse_signal("USR1")
    assert signal_name(signal.SIGTERM) == "SIGTERM"


# -- refusals (no process is ever signalled by these) -------------------------------------------------


def test_pid_0_and_pid_1_are_refused() -> None:
    sock = Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, holders=(Holder(0, "swapper"), Holder(1, "init")))
    plan = plan_kill([sock], PortSpec(80, "tcp"))
    kinds = {r.pid: r.kind for r in plan.refusals}
    assert kinds == {0: REFUSED_NO_PID, 1: REFUSED_INIT}
    assert not plan.actionable and not plan.targets
    assert any("init" in r for r in plan.reasons())
    with pytest.raises(ValueError):
        execute(plan, rescan=_empty)


def test_portmon_itself_and_its_ancestors_are_refused() -> None:
    me = psutil.Process()
    holders = [Holder(me.pid, "python", create_time=me.create_time())]
    holders += [Holder(p.pid, p.name(), create_time=p.create_time()) for p in me.parents() if p.pid > 1]
    assert len(holders) >= 2, "pytest runs under some parent process"
    sock = Socket("tcp", 4, "127.0.0.1", 9, state=LISTEN, holders=tuple(holders))
    plan = plan_kill([sock], PortSpec(9))
    kinds = {r.pid: r.kind for r in plan.refusals}
    assert kinds[me.pid] == REFUSED_SELF
    assert all(kinds[h.pid] == REFUSED_ANCESTOR for h in holders[1:])
    assert "ancestors" in next(r.reason for r in plan.refusals if r.kind == REFUSED_ANCESTOR)
    assert not plan.actionable


def test_a_refused_holder_blocks_the_whole_kill(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    mine = Holder(os.getpid(), "python", create_time=psutil.Process().create_time())
    sock = child.holders()._replace(holders=child.holders().holders + (mine,))
    plan = plan_kill([sock], PortSpec(child.port))
    assert [t.pid for t in plan.targets] == [child.pid]
    assert [r.kind for r in plan.refusals] == [REFUSED_SELF]
    assert not plan.actionable
    with pytest.raises(ValueError):
        execute(plan, rescan=_empty)
    assert child.alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kthreadd is Linux's")
def test_kernel_threads_are_refused() -> None:
    if not psutil.pid_exists(2) or psutil.Process(2).name() != "kthreadd":
        pytest.skip("no visible kthreadd (pid namespace)")
    kids = [p for p in psutil.Process(2).children()][:1]
    holders = (Holder(2, "kthreadd"),) + tuple(Holder(p.pid, p.name(), create_time=p.create_time()) for p in kids)
    plan = plan_kill([Socket("tcp", 4, "0.0.0.0", 2049, state=LISTEN, holders=holders)], PortSpec(2049))
    assert {r.kind for r in plan.refusals} == {REFUSED_KERNEL_THREAD}
    assert {r.pid for r in plan.refusals} == {h.pid for h in holders}


def test_kernel_thread_rule_without_proc() -> None:
    # Off Linux (or without /proc) only a successful read of "no executable, empty argv" counts.
    assert killproc.is_kernel_thread(10**7, None, "", True, ()) is True
    assert killproc.is_kernel_thread(10**7, None, None, False, None) is False
    assert killproc.is_kernel_thread(10**7, None, "/bin/sh", True, ("sh",)) is False


def test_time_wait_only_is_refused_with_the_explanation() -> None:
    tw = Socket("tcp", 4, "127.0.0.1", 8080, "127.0.0.1", 50000, TIME_WAIT, owner_note=OWNER_KERNEL)
    plan = plan_kill([tw], PortSpec(8080, "tcp"))
    assert [r.kind for r in plan.refusals] == [REFUSED_KERNEL_OWNED]
    reason = plan.refusals[0].reason
    assert "TIME_WAIT" in reason and "kernel-owned" in reason and "60 s" in reason and "SO_REUSEADDR" in reason


def test_time_wait_next_to_a_live_holder_is_only_a_note(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    tw = Socket("tcp", 4, "127.0.0.1", child.port, "127.0.0.1", 50000, TIME_WAIT, owner_note=OWNER_KERNEL)
    plan = plan_kill([child.holders(), tw], PortSpec(child.port))
    assert plan.actionable
    assert any("TIME_WAIT" in n for n in plan.notes)


def test_hidden_owner_is_refused_saying_root_would_reveal_it() -> None:
    hidden = Socket("tcp", 4, "0.0.0.0", 5432, state=LISTEN, owner_note=OWNER_HIDDEN)
    plan = plan_kill([hidden], PortSpec(5432))
    assert [r.kind for r in plan.refusals] == [REFUSED_HIDDEN]
    assert "root would reveal" in plan.refusals[0].reason and "sudo" in plan.refusals[0].reason


def test_nobody_holds_the_port() -> None:
    plan = plan_kill([], PortSpec(8080, "tcp"))
    assert plan.reasons() == ["nobody holds port 8080/tcp"]


def test_only_the_exact_port_is_planned() -> None:
    snap = _snap(
        Socket("tcp", 4, "0.0.0.0", 18080, state=LISTEN, holders=(Holder(10**7 + 1, "b"),)),
        Socket("tcp", 4, "0.0.0.0", 808, state=LISTEN, holders=(Holder(10**7 + 2, "c"),)),
        Socket("udp", 4, "0.0.0.0", 8080, holders=(Holder(10**7 + 3, "d"),)),
    )
    plan = plan_for_port(snap, PortSpec(8080, "tcp"))
    assert plan.reasons() == ["nobody holds port 8080/tcp"]
    plan = plan_for_port(snap, PortSpec(8080))
    assert plan.label == "8080/udp"
    assert len(plan.sockets) == 1 and plan.sockets[0].proto == "udp"


# -- identity -----------------------------------------------------------------------------------------


def test_plan_captures_identity_and_shows_the_process(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    plan = plan_kill([child.holders()], PortSpec(child.port, "tcp"))
    assert plan.actionable
    (target,) = plan.targets
    proc = psutil.Process(child.pid)
    assert target.identity == Identity(child.pid, proc.create_time())
    assert target.exe == proc.exe()
    assert target.cmdline[:2] == (sys.executable, "-c")
    assert target.user == proc.username()
    assert target.sockets == (f"tcp4 127.0.0.1:{child.port} LISTEN",)
    assert confirmation_lines(plan, signal.SIGTERM) == [f"send SIGTERM to 1 process holding port {child.port}/tcp?"]


def test_pid_reused_before_planning_is_left_alone(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    sock = child.holders()
    old = sock.holders[0]._replace(create_time=sock.holders[0].create_time - 1000)
    plan = plan_kill([sock._replace(holders=(old,))], PortSpec(child.port))
    assert not plan.targets
    assert any("different process" in n for n in plan.notes)
    assert child.alive() and record_file.read_text() == ""


def test_pid_reused_between_capture_and_signal_is_not_signalled(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    (target,) = plan.targets
    # The process at this pid now has another start time than the one the user confirmed.
    forged = dataclasses.replace(target, identity=Identity(target.pid, target.identity.create_time - 1000))
    outcome = execute(dataclasses.replace(plan, targets=(forged,)), signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    (result,) = outcome.results
    assert result.result == CHANGED and result.signals == ()
    assert "different process" in result.detail
    assert child.alive() and record_file.read_text() == ""
    assert outcome.verdict.kind == STILL_HELD and outcome.exit_code == 1


def test_pid_reuse_is_caught_without_pidfd_too(spawn, record_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(killexec, "_HAVE_PIDFD", False)
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    forged = dataclasses.replace(plan.targets[0], identity=Identity(child.pid, plan.targets[0].identity.create_time + 1000))
    outcome = execute(dataclasses.replace(plan, targets=(forged,)), signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    assert outcome.results[0].result == CHANGED
    assert child.alive() and record_file.read_text() == ""


def test_target_gone_before_the_signal(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    plan = plan_kill([child.holders()], PortSpec(child.port))
    child.stop()
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    assert outcome.results[0].result == GONE and outcome.results[0].signals == ()
    assert outcome.verdict.kind == FREED


# -- signalling real listeners ------------------------------------------------------------------------


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "kill"])
def test_sigterm_frees_a_plain_listener(spawn, record_file, monkeypatch, pidfd: bool) -> None:  # type: ignore[no-untyped-def]
    if not pidfd:
        monkeypatch.setattr(killexec, "_HAVE_PIDFD", False)
    elif not killexec._HAVE_PIDFD:
        pytest.skip("no pidfd on this platform")
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port, "tcp"))
    outcome = execute(plan, signal.SIGTERM, 2.0, rescan=_real_scan, settle=0)
    assert [r.result for r in outcome.results] == [EXITED]
    assert outcome.results[0].signals == ("SIGTERM",)
    assert record_file.read_text() == "SIGTERM\n"
    assert outcome.verdict.kind == FREED and outcome.message == f"port {child.port}/tcp freed"
    assert outcome.exit_code == 0 and not child.alive()


def test_sigterm_ignored_is_reported_then_force_kills(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    assert [r.result for r in outcome.results] == [SURVIVED]
    assert "ignores SIGTERM" in outcome.results[0].detail
    assert outcome.verdict.kind == STILL_HELD and outcome.verdict.still_held_by == (child.pid,)
    assert outcome.message == f"port {child.port}/tcp still held by {child.pid} (ignores SIGTERM)"
    assert [t.pid for t in outcome.survivors] == [child.pid] and child.alive()

    forced = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, force=True, settle=0)
    assert forced.results[0].result == EXITED and forced.results[0].signals == ("SIGTERM", "SIGKILL")
    assert forced.freed and not child.alive()


def test_survivors_narrowed_plan_gets_sigkill(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    first = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    second = execute(plan.narrowed(t.pid for t in first.survivors), signal.SIGKILL, 1.0, rescan=_real_scan, settle=0)
    assert second.results[0].signals == ("SIGKILL",) and second.freed


def test_all_holders_of_a_shared_socket_are_signalled(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn("fork=2", f"record={record_file}")
    assert len(child.pids) == 3
    plan = plan_kill([child.holders()], PortSpec(child.port))
    assert sorted(t.pid for t in plan.targets) == sorted(child.pids)
    outcome = execute(plan, signal.SIGTERM, 2.0, rescan=_real_scan, settle=0)
    assert [r.result for r in outcome.results] == [EXITED] * 3
    assert record_file.read_text().splitlines() == ["SIGTERM"] * 3
    assert outcome.verdict.kind == FREED
    assert not any(child.alive(pid) for pid in child.pids)


def test_a_stopped_listener_gets_sigcont_and_acts_on_sigterm(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    # The child handles SIGTERM, so while stopped it would never act on it without SIGCONT.
    child = spawn(f"record={record_file}")
    os.kill(child.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
        time.sleep(0.01)
    plan = plan_kill([child.holders()], PortSpec(child.port))
    outcome = execute(plan, signal.SIGTERM, 2.0, rescan=_real_scan, settle=0)
    assert outcome.results[0].signals == ("SIGTERM", "SIGCONT")
    assert outcome.results[0].result == EXITED and "SIGTERM" in outcome.results[0].detail
    assert record_file.read_text() == "SIGTERM\n"
    assert outcome.freed


def test_uninterruptible_survivor_is_reported_not_retried(spawn, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A real D-state process cannot be made on demand: the child ignores SIGTERM and its state reads as D.
    child = spawn("ignore-term")
    monkeypatch.setattr(killexec._Handle, "status", lambda self: psutil.STATUS_DISK_SLEEP)
    plan = plan_kill([child.holders()], PortSpec(child.port))
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    assert outcome.results[0].result == UNINTERRUPTIBLE
    assert "uninterruptible sleep (D state)" in outcome.results[0].detail
    assert outcome.results[0].signals == ("SIGTERM",)
    assert "uninterruptible" in outcome.message and not outcome.freed


def test_permission_denied_names_the_owner_and_suggests_sudo(spawn, record_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")

    def refuse(handle: object, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(killexec, "_deliver", refuse)
    plan = plan_kill([child.holders()], PortSpec(child.port))
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    (result,) = outcome.results
    owner = psutil.Process(child.pid).username()
    assert result.result == DENIED and result.signals == ()
    assert f"belongs to {owner}" in result.detail and "sudo" in result.detail
    assert outcome.verdict.kind == STILL_HELD and "permission denied" in outcome.message and "sudo" in outcome.message
    assert child.alive() and record_file.read_text() == ""


def _python_for(user: str) -> str | None:
    """An interpreter ``user`` may run that can import portmon and psutil, or None."""
    site = str(Path(psutil.__file__).resolve().parents[1])
    for python in (sys.executable, shutil.which("python3", path="/usr/bin:/bin") or ""):
        if not python:
            continue
        env = {"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"}
        try:
            ok = subprocess.run(
                [python, "-c", "import psutil, portmon.actions.kill.plan"], env=env, user=user, capture_output=True, timeout=20
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return python
    return None


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to start another user's process")


@needs_root
def test_another_users_process_is_refused_for_non_root(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    python = _python_for("nobody")
    if python is None:
        pytest.skip("user nobody cannot run a Python with psutil here")
    child = spawn(f"record={record_file}")  # owned by root
    sock = child.holders()
    h = sock.holders[0]
    script = (
        "from portmon.actions.kill.plan import plan_kill; from portmon.model import Socket, Holder; from portmon.portspec import PortSpec\n"
        f"s = Socket('tcp', 4, '127.0.0.1', {child.port}, state='LISTEN', holders=(Holder({h.pid}, 'python3', 'root', {h.create_time!r}),))\n"
        f"p = plan_kill([s], PortSpec({child.port}))\n"
        "print(p.actionable); print(*[r.kind + '|' + r.reason for r in p.refusals], sep='\\n')"
    )
    site = str(Path(psutil.__file__).resolve().parents[1])
    res = subprocess.run(
        [python, "-c", script],
        env={"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"},
        user="nobody",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "False"
    kind, reason = lines[1].split("|", 1)
    assert kind == REFUSED_PERMISSION
    assert "belongs to root" in reason and "sudo portmon kill" in reason
    assert child.alive() and record_file.read_text() == ""


@needs_root
def test_root_names_other_users_in_the_confirmation(spawn) -> None:  # type: ignore[no-untyped-def]
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    try:
        child = spawn(python=python, user="nobody")
    except (OSError, RuntimeError, KeyError) as exc:
        pytest.skip(f"cannot start a process as nobody: {exc}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    assert plan.other_users == ((child.pid, "nobody"),)
    lines = confirmation_lines(plan, signal.SIGTERM)
    assert lines[0] == f"send SIGTERM to 1 process holding port {child.port}/tcp?"
    assert lines[1] == f"as root, this signals processes of other users: nobody (pid {child.pid})"


def test_udp_holder_is_freed(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("proto=udp")
    plan = plan_kill([child.holders("udp")], PortSpec(child.port, "udp"))
    outcome = execute(plan, signal.SIGTERM, 2.0, rescan=_real_scan, settle=0)
    assert outcome.message == f"port {child.port}/udp freed"


# -- verdicts -----------------------------------------------------------------------------------------

SUPERVISOR = r"""
import os, socket, sys, time
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
def serve():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        time.sleep(0.1)
    os._exit(0)
first = True
end = time.monotonic() + 60
while time.monotonic() < end:
    pid = os.fork()
    if pid == 0:
        serve()
    if first:
        time.sleep(0.2)
        print("READY", port, pid, flush=True)
        first = False
    os.waitpid(pid, 0)
"""


def test_rebound_by_a_supervisor_names_the_new_pid_and_its_parent() -> None:
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR], stdout=subprocess.PIPE, text=True)
    sup_ps = psutil.Process(sup.pid)
    try:
        assert sup.stdout is not None
        _, port_text, first_text = sup.stdout.readline().split()
        port, first = int(port_text), int(first_text)
        first_ps = psutil.Process(first)
        sock = Socket(
            "tcp", 4, "127.0.0.1", port, state=LISTEN,
            holders=(Holder(first, first_ps.name(), create_time=first_ps.create_time()),),
        )
        plan = plan_kill([sock], PortSpec(port))

        def rescan_until_held() -> Snapshot:
            # The supervisor restarts its child at once; wait (bounded) until the new one has bound.
            end = time.monotonic() + 5
            while True:
                snap = _real_scan()
                if any(s.local_port == port and s.holders for s in snap.sockets) or time.monotonic() > end:
                    return snap
                time.sleep(0.05)

        outcome = execute(plan, signal.SIGTERM, 2.0, rescan=rescan_until_held, settle=0)
        assert outcome.results[0].result == EXITED
        verdict = outcome.verdict
        assert verdict.kind == REBOUND, verdict.message
        (new,) = verdict.rebound_by
        assert new.pid != first and new.parent_pid == sup.pid
        assert f"re-bound by new pid {new.pid}" in verdict.message and f"child of {sup.pid}" in verdict.message
        assert outcome.exit_code == 1
    finally:
        kids = []
        try:
            kids = sup_ps.children()
        except psutil.NoSuchProcess:
            pass
        for proc in [sup_ps, *kids]:
            try:
                proc.kill()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        sup.wait(5)
        if sup.stdout is not None:
            sup.stdout.close()


def _plan_of(pids: list[int], port: int = 8080) -> KillPlan:
    targets = tuple(Target(Identity(pid, 1000.0 + pid), name=f"p{pid}", user="alice") for pid in pids)
    before = (Socket("tcp", 4, "0.0.0.0", port, state=LISTEN, holders=tuple(Holder(pid, create_time=1000.0 + pid) for pid in pids)),)
    return KillPlan(spec=PortSpec(port, "tcp"), label=f"{port}/tcp", targets=targets, before=before, sockets=before)


def _results(plan: KillPlan, result: str, signals: tuple[str, ...] = ("SIGTERM",)) -> tuple[TargetResult, ...]:
    return tuple(TargetResult(t, result, signals) for t in plan.targets)


def test_judge_freed_and_time_wait_only() -> None:
    plan = _plan_of([101, 102])
    assert judge(plan, _results(plan, EXITED), _empty()).kind == FREED
    tw = Socket("tcp", 4, "127.0.0.1", 8080, "127.0.0.1", 40000, TIME_WAIT, owner_note=OWNER_KERNEL)
    other_port = Socket("tcp", 4, "127.0.0.1", 18080, state=LISTEN, holders=(Holder(7, create_time=1.0),))
    verdict = judge(plan, _results(plan, EXITED), _snap(tw, other_port))
    assert verdict.kind == TIME_WAIT_ONLY and verdict.freed
    assert verdict.message == "port 8080/tcp freed; only TIME_WAIT left (bindable with SO_REUSEADDR; clears within 60 s)"


def test_judge_still_held_names_the_survivors_and_why() -> None:
    plan = _plan_of([101, 102])
    results = (TargetResult(plan.targets[0], EXITED, ("SIGTERM",)), TargetResult(plan.targets[1], SURVIVED, ("SIGTERM",)))
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(Holder(102, create_time=1102.0),)))
    verdict = judge(plan, results, after)
    assert verdict.kind == STILL_HELD and verdict.still_held_by == (102,)
    assert verdict.message == "port 8080/tcp still held by 102 (ignores SIGTERM)"


def test_judge_rebound_by_new_pid_and_by_reused_pid() -> None:
    plan = _plan_of([101])
    described = lambda pid: NewHolder(pid, "nginx", 1, "systemd")  # noqa: E731
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(Holder(555, create_time=5.0),)))
    verdict = judge(plan, _results(plan, EXITED), after, describe=described)
    assert verdict.kind == REBOUND
    assert verdict.message.startswith("port 8080/tcp re-bound by new pid 555 (nginx), child of 1 (systemd)")
    # The same pid with another start time is a new process too.
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(Holder(101, create_time=99999.0),)))
    assert judge(plan, _results(plan, EXITED), after, describe=described).kind == REBOUND


def test_judge_holder_missed_by_the_scan_is_still_holding_not_rebound() -> None:
    now = time.time()
    plan = dataclasses.replace(_plan_of([101]), captured_at=now)
    described = lambda pid: NewHolder(pid, "worker", 100, "master", create_time=now - 100)  # noqa: E731
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(Holder(102, create_time=now - 100),)))
    verdict = judge(plan, _results(plan, EXITED), after, describe=described)
    assert verdict.kind == STILL_HELD and verdict.still_held_by == (102,)
    assert verdict.message == "port 8080/tcp still held by 102 (not seen holding it before)"


def test_judge_hidden_holder_after_the_kill() -> None:
    plan = _plan_of([101])
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, owner_note=OWNER_HIDDEN))
    verdict = judge(plan, _results(plan, EXITED), after)
    assert verdict.kind == STILL_HELD and "cannot see" in verdict.message


def test_rescan_failure_is_reported(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    plan = plan_kill([child.holders()], PortSpec(child.port))

    def broken() -> Snapshot:
        raise OSError("boom")

    outcome = execute(plan, signal.SIGTERM, 2.0, rescan=broken, settle=0)
    assert outcome.results[0].result == EXITED
    assert outcome.verdict.kind == "unknown" and "could not re-scan" in outcome.message and outcome.exit_code == 1


def test_plan_for_socket_targets_only_that_socket_but_remembers_the_port(spawn) -> None:  # type: ignore[no-untyped-def]
    a = spawn()
    other = Socket("tcp", 6, "::1", a.port, state=LISTEN, holders=(Holder(10**7, "x", create_time=1.0),))
    plan = plan_for_socket(a.holders(), _snap(a.holders(), other))
    assert [t.pid for t in plan.targets] == [a.pid]
    assert len(plan.before) == 2


def test_core_does_not_import_textual() -> None:
    code = "import sys, portmon.actions.kill.execute, portmon.cli.kill; print('textual' in sys.modules or 'rich' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "False", res.stderr


def test_judge_groups_survivors_sharing_a_reason() -> None:
    plan = _plan_of([103, 101, 102])
    after = _snap(
        Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=tuple(Holder(p, create_time=1000.0 + p) for p in (103, 101, 102)))
    )
    verdict = judge(plan, _results(plan, SURVIVED), after)
    assert verdict.message == "port 8080/tcp still held by 101, 102, 103 (each ignores SIGTERM)"
    mixed = (
        TargetResult(plan.targets[0], SURVIVED, ("SIGTERM",)),
        TargetResult(plan.targets[1], UNINTERRUPTIBLE, ("SIGTERM",)),
        TargetResult(plan.targets[2], SURVIVED, ("SIGTERM", "SIGCONT")),
    )
    assert judge(plan, mixed, after).message == (
        "port 8080/tcp still held by 101 (uninterruptible sleep), 102 (ignores SIGTERM), 103 (ignores SIGTERM)"
    )


def test_a_listener_without_a_visible_holder_is_not_called_transient() -> None:
    sock = Socket("tcp", 4, "0.0.0.0", 2024, state=LISTEN, owner_note=OWNER_KERNEL)
    plan = plan_kill([sock], PortSpec(2024))
    (refusal,) = plan.refusals
    assert refusal.kind == REFUSED_KERNEL_OWNED
    assert "no visible process holds it" in refusal.reason and "by itself" not in refusal.reason
