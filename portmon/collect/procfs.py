"""The fast Linux collector: kernel socket tables read directly, owners resolved incrementally from /proc.

Socket tables
    Read through sock_diag netlink (what ``ss`` uses) when it answers, else by parsing
    /proc/net/{tcp,tcp6,udp,udp6}. Chosen by measurement (2-core VM, 10,000 loopback sockets):
    all four tables through netlink in ~11 ms, through /proc/net in ~35 ms (the kernel formats
    every row as text, ~2 us a row, before Python parses it). A table whose netlink dump fails
    falls back to /proc/net for good; with an injected procfs root (tests) only /proc/net files
    under that root are read. Each row becomes an opaque key; a key seen in the previous scan
    maps straight to the previous ``Socket`` object, so an unchanged socket costs one dict
    lookup and only new keys are decoded. Request sockets (half-open connections), which netlink
    reports in the kernel's NEW_SYN_RECV state, are shown as SYN_RECV, as /proc/net, ss and psutil say.

Owners: which processes hold each socket inode
    The collector keeps, per process (pid + start time), the socket inode behind each of its
    fds, and per inode the pids holding it. Every scan lists /proc and, per process, stats
    /proc/PID/fd (its size is the open-fd count on Linux >= 6.2) and reads /proc/PID/stat for
    the start time and parent pid (~10 us a process). Then, cheapest evidence first:

    1. A process not seen before (a new pid, or a known pid with a new start time: a reused pid
       never inherits the old process's inodes) is walked fully: a readlink of every fd.
    2. A process whose fd count changed is walked by difference: list its fd numbers, readlink
       the new numbers, forget the gone ones. This also sees a holder closing its copy of a
       shared socket, and a socket received over a unix socket.
    3. The fds that held sockets now gone from the tables (or whose row changed: a state change,
       or an inode number reused) are read again. The kernel hands out the lowest free fd, so a
       process that closes and opens sockets between two scans puts the new ones exactly there:
       1 % churn in a process holding 10,000 sockets costs ~200 readlinks, not 10,000.
    4. A new socket held only by processes new in this scan may also be held by the parent that
       opened it before forking: the parent's fd of the same number is read.
    5. Sockets with an inode no process is known to hold are searched for: readable processes
       not yet walked in this scan, the socket's uid first, then smallest fd tables first,
       stopping when none is left. A first search reads at most 2,000 fds (a socket no cheaper
       rule found usually belongs to a process that exited or closed it while we looked, and a
       full search at 50,000 sockets costs more than a scan); one still unknown at the next scan
       gets a full search, then an inode nobody holds is marked owner-less (``owner_note``:
       kernel, or hidden when not root) until its row changes. Unprivileged, sockets of other
       uids are not searched for: other users' processes cannot be read.

    Processes that are gone are dropped with their inodes; cached process details (name, user)
    are per (pid, start time), read from /proc/PID/{stat,status,cmdline} exactly as psutil would
    give them (psutil itself is not imported: it is ~13 ms of a one-shot ``list``).

Periodic full rescan
    What the rules above can miss: a process that swaps one fd for another without changing its
    fd count (closes a file and receives a known socket; dup2 over a shared socket; on kernels
    before 6.2 any change in a known process that does not show in the tables), and a socket
    first seen between accept() and its fd being installed (marked owner-less). So every
    process is also walked fully once every ``full_rescan_every`` scans, default 30: at the
    usual 1 s interval such a drift lasts about 30 s, while the rescan costs on average 1/30
    of a full walk per scan (a full walk reads ~250,000 fds/s here: ~7 ms per scan at 50,000
    sockets). The walks are spread by pid (process p when ``(scan + p) % N == 0``), and a
    process with more than 4,096 fds is listed on its turn and re-read 4,096 fds per scan, so
    the rescan never adds more than ~20 ms to one scan, however the sockets are spread. The
    service-name memo is cleared on the same period. ``full_rescan_every=1`` makes every scan
    a fresh full scan (what the tests compare the incremental answer with).

Cold walk in a child process (one-shot commands)
    The first scan has to readlink every fd of every process: ~35 ms at 10,000 sockets, nearly
    all of it in the kernel. A forked child (``portmon.collect.fdwalk.ColdWalk``) can do that walk while
    this process reads and decodes the socket tables: the ``portmon`` command starts one before
    it imports anything (``portmon.cli.launch``) and hands it over with ``start_cold_walk(walk)``,
    which can also fork one itself. The first scan then takes the child's answer (per process:
    start time, fd numbers, socket fds) instead of walking, for every process whose pid and
    start time match its own listing, and walks any other process itself; a child that failed
    leaves it to walk as usual. Forking is only safe in a process with one thread, so only the
    one-shot commands (``list``, ``who``, ``why``) use it; the live monitor's first scan walks
    in-process. Either way a big fd table is read by number when the kernel gives its fd count
    (``portmon.collect.fdwalk.read_fd_table``).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Union, cast

from portmon.collect.base import ServiceLookup, is_privileged, owner_note
from portmon.collect.fdwalk import DIR_FLAGS, ColdProcess, ColdWalk, read_fd_table, start_and_parent
from portmon.collect.tables import TABLES, TCP_STATE_NAMES, Decoded, NetlinkReader, ProcNetReader, Table
from portmon.model import OWNER_HIDDEN, Holder, Snapshot, Socket

_Reader = Union[NetlinkReader, ProcNetReader]

HolderInfo = Callable[[int, float], Holder]
"""``holder_info(pid, start_seconds_since_boot) -> Holder``: name and user of a process."""

_GONE = (FileNotFoundError, ProcessLookupError)
_MISSING = object()
_SEARCH_BUDGET = 2000
"""fd reads a first search for an unknown socket may spend (~8 ms here)."""
_RESCAN_CHUNK = 4096
"""The periodic rescan of big fd tables reads at most this many fds per scan (~16 ms here)."""
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def _program_name(cmdline: str) -> str:
    """The program's base name from a /proc/PID/cmdline text, split as psutil splits it ("" if empty)."""
    if not cmdline:
        return ""
    sep = "\x00" if cmdline.endswith("\x00") else " "
    if cmdline.endswith(sep):
        cmdline = cmdline[:-1]
    args = cmdline.split(sep)
    # A NUL-terminated command line whose arguments are separated by spaces (setproctitle).
    if sep == "\x00" and len(args) == 1 and " " in cmdline:
        args = cmdline.split(" ")
    return os.path.basename(args[0])


class _Proc:
    """What the collector knows about one process (one pid + start time)."""

    __slots__ = (
        "pid", "start", "nfds", "uid", "fds", "inos", "names", "holder", "single", "readable", "ppid", "gained",
        "solo", "queue",
    )

    def __init__(self, pid: int, start: int, nfds: int, uid: int) -> None:
        self.pid = pid
        self.start = start
        self.nfds = nfds
        """fd count when last walked (-1: never walked, or counts unsupported)."""
        self.uid = uid
        self.fds: dict[str, int] = {}
        """fd number -> socket inode, for socket fds only."""
        self.inos: dict[int, int] = {}
        """socket inode -> how many of this process's fds refer to it."""
        self.names: set[str] = set()
        """All fd numbers (as listed) at the last walk."""
        self.holder: Holder | None = None
        self.single: tuple[Holder] | None = None
        """``(holder,)``, shared by every socket this process alone holds."""
        self.readable = True
        self.ppid = 0
        self.gained = 0
        """Scan number when a walk last found a socket new to this process."""
        self.solo = frozenset((pid,))
        """The holder set of every socket this process alone holds (one object for all of them)."""
        self.queue: list[str] = []
        """fd numbers still to re-read in a rescan spread over several scans (big fd tables)."""


class ProcfsCollector:
    """Linux collector: sock_diag or /proc/net for the sockets, /proc/PID/fd for the owners (see module doc)."""

    name = "procfs"

    def __init__(
        self,
        services: ServiceLookup | None = None,
        full_rescan_every: int = 30,
        procfs: str = "/proc",
        tables: str = "auto",
        holder_info: HolderInfo | None = None,
    ) -> None:
        """``tables``: "auto" (netlink when it works and ``procfs`` is the real /proc), "netlink" or "procnet"."""
        if full_rescan_every < 1:
            raise ValueError("full_rescan_every must be >= 1")
        if tables not in ("auto", "netlink", "procnet"):
            raise ValueError(f"unknown table source {tables!r}: expected auto, netlink or procnet")
        self._services = services
        self._every = full_rescan_every
        self._procfs = procfs.rstrip("/") or "/"
        self._procnet = ProcNetReader(self._procfs)
        self._netlink: NetlinkReader | None = None
        if tables == "netlink" or (tables == "auto" and self._procfs == "/proc"):
            self._netlink = NetlinkReader()
        self._force_netlink = tables == "netlink"
        self._readers: list[_Reader] = [self._netlink or self._procnet for _ in TABLES]
        self._caches: list[dict[tuple, Socket | None]] = [{} for _ in TABLES]
        """Per table: key -> the socket built for it (None only while a scan fills in new keys)."""
        self._procs: dict[int, _Proc] = {}
        self._where: dict[int, frozenset[int]] = {}
        """socket inode -> pids holding it (immutable: most inodes share their process's ``solo``)."""
        self._holders: dict[frozenset[int], tuple[Holder, ...]] = {}
        """pids -> their holders tuple, for this scan only (a pid may name another process next time)."""
        self._unowned: set[int] = set()
        """Inodes a full search did not find a holder for (until their row changes)."""
        self._pending: dict[int, int] = {}
        """inode -> uid of sockets a budgeted search did not find: searched in full next scan."""
        self._dirty: set[int] = set()
        self._orphans: set[int] = set()
        self._port_names: Callable[[str], dict[int, str]] | None = getattr(services, "port_names", None)
        """``services.port_names(proto)`` when the lookup offers it (a Registry does): the memo starts full."""
        self._svc: dict[str, dict[int, str | None]] = self._service_memo()
        """proto -> port -> service name, as ``services`` said (cleared on the rescan period)."""
        self._scan = 0
        self._privileged: bool | None = None
        self._counts = self._fd_counts_work()
        self._clock_ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._holder_info = holder_info or (self._native_holder if self._procfs == "/proc" else self._procfs_holder)
        self._users: dict[int, str | None] = {}
        """uid -> user name (cleared on the rescan period)."""
        self._boot_time: float | None = None
        self._stats: dict[str, int] = {}
        self._rescanning: set[int] = set()
        """Processes whose periodic rescan is being read in chunks."""
        self._parallel = (os.cpu_count() or 1) > 1
        self._cold: ColdWalk | None = None
        """A cold walk started for the first scan and not yet taken."""
        self._prefetched: dict[int, ColdProcess] = {}
        """What the cold walk found, for the first scan's walks (emptied as they take it)."""

    def start_cold_walk(self, walk: ColdWalk | None = None) -> bool:
        """Have the first scan take a cold walk's answer (see the module doc): ``walk``, one already
        started, or else one forked now. True when the scan will take it.

        Call it only before the first scan; without ``walk``, only from a process with a single
        thread (it forks). After the first scan, or with an injected procfs root, a given walk
        is cancelled and False returned.
        """
        if self._scan != 0 or self._cold is not None or self._procfs != "/proc":
            if walk is not None:
                walk.cancel()
            return False
        if walk is None:
            if not hasattr(os, "fork"):
                return False
            walk = ColdWalk(self._procfs)
        self._cold = walk
        return True

    @staticmethod
    def available() -> bool:
        """True on Linux with a readable /proc/net/tcp."""
        if not sys.platform.startswith("linux"):
            return False
        try:
            with open("/proc/net/tcp", "rb") as f:
                f.read(1)
        except OSError:
            return False
        return True

    @property
    def table_source(self) -> str:
        """Where the TCP/IPv4 table was last read from: "netlink" or "procnet"."""
        return getattr(self._readers[0], "name", "?")

    def _fd_counts_work(self) -> bool:
        # /proc/PID/fd reports the open fd count as its size since Linux 6.2; before, it is 0.
        # We always hold some fds, so a size of 0 for ourselves means the kernel does not count.
        if self._procfs != "/proc":
            return False
        try:
            return os.stat(f"/proc/{os.getpid()}/fd").st_size > 0
        except OSError:
            return False

    # ----- scanning

    def scan(self) -> Snapshot:
        """Take a snapshot; raises when /proc/net/tcp (or /proc itself) cannot be read."""
        try:
            return self._scan_once()
        except BaseException:
            # A scan that stopped half way may have changed holders without rebuilding the sockets
            # that show them: start the next one from fresh sockets (the process map stays valid).
            self._caches = [{} for _ in TABLES]
            raise

    def _scan_once(self) -> Snapshot:
        started = time.perf_counter()
        taken = time.time()
        self._scan += 1
        scan_no = self._scan
        self._stats = stats = {"full_walks": 0, "diff_walks": 0, "fd_reads": 0, "searched": 0}
        privileged = is_privileged()
        if privileged != self._privileged:
            # Owner notes depend on privilege: rebuild every socket once if it ever changes.
            self._privileged = privileged
            self._caches = [{} for _ in TABLES]
        if scan_no % self._every == 0:
            self._svc = self._service_memo()
            self._users = {}

        # 1. The tables: every key that maps to a socket of the last scan is reused as is.
        out: list[Socket | None] = []
        misses: list[list[tuple[int, tuple]]] = [[] for _ in TABLES]
        """Per table: (position in ``out``, key) of every key not seen in the last scan."""
        all_keys: list[list[tuple]] = []
        new_caches: list[dict[tuple, Socket | None] | None] = []
        dropped_inodes: set[int] = set()
        for ti, table in enumerate(TABLES):
            keys = self._read_table(ti, table)
            all_keys.append(keys)
            cache = self._caches[ti]
            base = len(out)
            if len(keys) == len(cache) and all(map(cache.__contains__, keys)):
                out.extend(map(cache.__getitem__, keys))
                new_caches.append(None)
                continue
            if not cache:  # a first scan (or one after a fault): every key is new
                socks: list[Socket | None] = [None] * len(keys)
                misses[ti] = list(enumerate(keys, base))
                fresh: dict[tuple, Socket | None] = dict.fromkeys(keys)
                out.extend(socks)
                new_caches.append(fresh)
                continue
            get = cache.get
            socks = [get(k) for k in keys]
            misses[ti] = [(base + j, keys[j]) for j, s in enumerate(socks) if s is None]
            out.extend(socks)
            fresh = dict(zip(keys, socks))
            for k in cache.keys() - fresh.keys():
                old = cache[k]
                if old is not None:
                    dropped_inodes.add(old.inode)
            new_caches.append(fresh)

        # The new keys are decoded before any process is walked, while a cold walk's child may
        # still be reading fds.
        decoded = [
            self._readers[ti].decode_all(table, [key for _, key in misses[ti]]) if misses[ti] else []
            for ti, table in enumerate(TABLES)
        ]
        # inode -> uid of every new socket (decoded rows end with uid, inode).
        miss_inodes: dict[int, int] = {row[6]: row[5] for rows in decoded for row in rows if row[6]}
        dropped_inodes.discard(0)
        vanished = dropped_inodes - miss_inodes.keys()
        for ino in dropped_inodes:
            # Under a new key it may be a new socket with a reused number: the old mark is void.
            self._unowned.discard(ino)
            self._pending.pop(ino, None)

        # 2. The owners (see the module docstring for the rules).
        self._dirty = set()
        self._orphans = set()
        walked: set[int] = set()
        new: set[int] = set()
        changed = self._refresh_processes(scan_no, walked, new)
        self._prefetched = {}
        if self._cold is not None:  # no process needed a walk: the answer is not wanted any more
            self._cold.cancel()
            self._cold = None
        for proc in changed:
            self._walk_diff(proc, scan_no)
        if dropped_inodes:
            # Also an inode that is still there under a new key: usually a state change, but it may
            # be a reused inode number, so the fds that held it are read again (one readlink each).
            self._probe(dropped_inodes, walked, scan_no)
        if new and miss_inodes:
            self._probe_parents(miss_inodes.keys(), new, walked, scan_no)
        present: set[int] | None = None
        unknown: dict[int, int] = {}
        for ino, uid in miss_inodes.items():
            if ino not in self._where and ino not in self._unowned:
                unknown[ino] = uid
        for ino, uid in self._pending.items():
            if ino not in self._where:
                unknown[ino] = uid
        if self._orphans:
            present = self._present(all_keys)
            for ino in self._orphans:
                if ino in present and ino not in self._where and ino not in self._unowned:
                    unknown.setdefault(ino, -1)
        if unknown and not privileged:
            # Other users' processes cannot be read: their sockets stay hidden without a search.
            me = os.geteuid()
            for ino in [i for i, uid in unknown.items() if uid != me]:
                self._unowned.add(ino)
                del unknown[ino]
        if unknown:
            # A full search for a socket seen for the first time is often futile (its process
            # exited, or it closed while we looked) and at 50k sockets costs more than a scan:
            # the first time, only a budget of fd reads goes to the smallest processes.
            full = not unknown.keys().isdisjoint(self._pending)
            exhausted = self._search(unknown, walked, scan_no, None if full else _SEARCH_BUDGET)
            for ino, uid in unknown.items():
                if exhausted:
                    self._unowned.add(ino)
                    self._pending.pop(ino, None)
                else:
                    self._pending[ino] = uid
        if self._pending:
            self._pending = {i: u for i, u in self._pending.items() if i not in self._where and i not in self._unowned}
        if len(self._unowned) > 2 * (len(out) + 1024):
            self._unowned &= present if present is not None else self._present(all_keys)

        # 3. Sockets: decode the new keys, rebuild reused sockets whose holders changed.
        holders_of = self._holders_of
        dirty = self._dirty
        self._holders = {}
        for ti, table_misses in enumerate(misses):
            if table_misses:
                filled = new_caches[ti]
                assert filled is not None  # a table with misses always gets a fresh cache
                self._build(TABLES[ti], table_misses, decoded[ti], out, filled, privileged)
        sockets = cast("list[Socket]", out)  # every miss is filled in now
        stale = dirty - miss_inodes.keys()
        if stale:
            for pos, sock in enumerate(sockets):
                if sock.inode in stale:
                    hs = holders_of(sock.inode)
                    if hs != sock.holders:
                        sockets[pos] = self._with_holders(sock, hs, privileged)
            # Rebuilt sockets must replace the cached ones, so refresh every cache.
            new_caches = [dict(zip(keys, sockets[b : b + len(keys)])) for keys, b in self._spans(all_keys)]
        for ti, replacement in enumerate(new_caches):
            if replacement is not None:
                self._caches[ti] = replacement
        sockets = self._number_duplicates(sockets)
        hidden = 0 if privileged else sum(1 for s in sockets if s.owner_note == OWNER_HIDDEN)
        stats["sockets"] = len(sockets)
        stats["new_sockets"] = sum(map(len, misses))
        return Snapshot(
            sockets=tuple(sockets),
            taken_at=taken,
            scan_ms=(time.perf_counter() - started) * 1000.0,
            hidden_owners=hidden,
            collector=self.name,
            extra=(("tables", self.table_source),) + tuple((k, str(v)) for k, v in stats.items()),
        )

    def _read_table(self, ti: int, table: Table) -> list[tuple]:
        reader = self._readers[ti]
        if isinstance(reader, NetlinkReader):
            try:
                return reader.read(table)
            except OSError:
                if self._force_netlink:
                    raise
                # This table (or netlink itself) is refused here: read /proc/net from now on.
                self._readers[ti] = self._procnet
                self._caches[ti] = {}
        try:
            return self._procnet.read(table)
        except FileNotFoundError:
            if table.family == 6:
                return []  # IPv6 disabled
            raise

    @staticmethod
    def _spans(all_keys: list[list[tuple]]) -> list[tuple[list[tuple], int]]:
        spans = []
        base = 0
        for keys in all_keys:
            spans.append((keys, base))
            base += len(keys)
        return spans

    def _present(self, all_keys: list[list[tuple]]) -> set[int]:
        present: set[int] = set()
        for ti, keys in enumerate(all_keys):
            inode = self._readers[ti].inode
            present.update(map(inode, keys))
        return present

    # ----- processes

    def _refresh_processes(self, scan_no: int, walked: set[int], new: set[int]) -> list[_Proc]:
        """Stat every process; walk new and due ones fully (adding them to ``walked``, new ones to
        ``new`` too); return the ones whose fd count changed."""
        procfs = self._procfs
        procs = self._procs
        counts = self._counts
        every = self._every
        seen: set[int] = set()
        changed: list[_Proc] = []
        # Every process is stat'ed before any is walked: with a cold walk pending, the stats run
        # while its child still reads fds (the first walk waits for the child's answer).
        listed: list[tuple[int, os.stat_result | None, int, int]] = []
        for name in os.listdir(procfs):
            if not name.isdigit():
                continue
            try:
                st = os.stat(f"{procfs}/{name}/fd")
                start, ppid = self._identity(name)
            except _GONE:
                continue
            except (PermissionError, NotADirectoryError):
                st = None
                try:
                    start, ppid = self._identity(name)
                except OSError:
                    continue
            except OSError:
                continue
            listed.append((int(name), st, start, ppid))
        for pid, st, start, ppid in listed:
            seen.add(pid)
            nfds = st.st_size if (st is not None and counts) else -1
            proc = procs.get(pid)
            if proc is not None and proc.start != start:
                self._drop(proc)
                proc = None
            if proc is None:
                proc = procs[pid] = _Proc(pid, start, -1, st.st_uid if st is not None else -1)
                proc.ppid = ppid
                if self._walk_full(proc, nfds, scan_no):
                    walked.add(pid)
                    new.add(pid)
                continue
            if (scan_no + pid) % every == 0:
                # Its turn in the rolling full rescan (also retries a process we could not read).
                size = nfds if nfds >= 0 else len(proc.names)
                if proc.readable and size > _RESCAN_CHUNK and every > 1:
                    # A big fd table is re-read over several scans, so its turn is no spike:
                    # list it now (new and gone fd numbers), re-read the rest in chunks.
                    if nfds >= 0:
                        proc.nfds = nfds
                    self._walk_diff(proc, scan_no)
                    proc.queue = list(proc.names)
                    self._rescanning.add(pid)
                elif self._walk_full(proc, nfds, scan_no):
                    walked.add(pid)
            elif not proc.readable:
                continue
            elif nfds >= 0 and nfds != proc.nfds:
                proc.nfds = nfds
                changed.append(proc)
        for pid in [p for p in procs if p not in seen]:
            self._drop(procs[pid])
        budget = _RESCAN_CHUNK
        for pid in sorted(self._rescanning):
            proc = procs.get(pid)
            if proc is None or not proc.queue or pid in walked:
                self._rescanning.discard(pid)
                continue
            if budget <= 0:
                break
            chunk = proc.queue[-budget:]
            del proc.queue[-budget:]
            budget -= len(chunk)
            self._reread(proc, chunk, scan_no)
        return changed

    def _identity(self, name: str) -> tuple[int, int]:
        """(start time in clock ticks since boot, parent pid) of process ``name``."""
        return start_and_parent(self._procfs, name)

    def _drop(self, proc: _Proc) -> None:
        for ino in proc.inos:
            self._unhold(ino, proc.pid)
        proc.fds = {}
        proc.inos = {}
        if self._procs.get(proc.pid) is proc:
            del self._procs[proc.pid]

    def _hold(self, ino: int, pid: int) -> None:
        pids = self._where.get(ino)
        if pids is None:
            proc = self._procs.get(pid)
            self._where[ino] = proc.solo if proc is not None else frozenset((pid,))
        elif pid not in pids:
            self._where[ino] = pids | {pid}
        self._dirty.add(ino)

    def _unhold(self, ino: int, pid: int) -> None:
        pids = self._where.get(ino)
        if pids is not None and pid in pids:
            if len(pids) == 1:
                del self._where[ino]
                self._orphans.add(ino)
            else:
                self._where[ino] = pids - {pid}
        self._dirty.add(ino)

    def _open_fd_dir(self, proc: _Proc) -> int | None:
        try:
            return os.open(f"{self._procfs}/{proc.pid}/fd", DIR_FLAGS)
        except _GONE:
            self._drop(proc)
        except (PermissionError, NotADirectoryError):
            proc.readable = False
        except OSError:
            pass
        return None

    def _walk_full(self, proc: _Proc, nfds: int, scan_no: int) -> bool:
        """Readlink every fd of ``proc``; False when it cannot be read (gone or not ours)."""
        if self._cold is not None:
            # The first walk of a scan with a cold walk pending: take the child's answer.
            self._prefetched = self._cold.result() or {}
            self._cold = None
        cold = self._prefetched.pop(proc.pid, None) if self._prefetched else None
        if cold is not None and cold[0] == proc.start:
            # The cold walk's child read this very process (same pid, same start time).
            if cold[1] is None or cold[2] is None:
                proc.readable = False
                return False
            names, fds = cold[1], cold[2]
            # Its fds may have changed between the child's listing and our stat: -1 makes the next
            # scan list them again rather than trust a count taken after the listing.
            nfds = -1
        else:
            dfd = self._open_fd_dir(proc)
            if dfd is None:
                return False
            try:
                names, fds = read_fd_table(dfd, os.fstat(dfd).st_size if self._counts else -1, self._parallel)
            except _GONE:
                self._drop(proc)
                return False
            except PermissionError:
                proc.readable = False
                return False
            finally:
                os.close(dfd)
        self._stats["full_walks"] += 1
        self._stats["fd_reads"] += len(names)
        inos = dict(Counter(fds.values()))
        old = proc.inos
        pid = proc.pid
        if old:
            for ino in old.keys() - inos.keys():
                self._unhold(ino, pid)
        gained = inos.keys() - old.keys() if old else inos.keys()
        if gained:
            where = self._where
            solo = proc.solo
            for ino in gained:
                pids = where.get(ino)
                if pids is None:
                    where[ino] = solo
                elif pid not in pids:
                    where[ino] = pids | solo
            self._dirty.update(gained)
            proc.gained = scan_no
        proc.fds = fds
        proc.inos = inos
        proc.names = set(names)
        proc.nfds = nfds
        proc.readable = True
        return True

    def _set_fd(self, proc: _Proc, fd: str, ino: int, scan_no: int) -> None:
        """Record that ``fd`` of ``proc`` now refers to socket ``ino`` (0: not a socket / closed)."""
        old = proc.fds.get(fd)
        if old == ino or (old is None and not ino):
            return
        if old is not None:
            left = proc.inos[old] - 1
            if left:
                proc.inos[old] = left
            else:
                del proc.inos[old]
                self._unhold(old, proc.pid)
        if ino:
            proc.fds[fd] = ino
            if ino in proc.inos:
                proc.inos[ino] += 1
            else:
                proc.inos[ino] = 1
                self._hold(ino, proc.pid)
                proc.gained = scan_no
        else:
            del proc.fds[fd]

    def _read_fds(self, proc: _Proc, dfd: int, names: list[str], scan_no: int) -> list[str]:
        """Readlink ``names`` of ``proc`` and record what they are now; returns the ones now closed."""
        readlink = os.readlink
        gone = []
        for name in names:
            try:
                link = readlink(name, dir_fd=dfd)
            except _GONE:
                gone.append(name)
                link = ""
            except OSError:
                continue
            self._set_fd(proc, name, int(link[8:-1]) if link.startswith("socket:[") else 0, scan_no)
        self._stats["fd_reads"] += len(names)
        return gone

    def _walk_diff(self, proc: _Proc, scan_no: int) -> None:
        """A process whose fd count changed: read the fd numbers that are new, forget the gone ones."""
        dfd = self._open_fd_dir(proc)
        if dfd is None:
            return
        try:
            names = set(os.listdir(dfd))
            for name in proc.names - names:
                self._set_fd(proc, name, 0, scan_no)
            self._read_fds(proc, dfd, list(names - proc.names), scan_no)
        except _GONE:
            self._drop(proc)
            return
        except PermissionError:
            proc.readable = False
            return
        finally:
            os.close(dfd)
        proc.names = names
        self._stats["diff_walks"] += 1

    def _probe(self, inodes: set[int], walked: set[int], scan_no: int) -> None:
        """Re-read the fds that held ``inodes`` (sockets gone from the tables: new ones usually land there)."""
        pids: set[int] = set()
        where = self._where
        for ino in inodes:
            holders = where.get(ino)
            if holders:
                pids.update(holders)
        for pid in sorted(pids - walked):
            proc = self._procs.get(pid)
            if proc is not None:
                self._reread(proc, [fd for fd, ino in proc.fds.items() if ino in inodes], scan_no)

    def _reread(self, proc: _Proc, names: list[str], scan_no: int) -> None:
        """Readlink the given fds of ``proc`` again (forgetting those now closed)."""
        dfd = self._open_fd_dir(proc)
        if dfd is None:
            return
        try:
            proc.names.difference_update(self._read_fds(proc, dfd, names, scan_no))
        finally:
            os.close(dfd)

    def _probe_parents(self, inodes: Collection[int], new: set[int], walked: set[int], scan_no: int) -> None:
        """A new socket held only by processes new in this scan was probably opened by a parent just
        before it forked: read the parent's fd of the same number (a fork keeps fd numbers)."""
        procs = self._procs
        where = self._where
        asks: dict[int, set[str]] = {}
        for pid in new:
            child = procs.get(pid)
            parent = procs.get(child.ppid) if child is not None else None
            if child is None or parent is None or parent.pid in walked or not parent.readable:
                continue
            for fd, ino in child.fds.items():
                if ino in inodes and where[ino] <= new:
                    asks.setdefault(parent.pid, set()).add(fd)
        for ppid, names in sorted(asks.items()):
            parent = procs.get(ppid)
            dfd = self._open_fd_dir(parent) if parent is not None else None
            if parent is None or dfd is None:
                continue
            try:
                gone = self._read_fds(parent, dfd, sorted(names), scan_no)
            finally:
                os.close(dfd)
            parent.names.update(names.difference(gone))

    def _search(self, unknown: dict[int, int], walked: set[int], scan_no: int, budget: int | None) -> bool:
        """Walk processes until every inode in ``unknown`` has a holder, cheapest and likeliest first.

        Found inodes are removed from ``unknown``. With a ``budget``, stops before reading more
        than that many fds. True when no readable process is left unwalked, i.e. whatever is
        still unknown has no holder we can see.
        """
        uids = set(unknown.values())
        candidates = [p for p in self._procs.values() if p.readable and p.pid not in walked and p.nfds != 0]
        # Same uid as the socket first, then small fd tables (a socket that no cheaper rule found
        # is rarely in a process holding thousands), then the ones that gained sockets lately.
        # Without fd counts (Linux < 6.2), the size at the last walk is the estimate.
        size = {p.pid: p.nfds if p.nfds >= 0 else len(p.names) for p in candidates}
        candidates.sort(key=lambda p: (p.uid not in uids, size[p.pid], -p.gained, p.pid))
        spent = 0
        for proc in candidates:
            if budget is not None and spent + size[proc.pid] > budget:
                return False
            if not self._walk_full(proc, proc.nfds, scan_no):
                continue
            walked.add(proc.pid)
            spent += len(proc.names)
            self._stats["searched"] += 1
            for ino in [i for i in unknown if i in self._where]:
                del unknown[ino]
            if not unknown:
                return False
        return True

    # ----- sockets

    def _holders_of(self, ino: int) -> tuple[Holder, ...]:
        where = self._where.get(ino) if ino else None
        if not where:
            return ()
        hs = self._holders.get(where)
        return hs if hs is not None else self._holders_of_pids(where)

    def _holders_of_pids(self, where: frozenset[int]) -> tuple[Holder, ...]:
        hs: tuple[Holder, ...]
        if len(where) == 1:
            proc = self._procs[next(iter(where))]
            if proc.single is None:
                proc.single = (self._holder(proc),)
            hs = proc.single
        else:
            pids = sorted(where)
            # psutil names the highest pid holding a socket; the rest follow by pid (see model.Socket).
            order = [pids[-1]] + pids[:-1]
            hs = tuple(self._holder(self._procs[p]) for p in order)
        # Most inodes share their process's ``solo`` set: one lookup (its hash is cached) per socket.
        self._holders[where] = hs
        return hs

    def _holder(self, proc: _Proc) -> Holder:
        if proc.holder is None:
            proc.holder = self._holder_info(proc.pid, proc.start / self._clock_ticks)
        return proc.holder

    def _native_holder(self, pid: int, started: float) -> Holder:
        """Name, user and start time of a process from /proc, as psutil gives them, without psutil.

        (Importing psutil is ~13 ms of a one-shot ``list``.) The name is the kernel's, cut to 15
        characters, unless the command line's program name begins with it; the user is the real
        uid's name (its number when it has none); the start time is /proc/PID/stat's in seconds
        since the epoch. A process we cannot read, or that is not the one we met, gets pid only.
        """
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read()
            close = stat.rindex(b")")
            ticks = int(stat[close + 2 :].split(None, 20)[19])
        except (OSError, ValueError, IndexError):
            return Holder(pid=pid)
        if ticks / self._clock_ticks != started:
            return Holder(pid=pid)  # the pid was reused since we listed it: say nothing
        created = started + self._boot()
        name = stat[stat.find(b"(") + 1 : close].decode(_FS_ENCODING, _FS_ERRORS)
        if len(name) >= 15:
            # Text mode, as psutil reads it (newlines are translated).
            try:
                with open(f"{base}/cmdline", encoding=_FS_ENCODING, errors=_FS_ERRORS) as f:
                    cmdline = f.read()
            except PermissionError:
                cmdline = ""
            except OSError:
                return Holder(pid=pid, create_time=created)  # gone since
            program = _program_name(cmdline)
            if program.startswith(name):
                name = program
        return Holder(pid=pid, name=name, user=self._user(base), create_time=created)

    def _user(self, base: str) -> str | None:
        """The name of the real uid in ``base``/status (None when unreadable)."""
        try:
            with open(f"{base}/status", "rb") as f:
                status = f.read()
            at = status.index(b"\nUid:\t") + 6
            uid = int(status[at : status.index(b"\t", at)])
        except (OSError, ValueError):
            return None
        user = self._users.get(uid)
        if user is None:
            import pwd

            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            self._users[uid] = user
        return user

    def _boot(self) -> float:
        """Boot time in seconds since the epoch (``btime`` in /proc/stat), read once."""
        if self._boot_time is None:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime"):
                        self._boot_time = float(line.split()[1])
                        break
                else:
                    raise OSError("no btime line in /proc/stat")
        return self._boot_time

    def _procfs_holder(self, pid: int, started: float) -> Holder:
        """Name from /proc/PID/stat under an injected procfs root (tests); no user lookup."""
        try:
            with open(f"{self._procfs}/{pid}/stat", "rb") as f:
                data = f.read()
            name: str | None = data[data.index(b"(") + 1 : data.rindex(b")")].decode("utf-8", "replace")
        except (OSError, ValueError):
            name = None
        return Holder(pid=pid, name=name, create_time=started)

    def _service_memo(self) -> dict[str, dict[int, str | None]]:
        """A fresh proto -> port -> service name memo: every named port when the lookup can list
        them (then a port missing from it has no name), else empty."""
        if self._services and self._port_names is not None:
            return {"tcp": dict(self._port_names("tcp")), "udp": dict(self._port_names("udp"))}
        return {"tcp": {}, "udp": {}}

    def _service(self, port: int, proto: str) -> str | None:
        memo = self._svc[proto]
        if port in memo:
            return memo[port]
        name = memo[port] = self._services(port, proto) if self._services else None
        return name

    def _build(
        self,
        table: Table,
        table_misses: list[tuple[int, tuple]],
        decoded: list[Decoded],
        out: list[Socket | None],
        cache: dict[tuple, Socket | None],
        privileged: bool,
    ) -> None:
        """Decode the new keys of one table into sockets, at their places in ``out`` and in ``cache``.

        The hot path of a cold scan (10,000 sockets: ~25 ms): everything it needs per socket is a local.
        """
        proto = table.proto
        family = table.family
        tcp = proto == "tcp"
        names = TCP_STATE_NAMES
        where_of = self._where.get
        known = self._holders.get
        holders_of_pids = self._holders_of_pids
        services = self._services
        service = self._service
        memo: Callable[..., str | None] = self._svc[proto].get
        complete = self._port_names is not None
        miss = _MISSING
        for (pos, key), (laddr, lport, raddr, rport, state_no, _uid, ino) in zip(table_misses, decoded):
            state = (names.get(state_no) or f"UNKNOWN_{state_no:02X}") if tcp else None
            where = where_of(ino) if ino else None
            hs = (known(where) or holders_of_pids(where)) if where else ()
            if complete:
                lsvc = memo(lport)
                rsvc = None if rport is None else memo(rport)
            elif services:
                lsvc = memo(lport, miss)
                if lsvc is miss:
                    lsvc = service(lport, proto)
                rsvc = None
                if rport is not None:
                    rsvc = memo(rport, miss)
                    if rsvc is miss:
                        rsvc = service(rport, proto)
            else:
                lsvc = rsvc = None
            # Positional: this is the hot path of a cold scan (tests pin the field order).
            sock = Socket(
                proto,
                family,
                laddr,
                lport,
                raddr,
                rport,
                state,
                hs,
                None if hs else owner_note(state, privileged),
                ino,
                lsvc,  # type: ignore[arg-type]
                rsvc,  # type: ignore[arg-type]
            )
            out[pos] = sock
            cache[key] = sock

    @staticmethod
    def _with_holders(sock: Socket, hs: tuple[Holder, ...], privileged: bool) -> Socket:
        return sock._replace(holders=hs, owner_note=None if hs else owner_note(sock.state, privileged))

    @staticmethod
    def _number_duplicates(sockets: list[Socket]) -> list[Socket]:
        """Give ``seq`` 1, 2, ... to sockets without an inode that share every other key field."""
        zero = [i for i, s in enumerate(sockets) if not s.inode]
        if len(zero) < 2:
            return sockets
        seen: dict[tuple, int] = {}
        for i in zero:
            s = sockets[i]
            ident = (s.proto, s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port)
            n = seen.get(ident, 0)
            seen[ident] = n + 1
            if n != s.seq:
                sockets[i] = s._replace(seq=n)
        return sockets
