"""The owner index: which processes hold each socket inode, kept up to date from /proc/PID/fd by cheap rules.

The rules, cheapest evidence first, are described in ``portmon.collect.procfs``'s module doc:
new processes walked fully, fd-count changes walked by difference, the fds of vanished sockets
read again, a new child's parent probed, a budgeted search for sockets nobody is known to hold,
and a rolling full rescan spread over ``full_rescan_every`` scans. A reused pid (same pid, new
start time) never inherits the old process's inodes. portmon itself and its fd-walk children are
left out: a socket they alone hold has no holder.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection

from portmon.collect.fdwalk import DIR_FLAGS, ColdProcess, ColdWalk, own_pids, read_fd_table, start_and_parent
from portmon.model import Holder

_GONE = (FileNotFoundError, ProcessLookupError)
SEARCH_BUDGET = 2000
"""fd reads a first search for an unknown socket may spend (~8 ms here)."""
RESCAN_CHUNK = 4096
"""The periodic rescan of big fd tables reads at most this many fds per scan (~16 ms here)."""


def fd_counts_work(procfs: str) -> bool:
    """True when /proc/PID/fd's size is the open-fd count (Linux >= 6.2) on the real /proc.

    We always hold some fds, so a size of 0 for ourselves means the kernel does not count.
    """
    if procfs != "/proc":
        return False
    try:
        return os.stat(f"/proc/{os.getpid()}/fd").st_size > 0
    except OSError:
        return False


class Proc:
    """What the collector knows about one process (one pid + start time)."""

    __slots__ = (
        "pid", "start", "nfds", "uid", "fds", "inos", "others", "holder", "single", "readable", "ppid", "gained",
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
        self.others: set[str] = set()
        """The fd numbers listed at the last walk that are not in ``fds`` (files, pipes, ...). With ``fds``'
        keys, every fd number listed: kept apart so the thousands of socket fds of a big holder are
        not kept twice, nor their names as two strings: the owner index of 61,000 socket fds took 15 MB
        instead of 22 after a walk and a diff walk of each process (resident size)."""
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

    def listed(self) -> set[str]:
        """Every fd number listed at the last walk (and kept up to date since)."""
        return self.others.union(self.fds)

    def listed_count(self) -> int:
        """How many fd numbers ``listed`` holds."""
        return len(self.others) + len(self.fds)


class OwnerIndex:
    """socket inode -> pids holding it, and per process its socket fds, updated once per scan."""

    def __init__(self, procfs: str = "/proc", full_rescan_every: int = 30, parallel: bool | None = None) -> None:
        if full_rescan_every < 1:
            raise ValueError("full_rescan_every must be >= 1")
        self._procfs = procfs
        self._every = full_rescan_every
        self._counts = fd_counts_work(procfs)
        self._parallel = (os.cpu_count() or 1) > 1 if parallel is None else parallel
        self.procs: dict[int, Proc] = {}
        self.where: dict[int, frozenset[int]] = {}
        """socket inode -> pids holding it (immutable: most inodes share their process's ``solo``)."""
        self.unowned: set[int] = set()
        """Inodes a full search did not find a holder for (until their row changes)."""
        self.pending: dict[int, int] = {}
        """inode -> uid of sockets a budgeted search did not find: searched in full next scan."""
        self.dirty: set[int] = set()
        """Inodes whose holders may have changed in this scan."""
        self.orphans: set[int] = set()
        """Inodes whose last known holder let go of them in this scan."""
        self.stats: dict[str, int] = {}
        """Counters of this scan's work: full_walks, diff_walks, fd_reads, searched."""
        self._rescanning: set[int] = set()
        """Processes whose periodic rescan is being read in chunks."""
        self._cold: ColdWalk | None = None
        """A cold walk started for the first scan and not yet taken."""
        self._prefetched: dict[int, ColdProcess] = {}
        """What the cold walk found, for the first scan's walks (emptied as they take it)."""

    def take_cold_walk(self, walk: ColdWalk) -> None:
        """Have the next scan's walks take ``walk``'s answer where it read the same process."""
        self._cold = walk

    def update(
        self,
        scan_no: int,
        dropped: set[int],
        new_inodes: dict[int, int],
        present: Callable[[], set[int]],
        privileged: bool,
        sockets: int,
    ) -> None:
        """Bring the index up to date for scan ``scan_no``.

        ``dropped``: inodes of rows gone from the tables (or changed: a state change, a reused
        inode number); ``new_inodes``: inode -> uid of every new row; ``present()``: every inode in
        the tables now (computed only when needed); ``sockets``: how many rows the tables have.
        Afterwards ``dirty`` holds the inodes whose holders may have changed.
        """
        self.stats = {"full_walks": 0, "diff_walks": 0, "fd_reads": 0, "searched": 0}
        for ino in dropped:
            # Under a new key it may be a new socket with a reused number: the old mark is void.
            self.unowned.discard(ino)
            self.pending.pop(ino, None)
        self.dirty = set()
        self.orphans = set()
        walked: set[int] = set()
        new: set[int] = set()
        changed = self._refresh_processes(scan_no, walked, new)
        self._prefetched = {}
        if self._cold is not None:  # no process needed a walk: the answer is not wanted any more
            self._cold.cancel()
            self._cold = None
        for proc in changed:
            self._walk_diff(proc, scan_no)
        if dropped:
            # Also an inode that is still there under a new key: usually a state change, but it may
            # be a reused inode number, so the fds that held it are read again (one readlink each).
            self._probe(dropped, walked, scan_no)
        if new and new_inodes:
            self._probe_parents(new_inodes.keys(), new, walked, scan_no)
        seen: list[set[int]] = []

        def present_once() -> set[int]:
            if not seen:
                seen.append(present())
            return seen[0]

        find_unknown_owners(self, scan_no, new_inodes, walked, present_once, privileged)
        if len(self.unowned) > 2 * (sockets + 1024):
            self.unowned &= present_once()

    def _refresh_processes(self, scan_no: int, walked: set[int], new: set[int]) -> list[Proc]:
        """Stat every process; walk new and due ones fully (adding them to ``walked``, new ones to
        ``new`` too); return the ones whose fd count changed."""
        procfs = self._procfs
        procs = self.procs
        counts = self._counts
        every = self._every
        seen: set[int] = set()
        changed: list[Proc] = []
        # Every process is stat'ed before any is walked: with a cold walk pending, the stats run
        # while its child still reads fds (the first walk waits for the child's answer).
        listed: list[tuple[int, os.stat_result | None, int, int]] = []
        # portmon and its walk children are never holders (fdwalk.own_pids): as if not there.
        own = {str(pid) for pid in own_pids()} if procfs == "/proc" else set()
        for name in os.listdir(procfs):
            if not name.isdigit() or name in own:
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
                proc = procs[pid] = Proc(pid, start, -1, st.st_uid if st is not None else -1)
                proc.ppid = ppid
                if self.walk_full(proc, nfds, scan_no):
                    walked.add(pid)
                    new.add(pid)
                continue
            if (scan_no + pid) % every == 0:
                # Its turn in the rolling full rescan (also retries a process we could not read).
                size = nfds if nfds >= 0 else proc.listed_count()
                if proc.readable and size > RESCAN_CHUNK and every > 1:
                    # A big fd table is re-read over several scans, so its turn is no spike:
                    # list it now (new and gone fd numbers), re-read the rest in chunks.
                    if nfds >= 0:
                        proc.nfds = nfds
                    self._walk_diff(proc, scan_no)
                    proc.queue = list(proc.listed())
                    self._rescanning.add(pid)
                elif self.walk_full(proc, nfds, scan_no):
                    walked.add(pid)
            elif not proc.readable:
                continue
            elif nfds >= 0 and nfds != proc.nfds:
                proc.nfds = nfds
                changed.append(proc)
        for pid in [p for p in procs if p not in seen]:
            self._drop(procs[pid])
        budget = RESCAN_CHUNK
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

    def _drop(self, proc: Proc) -> None:
        for ino in proc.inos:
            self._unhold(ino, proc.pid)
        proc.fds = {}
        proc.inos = {}
        if self.procs.get(proc.pid) is proc:
            del self.procs[proc.pid]

    def _hold(self, ino: int, pid: int) -> None:
        pids = self.where.get(ino)
        if pids is None:
            proc = self.procs.get(pid)
            self.where[ino] = proc.solo if proc is not None else frozenset((pid,))
        elif pid not in pids:
            self.where[ino] = pids | {pid}
        self.dirty.add(ino)

    def _unhold(self, ino: int, pid: int) -> None:
        pids = self.where.get(ino)
        if pids is not None and pid in pids:
            if len(pids) == 1:
                del self.where[ino]
                self.orphans.add(ino)
            else:
                self.where[ino] = pids - {pid}
        self.dirty.add(ino)

    def _open_fd_dir(self, proc: Proc) -> int | None:
        try:
            return os.open(f"{self._procfs}/{proc.pid}/fd", DIR_FLAGS)
        except _GONE:
            self._drop(proc)
        except (PermissionError, NotADirectoryError):
            proc.readable = False
        except OSError:
            pass
        return None

    def walk_full(self, proc: Proc, nfds: int, scan_no: int) -> bool:
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
            # Its fds may have changed between the child's listing and our stat: the count the walk
            # saw (not the stat's, taken after it) makes the next scan's stat tell any change since.
            # (-1 had the next scan list every process's fds again: the live monitor's second scan
            # took 200-260 ms of CPU instead of 145-180 at 61,000 socket fds.)
            nfds = len(names) if nfds >= 0 else -1
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
        self.stats["full_walks"] += 1
        self.stats["fd_reads"] += len(names)
        inos = dict(Counter(fds.values()))
        old = proc.inos
        pid = proc.pid
        if old:
            for ino in old.keys() - inos.keys():
                self._unhold(ino, pid)
        gained = inos.keys() - old.keys() if old else inos.keys()
        if gained:
            where = self.where
            solo = proc.solo
            for ino in gained:
                pids = where.get(ino)
                if pids is None:
                    where[ino] = solo
                elif pid not in pids:
                    where[ino] = pids | solo
            self.dirty.update(gained)
            proc.gained = scan_no
        proc.fds = fds
        proc.inos = inos
        proc.others = {name for name in names if name not in fds}
        proc.nfds = nfds
        proc.readable = True
        return True

    def _set_fd(self, proc: Proc, fd: str, ino: int, scan_no: int) -> None:
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

    def _read_fds(self, proc: Proc, dfd: int, names: list[str], scan_no: int) -> None:
        """Readlink ``names`` of ``proc`` and record what each is now: a socket, another open fd, or closed."""
        readlink = os.readlink
        others = proc.others
        for name in names:
            try:
                link = readlink(name, dir_fd=dfd)
            except _GONE:
                others.discard(name)
                self._set_fd(proc, name, 0, scan_no)
                continue
            except OSError:
                continue
            if link.startswith("socket:["):
                others.discard(name)
                self._set_fd(proc, name, int(link[8:-1]), scan_no)
            else:
                self._set_fd(proc, name, 0, scan_no)
                others.add(name)
        self.stats["fd_reads"] += len(names)

    def _walk_diff(self, proc: Proc, scan_no: int) -> None:
        """A process whose fd count changed: read the fd numbers that are new, forget the gone ones."""
        dfd = self._open_fd_dir(proc)
        if dfd is None:
            return
        try:
            names = set(os.listdir(dfd))
            for name in proc.others - names:
                proc.others.discard(name)
            for name in proc.fds.keys() - names:
                self._set_fd(proc, name, 0, scan_no)
            # The new ones only: the names kept are the ones read before (fds' keys share them).
            self._read_fds(proc, dfd, list(names.difference(proc.others, proc.fds)), scan_no)
        except _GONE:
            self._drop(proc)
            return
        except PermissionError:
            proc.readable = False
            return
        finally:
            os.close(dfd)
        self.stats["diff_walks"] += 1

    def _probe(self, inodes: set[int], walked: set[int], scan_no: int) -> None:
        """Re-read the fds that held ``inodes`` (sockets gone from the tables: new ones usually land there)."""
        pids: set[int] = set()
        where = self.where
        for ino in inodes:
            holders = where.get(ino)
            if holders:
                pids.update(holders)
        for pid in sorted(pids - walked):
            proc = self.procs.get(pid)
            if proc is not None:
                self._reread(proc, [fd for fd, ino in proc.fds.items() if ino in inodes], scan_no)

    def _reread(self, proc: Proc, names: list[str], scan_no: int) -> None:
        """Readlink the given fds of ``proc`` again (forgetting those now closed)."""
        dfd = self._open_fd_dir(proc)
        if dfd is None:
            return
        try:
            self._read_fds(proc, dfd, names, scan_no)
        finally:
            os.close(dfd)

    def _probe_parents(self, inodes: Collection[int], new: set[int], walked: set[int], scan_no: int) -> None:
        """A new socket held only by processes new in this scan was probably opened by a parent just
        before it forked: read the parent's fd of the same number (a fork keeps fd numbers)."""
        procs = self.procs
        where = self.where
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
                self._read_fds(parent, dfd, sorted(names), scan_no)
            finally:
                os.close(dfd)


def find_unknown_owners(
    index: OwnerIndex,
    scan_no: int,
    new_inodes: dict[int, int],
    walked: set[int],
    present: Callable[[], set[int]],
    privileged: bool,
) -> None:
    """Search for the holders of sockets no rule found, or mark them owner-less (rule 5 of the module doc)."""
    unknown: dict[int, int] = {}
    for ino, uid in new_inodes.items():
        if ino not in index.where and ino not in index.unowned:
            unknown[ino] = uid
    for ino, uid in index.pending.items():
        if ino not in index.where:
            unknown[ino] = uid
    if index.orphans:
        now = present()
        for ino in index.orphans:
            if ino in now and ino not in index.where and ino not in index.unowned:
                unknown.setdefault(ino, -1)
    if unknown and not privileged:
        # Other users' processes cannot be read: their sockets stay hidden without a search.
        me = os.geteuid()
        for ino in [i for i, uid in unknown.items() if uid != me]:
            index.unowned.add(ino)
            del unknown[ino]
    if unknown:
        # A full search for a socket seen for the first time is often futile (its process
        # exited, or it closed while we looked) and at 50k sockets costs more than a scan:
        # the first time, only a budget of fd reads goes to the smallest processes.
        full = not unknown.keys().isdisjoint(index.pending)
        exhausted = search(index, unknown, walked, scan_no, None if full else SEARCH_BUDGET)
        for ino, uid in unknown.items():
            if exhausted:
                index.unowned.add(ino)
                index.pending.pop(ino, None)
            else:
                index.pending[ino] = uid
    if index.pending:
        index.pending = {i: u for i, u in index.pending.items() if i not in index.where and i not in index.unowned}


def search(index: OwnerIndex, unknown: dict[int, int], walked: set[int], scan_no: int, budget: int | None) -> bool:
    """Walk processes until every inode in ``unknown`` has a holder, cheapest and likeliest first.

    Found inodes are removed from ``unknown``. With a ``budget``, stops before reading more
    than that many fds. True when no readable process is left unwalked, i.e. whatever is
    still unknown has no holder we can see.
    """
    uids = set(unknown.values())
    candidates = [p for p in index.procs.values() if p.readable and p.pid not in walked and p.nfds != 0]
    # Same uid as the socket first, then small fd tables (a socket that no cheaper rule found
    # is rarely in a process holding thousands), then the ones that gained sockets lately.
    # Without fd counts (Linux < 6.2), the size at the last walk is the estimate.
    size = {p.pid: p.nfds if p.nfds >= 0 else p.listed_count() for p in candidates}
    candidates.sort(key=lambda p: (p.uid not in uids, size[p.pid], -p.gained, p.pid))
    spent = 0
    for proc in candidates:
        if budget is not None and spent + size[proc.pid] > budget:
            return False
        if not index.walk_full(proc, proc.nfds, scan_no):
            continue
        walked.add(proc.pid)
        spent += proc.listed_count()
        index.stats["searched"] += 1
        for ino in [i for i in unknown if i in index.where]:
            del unknown[ino]
        if not unknown:
            return False
    return True
