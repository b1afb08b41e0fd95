"""Killing exactly the confirmed processes (``kill --pids PID:TICKS``): parsing, and a plan cut down to them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from handoff_listener import Handoff

from portmon.actions.kill.confirmed import (
    IDENTITIES_PREFIX,
    REFUSED_CHANGED,
    format_identities,
    identities_from_lines,
    keep_confirmed,
    parse_identities,
)
from portmon.actions.kill.identity import BootClock, Identity
from portmon.actions.kill.model import KillPlan, Target
from portmon.collect.procfs import ProcfsCollector
from portmon.portspec import PortSpec

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not ProcfsCollector.available(), reason="start times in ticks: Linux"
)


def _stat(pid: int, ticks: int) -> bytes:
    """A /proc/PID/stat line whose start time (field 22) is ``ticks``; the name holds ") " as a real one may."""
    return f"{pid} (a) b) S ".encode() + b" ".join([b"1"] * 18 + [str(ticks).encode(), b"0", b"0"])


def _clock(started: dict[int, int]) -> BootClock:
    """A clock whose processes are ``started`` (pid -> start ticks); any other pid does not exist."""
    return BootClock(
        hz=100,
        btime=1_700_000_000,
        since_boot=lambda: 5000.0,
        read_stat=lambda pid: _stat(pid, started[pid]) if pid in started else None,
    )


def _target(pid: int, ticks: int | None, name: str = "server") -> Target:
    return Target(identity=Identity(pid, 1_700_000_100.0, ticks), name=name, sockets=("tcp4 127.0.0.1:8080 LISTEN",))


def _plan(*targets: Target) -> KillPlan:
    return KillPlan(spec=PortSpec(8080, "tcp"), label="8080/tcp", targets=targets)


def test_identities_round_trip_and_bad_text_is_named_without_echo() -> None:
    assert format_identities([_target(42, 1234), _target(7, 99)]) == "42:1234,7:99"
    assert format_identities([_target(42, None)]) is None  # no ticks (not Linux): nothing exact to confirm
    assert format_identities([]) is None
    assert parse_identities("42:1234,7:99") == {42: 1234, 7: 99}
    assert parse_identities(" 42:1234 ") == {42: 1234}
    for bad in ("", "42", "42:", ":5", "x:1", "1:2:3", "-1:5", "0:5", "4\x1b[2J:1", "٣:1", "1" * 11 + ":1"):
        with pytest.raises(ValueError) as err:
            parse_identities(bad)
        assert "\x1b" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="twice"):
        parse_identities("42:1,42:2")
    assert parse_identities("42:1,42:1") == {42: 1}


def test_the_dry_run_line_is_found_and_taken_out_of_what_is_shown() -> None:
    lines = ["port 8080/tcp is held by 1 process:", f"{IDENTITIES_PREFIX}42:1234", "dry run: would send SIGTERM"]
    assert identities_from_lines(lines) == ("42:1234", [lines[0], lines[2]])
    assert identities_from_lines(lines[:1]) == (None, lines[:1])


def test_a_confirmed_process_is_kept() -> None:
    plan = keep_confirmed(_plan(_target(42, 1234)), {42: 1234}, _clock({42: 1234}))
    assert [t.pid for t in plan.targets] == [42] and plan.actionable and not plan.notes


def test_a_pid_replaced_between_plan_and_confirm_is_refused() -> None:
    # The user confirmed pid 42 started at tick 1234; on the host pid 42 is now a process started at 5678.
    plan = keep_confirmed(_plan(_target(42, 5678, "\x1b[31mevil")), {42: 1234}, _clock({42: 5678}))
    assert not plan.targets and not plan.actionable
    (refusal,) = plan.refusals
    assert refusal.kind == REFUSED_CHANGED and refusal.pid == 42
    assert "not the process confirmed" in refusal.reason and "5678" in refusal.reason and "1234" in refusal.reason
    assert "\x1b" not in refusal.reason  # the process name is escaped


def test_a_replaced_pid_blocks_the_whole_kill_even_beside_a_confirmed_one() -> None:
    plan = keep_confirmed(
        _plan(_target(42, 1234), _target(43, 9999)), {42: 1234, 43: 1000}, _clock({42: 1234, 43: 9999})
    )
    assert [t.pid for t in plan.targets] == [42]
    assert [r.pid for r in plan.refusals] == [43] and not plan.actionable  # nothing is signalled


def test_a_holder_nobody_confirmed_is_left_alone_with_a_note() -> None:
    plan = keep_confirmed(_plan(_target(42, 1234), _target(50, 4000, "newcomer")), {42: 1234}, _clock({}))
    assert [t.pid for t in plan.targets] == [42] and plan.actionable
    assert any("50 (newcomer)" in n and "not among the processes confirmed" in n for n in plan.notes)


def test_a_confirmed_process_gone_from_the_plan_is_a_note_or_a_refusal() -> None:
    # 42 exited; 43 still runs but no longer holds the port; 44's pid now names another process.
    plan = keep_confirmed(_plan(), {42: 1, 43: 2, 44: 3}, _clock({43: 2, 44: 300}))
    assert not plan.targets and not plan.actionable
    assert any("pid 42 (confirmed) has exited" in n for n in plan.notes)
    assert any("pid 43 (confirmed) no longer holds port 8080/tcp" in n for n in plan.notes)
    assert [(r.kind, r.pid) for r in plan.refusals] == [(REFUSED_CHANGED, 44)]


def portmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def dry_run_identities(port: int) -> str:
    res = portmon("kill", f"{port}/tcp", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    found, _ = identities_from_lines(res.stdout.splitlines())
    assert found is not None, res.stdout
    return found


@linux_only
def test_kill_pids_refuses_a_pid_that_names_another_process_now_and_kills_the_confirmed_one() -> None:
    holder = Handoff()
    try:
        ids = dry_run_identities(holder.port)
        pid, ticks = (int(w) for w in ids.split(":"))
        assert pid == holder.pid
        # The same pid with another start time: to portmon, a process that replaced the confirmed one.
        res = portmon("kill", f"{holder.port}/tcp", "--yes", "--pids", f"{pid}:{ticks + 1}")
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"pid {pid} (python" in res.stdout and "is not the process confirmed" in res.stdout
        assert "nothing was signalled" in res.stdout and holder.proc.poll() is None
        res = portmon("kill", f"{holder.port}/tcp", "--yes", "--pids", ids)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"port {holder.port}/tcp freed" in res.stdout and holder.proc.wait(60) != 0
    finally:
        holder.close()


@linux_only
def test_kill_pids_leaves_alone_a_holder_nobody_confirmed() -> None:
    holder = Handoff()
    try:
        ids = dry_run_identities(holder.port)
        heir = holder.hand_off()  # between the plan and the kill, another process takes the port over
        res = portmon("kill", f"{holder.port}/tcp", "--yes", "--pids", ids)
        assert res.returncode == 1, res.stdout + res.stderr
        assert f"pid {heir} (python" in res.stdout
        assert "holds the port now but was not among the processes confirmed: left alone" in res.stdout
        assert f"pid {holder.pid} (confirmed) has exited since" in res.stdout
        assert holder.heir_alive()
    finally:
        holder.close()


def test_kill_pids_bad_text_is_one_line_and_exit_2() -> None:
    res = portmon("kill", "8080", "--pids", "42:\x1b[2J")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "\x1b" not in res.stderr and "PID:TICKS" in res.stderr
