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

Where each part lives
    ``tablecache`` reads the tables and remembers the socket of each key, ``owners`` keeps the
    owner index and applies the rules above, ``sockets`` builds the ``Socket`` values and
    ``holders`` reads a holder's name and user; this class runs one scan through them.

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
from itertools import compress
from operator import attrgetter
from typing import cast

from portmon.collect.base import ServiceLookup, is_privileged
from portmon.collect.fdwalk import ColdWalk
from portmon.collect.holders import HolderInfo, ProcessDetails
from portmon.collect.owners import OwnerIndex
from portmon.collect.sockets import SocketBuilder, number_duplicates
from portmon.collect.tablecache import TableCache, TableRead
from portmon.collect.tables import TABLES
from portmon.model import OWNER_HIDDEN, Snapshot, Socket

__all__ = ["HolderInfo", "ProcfsCollector"]

_INODE = attrgetter("inode")


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
        counters: bool = True,
    ) -> None:
        """``tables``: "auto" (netlink when it works and ``procfs`` is the real /proc), "netlink" or "procnet".

        ``counters``: read each TCP socket's tcp_info (bytes, RTT, retransmits) with the tables.
        """
        if full_rescan_every < 1:
            raise ValueError("full_rescan_every must be >= 1")
        self._procfs = procfs.rstrip("/") or "/"
        self._tables = TableCache(self._procfs, tables, counters)
        self._every = full_rescan_every
        self._owners = OwnerIndex(self._procfs, full_rescan_every)
        self._details = ProcessDetails(self._procfs)
        self._sockets = SocketBuilder(
            self._owners, holder_info or self._details.info(), self._details.clock_ticks, services
        )
        self._scan = 0
        self._privileged: bool | None = None
        self._cold_started = False

    def start_cold_walk(self, walk: ColdWalk | None = None) -> bool:
        """Have the first scan take a cold walk's answer (see the module doc): ``walk``, one already
        started, or else one forked now. True when the scan will take it.

        Call it only before the first scan; without ``walk``, only from a process with a single
        thread (it forks). After the first scan, or with an injected procfs root, a given walk
        is cancelled and False returned.
        """
        if self._scan != 0 or self._cold_started or self._procfs != "/proc":
            if walk is not None:
                walk.cancel()
            return False
        if walk is None:
            if not hasattr(os, "fork"):
                return False
            walk = ColdWalk(self._procfs)
        self._owners.take_cold_walk(walk)
        self._cold_started = True
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
        return self._tables.source

    def scan(self) -> Snapshot:
        """Take a snapshot; raises when /proc/net/tcp (or /proc itself) cannot be read."""
        try:
            return self._scan_once()
        except BaseException:
            # A scan that stopped half way may have changed holders without rebuilding the sockets
            # that show them: start the next one from fresh sockets (the process map stays valid).
            self._tables.forget()
            raise

    def _scan_once(self) -> Snapshot:
        started = time.perf_counter()
        taken = time.time()
        self._scan += 1
        scan_no = self._scan
        privileged = is_privileged()
        if privileged != self._privileged:
            # Owner notes depend on privilege: rebuild every socket once if it ever changes.
            self._privileged = privileged
            self._tables.forget()
        if scan_no % self._every == 0:
            self._sockets.forget_services()
            self._details.forget_users()

        # 1. The tables: every key that maps to a socket of the last scan is reused as is.
        found = self._tables.read()
        # 2. The owners (see the module docstring for the rules).
        owners = self._owners
        owners.update(
            scan_no, found.dropped, found.new_inodes, lambda: self._tables.present(found), privileged, len(found.out)
        )
        # 3. Sockets: decode the new keys, rebuild reused sockets whose holders changed.
        sockets = self._build(found, owners.dirty, privileged)
        hidden = 0 if privileged else sum(1 for s in sockets if s.owner_note == OWNER_HIDDEN)
        stats = dict(owners.stats)
        stats["sockets"] = len(sockets)
        stats["new_sockets"] = found.new_rows
        return Snapshot(
            sockets=tuple(sockets),
            taken_at=taken,
            scan_ms=(time.perf_counter() - started) * 1000.0,
            hidden_owners=hidden,
            collector=self.name,
            extra=(("tables", self.table_source),) + tuple((k, str(v)) for k, v in stats.items()),
        )

    def _build(self, found: TableRead, dirty: set[int], privileged: bool) -> list[Socket]:
        """The scan's sockets: new rows built, reused ones whose holders changed rebuilt, all remembered."""
        builder = self._sockets
        builder.new_scan()
        out = found.out
        for ti, table_misses in enumerate(found.misses):
            if table_misses:
                builder.build(TABLES[ti], table_misses, found.decoded[ti], found.traffic[ti], out, privileged)
        sockets = cast("list[Socket]", out)  # every miss is filled in now
        stale = dirty - found.new_inodes.keys()
        replaced: list[int] = []
        if stale:
            holders_of = builder.holders_of
            # The sockets with a stale inode, picked out in C (most scans have a few among thousands).
            for pos in compress(range(len(sockets)), map(stale.__contains__, map(_INODE, sockets))):
                sock = sockets[pos]
                hs = holders_of(sock.inode)
                if hs != sock.holders:
                    sockets[pos] = builder.with_holders(sock, hs, privileged)
                    replaced.append(pos)
        self._tables.keep(found, sockets, replaced)
        return number_duplicates(sockets) if self._tables.may_have_twins(found) else sockets
