"""What the commands and the UI show about ownership: family order and roles, manager records and lines.

One ``Ownership`` object per command run (or per UI refresh, after ``new_scan()``) caches what it
reads per process identity; every function here reads only /proc (never systemd or an engine: that is
``preflight`` with an ``Enricher``, for a selected row, a kill or a ``why``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from portmon.model import Holder, Socket
from portmon.ownership.enrich import Enricher
from portmon.ownership.families import Member, ProcLookup, family, family_order, order_sockets, proc_lookup
from portmon.ownership.manager import Manager, manager_record
from portmon.ownership.preflight import Preflight, preflight
from portmon.ownership.proc import parent_chain
from portmon.ownership.resolve import ManagerCache, actionable
from portmon.ownership.reuseport import ReuseportBinder, ReuseportCheck, check_reuseport, reuseport_bind
from portmon.textsafe import safe


def managers_json(managers: Sequence[Manager]) -> dict[str, Any] | None:
    """The ``manager`` object of JSON output: the innermost actionable manager, the outer ones under ``outer``."""
    if not managers:
        return None
    doc = manager_record(managers[0])
    doc["outer"] = [manager_record(m) for m in managers[1:]]
    return doc


def managed_by_text(managers: Sequence[Manager], width: int = 60) -> str:
    """``systemd unit nginx.service``, ``bash loop (pid 42) in session-3.scope``, or "" (escaped, for tables)."""
    if not managers:
        return ""
    text = managers[0].label
    if len(managers) > 1:
        text += f" in {managers[1].name}"
    return safe(text, width)


class Ownership:
    """Family order, roles and managers for a scan's sockets, read from /proc and cached per process."""

    def __init__(self, procfs: str = "/proc") -> None:
        self._procfs = procfs
        self._cache = ManagerCache(procfs)
        self._lookup: ProcLookup = proc_lookup(procfs)
        self._families: dict[int, tuple[tuple[Holder, ...], tuple[Member, ...]]] = {}

    def new_scan(self) -> None:
        """Start afresh for a new refresh (parents and pids seen before may have changed)."""
        self._lookup = proc_lookup(self._procfs)
        self._families.clear()
        self._cache.new_scan()

    def order(self, sockets: Sequence[Socket]) -> list[Socket]:
        """The sockets with every shared socket's holders main holder first (this host's sockets only)."""
        return order_sockets(sockets, self._lookup)

    def members(self, holders: tuple[Holder, ...]) -> tuple[Member, ...]:
        """The holders with their roles, main first (cached per holders tuple; keep the tuple alive)."""
        hit = self._families.get(id(holders))
        if hit is not None and hit[0] is holders:
            return hit[1]
        members = family(holders, self._lookup)
        self._families[id(holders)] = (holders, members)
        return members

    def managers(self, holder: Holder) -> tuple[Manager, ...]:
        """The managers of one holder, innermost actionable first (cheap sources only)."""
        return self._cache.get(holder.pid, holder.create_time)

    def socket_managers(self, sock: Socket) -> tuple[Manager, ...]:
        """The managers of a socket's main holder (its first, once ``order`` has run)."""
        return self.managers(sock.holders[0]) if sock.holders else ()

    def holders_json(self, holders: tuple[Holder, ...]) -> list[dict[str, Any]]:
        """``holders`` of JSON output: ``{pid, process, user, role}`` each, main holder first."""
        return [
            {"pid": m.holder.pid, "process": m.holder.name, "user": m.holder.user, "role": m.role}
            for m in self.members(holders)
        ]

    def record_extra(self, sock: Socket) -> dict[str, Any]:
        """The keys ``list --json`` adds to a socket record: ``holders`` and ``manager`` (an ``output.RecordExtra``).

        A socket of another host (``sock.host``, remote collection) has no local /proc to read: its
        holders come without roles and it has no manager.
        """
        holders = sock.holders
        if getattr(sock, "host", None) is not None:
            return {
                "holders": [{"pid": h.pid, "process": h.name, "user": h.user, "role": None} for h in holders],
                "manager": None,
            }
        return {
            "holders": self.holders_json(holders),
            "manager": managers_json(self.managers(holders[0])) if holders else None,
        }


_shared: Ownership | None = None


def shared_ownership() -> Ownership:
    """One process-wide ``Ownership`` for callers without their own (the filter language)."""
    global _shared
    if _shared is None:
        _shared = Ownership()
    return _shared


MANAGED_ANY = "any"
MANAGED_NONE = "none"


def manager_words(managers: Sequence[Manager]) -> str:
    """What ``managed:`` matches against, lower case: every manager's kind, name, label and detail values."""
    words: list[str] = []
    for m in managers:
        words += [m.kind, m.name, m.label, *(value for _, value in m.details)]
    return "\x00".join(words).lower()


def _managed_hit(needle: str, managers: Sequence[Manager], text: str) -> bool:
    if needle == MANAGED_ANY:
        return bool(managers)
    if needle == MANAGED_NONE:
        return not managers
    return needle in text


def managed_matcher(values: Sequence[str], ownership: Ownership | None = None) -> Callable[[Socket], bool]:
    """The ``managed:VALUE[,VALUE...]`` test: ``any`` (an actionable manager), ``none`` (no such
    manager), or a word found in a manager's kind, name or details (``systemd``, ``nginx.service``,
    ``docker``, ``shop``, ``loop``). Answers are remembered per main holder."""
    own = ownership
    needles = tuple(v.lower() for v in values)
    memo: dict[tuple[int, float | None], bool] = {}

    def test(sock: Socket) -> bool:
        nonlocal own
        if not sock.holders:
            return MANAGED_NONE in needles
        main = sock.holders[0]
        key = (main.pid, main.create_time)
        hit = memo.get(key)
        if hit is None:
            if own is None:
                own = shared_ownership()
            every = own.managers(main)
            text = manager_words(every)
            acting = tuple(m for m in every if actionable(m))
            hit = any(_managed_hit(n, acting, text) for n in needles)
            if len(memo) > 65536:
                memo.clear()
            memo[key] = hit
        return hit

    return test


_FACT_KEYS = (
    ("Restart", "restart policy"),
    ("restart_policy", "restart policy"),
    ("NRestarts", "restarts so far"),
    ("ActiveState", "state"),
    ("state", "state"),
    ("TriggeredBy", "triggered by"),
    ("compose_project", "compose project"),
    ("compose_service", "compose service"),
    ("pod_uid", "pod"),
    ("id", "id"),
    ("command", "command"),
    ("service", "service"),
)


def manager_facts(managers: Sequence[Manager]) -> list[tuple[str, str]]:
    """(label, value) rows for a detail pane: each manager, its policy, state, compose names, stop command.

    Values are raw untrusted text: render them as plain text (``rich.text.Text``), never as markup.
    """
    rows: list[tuple[str, str]] = []
    for i, m in enumerate(managers):
        rows.append(("managed by" if i == 0 else "inside", m.label))
        for key, label in _FACT_KEYS:
            value = m.detail(key)
            if value:
                rows.append((label, value))
        if m.stop:
            rows.append(("stop with", m.stop))
        if m.note:
            rows.append(("note", m.note))
    return rows


def marked_chain(pid: int, managers: Sequence[Manager], procfs: str = "/proc") -> list[tuple[int, str, bool]]:
    """The parent chain of ``pid`` as (pid, name, is a manager) from its parent up, supervisors marked."""
    supervisors = {m.pid for m in managers if m.pid is not None}
    return [(p.pid, p.name, p.pid in supervisors) for p in parent_chain(pid, procfs)]


class PortOwnership:
    """Ownership for ``why`` (and a kill): family order of a port's holders, the preflight, SO_REUSEPORT.

    Reads /proc, asks systemd and the engines through ``enricher`` (time-boxed) and makes
    SO_REUSEPORT test binds through ``reuseport_binder``: pass fakes in tests and screenshots.
    """

    def __init__(
        self,
        procfs: str = "/proc",
        enricher: Enricher | None = None,
        reuseport_binder: ReuseportBinder = reuseport_bind,
    ) -> None:
        self._procfs = procfs
        self._enricher = enricher
        self._binder = reuseport_binder
        self._lookup: ProcLookup = proc_lookup(procfs)

    def order_pids(self, holders: Sequence[Holder]) -> list[int]:
        """The pids of ``holders`` (one per process) in family order, the main holder first."""
        unique = list({h.pid: h for h in holders}.values())
        return [h.pid for h in family_order(unique, self._lookup)]

    def preflight(self, pids: Sequence[int], port: int | None = None) -> Preflight:
        """What killing ``pids`` (main holder first) should lead to; see :func:`preflight`."""
        return preflight(pids, port=port, enricher=self._enricher, procfs=self._procfs)

    def reuseport(self, port: int, proto: str, sockets: Sequence[Socket]) -> ReuseportCheck:
        """SO_REUSEPORT groups on the port and whether a new server could join one."""
        return check_reuseport(port, proto, sockets, self._binder)
