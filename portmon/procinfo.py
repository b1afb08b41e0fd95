"""Read everything the detail pane shows about one process, degrading field by field."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import psutil

IDENTITY_TOLERANCE = 0.5
"""Seconds two start times may differ and still name the same process (clock rounding)."""

_MAX_ANCESTORS = 64
_CACHE_SIZE = 64

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcessDetail:
    """What could be read about one process; None marks a field that could not be read."""

    pid: int
    name: str | None = None
    exe: str | None = None
    cmdline: tuple[str, ...] | None = None
    """The argument vector; () for a process without one (kernel thread, zombie)."""
    cwd: str | None = None
    user: str | None = None
    create_time: float | None = None
    ppid: int | None = None
    ancestors: tuple[tuple[int, str | None], ...] = ()
    """(pid, name) of the parent, its parent, ... up to pid 1."""
    cpu_percent: float | None = None
    """CPU use since the previous read of the same process; None on the first read."""
    rss: int | None = None
    """Resident memory in bytes."""
    threads: int | None = None
    status: str | None = None
    error: str | None = None
    """Set when the process could not be read at all (exited, or the pid now names another process)."""
    denied: tuple[str, ...] = field(default=())
    """Fields left None because reading them was not permitted (another user's process)."""


# Process objects are kept per (pid, start time) so cpu_percent() measures since the last read.
_procs: OrderedDict[tuple[int, float], psutil.Process] = OrderedDict()
_lock = threading.Lock()


def _cached_process(pid: int) -> tuple[psutil.Process, float, bool]:
    """A psutil.Process for pid, its start time, and whether it was seen before (raises NoSuchProcess)."""
    import psutil  # deferred import: psutil is ~15 ms of the live monitor's start, needed only once a row is opened
    proc = psutil.Process(pid)
    created = proc.create_time()
    key = (pid, created)
    with _lock:
        cached = _procs.get(key)
        if cached is not None:
            _procs.move_to_end(key)
            return cached, created, True
        _procs[key] = proc
        while len(_procs) > _CACHE_SIZE:
            _procs.popitem(last=False)
    return proc, created, False


def _ancestors(proc: psutil.Process) -> tuple[tuple[int, str | None], ...]:
    import psutil  # deferred import (see _cached_process)

    chain: list[tuple[int, str | None]] = []
    try:
        parent = proc.parent()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ()
    while parent is not None and len(chain) < _MAX_ANCESTORS:
        try:
            name: str | None = parent.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            name = None
        chain.append((parent.pid, name))
        if parent.pid <= 1:
            break
        try:
            parent = parent.parent()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            break
    return tuple(chain)


def read_process(pid: int, create_time: float | None = None) -> ProcessDetail:
    """Read one process for the detail pane; never raises for a missing or forbidden process.

    With ``create_time`` (from the socket's Holder), a pid that now belongs to a different process
    is reported as an identity mismatch instead of showing the wrong process.
    """
    import psutil  # deferred import (see _cached_process)

    try:
        proc, created, seen = _cached_process(pid)
    except psutil.ZombieProcess:
        return ProcessDetail(pid=pid, status=psutil.STATUS_ZOMBIE, cmdline=(), error=f"process {pid} is a zombie")
    except psutil.NoSuchProcess:
        return ProcessDetail(pid=pid, error=f"process {pid} has exited")
    except psutil.AccessDenied:
        return ProcessDetail(pid=pid, error=f"not permitted to read process {pid}")
    if create_time is not None and abs(created - create_time) > IDENTITY_TOLERANCE:
        return ProcessDetail(
            pid=pid,
            create_time=created,
            error=f"pid {pid} now belongs to a different process (the socket's owner has exited)",
        )
    denied: list[str] = []
    gone = False

    def read(label: str, getter: Callable[[], T]) -> T | None:
        nonlocal gone
        if gone:
            return None
        try:
            return getter()
        except psutil.AccessDenied:
            denied.append(label)
        except psutil.ZombieProcess:
            pass
        except psutil.NoSuchProcess:
            gone = True
        return None

    with proc.oneshot():
        name = read("name", proc.name)
        status = read("status", proc.status)
        exe = read("exe", proc.exe)
        raw_cmdline = read("cmdline", proc.cmdline)
        cwd = read("cwd", proc.cwd)
        user = read("user", proc.username)
        ppid = read("ppid", proc.ppid)
        cpu = read("cpu", lambda: proc.cpu_percent(interval=None))
        memory = read("memory", proc.memory_info)
        threads = read("threads", proc.num_threads)
    if gone:
        return ProcessDetail(pid=pid, name=name, create_time=created, error=f"process {pid} has exited")
    ancestors = _ancestors(proc)
    return ProcessDetail(
        pid=pid,
        name=name,
        exe=exe or None,
        cmdline=tuple(raw_cmdline) if raw_cmdline is not None else None,
        cwd=cwd,
        user=user,
        create_time=created,
        ppid=ppid,
        ancestors=ancestors,
        # The first cpu_percent() call only starts the measurement; its 0.0 means nothing.
        cpu_percent=cpu if seen else None,
        rss=memory.rss if memory is not None else None,
        threads=threads,
        status=status,
        denied=tuple(denied),
    )


def command_line(pid: int, create_time: float | None = None) -> tuple[str, ...] | None:
    """The argument vector of ``pid`` (() for a kernel thread or zombie), or None when it cannot be read.

    With ``create_time``, None too when the pid now belongs to another process.
    """
    import psutil  # deferred import (see _cached_process)

    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > IDENTITY_TOLERANCE:
            return None
        return tuple(proc.cmdline())
    except psutil.ZombieProcess:
        return ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


ProcessReader = Callable[[int, float | None], ProcessDetail]
"""How the UI reads a process: :func:`read_process`, or a fake in tests and screenshots."""


def uptime_text(seconds: float) -> str:
    """How long a process has run, compactly: ``42s``, ``5m 03s``, ``3h 07m``, ``9d 4h``."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
