"""The live table's model as plain values: view settings, change marks, and the rows derived from a snapshot.

Nothing here touches Textual, so the poller thread can derive the next view off the event loop and the
tests can check the logic without an app.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, eq, itemgetter

from portmon.model import Snapshot, Socket, SocketKey
from portmon.query.diff import changes
from portmon.query.filters import SocketFilter, parse_filter
from portmon.query.sorting import COLUMNS, sort_sockets

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
        index = (COLUMNS.index(self.column) + step) % len(COLUMNS)
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

    Looked up only for the cursor, a few times per refresh: candidates with the same local port are
    found with C-level iteration, and only those are compared by key. Measured at 10,000 sockets
    (``python bench/bench_ui_tricks.py``): 1.2-1.4 ms per refresh instead of 3.7-5 ms for a dict;
    tests/test_ui_tricks.py checks it finds what the dict finds.
    """

    __slots__ = ("_rows", "_ports")

    def __init__(self, rows: Sequence[Socket]) -> None:
        self._rows = rows
        self._ports: list[int] | None = None

    def get(self, key: SocketKey, default: int | None = None) -> int | None:
        """The row number of the socket with ``key``, or ``default``."""
        if self._ports is None:
            self._ports = list(map(_LOCAL_PORT, self._rows))
        rows = self._rows
        for i in compress(range(len(rows)), map(eq, self._ports, repeat(key[3]))):
            if rows[i].key == key:
                return i
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 7 and self.get(key) is not None

    def __getitem__(self, key: SocketKey) -> int:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found


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
    first_holders = list(map(_FIRST, filter(None, map(_HOLDERS, rows))))
    return {
        "local_addr": _longest(map(attrgetter("local_addr"), rows)),
        "remote_addr": _longest(map(attrgetter("remote_addr"), rows)),
        "local_service": _longest(map(attrgetter("local_service"), rows)),
        "remote_service": _longest(map(attrgetter("remote_service"), rows)),
        "process": _longest(map(attrgetter("name"), first_holders)),
        "user": _longest(map(attrgetter("user"), first_holders)),
    }


def column_widths_plain(rows: Sequence[Socket]) -> dict[str, int]:
    """:func:`column_widths` as a plain loop (for the equivalence test and the benchmark)."""
    widths = dict.fromkeys(("local_addr", "remote_addr", "local_service", "remote_service", "process", "user"), 0)
    for sock in rows:
        for name, value in (
            ("local_addr", sock.local_addr),
            ("remote_addr", sock.remote_addr),
            ("local_service", sock.local_service),
            ("remote_service", sock.remote_service),
        ):
            if value is not None:
                widths[name] = max(widths[name], len(value))
        if sock.holders:
            holder = sock.holders[0]
            if holder.name is not None:
                widths["process"] = max(widths["process"], len(holder.name))
            if holder.user is not None:
                widths["user"] = max(widths["user"], len(holder.user))
    return widths


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


def derive_view(
    snapshot: Snapshot, marks: Marks, spec: ViewSpec, now: float, states: Mapping[str, int] | None = None
) -> View:
    """Filter and sort a snapshot (plus the closed rows still shown) into the table's rows."""
    live: list[Socket] = spec.filter.apply(snapshot.sockets)
    if spec.listening_only:
        live = [s for s in live if s.listening]
    shown = len(live)
    totals = states if states is not None else state_counts(snapshot.sockets)
    narrowed = not spec.filter.is_empty or spec.listening_only
    shown_states = state_counts(live) if narrowed else totals
    ghosts = marks.ghosts(now) if marks.closed else []
    if ghosts:
        ghosts = spec.filter.apply(ghosts)
        if spec.listening_only:
            ghosts = [s for s in ghosts if s.listening]
        live.extend(ghosts)
    rows = tuple(sort_sockets(live, spec.column, spec.descending))
    return View(
        spec=spec,
        rows=rows,
        index=RowIndex(rows),
        widths=column_widths(rows),
        total=len(snapshot.sockets),
        shown=shown,
        states=totals,
        shown_states=shown_states,
    )


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


class Pipeline:
    """Turns each scan into an :class:`Update`: marks the changes and derives the rows.

    Owned by whoever scans (the poller thread, or the screen when polling is off); the values it
    returns are immutable, so they can cross to the UI thread as they are.
    """

    def __init__(self) -> None:
        self.last_good: Snapshot | None = None
        self.marks: Marks = NO_MARKS

    def step(self, snapshot: Snapshot, spec: ViewSpec, now: float, interval: float) -> Update:
        """Account for one scan result and derive its view with ``spec``."""
        if snapshot.error is None:
            self.marks = advance_marks(self.marks, self.last_good, snapshot, now)
            self.last_good = snapshot
        view = derive_view(snapshot, self.marks, spec, now)
        return Update(snapshot=snapshot, marks=self.marks, view=view, interval=interval)
