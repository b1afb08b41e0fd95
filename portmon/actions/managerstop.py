"""The manager's stop command as a second action: run it without a shell, time-boxed, then judge the port.

A kill's preflight may name a manager with its own stop command (``systemctl stop nginx.service``,
``docker stop web``, ``kill 4242`` for a shell loop). Run after its own confirmation, that command is
judged like a kill: the port is re-scanned and :func:`portmon.actions.kill.judge.judge` says freed,
still held (by whom) or re-bound by a new pid, in the same words as ``portmon kill``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from portmon.actions.kill.identity import same_start_time
from portmon.actions.kill.judge import judge
from portmon.actions.kill.model import UNKNOWN, KillPlan, Target, Verdict
from portmon.actions.kill.signals import DEFAULT_TIMEOUT, parse_signal
from portmon.model import Snapshot
from portmon.ownership.manager import Manager
from portmon.ownership.preflight import Preflight
from portmon.ownership.view import PortOwnership
from portmon.textsafe import safe

STOP_TIMEOUT = 30.0
"""Seconds the stop command may run (``systemctl stop`` waits for the unit's own stop timeout)."""

_OUTPUT_CHARS = 300

Runner = Callable[[Sequence[str], float], "tuple[int, str]"]
"""``run(argv, timeout) -> (exit status, output)``; OSError when it cannot start, TimeoutError when it overruns."""


def run_argv(argv: Sequence[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` without a shell, stdin closed, within ``timeout``; its exit status and its output (stderr first).

    ``kill [-SIG] PID`` (a shell loop's stop command) is the shell's builtin: where no ``kill`` program
    is installed it is done here with ``os.kill``.
    """
    if argv and argv[0] == "kill" and shutil.which("kill") is None:
        return _kill_builtin(argv[1:])
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g} s") from exc
    return done.returncode, (done.stderr.strip() or done.stdout.strip())


def _kill_builtin(args: Sequence[str]) -> tuple[int, str]:
    sig = signal.SIGTERM
    pids = list(args)
    if pids and pids[0].startswith("-") and pids[0] != "--":
        try:
            sig = signal.Signals(parse_signal(pids.pop(0)[1:]))
        except ValueError as exc:
            return 2, str(exc)
    if pids and pids[0] == "--":
        pids.pop(0)
    try:
        for pid in pids:
            os.kill(int(pid), sig)
    except (ValueError, OSError) as exc:
        return 1, str(exc)
    return 0, ""


@dataclass(frozen=True, slots=True)
class StopResult:
    """What running a manager's stop command did, and the verdict of the re-scan after it."""

    argv: tuple[str, ...]
    exit_code: int | None
    """The command's exit status; None when it could not be run or did not finish in time."""
    output: str
    """What it printed (stderr first), or why it could not be run; escaped, one line."""
    verdict: Verdict

    @property
    def command(self) -> str:
        """The command as the preflight showed it (escaped)."""
        return safe(" ".join(self.argv), 200)

    @property
    def ran(self) -> bool:
        """True when the command ran and exited 0."""
        return self.exit_code == 0

    @property
    def message(self) -> str:
        """``ran `systemctl stop web.service` (exit 0): port 8080/tcp freed``."""
        how = f"exit {self.exit_code}" if self.exit_code is not None else "not run"
        text = f"ran `{self.command}` ({how}"
        if self.output and not self.ran:
            text += f": {self.output}"
        return f"{text}): {self.verdict.message}"

    def record(self) -> dict[str, Any]:
        """The ``manager_stop`` object of ``kill --json``."""
        return {
            "argv": list(self.argv),
            "exit_code": self.exit_code,
            "output": self.output,
            "verdict": self.verdict.kind,
            "message": self.verdict.message,
        }


def plan_preflight(plan: KillPlan, ownership: PortOwnership) -> Preflight:
    """The preflight of a kill plan: its targets' managers, main holder first (what ``kill`` and the dialog show)."""
    targets = {t.pid for t in plan.targets}
    holders = [h for s in plan.sockets for h in s.holders if h.pid in targets]
    return ownership.preflight(ownership.order_pids(holders), plan.spec.port)


def stop_argv(pre: Preflight) -> tuple[str, ...] | None:
    """The argument vector of the preflight's stop command (the manager's own, unescaped), or None."""
    m = pre.manager
    if m is None or pre.stop_command is None:
        return None
    return m.stop_argv


def _target_gone(t: Target) -> bool:
    if t.pidfd is not None and t.pidfd.fd is not None:
        return t.pidfd.exited()
    try:
        proc = psutil.Process(t.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        created = t.identity.create_time
        return created is not None and not same_start_time(created, proc.create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False


def _manager_gone(m: Manager | None) -> bool:
    """True when the manager is a process (a shell loop, a watcher) and it has exited."""
    if m is None or m.pid is None:
        return False
    try:
        return psutil.Process(m.pid).status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False


def stop_manager(
    plan: KillPlan,
    pre: Preflight,
    rescan: Callable[[], Snapshot],
    *,
    timeout: float = STOP_TIMEOUT,
    wait: float = DEFAULT_TIMEOUT,
    runner: Runner = run_argv,
    interval: float = 0.05,
) -> StopResult:
    """Run the preflight's stop command, wait for its effect, re-scan and judge the port.

    The wait (at most ``wait`` seconds) ends when every planned holder has exited or, for a manager
    that is a process of its own (a shell loop), when that process has: its stop command stops the
    loop, not the server it started, which then still holds the port until it is killed. The holders
    left are named by the verdict ("still held by N"). Raises ValueError without a stop command.
    """
    argv = stop_argv(pre)
    if not argv:
        raise ValueError("the manager has no stop command")
    code: int | None
    try:
        code, output = runner(argv, timeout)
    except (OSError, TimeoutError) as exc:
        code, output = None, str(exc)
    output = safe(" ".join(output.split()), _OUTPUT_CHARS)
    if code is not None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(_target_gone(t) for t in plan.targets) or _manager_gone(pre.manager):
                break
            time.sleep(interval)
    try:
        verdict = judge(plan, (), rescan())
    except Exception as exc:  # noqa: BLE001 - the command ran; only its check failed
        verdict = Verdict(UNKNOWN, f"port {plan.label}: could not re-scan ({safe(type(exc).__name__)}: {safe(exc)})")
    return StopResult(tuple(argv), code, output, verdict)
