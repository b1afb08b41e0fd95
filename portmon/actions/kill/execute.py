"""Signalling a plan's targets: identity-checked handles (a pidfd where the platform has one), signals, the wait."""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from collections.abc import Callable, Sequence

import psutil

from portmon.actions.kill.identity import BootClock, PidFd, open_pidfd, same_process, system_clock
from portmon.actions.kill.judge import judge, verdict_without_scan
from portmon.actions.kill.model import (
    CHANGED,
    DENIED,
    EXITED,
    GONE,
    LET_GO,
    SURVIVED,
    UNINTERRUPTIBLE,
    UNKNOWN,
    KillOutcome,
    KillPlan,
    Target,
    TargetResult,
    Verdict,
)
from portmon.actions.kill.process import IS_WINDOWS, holds_socket
from portmon.actions.kill.signals import DEFAULT_SETTLE, DEFAULT_TIMEOUT, signal_name
from portmon.actions.kill.text import format_start
from portmon.model import Snapshot
from portmon.textsafe import safe

_SIGCONT: int | None = getattr(signal, "SIGCONT", None)
_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)

class _Handle:
    """A live, identity-checked reference to one target: a pidfd on Linux, a psutil.Process elsewhere."""

    def __init__(
        self, target: Target, proc: psutil.Process, pidfd: PidFd | None, owned: bool, clock: BootClock
    ) -> None:
        self.target = target
        self.proc = proc
        self.pidfd = pidfd
        self.owned = owned
        """True when this handle opened the pidfd (else the plan holds it, and closes it)."""
        self.clock = clock
        self.sent: list[str] = []

    @property
    def fd(self) -> int | None:
        """The pidfd's descriptor, None without one."""
        return self.pidfd.fd if self.pidfd is not None else None

    def send(self, sig: int) -> None:
        """Deliver a signal; ProcessLookupError when it is gone, PermissionError when refused."""
        _deliver(self, sig)
        self.sent.append(signal_name(sig))

    def exited(self) -> bool:
        """True when the process has exited (a zombie counts: it holds no sockets any more)."""
        if self.pidfd is not None and self.pidfd.exited():
            return True
        try:
            if not self.proc.is_running():
                return True
            return self.proc.status() == psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return True
        except psutil.AccessDenied:
            return False

    def status(self) -> str | None:
        """The process's state (psutil spelling), None when unreadable."""
        try:
            return self.proc.status()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return psutil.STATUS_ZOMBIE
        except psutil.AccessDenied:
            return None

    def close(self) -> None:
        """Release the pidfd if this handle opened it."""
        if self.pidfd is not None and self.owned:
            self.pidfd.close()
        self.pidfd = None


def _deliver(handle: _Handle, sig: int) -> None:
    """Send one signal through the handle (patched in tests to fake a refusal)."""
    if handle.fd is not None:
        # The pidfd names exactly the process whose identity was checked: no pid-reuse race.
        assert handle.pidfd is not None
        handle.pidfd.send(sig)
        return
    if IS_WINDOWS:
        # Windows has no signals to speak of: terminate() and kill() are both TerminateProcess.
        try:
            handle.proc.terminate()
        except psutil.NoSuchProcess:
            raise ProcessLookupError(errno.ESRCH, "no such process") from None
        except psutil.AccessDenied:
            raise PermissionError(errno.EPERM, "access denied") from None
        return
    # Without a pidfd the check and the signal are two steps: re-check as late as possible.
    pid = handle.target.pid
    try:
        still_same = handle.proc.is_running() and same_process(
            handle.target.identity, handle.clock.start_ticks(pid), handle.proc.create_time()
        )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        still_same = False
    except psutil.AccessDenied:
        still_same = True
    if not still_same:
        raise ProcessLookupError(errno.ESRCH, "the process has exited")
    os.kill(pid, sig)


def _gone(target: Target) -> TargetResult:
    return TargetResult(target, GONE, (), f"pid {target.pid} had already exited: nothing to signal")


def _open(target: Target, clock: BootClock) -> tuple[_Handle | None, TargetResult | None]:
    """A handle on the target, its identity confirmed; or the reason it will not be signalled.

    The plan's pidfd is used when it has one (it names the planned process whatever happened to the
    pid since); else one is opened now, before the start time is read, so a match proves it.
    """
    pid = target.pid
    pidfd = target.pidfd if target.pidfd is not None and target.pidfd.fd is not None else None
    owned = pidfd is None
    if pidfd is None:
        try:
            pidfd = open_pidfd(pid)
        except ProcessLookupError:
            return None, _gone(target)

    def fail(result: TargetResult) -> tuple[_Handle | None, TargetResult | None]:
        if owned and pidfd is not None:
            pidfd.close()
        return None, result

    if pidfd is not None and pidfd.exited():
        return fail(_gone(target))
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return fail(_gone(target))
    except psutil.AccessDenied:
        detail = f"pid {pid}: cannot confirm its identity (start time unreadable): not signalled"
        return fail(TargetResult(target, CHANGED, (), detail))
    if not same_process(target.identity, clock.start_ticks(pid), created):
        detail = f"pid {pid} now belongs to a different process (started {format_start(created)}): not signalled"
        return fail(TargetResult(target, CHANGED, (), detail))
    if zombie:
        return fail(_gone(target))
    return _Handle(target, proc, pidfd, owned, clock), None


def _denied(target: Target) -> TargetResult:
    owner = safe(target.user or "another user")
    return TargetResult(
        target,
        DENIED,
        (),
        f"pid {target.pid}: permission denied, it belongs to {owner}; run portmon with sudo",
    )


def _signal(handle: _Handle, sig: int) -> TargetResult | None:
    """Send ``sig`` (and SIGCONT to a stopped process); a result only when it was not sent.

    Just before, the target must still hold one of the plan's sockets: a holder that closed it, or
    dup2'd something else over its fd, since the scan is no business of this kill and is left alone.
    """
    target = handle.target
    if holds_socket(target.pid, target.inodes) is False:
        sockets = ", ".join(target.sockets) or "the port's sockets"
        detail = (
            f"pid {target.pid} no longer holds {sockets} (its fd was closed or replaced since the scan): left alone"
        )
        return TargetResult(target, LET_GO, tuple(handle.sent), detail)
    try:
        stopped = handle.status() == psutil.STATUS_STOPPED
        handle.send(sig)
        if stopped and _SIGCONT is not None and sig != _SIGKILL:
            # A stopped process cannot act on SIGTERM (or its handler) until it runs again.
            handle.send(_SIGCONT)
    except ProcessLookupError:
        if handle.sent:
            return None
        return _gone(target)
    except PermissionError:
        return _denied(target)
    return None


def _wait(handles: Sequence[_Handle], timeout: float) -> list[_Handle]:
    """Wait up to ``timeout`` s for the processes to exit; return those still running (bounded, no retries)."""
    deadline = time.monotonic() + timeout
    pending = list(handles)
    while True:
        pending = [h for h in pending if not h.exited()]
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return pending
        fds = [h.fd for h in pending if h.fd is not None]
        step = min(remaining, 0.05)
        if fds and len(fds) == len(pending):
            # A pidfd turns readable when its process exits: wake at once instead of sleeping blind.
            try:
                select.select(fds, [], [], step)
            except (OSError, ValueError):
                time.sleep(step)
        else:
            time.sleep(step)


def _survivor_result(handle: _Handle, sig: int, timeout: float) -> TargetResult:
    target = handle.target
    sent = tuple(handle.sent)
    if handle.status() == psutil.STATUS_DISK_SLEEP:
        return TargetResult(
            target,
            UNINTERRUPTIBLE,
            sent,
            f"pid {target.pid} is in uninterruptible sleep (D state): no signal acts on it until the kernel call "
            f"it waits on returns (often a hung disk or network filesystem)",
        )
    name = signal_name(sig)
    if sig == _SIGKILL:
        detail = f"pid {target.pid} survived SIGKILL for {timeout:g} s (stuck in the kernel)"
    else:
        detail = f"pid {target.pid} ignores {name} (still running after {timeout:g} s)"
    return TargetResult(target, SURVIVED, sent, detail)


def _exited_result(handle: _Handle, sig: int) -> TargetResult:
    """EXITED, naming the signal it exited after (not the SIGCONT that woke it)."""
    via = handle.sent[-1] if handle.sent else signal_name(sig)
    if via == "SIGCONT" and len(handle.sent) > 1:
        via = handle.sent[-2]
    pid = handle.target.pid
    return TargetResult(handle.target, EXITED, tuple(handle.sent), f"pid {pid} exited after {via}")


def _signal_and_wait(
    handles: Sequence[_Handle], sig: int, timeout: float, force: bool, results: dict[int, TargetResult]
) -> None:
    """Signal the open handles (SIGKILL to survivors with ``force``), wait, and fill in every result."""
    live: list[_Handle] = []
    for handle in handles:
        failed = _signal(handle, sig)
        if failed is not None:
            results[handle.target.pid] = failed
        else:
            live.append(handle)
    survivors = _wait(live, timeout)
    last_sig = sig
    if survivors and force and sig != _SIGKILL:
        last_sig = _SIGKILL
        killed: list[_Handle] = []
        for handle in survivors:
            failed = _signal(handle, _SIGKILL)
            if failed is not None and failed.result != GONE:
                results[handle.target.pid] = failed
            else:
                killed.append(handle)
        survivors = _wait(killed, timeout)
    for handle in live:
        pid = handle.target.pid
        if pid in results:
            continue
        if handle in survivors:
            results[pid] = _survivor_result(handle, last_sig, timeout)
        else:
            results[pid] = _exited_result(handle, sig)


def _rescan_verdict(
    plan: KillPlan, results: Sequence[TargetResult], rescan: Callable[[], Snapshot] | None, settle: float
) -> Verdict:
    """Re-scan after ``settle`` seconds and judge; without a re-scan, say what the results alone tell."""
    if rescan is None:
        return verdict_without_scan(plan, results)
    if settle > 0:
        time.sleep(settle)
    try:
        snap = rescan()
    except Exception as exc:  # noqa: BLE001 - the kill happened; only its check failed
        return Verdict(UNKNOWN, f"port {plan.label}: could not re-scan ({safe(type(exc).__name__)}: {safe(exc)})")
    return judge(plan, results, snap)


def execute(
    plan: KillPlan,
    sig: int = signal.SIGTERM,
    timeout: float = DEFAULT_TIMEOUT,
    rescan: Callable[[], Snapshot] | None = None,
    *,
    force: bool = False,
    settle: float = DEFAULT_SETTLE,
    clock: BootClock | None = None,
) -> KillOutcome:
    """Signal every target (identity re-checked first), wait up to ``timeout``, then re-scan the port.

    With ``force``, targets that survive ``sig`` get SIGKILL and another ``timeout``. Raises ValueError
    for a plan that is not actionable: refusals are never overridden here. ``clock``: see :func:`plan_kill`.
    """
    if not plan.actionable:
        raise ValueError("; ".join(plan.reasons()) or "nothing to signal")
    clock = system_clock() if clock is None else clock
    results: dict[int, TargetResult] = {}
    handles: list[_Handle] = []
    try:
        for target in plan.targets:
            handle, failed = _open(target, clock)
            if handle is None:
                assert failed is not None
                results[target.pid] = failed
            else:
                handles.append(handle)
        _signal_and_wait(handles, sig, timeout, force, results)
    finally:
        for handle in handles:
            handle.close()
    ordered = tuple(results[t.pid] for t in plan.targets)
    verdict = _rescan_verdict(plan, ordered, rescan, settle)
    return KillOutcome(plan=plan, signal=sig, results=ordered, verdict=verdict)
