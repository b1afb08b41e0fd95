"""Reading a process fresh for a kill: its identity, kernel threads, portmon's ancestry, permission to signal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psutil

from portmon.actions.kill.identity import BootClock
from portmon.collect.fdwalk import DIR_FLAGS, socket_fds
from portmon.collect.tables import TABLES, parse_proc_net
from portmon.textsafe import safe

IS_WINDOWS = sys.platform == "win32"
IS_LINUX = sys.platform.startswith("linux")


_PF_KTHREAD = 0x00200000
"""Linux task flag of kernel threads (include/linux/sched.h)."""

_MAX_ANCESTORS = 64

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcRead:
    """What planning reads about one pid, fresh from the OS."""

    create_time: float | None
    start_ticks: int | None
    """Start time in clock ticks since boot (Linux), read after the wall-clock one."""
    name: str | None
    user: str | None
    exe: str | None
    exe_known: bool
    cmdline: tuple[str, ...] | None
    status: str | None
    ppid: int | None
    uids: tuple[int, int, int] | None


def read_fresh(pid: int, clock: BootClock) -> ProcRead | None:
    """Read a process for planning; None when it does not exist (or is a zombie, which holds nothing)."""
    try:
        proc = psutil.Process(pid)
        created: float | None = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        # The identity cannot be confirmed without the start time; planning refuses such a pid.
        return ProcRead(None, None, None, None, None, False, None, None, None, None)
    gone = False

    def attempt(getter: Callable[[], T]) -> T | None:
        # One field at a time: a refused field stays None, a vanished process ends the read.
        nonlocal gone
        if gone:
            return None
        try:
            return getter()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            gone = True
        except (psutil.AccessDenied, KeyError, OSError):
            # KeyError: a uid with no passwd entry; OSError: an odd /proc entry. Either way: unknown.
            pass
        return None

    with proc.oneshot():
        status = attempt(proc.status)
        name = attempt(proc.name)
        user = attempt(proc.username)
        exe = attempt(proc.exe)
        cmdline = attempt(proc.cmdline)
        ppid = attempt(proc.ppid)
        uids = attempt(proc.uids) if hasattr(proc, "uids") else None
    if gone or status == psutil.STATUS_ZOMBIE:
        return None
    return ProcRead(
        create_time=created,
        start_ticks=clock.start_ticks(pid),
        name=name,
        user=user,
        exe=exe or None,
        exe_known=exe is not None,
        cmdline=tuple(cmdline) if cmdline is not None else None,
        status=status,
        ppid=ppid,
        uids=(uids.real, uids.effective, uids.saved) if uids is not None else None,
    )


def _linux_kthread_flag(pid: int) -> bool | None:
    """The PF_KTHREAD bit from /proc/PID/stat, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ") "; fields follow the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        flags = int(fields[6])
    except (IndexError, ValueError):
        return None
    return bool(flags & _PF_KTHREAD)


def is_kernel_thread(
    pid: int, ppid: int | None, exe: str | None, exe_known: bool, cmdline: Sequence[str] | None
) -> bool:
    """True for a kernel thread: kthreadd (pid 2) and its children on Linux, or no executable and no argv."""
    if IS_LINUX:
        flag = _linux_kthread_flag(pid)
        if flag is not None:
            return flag
        if pid == 2 or ppid == 2:
            return True
    # Only a successful read of "no exe and an empty argv" says kernel thread; a refused read says nothing.
    return exe_known and not exe and cmdline is not None and len(cmdline) == 0


def protected_pids() -> dict[int, str]:
    """portmon itself and every ancestor (shell, sudo, terminal, ...), pid -> safe name."""
    me = os.getpid()
    out: dict[int, str] = {me: "portmon itself"}
    try:
        proc: psutil.Process | None = psutil.Process(me)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        proc = None
    count = 0
    ppid = os.getppid() if hasattr(os, "getppid") else 0
    while proc is not None and count < _MAX_ANCESTORS:
        try:
            parent = proc.parent()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            break
        if parent is None:
            break
        try:
            pname = parent.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pname = "?"
        out.setdefault(parent.pid, safe(pname))
        proc = parent
        count += 1
    if ppid > 0:
        # The direct parent even when psutil could not walk the chain.
        out.setdefault(ppid, "?")
    return out


def invoking_user() -> str | None:
    """The human behind this run: SUDO_USER under sudo, else the effective user's name."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return None


def privileged() -> bool:
    """True when running as root (always on systems without uids)."""
    geteuid = getattr(os, "geteuid", None)
    return True if geteuid is None else geteuid() == 0


def may_signal(uids: tuple[int, int, int] | None) -> bool:
    """The POSIX rule: our real or effective uid equals the target's real or saved uid (or we are root)."""
    if uids is None or privileged() or not hasattr(os, "getuid"):
        return True
    mine = {os.getuid(), os.geteuid()}
    return uids[0] in mine or uids[2] in mine


def holds_socket(pid: int, inodes: frozenset[int]) -> bool | None:
    """Whether ``pid`` has an fd open on one of the socket ``inodes`` now (Linux's /proc/PID/fd).

    None when that cannot be told: no inodes known (the collector did not give them), not Linux, or the
    fds are not readable (another user's process, or it exited; signalling then says which).
    """
    if not inodes or not IS_LINUX:
        return None
    try:
        dfd = os.open(f"/proc/{pid}/fd", DIR_FLAGS)
    except OSError:
        return None
    try:
        fds, _ = socket_fds(dfd, os.listdir(dfd))
    except OSError:
        return None
    finally:
        os.close(dfd)
    return not inodes.isdisjoint(fds.values())


def socket_uids(inodes: frozenset[int], procfs: str = "/proc") -> dict[int, int]:
    """inode -> the uid the kernel records for that socket (its creator's), from /proc/net; {} off Linux."""
    if not inodes or not IS_LINUX:
        return {}
    found: dict[int, int] = {}
    for table in TABLES:
        try:
            with open(f"{procfs}/net/{table.filename}", "rb") as fh:
                rows = parse_proc_net(fh.read(), table)
        except OSError:
            continue
        found.update((row.inode, row.uid) for row in rows if row.inode in inodes)
    return found
