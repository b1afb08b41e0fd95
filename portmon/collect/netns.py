"""Sockets of the host's other network namespaces (containers, ``ip netns``, ``unshare -n``), merged into each scan.

``NetnsCollector`` wraps the live collector, which sees portmon's own namespace only. As root it
also reads every other namespace's tables and labels their sockets with a :class:`NetnsRef`.

Finding the namespaces
    A process's namespace is the nsfs inode in ``readlink /proc/PID/ns/net`` ("net:[4026531840]"):
    one readlink per process. Namespaces come and go far less often than sockets, so the listing is
    kept and redone every ``every`` seconds (default 5), and sooner when it went stale: the process
    it reads a namespace through is gone, or a socket there has a holder the listing does not know.
    With no other namespace a scan adds one clock read to the inner collector's (the snapshot is
    passed through untouched).

Reading one
    Through sock_diag netlink in that namespace: a short-lived thread enters it (``setns``, which
    moves only the calling thread) and dumps the four tables there, with the namespace's own
    ``NetlinkReader`` kept for the next scan (its socket stays in the namespace it was made in).
    Either way the kernel walks the whole host's TCP hash for each TCP table, whatever namespace
    asks: measured with ~20,000 TCP sockets on the host, a namespace of 100 sockets costs ~16 ms
    this way (~8 ms per TCP table, the same as the host's own dump pays) against ~31 ms through
    ``/proc/PID/net/{tcp,tcp6,udp,udp6}`` of a process inside it. That text is the fallback (no
    ``setns``, netlink refused, or an injected procfs root in tests). The holders are found among
    that namespace's processes by their fds (host pids: portmon reads them as root). A
    namespace is labelled by the injected ``labeller`` (the ownership layer names the container or
    unit of its first process); without one, by its ``ip netns`` name if it has one.

Without root
    Other users' ``/proc/PID/ns/net`` cannot be read, nor their ``/proc/PID/net``: only the own
    namespace is shown. ``netns_note`` then says so, once, when there is a sign of another namespace
    (an ``ip netns`` name, or one of our own processes in another namespace); with no sign at all
    it stays quiet rather than repeating the same line on every command.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from portmon.collect.base import Collector, ServiceLookup, is_privileged, owner_note
from portmon.collect.holders import ProcessDetails
from portmon.collect.tables import TABLES, Decoded, NetlinkReader, ProcNetReader, Table, state_name
from portmon.model import Holder, NetnsRef, Snapshot, Socket

HOST_ONLY_NOTE = "only portmon's own network namespace is shown: run as root to see the others (containers)"

NETNS_CHOICES = ("all", "host")
"""``--netns``: every namespace (root), or portmon's own only."""

Labeller = Callable[[int, tuple[int, ...]], "str | None"]
"""``labeller(inode, pids) -> label``: what a namespace belongs to (untrusted text), or None."""


class Namespace(NamedTuple):
    """One network namespace and the processes in it (pids ascending)."""

    inode: int
    pids: tuple[int, ...]
    own: bool
    """Whether it is portmon's own namespace."""


def ns_inode(link: str) -> int | None:
    """The inode in a ``net:[4026531840]`` link text, or None."""
    if link.startswith("net:[") and link.endswith("]"):
        try:
            return int(link[5:-1])
        except ValueError:
            return None
    return None


def _read_ns(path: str) -> int | None:
    try:
        return ns_inode(os.readlink(path))
    except OSError:
        return None


def list_namespaces(procfs: str = "/proc") -> list[Namespace]:
    """Every network namespace some readable process is in, portmon's own first, then by lowest pid."""
    own = _read_ns(f"{procfs}/self/ns/net")
    found: dict[int, list[int]] = {}
    try:
        names = os.listdir(procfs)
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            ino = _read_ns(f"{procfs}/{name}/ns/net")
            if ino is not None:
                found.setdefault(ino, []).append(int(name))
    out = [Namespace(ino, tuple(sorted(pids)), ino == own) for ino, pids in found.items()]
    out.sort(key=lambda ns: (not ns.own, ns.pids[0]))
    return out


def named_namespaces(run_dir: str = "/run/netns") -> dict[int, str]:
    """``ip netns`` names by namespace inode (the files there are bind mounts of nsfs inodes)."""
    names: dict[int, str] = {}
    try:
        entries = sorted(os.listdir(run_dir))
    except OSError:
        return names
    for name in entries:
        try:
            ino = os.stat(os.path.join(run_dir, name)).st_ino
        except OSError:
            continue
        names.setdefault(ino, name)
    return names


def ip_netns_labeller(run_dir: str = "/run/netns") -> Labeller:
    """A labeller giving ``netns NAME`` for namespaces ``ip netns`` named (read at each listing)."""

    def label(inode: int, pids: tuple[int, ...]) -> str | None:
        name = named_namespaces(run_dir).get(inode)
        return f"netns {name}" if name is not None else None

    return label


FULL_WALK_EVERY = 30
"""Every this many reads of a namespace, all its processes' fds are read afresh (see NamespaceOwners)."""


class NamespaceOwners:
    """Which of one namespace's processes hold each socket inode, kept up to date cheaply between reads.

    The rules of the procfs collector's owner index, reduced: a process is read fully (a readlink per
    fd) when first seen and when its fd count (the size of /proc/PID/fd, Linux >= 6.2) changes; an
    fd that held a socket now gone from the tables is read again (the kernel gives a new socket the
    lowest free fd, usually that one); sockets nobody is known to hold make every process not read
    in this pass read fully, once per such socket; and every FULL_WALK_EVERY reads all are read
    afresh. A namespace of 30,000 steady sockets then costs a stat per process, not 30,000 readlinks.
    """

    def __init__(self, procfs: str) -> None:
        self._procfs = procfs
        self._fds: dict[tuple[int, int], int] = {}
        """(pid, fd) -> socket inode."""
        self._counts: dict[int, int] = {}
        """pid -> its fd count when last read fully."""
        self._searched: set[int] = set()
        """Inodes searched for in every process and not found (searched again at the next full walk)."""
        self._reads = 0
        self.readlinks = 0
        """readlink calls so far (for tests and benchmarks)."""

    def _fd_count(self, pid: int) -> int | None:
        try:
            return os.stat(f"{self._procfs}/{pid}/fd").st_size
        except OSError:
            return None

    def _walk(self, pid: int) -> None:
        """Read every fd of ``pid`` afresh."""
        for key in [k for k in self._fds if k[0] == pid]:
            del self._fds[key]
        fd_dir = f"{self._procfs}/{pid}/fd"
        self._counts[pid] = self._fd_count(pid) or 0
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return
        self.readlinks += len(fds)
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and fd.isdigit():
                self._fds[(pid, int(fd))] = int(target[8:-1])

    def update(self, pids: tuple[int, ...], present: set[int]) -> dict[int, list[int]]:
        """socket inode -> pids holding it (each pid once, ascending), for the inodes ``present`` in the tables."""
        self._reads += 1
        alive = set(pids)
        walked: set[int] = set()
        if self._reads % FULL_WALK_EVERY == 1 or FULL_WALK_EVERY == 1:
            self._fds.clear()
            self._counts.clear()
            self._searched.clear()
            for pid in pids:
                self._walk(pid)
            walked = alive
        else:
            for key in [k for k in self._fds if k[0] not in alive]:
                del self._fds[key]
            for pid in [p for p in self._counts if p not in alive]:
                del self._counts[pid]
            # An fd whose socket is gone: read again (a new socket usually takes its number).
            for key in [k for k, ino in self._fds.items() if ino not in present]:
                self.readlinks += 1
                try:
                    target = os.readlink(f"{self._procfs}/{key[0]}/fd/{key[1]}")
                except OSError:
                    target = ""
                if target.startswith("socket:["):
                    self._fds[key] = int(target[8:-1])
                else:
                    del self._fds[key]
            for pid in pids:
                count = self._fd_count(pid)
                if pid not in self._counts or count != self._counts[pid]:
                    self._walk(pid)
                    walked.add(pid)
            unknown = present - set(self._fds.values()) - self._searched
            if unknown:
                for pid in pids:
                    if pid not in walked:
                        self._walk(pid)
                walked = alive
        held = set(self._fds.values())
        self._searched = (self._searched & present) | (present - held)
        where: dict[int, list[int]] = {}
        shared = False
        for (pid, _fd), ino in self._fds.items():
            if ino in present:
                holders = where.get(ino)
                if holders is None:
                    where[ino] = [pid]
                elif pid not in holders:
                    holders.append(pid)
                    shared = True
        if shared:
            for holders in where.values():
                holders.sort()
        return where


class NamespaceRead(NamedTuple):
    """The sockets of one namespace, and why not all of them when something could not be read."""

    sockets: tuple[Socket, ...]
    error: str | None = None
    unknown: frozenset[int] = frozenset()
    """Inodes of sockets that should have a holder (not TIME_WAIT and the like) but have none in view."""


CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` names (os.setns from Python 3.12)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only when another namespace exists, and only before Python 3.12

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


Rows = list[tuple[Table, list[Decoded]]]
"""Each table's decoded rows: (local_addr, local_port, remote_addr, remote_port, state number, uid, inode)."""


def read_in_namespace(path: str, reader: NetlinkReader) -> Rows:
    """The four tables of the namespace at ``path`` (``/proc/PID/ns/net``) through ``reader``'s netlink socket,
    made in that namespace by a thread that entered it; OSError when it cannot be entered or read."""
    result: list[Rows] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            rows: Rows = []
            for ti, table in enumerate(TABLES):
                try:
                    decoded = reader.read_decoded(table)
                except OSError:
                    if ti in (1, 3):  # IPv6 disabled in that namespace
                        continue
                    raise
                rows.append((table, decoded))
            result.append(rows)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    # This thread alone enters the namespace, and ends there: the caller's threads stay where they are.
    worker = threading.Thread(target=work, name="portmon-netns", daemon=True)
    worker.start()
    worker.join()
    if failure:
        exc = failure[0]
        raise exc if isinstance(exc, OSError) else OSError(str(exc))
    return result[0]


class NamespaceReader:
    """Reads namespaces' tables through /proc/PID/net and names their holders as the procfs collector does."""

    def __init__(self, procfs: str = "/proc", services: ServiceLookup | None = None) -> None:
        self._procfs = procfs
        self._details = ProcessDetails(procfs)
        self._info = self._details.info()
        self._services = services
        self._netlink: dict[int, NetlinkReader] = {}
        """Per namespace inode, the reader whose netlink socket was made in that namespace."""
        self._procnet: set[int] = set()
        """Namespaces netlink could not read: read through /proc/PID/net."""
        self._owners: dict[int, NamespaceOwners] = {}
        """Per namespace inode, who holds its sockets."""
        self._built: dict[int, list[dict[Decoded, Socket]]] = {}
        """Per namespace inode and table, the socket built for each row last time: reused while its holders stay."""

    def _start(self, pid: int) -> float | None:
        """The process's start time in seconds since boot (field 22 of /proc/PID/stat), or None."""
        try:
            with open(f"{self._procfs}/{pid}/stat", "rb") as f:
                stat = f.read()
            return int(stat[stat.rindex(b")") + 2 :].split(None, 20)[19]) / self._details.clock_ticks
        except (OSError, ValueError, IndexError):
            return None

    def _holder(self, pid: int, memo: dict[int, Holder]) -> Holder:
        found = memo.get(pid)
        if found is None:
            started = self._start(pid)
            found = memo[pid] = Holder(pid) if started is None else self._info(pid, started)
        return found

    def read(self, ns: Namespace, ref: NetnsRef) -> NamespaceRead:
        """The TCP and UDP sockets of ``ns``, labelled ``ref``, with their holders among its processes."""
        rows: Rows | None = None
        error = None
        if self._procfs == "/proc" and ns.inode not in self._procnet:
            reader = self._netlink.get(ns.inode)
            if reader is None:
                reader = self._netlink[ns.inode] = NetlinkReader()
            for pid in ns.pids:
                try:
                    rows = read_in_namespace(f"/proc/{pid}/ns/net", reader)
                    break
                except FileNotFoundError:
                    continue  # that process is gone: another one of the namespace will do
                except OSError:
                    # setns or sock_diag refused here: /proc/PID/net for this namespace from now on.
                    self._procnet.add(ns.inode)
                    reader.close()
                    del self._netlink[ns.inode]
                    break
        if rows is None:
            rows, error = self._read_procnet(ns, ref)
        if rows is None:
            return NamespaceRead((), error or f"no process to read the tables of {ref} through")
        return self._sockets(ns, ref, rows, error)

    def forget(self, keep: set[int]) -> None:
        """Close the netlink sockets of namespaces not in ``keep`` (gone since the last listing)."""
        for inode in [i for i in self._netlink if i not in keep]:
            self._netlink.pop(inode).close()
        self._procnet &= keep
        for cache in (self._owners, self._built):
            for inode in [i for i in cache if i not in keep]:
                del cache[inode]

    def _read_procnet(self, ns: Namespace, ref: NetnsRef) -> tuple[Rows | None, str | None]:
        """The tables as /proc/PID/net text of a process in the namespace (see the module doc)."""
        error = None
        for pid in ns.pids:
            reader = ProcNetReader(f"{self._procfs}/{pid}")
            rows: Rows = []
            try:
                for ti, table in enumerate(TABLES):
                    try:
                        keys = reader.read(table)
                    except FileNotFoundError:
                        if ti == 0:
                            raise
                        continue  # IPv6 disabled in that namespace
                    rows.append((table, reader.decode_all(table, keys)))
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                error = f"cannot read the tables of {ref} through pid {pid}: {reason}"
                continue
            return rows, None
        return None, error

    def _sockets(self, ns: Namespace, ref: NetnsRef, rows: Rows, error: str | None) -> NamespaceRead:
        owners = self._owners.get(ns.inode)
        if owners is None:
            owners = self._owners[ns.inode] = NamespaceOwners(self._procfs)
        present = {row[6] for _table, decoded in rows for row in decoded if row[6]}
        memo: dict[int, Holder] = {}
        # One holders tuple per distinct set of pids: sockets of one process share it.
        sets: dict[tuple[int, ...], tuple[Holder, ...]] = {}
        holders_of: dict[int, tuple[Holder, ...]] = {}
        for ino, pids in owners.update(ns.pids, present).items():
            key = tuple(pids)
            hs = sets.get(key)
            if hs is None:
                hs = sets[key] = tuple(self._holder(pid, memo) for pid in key)
            holders_of[ino] = hs
        holders = holders_of.get
        services = self._services
        last = self._built.get(ns.inode) or [{} for _ in TABLES]
        built: list[dict[Decoded, Socket]] = [{} for _ in TABLES]
        out: list[Socket] = []
        append = out.append
        unknown: set[int] = set()
        for table, decoded in rows:
            proto = table.proto
            ti = TABLES.index(table)
            was = last[ti].get
            now = built[ti]
            for row in decoded:
                inode = row[6]
                hs = holders(inode, ()) if inode else ()
                sock = was(row)
                if sock is None or (sock.holders != hs and sock.holders is not hs) or sock.netns != ref:
                    laddr, lport, raddr, rport, state_no, _uid, _ino = row
                    state = state_name(state_no, proto == "tcp")
                    sock = Socket(
                        proto,
                        table.family,
                        laddr,
                        lport,
                        raddr,
                        rport,
                        state,
                        hs,
                        None if hs else owner_note(state, True),
                        inode,
                        services(lport, proto) if services and lport else None,
                        services(rport, proto) if services and rport else None,
                        netns=ref,
                    )
                if not hs and inode and sock.owner_note != "kernel":
                    unknown.add(inode)
                now[row] = sock
                append(sock)
        self._built[ns.inode] = built
        return NamespaceRead(tuple(out), error, frozenset(unknown))


class NetnsCollector:
    """``inner``'s snapshot of portmon's namespace plus, as root, the sockets of every other one (module doc).

    ``netns``: "all" (the default) or "host" (the inner collector alone, and no note). Anything else
    the inner collector offers (``start_cold_walk``, ``table_source``, ...) passes through.
    """

    def __init__(
        self,
        inner: Collector,
        netns: str = "all",
        *,
        services: ServiceLookup | None = None,
        labeller: Labeller | None = None,
        procfs: str = "/proc",
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        privileged: Callable[[], bool] = is_privileged,
        run_dir: str = "/run/netns",
    ) -> None:
        if netns not in NETNS_CHOICES:
            raise ValueError(f"unknown --netns {netns!r}: expected all or host")
        self._inner = inner
        self.name = inner.name
        self.netns = netns
        self._procfs = procfs.rstrip("/") or "/"
        self._labeller = labeller or ip_netns_labeller(run_dir)
        self._run_dir = run_dir
        self._every = every
        self._clock = clock
        self._privileged = privileged
        self._reader = NamespaceReader(self._procfs, services)
        self._listed_at: float | None = None
        self._foreign: list[tuple[Namespace, NetnsRef]] = []
        self._unknown: frozenset[int] = frozenset()
        self._note: str | None = None
        self._note_checked = False
        self.listings = 0
        """How many times the namespaces were listed (for tests and benchmarks)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def netns_note(self) -> str | None:
        """Without root, one line saying other namespaces are not shown, when there is a sign of one (module doc)."""
        if self.netns == "host" or self._privileged():
            return None
        if not self._note_checked:
            self._note_checked = True
            own = _read_ns(f"{self._procfs}/self/ns/net")
            spaces = list_namespaces(self._procfs)
            named = named_namespaces(self._run_dir)
            if any(not ns.own for ns in spaces) or any(ino != own for ino in named):
                self._note = HOST_ONLY_NOTE
        return self._note

    def _relist(self) -> None:
        self.listings += 1
        self._listed_at = self._clock()
        self._foreign = [
            (ns, NetnsRef(ns.inode, self._labeller(ns.inode, ns.pids)))
            for ns in list_namespaces(self._procfs)
            if not ns.own
        ]
        self._reader.forget({ns.inode for ns, _ in self._foreign})

    def _stale(self) -> bool:
        if self._listed_at is None or self._clock() - self._listed_at >= self._every:
            return True
        procfs = self._procfs
        return any(not os.path.exists(f"{procfs}/{ns.pids[0]}") for ns, _ in self._foreign)

    def scan(self) -> Snapshot:
        """The inner scan, with every other namespace's sockets appended (as root, unless ``netns`` is "host")."""
        snap = self._inner.scan()
        if self.netns == "host" or not self._privileged():
            return snap
        started = time.perf_counter()
        if self._stale():
            self._relist()
        if not self._foreign:
            return snap
        return self._merge(snap, started)

    def _merge(self, snap: Snapshot, started: float) -> Snapshot:
        extra: list[Socket] = []
        errors: list[str] = []
        unknown: set[int] = set()
        for ns, ref in self._foreign:
            got = self._reader.read(ns, ref)
            extra.extend(got.sockets)
            unknown |= got.unknown
            if got.error:
                errors.append(got.error)
        if unknown - self._unknown:
            # A holder the listing does not know (a process that joined the namespace since): list again.
            self._listed_at = None
        self._unknown = frozenset(unknown)
        warning = snap.warning
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            warning = "; ".join(w for w in (warning, errors[0] + more) if w)
        return snap._replace(
            sockets=snap.sockets + tuple(extra),
            scan_ms=snap.scan_ms + (time.perf_counter() - started) * 1000.0,
            warning=warning,
            extra=snap.extra + (("netns", str(len(self._foreign) + 1)),),
        )


def with_namespaces(
    inner: Collector,
    netns: str = "all",
    services: ServiceLookup | None = None,
    labeller: Labeller | None = None,
) -> Collector:
    """``inner`` wrapped in a :class:`NetnsCollector` on Linux (where /proc/self/ns/net exists), else ``inner``."""
    if netns not in NETNS_CHOICES:
        raise ValueError(f"unknown --netns {netns!r}: expected all or host")
    if not os.path.exists("/proc/self/ns/net"):
        return inner
    return NetnsCollector(inner, netns, services=services, labeller=labeller)
