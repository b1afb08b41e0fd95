"""Which process is which: start times on one clock (ticks since boot), and pidfds held from plan to signal.

A pid names a process only together with its start time. Linux counts start times in clock ticks
since boot (field 22 of /proc/PID/stat): exact and free of the wall clock. psutil's ``create_time()``
is ``btime + ticks / hz``, and ``btime`` (in /proc/stat) is the boot time rounded *down* to a whole
second, so a wall-clock start time can be up to a second before the process really started; compared
with ``time.time()`` it makes a process started just after a plan look older than the plan. So every
comparison here is in ticks where the kernel gives them, and the wall-clock fallback (other systems)
allows for that rounding explicitly.
"""

from __future__ import annotations

import math
import os
import select
import signal
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

IS_LINUX = sys.platform.startswith("linux")

HAVE_PIDFD = IS_LINUX and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
"""Whether pidfds can be opened and signalled here (Linux 5.3+, Python 3.9+); tests turn it off."""

BTIME_ROUNDING = 1.0
"""How much earlier than the truth a wall-clock start time can be: btime is rounded down to a whole second."""

WALL_CLOCK_SLACK = 0.01
"""Float noise between two wall-clock readings of one start time from one source (less than a tick)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A process as the user saw it: its pid and its start time (a reused pid has another start time)."""

    pid: int
    create_time: float | None
    """Wall-clock start time (seconds since the epoch), as shown to the user."""
    start_ticks: int | None = None
    """Start time in clock ticks since boot where the kernel gives it (Linux): what identity is checked on."""


def _read_stat(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _since_boot() -> float | None:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return None


def _read_btime() -> int | None:
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True, slots=True)
class BootClock:
    """Start times and "now" in clock ticks since boot, the kernel's own unit for process start times.

    Injected in tests to play a boot time with any fractional second. Where the kernel does not count
    this way (off Linux, no /proc) the tick methods return None and callers compare wall-clock times.
    """

    hz: int
    """Clock ticks per second (``SC_CLK_TCK``)."""
    btime: int | None
    """Boot time as /proc/stat's ``btime``: whole seconds since the epoch, rounded down."""
    since_boot: Callable[[], float | None]
    """Seconds since boot now, on the clock start times are taken from (``CLOCK_BOOTTIME``)."""
    read_stat: Callable[[int], bytes | None]
    """The bytes of /proc/PID/stat, or None when the process is gone or unreadable."""

    def start_ticks(self, pid: int) -> int | None:
        """When ``pid`` started, in ticks since boot (field 22 of its stat file); None when unknown."""
        data = self.read_stat(pid)
        if not data:
            return None
        # The command name is in parentheses and may itself hold ") "; the fields follow the last ")".
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            return int(fields[19])
        except (IndexError, ValueError):
            return None

    def now_ticks(self) -> int | None:
        """Ticks since boot now, rounded down as the kernel rounds start times; None when unknown."""
        seconds = self.since_boot()
        return None if seconds is None else math.floor(seconds * self.hz)

    def ticks_of(self, create_time: float | None) -> int | None:
        """A wall-clock start time computed as ``btime + ticks / hz`` (psutil, the procfs collector) back in ticks."""
        if create_time is None or self.btime is None:
            return None
        return round((create_time - self.btime) * self.hz)

    def identity(self, pid: int, create_time: float | None) -> Identity:
        """The identity of a process known by its wall-clock start time, with its ticks when they can be had."""
        return Identity(pid, create_time, self.ticks_of(create_time))


def system_clock() -> BootClock:
    """This system's clock: ticks from /proc on Linux; elsewhere a clock whose tick methods answer None."""
    if not IS_LINUX:
        return BootClock(hz=100, btime=None, since_boot=lambda: None, read_stat=lambda pid: None)
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return BootClock(hz=hz, btime=_read_btime(), since_boot=_since_boot, read_stat=_read_stat)


def same_process(expected: Identity, start_ticks: int | None, create_time: float | None) -> bool:
    """True when a process read now (its start ticks and wall-clock start time) is the one ``expected`` names.

    Ticks are compared exactly when both sides have them. Otherwise the wall-clock start times must agree:
    two readings of one process from one source do, to float noise.
    """
    if expected.start_ticks is not None and start_ticks is not None:
        return expected.start_ticks == start_ticks
    if expected.create_time is None or create_time is None:
        return False
    return abs(expected.create_time - create_time) <= WALL_CLOCK_SLACK


def same_start_time(a: float | None, b: float | None) -> bool:
    """True when two wall-clock start times from snapshots name the same start (both known)."""
    return a is not None and b is not None and abs(a - b) <= WALL_CLOCK_SLACK


def started_before(
    plan_ticks: int | None, plan_time: float, start_ticks: int | None, start_time: float | None
) -> bool:
    """True only when a process surely started before a plan stamped ``plan_ticks`` / ``plan_time``.

    In ticks (both known) that is exact: the kernel and the stamp both round down to a tick. On the
    wall clock a start time may read up to :data:`BTIME_ROUNDING` early, so only a start earlier than
    that counts. Unknown times never count as before.
    """
    if plan_ticks is not None and start_ticks is not None:
        return start_ticks < plan_ticks
    if not plan_time or start_time is None:
        return False
    return start_time < plan_time - BTIME_ROUNDING - WALL_CLOCK_SLACK


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class PidFd:
    """An open pidfd: signals sent through it reach that one process or fail, whatever pid reuse happens.

    Closed by :meth:`close`, or when it is garbage-collected.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._finalizer = weakref.finalize(self, _close, fd)

    @property
    def fd(self) -> int | None:
        """The descriptor, None once closed."""
        return self._fd if self._finalizer.alive else None

    def exited(self) -> bool:
        """True when the process has exited (its pidfd turns readable)."""
        fd = self.fd
        if fd is None:
            return False
        try:
            ready, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(ready)

    def send(self, sig: int) -> None:
        """Signal the process; ProcessLookupError once it has exited, PermissionError when refused."""
        fd = self.fd
        if fd is None:
            raise ProcessLookupError("the pidfd is closed")
        signal.pidfd_send_signal(fd, sig)

    def close(self) -> None:
        """Close the descriptor (once)."""
        self._finalizer()


def open_pidfd(pid: int) -> PidFd | None:
    """A pidfd on ``pid``, or None where there are none (old kernel, seccomp, out of descriptors).

    Raises ProcessLookupError when the process does not exist. Open it *before* checking the start
    time: if the start time then matches, the pidfd is that process.
    """
    if not HAVE_PIDFD:
        return None
    try:
        return PidFd(os.pidfd_open(pid))
    except ProcessLookupError:
        raise
    except OSError:
        return None
