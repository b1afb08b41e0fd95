"""Small readers of /proc/PID for the ownership layer: stat, command line, environment, parent chain."""

from __future__ import annotations

import os
from typing import NamedTuple

_MAX_CHAIN = 64


class ProcInfo(NamedTuple):
    """What the ownership layer needs to know about one process."""

    pid: int
    ppid: int
    name: str
    """``comm``: the kernel's 15-character process name (untrusted text)."""
    start: int
    """Start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, its identity."""
    cmdline: tuple[str, ...] = ()


def _read(path: str, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_stat(pid: int, procfs: str = "/proc") -> tuple[str, int, int] | None:
    """(comm, parent pid, start ticks) of a process, or None when it is gone or unreadable."""
    try:
        data = _read(f"{procfs}/{pid}/stat", 4096)
        close = data.rindex(b")")
        name = data[data.index(b"(") + 1 : close].decode("utf-8", "replace")
        fields = data[close + 2 :].split()
        return name, int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def read_cmdline(pid: int, procfs: str = "/proc") -> tuple[str, ...]:
    """The argument vector of a process; () when it has none or cannot be read."""
    try:
        data = _read(f"{procfs}/{pid}/cmdline", 1 << 16)
    except OSError:
        return ()
    if not data:
        return ()
    return tuple(arg.decode("utf-8", "surrogateescape") for arg in data.rstrip(b"\0").split(b"\0"))


def read_proc(pid: int, procfs: str = "/proc") -> ProcInfo | None:
    """One process's stat fields and command line, or None when it is gone."""
    stat = read_stat(pid, procfs)
    if stat is None:
        return None
    name, ppid, start = stat
    return ProcInfo(pid, ppid, name, start, read_cmdline(pid, procfs))


def read_environ(pid: int, procfs: str = "/proc", keys: tuple[str, ...] | None = None) -> dict[str, str] | None:
    """A process's environment (only ``keys`` when given), or None when it may not be read (another user's)."""
    try:
        fd = os.open(f"{procfs}/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < 1 << 20:  # an environment is a few KiB; a megabyte is plenty
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
    wanted = None if keys is None else tuple(k.encode() + b"=" for k in keys)
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        if wanted is not None and not item.startswith(wanted):
            continue
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def parent_chain(pid: int, procfs: str = "/proc") -> tuple[ProcInfo, ...]:
    """The ancestors of a process, its parent first, up to and including pid 1 (what could be read)."""
    chain: list[ProcInfo] = []
    stat = read_stat(pid, procfs)
    if stat is None:
        return ()
    ppid = stat[1]
    seen = {pid}
    while ppid > 0 and ppid not in seen and len(chain) < _MAX_CHAIN:
        info = read_proc(ppid, procfs)
        if info is None:
            break
        chain.append(info)
        seen.add(ppid)
        ppid = info.ppid
    return tuple(chain)


def process_cwd(pid: int, procfs: str = "/proc") -> str | None:
    """A process's working directory, or None."""
    try:
        return os.readlink(f"{procfs}/{pid}/cwd")
    except OSError:
        return None
