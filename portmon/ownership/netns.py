"""Sockets of every network namespace on the host (containers, ``ip netns``, ``unshare -n``), as root.

The distinct namespaces come from ``/proc/*/ns/net`` (the nsfs inode names one). Each namespace's
tables are read from ``/proc/PID/net/{tcp,tcp6,udp,udp6}`` of a process inside it, which show that
process's namespace, with the decoders of ``portmon.collect.tables``; the holders are found among
that namespace's processes by their fds. A namespace is labelled with its ``ip netns`` name, or the
container or unit its first process's cgroup names. Without root only the host namespace can be
read: the caller gets an empty list and a one-line note.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from portmon.collect.base import is_privileged
from portmon.collect.tables import TABLES, TCP_STATE_NAMES, ProcNetReader
from portmon.model import Holder, Socket
from portmon.ownership.cgroup import parse_cgroup, read_cgroup
from portmon.ownership.proc import read_stat

HOST_ONLY_NOTE = "only portmon's own network namespace is shown: run as root to see other namespaces (containers)"


class NetNs(NamedTuple):
    """One network namespace and the processes in it."""

    inode: int
    """The nsfs inode: what ``ip netns identify`` and ``lsns`` print as its id."""
    pids: tuple[int, ...]
    own: bool
    """Whether it is portmon's own namespace."""
    label: str | None = None
    """``ip netns`` name, or the container / unit of its first process (untrusted text)."""


class NetnsSockets(NamedTuple):
    """The sockets of one namespace."""

    netns: NetNs
    sockets: tuple[Socket, ...]
    error: str | None = None


class NetnsScan(NamedTuple):
    """Every namespace read, and a note when some could not be."""

    namespaces: tuple[NetnsSockets, ...]
    note: str | None = None


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def named_namespaces(run_dir: str = "/run/netns") -> dict[int, str]:
    """``ip netns`` names by namespace inode."""
    names: dict[int, str] = {}
    try:
        entries = os.listdir(run_dir)
    except OSError:
        return names
    for name in entries:
        ino = _ns_inode(os.path.join(run_dir, name))
        if ino is not None:
            names.setdefault(ino, name)
    return names


def _label(pids: tuple[int, ...], names: dict[int, str], ino: int, procfs: str) -> str | None:
    if ino in names:
        return f"netns {names[ino]}"
    for pid in pids[:3]:
        text = read_cgroup(pid, procfs)
        ms = parse_cgroup(text) if text else ()
        if ms:
            return ms[0].label
    return None


def list_namespaces(procfs: str = "/proc", run_dir: str = "/run/netns") -> list[NetNs]:
    """Every network namespace some visible process is in, portmon's own first."""
    own = _ns_inode(f"{procfs}/self/ns/net")
    found: dict[int, list[int]] = {}
    for name in os.listdir(procfs):
        if not name.isdigit():
            continue
        ino = _ns_inode(f"{procfs}/{name}/ns/net")
        if ino is not None:
            found.setdefault(ino, []).append(int(name))
    names = named_namespaces(run_dir)
    out = []
    for ino, pids in found.items():
        pids.sort()
        out.append(NetNs(ino, tuple(pids), ino == own, _label(tuple(pids), names, ino, procfs)))
    out.sort(key=lambda ns: (not ns.own, ns.pids[0]))
    return out


def _socket_holders(pids: tuple[int, ...], procfs: str) -> dict[int, list[int]]:
    """socket inode -> pids holding it, among ``pids``."""
    where: dict[int, list[int]] = {}
    for pid in pids:
        fd_dir = f"{procfs}/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        seen: set[int] = set()
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                ino = int(target[8:-1])
                if ino not in seen:
                    seen.add(ino)
                    where.setdefault(ino, []).append(pid)
    return where


def _holder_factory(procfs: str) -> Callable[[int], Holder]:
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        ticks = 100
    btime = 0.0
    try:
        with open(f"{procfs}/stat", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("btime "):
                    btime = float(line.split()[1])
    except OSError:
        pass
    memo: dict[int, Holder] = {}

    def holder(pid: int) -> Holder:
        if pid not in memo:
            stat = read_stat(pid, procfs)
            user = None
            try:
                with open(f"{procfs}/{pid}/status", encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        if line.startswith("Uid:"):
                            user = _user(int(line.split()[1]))
                            break
            except (OSError, ValueError, IndexError):
                pass
            memo[pid] = Holder(pid, stat[0] if stat else None, user,
                               btime + stat[2] / ticks if stat else None)
        return memo[pid]

    return holder


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def read_namespace(ns: NetNs, procfs: str = "/proc") -> NetnsSockets:
    """The TCP and UDP sockets of one namespace, with the holders among its processes."""
    reader = None
    error = None
    for pid in ns.pids:
        candidate = ProcNetReader(procfs=f"{procfs}/{pid}")
        try:
            candidate.read_bytes(TABLES[0])
        except OSError as exc:
            error = f"cannot read the tables of namespace {ns.inode} through pid {pid}: {exc.strerror or exc}"
            continue
        reader = candidate
        break
    if reader is None:
        return NetnsSockets(ns, (), error or "no process to read it through")
    holders_of = _socket_holders(ns.pids, procfs)
    holder = _holder_factory(procfs)
    sockets: list[Socket] = []
    for table in TABLES:
        try:
            keys = reader.read(table)
        except FileNotFoundError:
            continue  # IPv6 disabled
        except OSError as exc:
            return NetnsSockets(ns, tuple(sockets), f"{table.filename}: {exc.strerror or exc}")
        for laddr, lport, raddr, rport, state, _uid, inode in reader.decode_all(table, keys):
            name = TCP_STATE_NAMES.get(state, f"UNKNOWN_{state:02X}") if table.proto == "tcp" else None
            hs = tuple(holder(pid) for pid in holders_of.get(inode, ()))
            sockets.append(Socket(table.proto, table.family, laddr, lport, raddr, rport, name, hs, None, inode))
    return NetnsSockets(ns, tuple(sockets))


def scan_namespaces(
    procfs: str = "/proc", *, include_own: bool = False, privileged: bool | None = None
) -> NetnsScan:
    """The sockets of every other network namespace (and portmon's own with ``include_own``), root only."""
    if not (is_privileged() if privileged is None else privileged):
        return NetnsScan((), HOST_ONLY_NOTE)
    out = [read_namespace(ns, procfs) for ns in list_namespaces(procfs) if include_own or not ns.own]
    errors = [n.error for n in out if n.error]
    return NetnsScan(tuple(out), f"{len(errors)} namespace(s) could not be read fully: {errors[0]}" if errors else None)
