"""Every manager of one process, cheaply and without root where the system allows: parents, environment, cgroup.

Innermost actionable first: the supervisors in the parent chain, nearest first (a supervisord or
pm2 the environment names joins its process there), then what the cgroup names (container before
pod, unit). Managers that restart nothing and offer no stop command (a login session, a
container's init) go last: a pm2 app inside ``pm2-root.service`` is stopped in pm2, not the unit.
"""

from __future__ import annotations

from portmon.ownership.cgroup import parse_cgroup, read_cgroup
from portmon.ownership.env import ENV_KEYS, environ_managers
from portmon.ownership.manager import RESTART_NO, Manager
from portmon.ownership.parents import ScriptReader, chain_managers, classify, read_script
from portmon.ownership.proc import parent_chain, read_environ, read_proc, read_stat


def _merge(chain: list[Manager], named: Manager) -> None:
    """Fold a manager the environment names into the supervisor process of the same kind, else put it first."""
    for i, m in enumerate(chain):
        if m.kind == named.kind and m.source == "parents":
            chain[i] = named._replace(pid=m.pid, source="environ+parents")
            return
    chain.insert(0, named)


def actionable(m: Manager) -> bool:
    """Whether stopping or asking this manager changes anything (it restarts, or it has a stop command)."""
    return m.restart != RESTART_NO or m.stop is not None


def combine(
    parents: tuple[Manager, ...], environ: tuple[Manager, ...], cgroup: tuple[Manager, ...]
) -> tuple[Manager, ...]:
    """The managers from the three sources in one list, innermost actionable first (pure)."""
    chain = list(parents)
    for named in environ:
        _merge(chain, named)
    every = chain + list(cgroup)
    return tuple(sorted(every, key=lambda m: not actionable(m)))


def managers_of(
    pid: int,
    procfs: str = "/proc",
    script_reader: ScriptReader = read_script,
    ancestors: dict[int, tuple[int, Manager | None]] | None = None,
) -> tuple[Manager, ...]:
    """Every manager of process ``pid`` found without asking systemd or a container engine.

    ``ancestors`` (pid -> (parent pid, its manager or None)), kept by the caller, spares re-reading
    the parents that many holders share (one scan's worth: a pid may be reused later).
    """
    cgroup_text = read_cgroup(pid, procfs)
    env = read_environ(pid, procfs, ENV_KEYS)
    if ancestors is None:
        from_parents = chain_managers(parent_chain(pid, procfs), script_reader, procfs)
    else:
        from_parents = _chain_memo(pid, procfs, script_reader, ancestors)
    return combine(
        from_parents,
        environ_managers(env) if env is not None else (),
        parse_cgroup(cgroup_text) if cgroup_text is not None else (),
    )


def _chain_memo(
    pid: int, procfs: str, script_reader: ScriptReader, memo: dict[int, tuple[int, Manager | None]]
) -> tuple[Manager, ...]:
    stat = read_stat(pid, procfs)
    if stat is None:
        return ()
    found: list[Manager] = []
    ppid = stat[1]
    seen = {pid}
    while ppid > 1 and ppid not in seen and len(seen) < 64:
        seen.add(ppid)
        entry = memo.get(ppid)
        if entry is None:
            info = read_proc(ppid, procfs)
            if info is None:
                break
            entry = memo[ppid] = (info.ppid, classify(info, script_reader, procfs))
        if entry[1] is not None:
            found.append(entry[1])
        ppid = entry[0]
    return tuple(found)


class ManagerCache:
    """Managers per process identity (pid + start time), remembered for the next refresh (bounded, least recent out).

    The cheap sources only (no systemd, no engine): what a table column, a filter or ``list --json``
    can afford for every row. A pid reused by a new process has another start time, so a new entry.
    """

    def __init__(self, procfs: str = "/proc", limit: int = 4096) -> None:
        self._procfs = procfs
        self._limit = limit
        self._memo: dict[tuple[int, float | None], tuple[Manager, ...]] = {}
        self._ancestors: dict[int, tuple[int, Manager | None]] = {}

    def get(self, pid: int, create_time: float | None = None) -> tuple[Manager, ...]:
        """The managers of process ``pid`` (started at ``create_time``, when known)."""
        key = (pid, create_time)
        found = self._memo.get(key)
        if found is None:
            found = managers_of(pid, self._procfs, ancestors=self._ancestors)
            if len(self._memo) >= self._limit:
                for old in list(self._memo)[: self._limit // 4]:
                    del self._memo[old]
            self._memo[key] = found
        return found

    def new_scan(self) -> None:
        """Forget the parents read so far (call once per refresh: their pids may be reused later)."""
        self._ancestors.clear()
