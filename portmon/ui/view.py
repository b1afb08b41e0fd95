"""The live table's model as plain values: view settings, change marks, and the rows derived from a snapshot.

Nothing here touches Textual, so the poller thread can derive the next view off the event loop and the
tests can check the logic without an app.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, eq, itemgetter, not_
from typing import Any, NamedTuple

from portmon.model import Holder, NetnsRef, Snapshot, Socket, SocketKey
from portmon.query.diff import changes
from portmon.query.filters import SocketFilter, parse_filter
from portmon.query.sorting import COLUMNS, PORT_COLUMNS, port_order_key, sort_sockets
from portmon.sameobjects import changed_objects
from portmon.ui.traffic import RATE_COLUMNS, RATE_TITLES, ListenReader, Traffic, TrafficTracker, sort_by_rate

RowKey = bytes
"""A row's ``port_order_key`` (kept per row for the incremental derive's binary searches)."""

NEW_SECONDS = 5.0
"""How long a new row stays highlighted."""
CHANGED_SECONDS = 5.0
"""How long a row whose state changed stays marked."""
CLOSED_SECONDS = 3.0
"""How long a closed row stays in the table, marked as closed, before it goes."""

MARK_NONE = ""
MARK_NEW = "new"
MARK_CHANGED = "changed"
MARK_CLOSED = "closed"

COLUMN_TITLES: dict[str, str] = {
    "proto": "protocol",
    "local_addr": "local address",
    "local_port": "local port",
    "local_service": "local service",
    "remote_addr": "remote address",
    "remote_port": "remote port",
    "remote_service": "remote service",
    "state": "state",
    "pid": "pid",
    "process": "process",
    "user": "user",
    "host": "host",
    "netns": "network namespace",
    **RATE_TITLES,
}
"""How the status line and the help name each sort column."""

EMPTY_FILTER = parse_filter("")


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """What the user asked to see: filter, listening-only and sort order."""

    filter: SocketFilter = EMPTY_FILTER
    listening_only: bool = False
    column: str = "local_port"
    descending: bool = False

    def with_column_step(self, step: int) -> ViewSpec:
        """The spec sorted by the column ``step`` places to the right (wrapping)."""
        if self.column in COLUMNS:
            at = COLUMNS.index(self.column)
        elif self.column in RATE_COLUMNS:
            # A rate column (sorted by a header click, not in the cycle) sits between State and PID.
            at = COLUMNS.index("state") + (0 if step > 0 else 1)
        else:
            # The Host column (remote hosts) is sortable by a click but not in the cycle: step from its edge.
            at = -1 if step > 0 else 0
        index = (at + step) % len(COLUMNS)
        return ViewSpec(self.filter, self.listening_only, COLUMNS[index], self.descending)


@dataclass(frozen=True, slots=True)
class Marks:
    """When recently changed sockets changed: the table highlights them until the marks expire.

    Treated as immutable: :func:`advance_marks` returns a new value.
    """

    opened: Mapping[SocketKey, float] = field(default_factory=dict)
    changed: Mapping[SocketKey, float] = field(default_factory=dict)
    closed: Mapping[SocketKey, tuple[Socket, float]] = field(default_factory=dict)
    """Sockets that went away, with when: they stay in the table as "closed" rows for a while."""

    def mark(self, key: SocketKey, now: float) -> str:
        """The mark of the row with this key at time ``now``."""
        if key in self.closed:
            return MARK_CLOSED if now - self.closed[key][1] < CLOSED_SECONDS else MARK_NONE
        when = self.changed.get(key)
        if when is not None and now - when < CHANGED_SECONDS:
            return MARK_CHANGED
        when = self.opened.get(key)
        if when is not None and now - when < NEW_SECONDS:
            return MARK_NEW
        return MARK_NONE

    def ghosts(self, now: float) -> list[Socket]:
        """The closed sockets that are still shown at time ``now``."""
        return [sock for sock, when in self.closed.values() if now - when < CLOSED_SECONDS]

    def next_expiry(self) -> float | None:
        """The earliest time at which some mark ends, or None when there are none."""
        times = [t + NEW_SECONDS for t in self.opened.values()]
        times += [t + CHANGED_SECONDS for t in self.changed.values()]
        times += [t + CLOSED_SECONDS for _, t in self.closed.values()]
        return min(times) if times else None

    def __bool__(self) -> bool:
        return bool(self.opened or self.changed or self.closed)


NO_MARKS = Marks()


def advance_marks(marks: Marks, old: Snapshot | None, new: Snapshot, now: float) -> Marks:
    """The marks after ``new`` replaced ``old``: expired marks dropped, this refresh's changes added.

    The first snapshot marks nothing (every row would be "new"); a failed scan changes nothing.
    """
    opened = {k: t for k, t in marks.opened.items() if now - t < NEW_SECONDS}
    changed = {k: t for k, t in marks.changed.items() if now - t < CHANGED_SECONDS}
    closed = {k: v for k, v in marks.closed.items() if now - v[1] < CLOSED_SECONDS}
    if old is not None and new.error is None:
        delta = changes(old, new)
        for key in delta.opened:
            opened[key] = now
            closed.pop(key, None)
        for key in delta.state_changed:
            changed[key] = now
        for sock in delta.closed:
            key = sock.key
            closed[key] = (sock, now)
            opened.pop(key, None)
            changed.pop(key, None)
    if not (opened or changed or closed):
        return NO_MARKS
    return Marks(opened, changed, closed)


class RowIndex:
    """Finds a socket's row by key without a dict of every key (building one costs ~50 ms at 50k rows).

    Looked up only for the cursor, a few times per refresh. Rows sorted by local port (the default
    order; ``port_order`` 1 ascending, -1 descending) are found by binary search: on the local port,
    then on the remote port within that port's rows, which is how ``sort_sockets`` orders them: a
    refresh's lookups take 0.01 ms instead of 1.3 ms at 10,000 sockets and 33-73 ms at 100,000, on
    the event loop (``python bench/bench_ui_tricks.py [--rows 100000]``). Rows in any other order
    are searched with C-level iteration: candidates with the same local port are found, and only
    those compared by key (at 10,000 sockets 1.2-1.4 ms per refresh instead of 3.7-5 ms for a
    dict). tests/test_ui_tricks.py checks both find what a dict finds.
    """

    __slots__ = ("_rows", "_ports", "_port_order")

    def __init__(self, rows: Sequence[Socket], port_order: int = 0) -> None:
        self._rows = rows
        self._ports: list[int] | None = None
        self._port_order = port_order

    def get(self, key: SocketKey, default: int | None = None) -> int | None:
        """The row number of the socket with ``key``, or ``default``."""
        rows = self._rows
        if self._port_order:
            return self._search(key, default)
        if self._ports is None:
            self._ports = list(map(_LOCAL_PORT, rows))
        for i in compress(range(len(rows)), map(eq, self._ports, repeat(key[3]))):
            if rows[i].key == key:
                return i
        return default

    def _search(self, key: SocketKey, default: int | None) -> int | None:
        """``get`` by binary search, for rows sorted by local port."""
        rows = self._rows
        port = key[3]
        if self._port_order > 0:
            lo = bisect_left(rows, port, key=_LOCAL_PORT)
            hi = bisect_right(rows, port, lo, key=_LOCAL_PORT)
        else:
            lo = bisect_left(rows, -port, key=_MINUS_LOCAL_PORT)
            hi = bisect_right(rows, -port, lo, key=_MINUS_LOCAL_PORT)
        remote = key[5]  # the key holds -1 for no remote port, as _REMOTE_PORT_RANK does
        for i in range(bisect_left(rows, remote, lo, hi, key=_REMOTE_PORT_RANK), hi):
            sock = rows[i]
            if sock.key == key:
                return i
            if _REMOTE_PORT_RANK(sock) != remote:
                break
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 7 and self.get(key) is not None

    def __getitem__(self, key: SocketKey) -> int:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found


def _minus_local_port(sock: Socket) -> int:
    return -sock.local_port


def _remote_port_rank(sock: Socket) -> int:
    # Within one local port, rows sort by remote port, none first (sorting.port_order_key).
    port = sock.remote_port
    return -1 if port is None else port


_MINUS_LOCAL_PORT = _minus_local_port
_REMOTE_PORT_RANK = _remote_port_rank


def port_order(spec: ViewSpec) -> int:
    """1 when ``spec`` sorts rows by local port ascending, -1 descending, 0 otherwise (for :class:`RowIndex`)."""
    if spec.column != "local_port":
        return 0
    return -1 if spec.descending else 1


_LOCAL_PORT = attrgetter("local_port")
_HOLDERS = attrgetter("holders")
_FIRST = itemgetter(0)


def _longest(values: Iterable[str | None]) -> int:
    # Measure only the distinct values.
    distinct: set[str | None] = set(values)
    distinct.discard(None)
    return max(map(len, distinct), default=0)  # type: ignore[arg-type]  # None was discarded


def column_widths(rows: Sequence[Socket]) -> dict[str, int]:
    """Longest text per variable-width column among ``rows``.

    Runs over every row on every refresh, so the loops stay in C (``map``, ``set``): 4 ms at 10,000
    sockets instead of 12-19 ms for :func:`column_widths_plain` (``python bench/bench_ui_tricks.py``),
    which tests/test_ui_tricks.py checks it equals.
    """
    held = list(filter(None, map(_HOLDERS, rows)))
    first_holders = list(map(_FIRST, held))
    return {
        "local_addr": _longest(map(attrgetter("local_addr"), rows)),
        "remote_addr": _longest(map(attrgetter("remote_addr"), rows)),
        "local_service": _longest(map(attrgetter("local_service"), rows)),
        "remote_service": _longest(map(attrgetter("remote_service"), rows)),
        "process": max(_longest(map(attrgetter("name"), first_holders)), _longest_family(held)),
        "user": _longest(map(attrgetter("user"), first_holders)),
        "host": _longest(map(attrgetter("host"), rows)),
        "netns": _netns_width(map(attrgetter("netns"), rows)),
    }


def family_suffix_width(count: int) -> int:
    """Room for a shared socket's `` +3 workers`` (or ``others``) after the main holder's name."""
    return len(f" +{count - 1} workers")


def _longest_family(held: Sequence[tuple[Holder, ...]]) -> int:
    # A shared socket's Process cell is the main holder's name and its family label.
    shared = {(hs[0].name, len(hs)) for hs in held if len(hs) > 1}
    return max((len(name or "?") + family_suffix_width(n) for name, n in shared), default=0)


def _netns_width(refs: Iterable[NetnsRef | None]) -> int:
    """The longest namespace text (0 when every row is in portmon's own namespace)."""
    distinct = set(refs)
    distinct.discard(None)
    return max((len(str(ref)) for ref in distinct), default=0)


def column_widths_plain(rows: Sequence[Socket]) -> dict[str, int]:
    """:func:`column_widths` as a plain loop (for the equivalence test and the benchmark)."""
    widths = dict.fromkeys(
        ("local_addr", "remote_addr", "local_service", "remote_service", "process", "user", "host", "netns"), 0
    )
    for sock in rows:
        for name, value in (
            ("local_addr", sock.local_addr),
            ("remote_addr", sock.remote_addr),
            ("local_service", sock.local_service),
            ("remote_service", sock.remote_service),
            ("host", sock.host),
        ):
            if value is not None:
                widths[name] = max(widths[name], len(value))
        if sock.netns is not None:
            widths["netns"] = max(widths["netns"], len(str(sock.netns)))
        if sock.holders:
            holder = sock.holders[0]
            if holder.name is not None:
                widths["process"] = max(widths["process"], len(holder.name))
            if len(sock.holders) > 1:
                shared = len(holder.name or "?") + family_suffix_width(len(sock.holders))
                widths["process"] = max(widths["process"], shared)
            if holder.user is not None:
                widths["user"] = max(widths["user"], len(holder.user))
    return widths


_MEASURED: tuple[tuple[str, Any], ...] = (
    ("local_addr", attrgetter("local_addr")),
    ("remote_addr", attrgetter("remote_addr")),
    ("local_service", attrgetter("local_service")),
    ("remote_service", attrgetter("remote_service")),
    ("host", attrgetter("host")),
    ("netns", attrgetter("netns")),
)
_NAME = attrgetter("name")
_USER = attrgetter("user")


class LiveMeasures:
    """How many live rows show each text of the variable-width columns: :func:`column_widths` kept up to date.

    Speed trick for the refresh of the live table (``_with_changed_rows``): counted once over every
    row, then moved from scan to scan by counting out the rows that went and in those that came,
    so ``widths()`` reads only the distinct texts instead of every row's. It equals
    ``column_widths`` of the rows counted (tests/test_view_derive_quick.py). Saving on issue 18's
    load (30,800 rows, 700-1,400 changed between two scans a second apart; ``python
    bench/bench_derive_tricks.py`` on a busy 2-core VM, medians of 31): 0.5-1.1 ms of CPU per
    scan instead of 7.6-8.4 ms, and the unfiltered view no longer walks every row to filter it.
    """

    __slots__ = ("_values", "_names", "_users", "_families")

    def __init__(self, rows: Sequence[Socket] = ()) -> None:
        self._values: dict[str, Counter[Any]] = {name: Counter() for name, _ in _MEASURED}
        self._names: Counter[str | None] = Counter()
        self._users: Counter[str | None] = Counter()
        self._families: Counter[tuple[str | None, int]] = Counter()
        """(main holder's name, holders) of each shared socket."""
        self._advance(rows, ())

    def advanced(self, came: Sequence[Socket], gone: Sequence[Socket]) -> LiveMeasures:
        """The counts with the rows of ``came`` counted in and those of ``gone`` (counted before) out.

        A new value (copying costs only the distinct texts): two threads derive, so a count once
        handed on is never changed.
        """
        out = LiveMeasures()
        out._values = {name: counts.copy() for name, counts in self._values.items()}
        out._names = self._names.copy()
        out._users = self._users.copy()
        out._families = self._families.copy()
        out._advance(came, gone)
        return out

    def _advance(self, came: Sequence[Socket], gone: Sequence[Socket]) -> None:
        for name, getter in _MEASURED:
            _count(self._values[name], map(getter, came), map(getter, gone))
        held = list(filter(None, map(_HOLDERS, came)))
        held_gone = list(filter(None, map(_HOLDERS, gone)))
        _count(self._names, map(_NAME, map(_FIRST, held)), map(_NAME, map(_FIRST, held_gone)))
        _count(self._users, map(_USER, map(_FIRST, held)), map(_USER, map(_FIRST, held_gone)))
        _count(
            self._families,
            ((hs[0].name, len(hs)) for hs in held if len(hs) > 1),
            ((hs[0].name, len(hs)) for hs in held_gone if len(hs) > 1),
        )

    def widths(self) -> dict[str, int]:
        """``column_widths`` of the rows counted."""
        values = self._values
        family = max((len(name or "?") + family_suffix_width(n) for name, n in self._families), default=0)
        return {
            "local_addr": _longest(values["local_addr"]),
            "remote_addr": _longest(values["remote_addr"]),
            "local_service": _longest(values["local_service"]),
            "remote_service": _longest(values["remote_service"]),
            "process": max(_longest(self._names), family),
            "user": _longest(self._users),
            "host": _longest(values["host"]),
            "netns": _netns_width(values["netns"]),
        }


def _count(counts: Counter[Any], came: Iterable[Any], gone: Iterable[Any]) -> None:
    counts.update(came)
    for value in gone:
        left = counts[value] - 1
        if left:
            counts[value] = left
        else:
            del counts[value]


@dataclass(frozen=True, slots=True)
class View:
    """The rows to show, in order, with what the table and status line need to show them quickly."""

    spec: ViewSpec
    rows: tuple[Socket, ...]
    index: RowIndex
    """Finds the row of a key, so the cursor is found again after a refresh."""
    widths: Mapping[str, int]
    """Longest text per variable-width column among the rows (before capping)."""
    total: int
    """Sockets in the snapshot, before filtering (closed rows not counted)."""
    shown: int
    """Live sockets that pass the filter (closed rows not counted)."""
    states: Mapping[str, int]
    """Count per TCP state (and "UDP") among all sockets of the snapshot."""
    shown_states: Mapping[str, int]
    """The same among the sockets shown (``states`` itself when nothing is filtered)."""


def state_counts(sockets: Sequence[Socket]) -> dict[str, int]:
    """Count of sockets per TCP state, with UDP sockets counted under "UDP"."""
    counts = Counter(map(attrgetter("state"), sockets))
    udp = counts.pop(None, 0)
    if udp:
        counts["UDP"] = udp
    return dict(counts)


def moved_state_counts(counts: Mapping[str, int], came: Sequence[Socket], gone: Sequence[Socket]) -> dict[str, int]:
    """``state_counts`` of some sockets, from ``counts`` (theirs before) and the sockets that came and went.

    Speed trick for the refresh of the live table (``_with_changed_rows``): only the changed sockets
    are counted. Equals ``state_counts`` of the sockets after (tests/test_view_derive_quick.py; the
    keys may come in another order, which the status line does not follow). Saving on issue 18's
    load (30,800 sockets, 700-1,400 changed between two scans a second apart; ``python
    bench/bench_derive_tricks.py`` on a busy 2-core VM, medians of 31): 0.1 ms of CPU per scan
    instead of 1.5-1.6 ms.
    """
    moved = Counter(counts)
    moved.update(state_counts(came))
    moved.subtract(state_counts(gone))
    return {state: n for state, n in moved.items() if n > 0}


_ROW_ORDER_BY_ELEMENT = PORT_COLUMNS
"""Sort columns whose order of any subset of rows is the full order with the other rows left out.

A port column's rank is the port itself, so each row's sort key does not depend on the other rows
(``port_order_key``). The other columns rank the distinct values present; they sort in full.
"""

INCREMENTAL_SHARE = 8
"""Rows are inserted into the last rows while at most 1/8 of them changed; beyond that a full sort is cheaper."""


class _Derived(NamedTuple):
    snapshot: Snapshot
    spec: ViewSpec
    ghosts: frozenset[int]
    """ids of the closed sockets (ghosts) among the rows."""
    live_widths: Mapping[str, int]
    view: View
    keys: tuple[RowKey, ...] | None = None
    """``port_order_key`` of each row, once an incremental derive needed them."""
    measures: LiveMeasures | None = None
    """The live rows' texts counted, once an incremental derive needed them."""
    ghost_rows: tuple[Socket, ...] = ()
    """The closed sockets (ghosts) among the rows (``ghosts`` holds their ids)."""


_last_derived: _Derived | None = None
"""The last view derived, for :func:`_without_expired_ghosts` (read and replaced whole: two threads derive)."""


def _merge_widths(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {name: max(width, b.get(name, 0)) for name, width in a.items()}


def _without_expired_ghosts(
    last: _Derived, snapshot: Snapshot, spec: ViewSpec, ghosts: list[Socket], states: Mapping[str, int] | None
) -> tuple[View, frozenset[int], tuple[RowKey, ...] | None] | None:
    """The last view with the closed rows that expired since left out, or None when that is not the same.

    Between two scans the rows change only when a closed row's time runs out (the live table
    re-derives on its mark tick when the interval is long). Leaving those rows out of the last
    sorted rows gives the rows a full derive would (see _ROW_ORDER_BY_ELEMENT) in ~2 ms at 30,000
    rows, where filtering, sorting and measuring the columns again take ~40 ms on the event loop.
    """
    if last.snapshot is not snapshot or last.spec != spec or spec.column not in _ROW_ORDER_BY_ELEMENT:
        return None
    still = frozenset(map(id, ghosts))
    if not still <= last.ghosts:
        return None
    gone = last.ghosts - still
    rows = last.view.rows
    keys = last.keys
    if gone:
        keep = list(map(not_, map(gone.__contains__, map(id, rows))))
        rows = tuple(compress(rows, keep))
        keys = None if keys is None else tuple(compress(keys, keep))
    widths = _merge_widths(last.live_widths, column_widths(ghosts)) if ghosts else dict(last.live_widths)
    view = View(
        spec=spec,
        rows=rows,
        index=RowIndex(rows, port_order(spec)) if gone else last.view.index,
        widths=widths,
        total=last.view.total,
        shown=last.view.shown,
        states=states if states is not None else last.view.states,
        shown_states=last.view.shown_states if states is None or _narrowed(spec) else states,
    )
    return view, still, keys


def moved_rows(
    rows: Sequence[Socket],
    keys: Sequence[RowKey],
    remove: Iterable[Socket],
    add: Sequence[Socket],
    key: Callable[[Socket], RowKey],
) -> tuple[list[Socket], list[RowKey]]:
    """``rows`` (sorted by ``key``, with their keys) less the sockets of ``remove`` that are among them, with ``add``
    merged in, and the keys of the result.

    Speed trick for the refresh of the live table (``_with_changed_rows``): each socket to remove is
    found by a binary search on its key, so the work in Python follows the changes, and the rows
    between two changes are copied as slices; it replaces a pass over every row in C that looked
    each one up in a set of the sockets to remove, and copied the rows and keys once more. Exact
    when the keys are unique, as ``port_order_key``'s are (they end with ``Socket.key``); equals
    :func:`moved_rows_plain` (tests/test_view_derive_quick.py). Saving on issue 18's load
    (31,000 rows, 200-400 rows in and out per refresh, ~750 closed rows shown; ``bench/bench_step.py``,
    the derive stage, medians of 12-16 on a busy 2-core host): 4.5-5 ms of CPU per refresh for the
    whole derive instead of 13.5-17.7 ms, of which ~2 ms is this function.
    """
    cut: list[int] = []
    n = len(keys)
    for sock in remove:
        i = bisect_left(keys, key(sock))
        if i < n and rows[i] is sock:
            cut.append(i)
    cut.sort()
    add_keys = list(map(key, add))
    out: list[Socket] = []
    out_keys: list[RowKey] = []
    at = 0
    c = 0
    for j in sorted(range(len(add)), key=add_keys.__getitem__):
        to = bisect_right(keys, add_keys[j], at)
        while c < len(cut) and cut[c] < to:
            out += rows[at : cut[c]]
            out_keys += keys[at : cut[c]]
            at = cut[c] + 1
            c += 1
        out += rows[at:to]
        out_keys += keys[at:to]
        out.append(add[j])
        out_keys.append(add_keys[j])
        at = to
    for i in cut[c:]:
        out += rows[at:i]
        out_keys += keys[at:i]
        at = i + 1
    out += rows[at:]
    out_keys += keys[at:]
    return out, out_keys


def moved_rows_plain(
    rows: Sequence[Socket],
    keys: Sequence[RowKey],
    remove: Iterable[Socket],
    add: Sequence[Socket],
    key: Callable[[Socket], RowKey],
) -> tuple[list[Socket], list[RowKey]]:
    """:func:`moved_rows` by a plain filter and sort (for the equivalence test)."""
    gone = {id(sock) for sock in remove}
    kept = [(k, sock) for sock, k in zip(rows, keys, strict=True) if id(sock) not in gone]
    merged = sorted(kept + [(key(sock), sock) for sock in add], key=itemgetter(0))
    return [sock for _, sock in merged], [k for k, _ in merged]


def _with_changed_rows(
    last: _Derived, snapshot: Snapshot, spec: ViewSpec, ghosts: list[Socket], states: Mapping[str, int] | None
) -> tuple[View, Mapping[str, int], tuple[RowKey, ...], LiveMeasures] | None:
    """The last rows brought up to ``snapshot`` by inserting and removing the sockets that changed, or None.

    The procfs collector keeps the Socket object of every socket that did not change, so between
    two scans only the few hundred that opened, closed or changed differ (``changed_objects``).
    Sorted by a port column, any subset of the rows keeps the full order (_ROW_ORDER_BY_ELEMENT),
    so the last rows less the changed and closed ones, with the new ones inserted where
    ``port_order_key`` puts them (a binary search each in the rows' keys, kept from the last time),
    are the rows a full derive gives; at 28,000 sockets that replaces sorting every row on each
    refresh. The columns' widths come from the last counts of their texts (:class:`LiveMeasures`).
    Returns the view, the live rows' column widths, the rows' keys and the counts.
    """
    if last.spec != spec or spec.column not in _ROW_ORDER_BY_ELEMENT or snapshot.error is not None:
        return None
    old_only, new_only = changed_objects(last.snapshot.sockets, snapshot.sockets)
    previous = last.view.rows
    if len(old_only) + len(new_only) + len(ghosts) > len(previous) // INCREMENTAL_SHARE + 64:
        return None
    key = port_order_key(spec.column, spec.descending)
    keys: Sequence[RowKey] = last.keys if last.keys is not None else list(map(key, previous))
    added: list[Socket] = spec.filter.apply(new_only)
    if spec.listening_only:
        added = [s for s in added if s.listening]
    went: Sequence[Socket] = spec.filter.apply(old_only)
    if spec.listening_only:
        went = [s for s in went if s.listening]
    # A live row that closed and is now a ghost (a closed row) stays where it is: same object, same key.
    ghost_ids = frozenset(map(id, ghosts))
    shown_before = last.ghosts | frozenset(map(id, went))
    remove = [s for s in went if id(s) not in ghost_ids]
    remove += [g for g in last.ghost_rows if id(g) not in ghost_ids]
    add = added + [g for g in ghosts if id(g) not in shown_before]
    rows, kept_keys = moved_rows(previous, keys, remove, add, key)
    shown = len(rows) - len(ghosts)  # every ghost is among the rows
    live: Sequence[Socket] = snapshot.sockets
    if last.measures is None or _narrowed(spec):
        # Read in the snapshot's order: the objects lie in memory in that order, and walking them in
        # sorted order instead makes this ~3x slower at 30,000 rows (cache misses).
        live = spec.filter.apply(snapshot.sockets)
        if spec.listening_only:
            live = [s for s in live if s.listening]
    if states is None:
        # The last view's counts are of the last snapshot's sockets (a caller passes a snapshot's own).
        states = moved_state_counts(last.view.states, new_only, old_only)
    totals, shown_states = _state_counts(snapshot, spec, live, states)
    measures = LiveMeasures(live) if last.measures is None else last.measures.advanced(added, went)
    live_widths = measures.widths()
    widths = _merge_widths(live_widths, column_widths(ghosts)) if ghosts else live_widths
    done = tuple(rows)
    view = View(
        spec=spec,
        rows=done,
        index=RowIndex(done, port_order(spec)),
        widths=widths,
        total=len(snapshot.sockets),
        shown=shown,
        states=totals,
        shown_states=shown_states,
    )
    return view, live_widths, tuple(kept_keys), measures


def _narrowed(spec: ViewSpec) -> bool:
    """True when the view shows only some of the snapshot's sockets (a filter or listening-only)."""
    return not spec.filter.is_empty or spec.listening_only


def _state_counts(
    snapshot: Snapshot, spec: ViewSpec, live: Sequence[Socket], states: Mapping[str, int] | None
) -> tuple[Mapping[str, int], Mapping[str, int]]:
    """(state counts of every socket, state counts of the live rows shown: the same when nothing is narrowed)."""
    totals = states if states is not None else state_counts(snapshot.sockets)
    return totals, (state_counts(live) if _narrowed(spec) else totals)


def _measures_of_same_rows(
    last: _Derived | None, snapshot: Snapshot, spec: ViewSpec, states: Mapping[str, int] | None
) -> tuple[Mapping[str, int], Mapping[str, int], Mapping[str, int]] | None:
    """(live column widths, state counts, shown state counts) of the last view, when ``spec`` shows
    the same live rows (same snapshot, filter and listening-only), perhaps in another order; else None.

    A sort key (``<``, ``>``, ``i``, a header click) changes only the order, so the rows need not be
    measured and counted again: a sort change by process derives in 36 ms instead of 50 ms at
    10,000 sockets, 90 ms instead of 119 ms at 28,000 (``python bench/bench_ui_tricks.py [--rows
    28000]``, medians of 15 on a 2-core host under a load average of 5; the columns' widths are
    most of it); tests/test_ui_tricks.py checks the view equals one derived from scratch.
    """
    if (
        last is None
        or last.snapshot is not snapshot
        or last.spec.filter != spec.filter
        or last.spec.listening_only != spec.listening_only
    ):
        return None
    view = last.view
    totals = states if states is not None else view.states
    return last.live_widths, totals, (view.shown_states if _narrowed(spec) else totals)


def derive_view(
    snapshot: Snapshot,
    marks: Marks,
    spec: ViewSpec,
    now: float,
    states: Mapping[str, int] | None = None,
    traffic: Traffic | None = None,
) -> View:
    """Filter and sort a snapshot (plus the closed rows still shown) into the table's rows.

    ``traffic`` gives the rates when the sort column is a rate column (:data:`RATE_COLUMNS`).
    """
    global _last_derived
    ghosts = marks.ghosts(now) if marks.closed else []
    if ghosts:
        ghosts = spec.filter.apply(ghosts)
        if spec.listening_only:
            ghosts = [s for s in ghosts if s.listening]
    last = _last_derived
    if last is not None and last.snapshot is snapshot:
        quick = _without_expired_ghosts(last, snapshot, spec, ghosts, states)
        if quick is not None:
            view, still, keys = quick
            _last_derived = last._replace(ghosts=still, view=view, keys=keys, ghost_rows=tuple(ghosts))
            return view
    elif last is not None:
        changed = _with_changed_rows(last, snapshot, spec, ghosts, states)
        if changed is not None:
            view, live_widths, keys, measures = changed
            _last_derived = _Derived(
                snapshot, spec, frozenset(map(id, ghosts)), live_widths, view, keys, measures, tuple(ghosts)
            )
            return view
    live: list[Socket] = spec.filter.apply(snapshot.sockets)
    if spec.listening_only:
        live = [s for s in live if s.listening]
    shown = len(live)
    reused = _measures_of_same_rows(last, snapshot, spec, states)
    if reused is not None:
        live_widths, totals, shown_states = reused
    else:
        totals, shown_states = _state_counts(snapshot, spec, live, states)
        live_widths = column_widths(live)
    widths = _merge_widths(live_widths, column_widths(ghosts)) if ghosts else live_widths
    if ghosts:
        live.extend(ghosts)
    if spec.column in RATE_COLUMNS:
        rows = tuple(sort_by_rate(sort_sockets(live, "local_port"), traffic, spec.column, spec.descending))
    else:
        rows = tuple(sort_sockets(live, spec.column, spec.descending))
    view = View(
        spec=spec,
        rows=rows,
        index=RowIndex(rows, port_order(spec)),
        widths=widths,
        total=len(snapshot.sockets),
        shown=shown,
        states=totals,
        shown_states=shown_states,
    )
    _last_derived = _Derived(snapshot, spec, frozenset(map(id, ghosts)), live_widths, view, ghost_rows=tuple(ghosts))
    return view


NEIGHBOUR_SEARCH = 64
"""How many old rows on each side of a vanished cursor row are tried as its neighbour."""


def neighbour(old_rows: Sequence[Socket], old_position: int, index: RowIndex | Mapping[SocketKey, int]) -> int | None:
    """Where the cursor goes when its row vanished: the nearest old row that is still there.

    Looks at the rows that followed the vanished one first (the row that slides into its place),
    then at those before it, a bounded number of each. None when none of them survived.
    """
    n = len(old_rows)
    for i in range(old_position + 1, min(n, old_position + 1 + NEIGHBOUR_SEARCH)):
        found = index.get(old_rows[i].key)
        if found is not None:
            return found
    for i in range(min(old_position, n) - 1, max(-1, old_position - 1 - NEIGHBOUR_SEARCH), -1):
        found = index.get(old_rows[i].key)
        if found is not None:
            return found
    return None


def cursor_after(
    old_rows: Sequence[Socket],
    old_row: int,
    old_key: SocketKey | None,
    rows: Sequence[Socket],
    index: RowIndex | Mapping[SocketKey, int],
) -> int:
    """The cursor's row among new ``rows``: its socket's row, else its nearest surviving neighbour's,
    else the same row number (clamped)."""
    new_row: int | None = index.get(old_key) if old_key is not None else None
    if new_row is None and old_key is not None:
        new_row = neighbour(old_rows, old_row, index)
    if new_row is None:
        new_row = min(old_row, len(rows) - 1) if rows else 0
    return max(0, new_row)


@dataclass(frozen=True, slots=True)
class Update:
    """One finished scan, as the poller hands it to the screen."""

    snapshot: Snapshot
    marks: Marks
    view: View
    interval: float
    """The refresh interval in effect (longer than asked when scans are slow)."""
    traffic: Traffic | None = None
    """Rates between the last two good scans, listen counters (computed by whoever scans)."""


class Pipeline:
    """Turns each scan into an :class:`Update`: marks the changes and derives the rows.

    Owned by whoever scans (the poller thread, or the screen when polling is off); the values it
    returns are immutable, so they can cross to the UI thread as they are.
    """

    def __init__(self, listen: ListenReader | None = None) -> None:
        self.last_good: Snapshot | None = None
        self.marks: Marks = NO_MARKS
        self.traffic = TrafficTracker(listen)
        """The rates between scans (``listen`` reads the host's listen-queue counters; None: not read)."""

    def step(self, snapshot: Snapshot, spec: ViewSpec, now: float, interval: float) -> Update:
        """Account for one scan result and derive its view with ``spec``."""
        if snapshot.error is None:
            self.marks = advance_marks(self.marks, self.last_good, snapshot, now)
            self.last_good = snapshot
        traffic = self.traffic.step(snapshot)
        view = derive_view(snapshot, self.marks, spec, now, traffic=traffic)
        return Update(snapshot=snapshot, marks=self.marks, view=view, interval=interval, traffic=traffic)
