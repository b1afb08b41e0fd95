"""Signalling a plan's targets: identity-checked handles (a pidfd where the platform has one), signals, the wait."""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from collections.abc import Callable, Sequence

import psutil

from portmon.actions.kill.judge import judge, verdict_without_scan
from portmon.actions.kill.model import (
    CHANGED,
    DENIED,
    EXITED,
    GONE,
    SURVIVED,
    UNINTERRUPTIBLE,
    UNKNOWN,
    KillOutcome,
    KillPlan,
    Target,
    TargetResult,
    Verdict,
)
from portmon.actions.kill.process import IS_LINUX, IS_WINDOWS, same_start
from portmon.actions.kill.signals import DEFAULT_SETTLE, DEFAULT_TIMEOUT, signal_name
from portmon.actions.kill.text import format_start
from portmon.model import Snapshot
from portmon.textsafe import safe

_SIGCONT: int | None = getattr(signal, "SIGCONT", None)
_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)

_HAVE_PIDFD = IS_LINUX and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


class _Handle:
    """A live, identity-checked reference to one target: a pidfd on Linux, a psutil.Process elsewhere."""

    def __init__(self, target: Target, proc: psutil.Process, fd: int | None) -> None:
        self.target = target
        self.proc = proc
        self.fd = fd
        self.sent: list[str] = []

    def send(self, sig: int) -> None:
        """Deliver a signal; ProcessLookupError when it is gone, PermissionError when refused."""
        _deliver(self, sig)
        self.sent.append(signal_name(sig))

    def exited(self) -> bool:
        """True when the process has exited (a zombie counts: it holds no sockets any more)."""
        if self.fd is not None:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0)
            except (OSError, ValueError):
                ready = []
            if ready:
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
        """Release the pidfd."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _deliver(handle: _Handle, sig: int) -> None:
    """Send one signal through the handle (patched in tests to fake a refusal)."""
    if handle.fd is not None:
        # The pidfd names exactly the process whose identity was checked: no pid-reuse race.
        signal.pidfd_send_signal(handle.fd, sig)
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
    try:
        still_same = handle.proc.is_running() and same_start(
            handle.target.identity.create_time, handle.proc.create_time()
        )
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        still_same = False
    except psutil.AccessDenied:
        still_same = True
    if not still_same:
        raise ProcessLookupError(errno.ESRCH, "the process has exited")
    os.kill(handle.target.pid, sig)


def _open(target: Target) -> tuple[_Handle | None, TargetResult | None]:
    """Open a handle on the target and confirm its identity; or the reason it will not be signalled."""
    pid = target.pid
    fd: int | None = None
    if _HAVE_PIDFD:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None, TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal")
        except OSError:
            fd = None  # an old kernel (ENOSYS) or a seccomp filter: fall back to the re-checked kill()

    def fail(result: TargetResult) -> tuple[_Handle | None, TargetResult | None]:
        if fd is not None:
            os.close(fd)
        return None, result

    # The start time is read after the pidfd is open: if it still matches, the pidfd is that process.
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return fail(TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal"))
    except psutil.AccessDenied:
        detail = f"pid {pid}: cannot confirm its identity (start time unreadable): not signalled"
        return fail(TargetResult(target, CHANGED, (), detail))
    if not same_start(target.identity.create_time, created):
        return fail(
            TargetResult(
                target,
                CHANGED,
                (),
                f"pid {pid} now belongs to a different process (started {format_start(created)}): not signalled",
            )
        )
    if zombie:
        return fail(TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal"))
    return _Handle(target, proc, fd), None


def _denied(target: Target) -> TargetResult:
    owner = safe(target.user or "another user")
    return TargetResult(
        target,
        DENIED,
        (),
        f"pid {target.pid}: permission denied, it belongs to {owner}; run portmon with sudo",
    )


def _signal(handle: _Handle, sig: int) -> TargetResult | None:
    """Send ``sig`` (and SIGCONT to a stopped process); a result only when it could not be sent."""
    target = handle.target
    try:
        stopped = handle.status() == psutil.STATUS_STOPPED
        handle.send(sig)
        if stopped and _SIGCONT is not None and sig != _SIGKILL:
            # A stopped process cannot act on SIGTERM (or its handler) until it runs again.
            handle.send(_SIGCONT)
    except ProcessLookupError:
        if handle.sent:
            return None
        return TargetResult(target, GONE, (), f"pid {target.pid} had already exited: nothing to signal")
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
) -> KillOutcome:
    """Signal every target (identity re-checked first), wait up to ``timeout``, then re-scan the port.

    With ``force``, targets that survive ``sig`` get SIGKILL and another ``timeout``. Raises ValueError
    for a plan that is not actionable: refusals are never overridden here.
    """
    if not plan.actionable:
        raise ValueError("; ".join(plan.reasons()) or "nothing to signal")
    results: dict[int, TargetResult] = {}
    handles: list[_Handle] = []
    try:
        for target in plan.targets:
            handle, failed = _open(target)
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
