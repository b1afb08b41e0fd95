"""The safe-kill core: identity, refusals, signalling real child processes, and the re-scan verdicts."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from portmon.actions.kill import execute as killexec
from portmon.actions.kill import identity as killident
from portmon.actions.kill import model as killmodel
from portmon.actions.kill import process as killproc
from portmon.actions.kill.execute import execute
from portmon.actions.kill.identity import Identity
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
    STILL_HELD,
    SURVIVED,
    TIME_WAIT_ONLY,
    UNINTERRUPTIBLE,
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
EXIT_WAIT = 30.0
"""How long a test lets a SIGTERM-handling child take to exit: generous, since execute() returns as soon
as every target is gone, and a loaded 2-core CI host can take seconds to run a Python exit handler."""

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


def test_portmon_itself_is_no_holder_and_its_ancestors_are_refused() -> None:
    # portmon's own copy of a socket is inherited (socket activation, a leaked fd): never a holder to
    # signal nor a reason to refuse; its shell, sudo and terminal are refused.
    me = psutil.Process()
    holders = [Holder(me.pid, "python", create_time=me.create_time())]
    holders += [Holder(p.pid, p.name(), create_time=p.create_time()) for p in me.parents() if p.pid > 1]
    assert len(holders) >= 2, "pytest runs under some parent process"
    sock = Socket("tcp", 4, "127.0.0.1", 9, state=LISTEN, holders=tuple(holders))
    plan = plan_kill([sock], PortSpec(9))
    kinds = {r.pid: r.kind for r in plan.refusals}
    assert me.pid not in kinds and me.pid not in [t.pid for t in plan.targets]
    assert any(f"portmon itself (pid {me.pid}) holds an inherited copy" in n for n in plan.notes)
    assert all(kinds[h.pid] == REFUSED_ANCESTOR for h in holders[1:])
    assert "ancestors" in next(r.reason for r in plan.refusals if r.kind == REFUSED_ANCESTOR)
    assert not plan.actionable


def test_a_refused_holder_blocks_the_whole_kill(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    init = Holder(1, "init")
    sock = child.holders()._replace(holders=child.holders().holders + (init,))
    plan = plan_kill([sock], PortSpec(child.port))
    assert [t.pid for t in plan.targets] == [child.pid]
    assert [r.kind for r in plan.refusals] == [REFUSED_INIT]
    assert not plan.actionable
    with pytest.raises(ValueError):
        execute(plan, rescan=_empty)
    assert child.alive()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kthreadd is Linux's")
def test_kernel_threads_are_refused() -> None:
    if not psutil.pid_exists(2) or psutil.Process(2).name() != "kthreadd":
        pytest.skip("no visible kthreadd (pid namespace)")
    kids = psutil.Process(2).children()[:1]
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
    ticks = killident.system_clock().start_ticks(child.pid)
    assert ticks is not None or not sys.platform.startswith("linux")
    assert target.identity == Identity(child.pid, proc.create_time(), ticks)
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
    monkeypatch.setattr(killident, "HAVE_PIDFD", False)
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    later = plan.targets[0].identity.create_time + 1000
    forged = dataclasses.replace(plan.targets[0], identity=Identity(child.pid, later))
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
        monkeypatch.setattr(killident, "HAVE_PIDFD", False)
    elif not killident.HAVE_PIDFD:
        pytest.skip("no pidfd on this platform")
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port, "tcp"))
    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
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
    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
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
    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
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
                [python, "-c", "import psutil, portmon.actions.kill.plan"],
                env=env, user=user, capture_output=True, timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return python
    return None


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to start another user's process"
)


@needs_root
def test_another_users_process_is_refused_for_non_root(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    python = _python_for("nobody")
    if python is None:
        pytest.skip("user nobody cannot run a Python with psutil here")
    child = spawn(f"record={record_file}")  # owned by root
    sock = child.holders()
    h = sock.holders[0]
    script = (
        "from portmon.actions.kill.plan import plan_kill; from portmon.model import Socket, Holder\n"
        "from portmon.portspec import PortSpec\n"
        f"h = Holder({h.pid}, 'python3', 'root', {h.create_time!r})\n"
        f"s = Socket('tcp', 4, '127.0.0.1', {child.port}, state='LISTEN', holders=(h,))\n"
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
    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
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

        outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=rescan_until_held, settle=0)
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
    holders = tuple(Holder(pid, create_time=1000.0 + pid) for pid in pids)
    before = (Socket("tcp", 4, "0.0.0.0", port, state=LISTEN, holders=holders),)
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
    assert verdict.message == (
        "port 8080/tcp freed; only TIME_WAIT left (bindable with SO_REUSEADDR; clears within 60 s)"
    )


def test_judge_still_held_names_the_survivors_and_why() -> None:
    plan = _plan_of([101, 102])
    results = (
        TargetResult(plan.targets[0], EXITED, ("SIGTERM",)),
        TargetResult(plan.targets[1], SURVIVED, ("SIGTERM",)),
    )
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

    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=broken, settle=0)
    assert outcome.results[0].result == EXITED
    assert outcome.verdict.kind == "unknown" and "could not re-scan" in outcome.message and outcome.exit_code == 1


def test_plan_for_socket_targets_only_that_socket_but_remembers_the_port(spawn) -> None:  # type: ignore[no-untyped-def]
    a = spawn()
    other = Socket("tcp", 6, "::1", a.port, state=LISTEN, holders=(Holder(10**7, "x", create_time=1.0),))
    plan = plan_for_socket(a.holders(), _snap(a.holders(), other))
    assert [t.pid for t in plan.targets] == [a.pid]
    assert len(plan.before) == 2


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys, portmon.actions.kill.execute, portmon.cli.kill; "
        "print('textual' in sys.modules or 'rich' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.stdout.strip() == "False", res.stderr


def test_judge_groups_survivors_sharing_a_reason() -> None:
    plan = _plan_of([103, 101, 102])
    after = _snap(
        Socket(
            "tcp", 4, "0.0.0.0", 8080, state=LISTEN,
            holders=tuple(Holder(p, create_time=1000.0 + p) for p in (103, 101, 102)),
        )
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


# -- one clock for identity: ticks since boot ----------------------------------------------------------


class FakeBoot:
    """A host booted at a wall-clock time with any fractional second, as the kernel would report it.

    /proc/stat's btime is that time rounded down; start times are ticks since the true boot; psutil's
    create_time is btime + ticks / hz, so up to a second before the process really started.
    """

    HZ = 100

    def __init__(self, fraction: float) -> None:
        self.boot = 1_700_000_000 + fraction
        self.now = self.boot + 5_000.0
        self.starts: dict[int, float] = {}

    def start(self, pid: int, at: float) -> None:
        self.starts[pid] = at

    def ticks(self, pid: int) -> int:
        return int((self.starts[pid] - self.boot) * self.HZ)

    def create_time(self, pid: int) -> float:
        """What psutil's create_time() says on such a host."""
        return int(self.boot) + self.ticks(pid) / self.HZ

    def stat(self, pid: int) -> bytes | None:
        if pid not in self.starts:
            return None
        fields = ["S", "1"] + ["0"] * 17 + [str(self.ticks(pid)), "0"]
        return f"{pid} (a) b) {' '.join(fields)}\n".encode()

    def clock(self) -> killident.BootClock:
        return killident.BootClock(
            hz=self.HZ, btime=int(self.boot), since_boot=lambda: self.now - self.boot, read_stat=self.stat
        )


@pytest.mark.parametrize("fraction", [0.0, 0.99])
@pytest.mark.parametrize("ticks", [True, False], ids=["ticks", "wall-clock-only"])
def test_started_after_the_plan_is_judged_whatever_the_boot_fraction(fraction: float, ticks: bool) -> None:
    host = FakeBoot(fraction)
    clock = host.clock()
    plan = dataclasses.replace(
        _plan_of([101]), captured_at=host.now, captured_ticks=clock.now_ticks() if ticks else None
    )
    host.start(555, host.now + 0.1)  # restarted by a supervisor just after the plan
    host.start(556, host.now - 30)  # running long before: a holder the scan missed

    def describe(pid: int) -> NewHolder:
        ticks_now = clock.start_ticks(pid) if ticks else None
        return NewHolder(pid, "srv", 1, "sup", create_time=host.create_time(pid), start_ticks=ticks_now)

    holders = tuple(Holder(pid, create_time=host.create_time(pid)) for pid in (555, 556))
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=holders))
    verdict = judge(plan, _results(plan, EXITED), after, describe=describe)
    assert verdict.kind == REBOUND, verdict.message
    assert [nh.pid for nh in verdict.rebound_by] == [555]
    assert verdict.still_held_by == (556,)
    assert verdict.message.endswith("; still held by 556 (not seen holding it before)")


@pytest.mark.parametrize("fraction", [0.0, 0.99])
def test_ticks_tell_apart_a_reused_pid_that_wall_clock_rounding_cannot(fraction: float) -> None:
    host = FakeBoot(fraction)
    clock = host.clock()
    host.start(700, host.now - 10)
    seen = clock.identity(700, host.create_time(700))
    assert seen.start_ticks == clock.start_ticks(700)
    assert killident.same_process(seen, clock.start_ticks(700), host.create_time(700))
    # Pid 700 exits and is reused 0.2 s later: within the old 0.5 s tolerance, yet another process.
    host.start(700, host.now - 9.8)
    assert not killident.same_process(seen, clock.start_ticks(700), host.create_time(700))


@pytest.mark.parametrize("fraction", [0.0, 0.99])
def test_the_plan_is_stamped_in_ticks_since_boot(fraction: float) -> None:
    host = FakeBoot(fraction)
    plan = plan_kill([], PortSpec(8080), clock=host.clock())
    assert plan.captured_ticks == 5_000 * FakeBoot.HZ


def test_execute_refuses_a_pid_whose_start_tick_moved(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    # A pid reused within the same wall-clock second: only the start tick tells. The clock says the
    # process at that pid started one tick later than the planned one.
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    (target,) = plan.targets
    if target.identity.start_ticks is None:
        pytest.skip("no start ticks on this platform")
    real = killident.system_clock()
    moved = dataclasses.replace(real, read_stat=lambda pid: real.read_stat(pid).replace(  # type: ignore[union-attr]
        f" {target.identity.start_ticks} ".encode(), f" {target.identity.start_ticks + 1} ".encode()
    ))
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0, clock=moved)
    assert outcome.results[0].result == CHANGED and outcome.results[0].signals == ()
    assert child.alive() and record_file.read_text() == ""


@pytest.mark.skipif(not killident.HAVE_PIDFD, reason="no pidfd on this platform")
def test_the_plan_holds_a_pidfd_from_planning_to_signalling(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    plan = plan_kill([child.holders()], PortSpec(child.port))
    (target,) = plan.targets
    assert target.pidfd is not None and target.pidfd.fd is not None
    fd = target.pidfd.fd
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
    outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
    assert outcome.results[0].result == EXITED and outcome.freed
    assert target.pidfd.fd == fd  # the plan still owns it (a second signal would go through it too)
    plan.release()
    assert target.pidfd.fd is None


@pytest.mark.skipif(not killident.HAVE_PIDFD, reason="no pidfd on this platform")
def test_a_planned_holder_that_exits_before_the_signal_is_gone_via_its_pidfd(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    plan = plan_kill([child.holders()], PortSpec(child.port))
    child.stop()
    outcome = execute(plan, signal.SIGTERM, 1.0, rescan=_real_scan, settle=0)
    assert outcome.results[0].result == GONE and outcome.results[0].signals == ()
    plan.release()


# -- a target must still hold the socket when it is signalled ----------------------------------------

LET_GO_PAIR = r"""
import os, signal, socket, sys, time
record = sys.argv[1]
def note(sig, frame):
    with open(record, "a") as fh:
        fh.write(f"{os.getpid()} {signal.Signals(sig).name}\n")
    os._exit(0)
signal.signal(signal.SIGTERM, note)
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
child = os.fork()
if child == 0:
    # On a word from the test, let go of the socket the way a re-exec'ing server would: dup2 over its fd.
    sys.stdin.readline()
    os.dup2(os.open(os.devnull, os.O_RDONLY), s.fileno())
    print("LET-GO", flush=True)
else:
    print("READY", s.getsockname()[1], os.getpid(), child, flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.1)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket inodes come from Linux's /proc")
def test_a_holder_that_dup2d_over_the_socket_since_the_scan_is_left_alone(tmp_path: Path) -> None:
    from portmon.collect.choose import default_collector

    record = tmp_path / "record"
    record.write_text("")
    pair = subprocess.Popen(
        [sys.executable, "-c", LET_GO_PAIR, str(record)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert pair.stdin is not None and pair.stdout is not None
    _, port_text, parent_text, child_text = pair.stdout.readline().split()
    port, parent, child = int(port_text), int(parent_text), int(child_text)
    child_ps = psutil.Process(child)  # captured while surely ours: psutil will not kill a reused pid
    try:
        (sock,) = [s for s in default_collector().scan().sockets if s.local_port == port and s.listening]
        assert sock.inode and {h.pid for h in sock.holders} == {parent, child}
        plan = plan_kill([sock], PortSpec(port))
        assert [t.pid for t in plan.targets] == sorted([parent, child])
        pair.stdin.write("go\n")
        pair.stdin.flush()
        assert pair.stdout.readline().strip() == "LET-GO"  # the child's fd now points at /dev/null

        outcome = execute(plan, signal.SIGTERM, EXIT_WAIT, rescan=_real_scan, settle=0)
        by_pid = {r.target.pid: r for r in outcome.results}
        assert by_pid[parent].result == EXITED
        assert by_pid[child].result == killmodel.LET_GO and by_pid[child].signals == ()
        assert "no longer holds" in by_pid[child].detail and "left alone" in by_pid[child].detail
        assert outcome.freed and outcome.message.endswith(f"(left alone: {child}, no longer holding it)")
        assert record.read_text() == f"{parent} SIGTERM\n"
        assert child_ps.is_running() and child_ps.status() != psutil.STATUS_ZOMBIE
    finally:
        try:
            child_ps.kill()
        except psutil.Error:
            pass
        pair.kill()
        pair.wait(5)
        pair.stdout.close()
        pair.stdin.close()


# -- honest explanations of sockets without a visible holder ------------------------------------------


def test_a_connection_in_a_listeners_backlog_is_explained_as_such(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    listener = child.holders()
    conn = Socket("tcp", 4, "127.0.0.1", child.port, "127.0.0.1", 50000, "ESTABLISHED", owner_note=killmodel_unseen())
    plan = plan_kill([conn], PortSpec(child.port), [listener, conn])
    (refusal,) = plan.refusals
    assert refusal.kind == REFUSED_KERNEL_OWNED
    assert f"not yet accepted (in the backlog of pid {child.pid})" in refusal.reason
    assert "PID namespace" not in refusal.reason


def test_without_root_a_backlog_connection_does_not_block_the_kill(spawn) -> None:  # type: ignore[no-untyped-def]
    # Unprivileged, the collector calls an ownerless ESTABLISHED socket hidden (another user's): one
    # waiting in our own listener's backlog is no reason to refuse killing that listener.
    child = spawn()
    listener = child.holders()
    conn = Socket("tcp", 4, "127.0.0.1", child.port, "127.0.0.1", 50000, "ESTABLISHED", owner_note=OWNER_HIDDEN)
    plan = plan_kill([listener, conn], PortSpec(child.port))
    assert plan.actionable and [t.pid for t in plan.targets] == [child.pid]
    assert any(f"not yet accepted (in the backlog of pid {child.pid})" in n for n in plan.notes)


def test_an_ownerless_socket_names_the_fd_tables_that_could_not_be_read() -> None:
    from portmon.actions.kill.text import kernel_owned_note

    sock = Socket("tcp", 4, "0.0.0.0", 7000, state=LISTEN, owner_note=killmodel_unseen())
    assert "the fds of 3 processes could not be read, even as root" in kernel_owned_note(sock, (), 3)
    assert "PID namespace" in kernel_owned_note(sock, (), 0)


def test_without_root_a_socket_of_another_uid_warns_of_an_unseen_holder(spawn, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from portmon.actions.kill import plan as killplan

    monkeypatch.setattr(killplan, "privileged", lambda: False)
    child = spawn()
    sock = child.holders()._replace(inode=4_000_000_001)
    mine = psutil.Process(child.pid).uids().effective
    plan = plan_kill([sock], PortSpec(child.port), uids=lambda inodes: dict.fromkeys(inodes, mine))
    assert not any("unseen without root" in n for n in plan.notes)
    other = mine + 4242
    plan = plan_kill([sock], PortSpec(child.port), uids=lambda inodes: dict.fromkeys(inodes, other))
    assert plan.actionable
    (note,) = [n for n in plan.notes if "unseen without root" in n]
    assert f"the kernel says uid {other} opened it" in note and "another user's process may hold it too" in note


def killmodel_unseen() -> str:
    from portmon.model import OWNER_UNSEEN

    return OWNER_UNSEEN


def test_after_the_kill_portmons_own_inherited_copy_does_not_count_as_a_holder() -> None:
    plan = _plan_of([101])
    mine = Holder(os.getpid(), "portmon", create_time=psutil.Process().create_time())
    after = _snap(Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(mine,)))
    verdict = judge(plan, _results(plan, EXITED), after)
    assert verdict.kind == FREED and verdict.still_held_by == () and verdict.rebound_by == ()
    assert verdict.message == (
        "port 8080/tcp freed of its holders; portmon itself holds an inherited copy until it exits"
    )


@needs_root
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="socket uids come from Linux's /proc/net")
def test_without_root_a_socket_opened_by_another_uid_warns_before_the_kill() -> None:
    python = _python_for("nobody")
    if python is None:
        pytest.skip("user nobody cannot run a Python with psutil here")
    # The socket is opened here, as root (the kernel records uid 0 for it), and handed to a process
    # of user nobody, as a privileged parent or socket activation would; our own copy is closed.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        holder = subprocess.Popen(
            [python, "-c", "import time; print('READY', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True, user="nobody", pass_fds=[sock.fileno()],
        )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "READY"
        pid = holder.pid
        script = (
            "from portmon.actions.kill.plan import plan_kill\n"
            "from portmon.collect.choose import default_collector\n"
            "from portmon.portspec import PortSpec, sockets_on_port\n"
            f"spec = PortSpec({port}, 'tcp')\n"
            "plan = plan_kill(sockets_on_port(default_collector().scan().sockets, spec), spec)\n"
            "print([t.pid for t in plan.targets]); print(*plan.notes, sep='\\n')"
        )
        site = str(Path(psutil.__file__).resolve().parents[1])
        res = subprocess.run(
            [python, "-c", script],
            env={"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"},
            user="nobody", capture_output=True, text=True, timeout=60,
        )
        assert res.returncode == 0, res.stderr
        targets, *notes = res.stdout.splitlines()
        assert targets == f"[{pid}]"
        (note,) = [n for n in notes if "unseen without root" in n]
        assert "the kernel says uid 0 opened it" in note and "another user's process may hold it too" in note
    finally:
        holder.kill()
        holder.wait(5)
        holder.stdout.close()
