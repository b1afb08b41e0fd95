"""The socket table's columns: what each one shows, how wide it gets, which go first on a narrow terminal."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, chop_cells

ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: how wide it likes to be, how far it may shrink, and when it is dropped."""

    name: str
    """The sort column id (see portmon.query.sorting.COLUMNS)."""
    label: str
    fixed: int = 0
    """Width of a fixed-width column; 0 when the width follows the data."""
    cap: int = 0
    """Widest a data-sized column gets."""
    soft: int = 0
    """Narrowest it gets before columns are dropped."""
    hard: int = 0
    """Narrowest it gets at all."""
    right: bool = False
    """Right-aligned (numbers)."""


MARK_COLUMN = "mark"
"""The one-cell gutter that marks new (+), changed (~) and closed (×) rows, so no colour is needed to see them."""

TABLE_COLUMNS: tuple[Column, ...] = (
    Column(MARK_COLUMN, "", fixed=1, soft=1, hard=1),
    Column("proto", "Proto", fixed=5, soft=5, hard=5),
    Column("local_addr", "Local address", cap=39, soft=15, hard=7),
    Column("local_port", "Port", fixed=5, soft=5, hard=5, right=True),
    Column("local_service", "Service", cap=14, soft=10, hard=5),
    Column("remote_addr", "Remote address", cap=39, soft=15, hard=7),
    Column("remote_port", "Port", fixed=5, soft=5, hard=5, right=True),
    Column("remote_service", "Service", cap=14, soft=8, hard=5),
    # Never cut: "ESTABLIS…" reads as nothing; other columns give way first.
    Column("state", "State", fixed=11, soft=11, hard=11),
    # Traffic since the last scan (portmon.ui.traffic); only shown when the collector gives byte counters.
    Column("tx_bps", "TX/s", fixed=8, soft=8, hard=8, right=True),
    Column("rx_bps", "RX/s", fixed=8, soft=8, hard=8, right=True),
    Column("pid", "PID", fixed=7, soft=6, hard=5, right=True),
    Column("process", "Process", cap=24, soft=15, hard=6),
    Column("user", "User", cap=14, soft=8, hard=4),
)

HOST_COLUMN = Column("host", "Host", cap=24, soft=8, hard=5)
"""The remote host of a row (``--host``): first after the mark gutter, shown only when some row has one."""

NETNS_COLUMN = Column("netns", "NetNS", cap=32, soft=10, hard=5)
"""The network namespace of a row (``net:[4026532283] container web``; ``-`` for portmon's own): after the
others but Managed by, shown only when some row is in another namespace than portmon's, i.e. when more than
one namespace has sockets."""
MANAGED_COLUMN = Column("managed_by", "Managed by", cap=44, soft=14, hard=8)
"""What manages the row's process (a unit, a container, a supervisor): last, shown only when the table is
given a width for it (the monitor's toggle, or by itself when the terminal is wide enough)."""
MANAGED_WIDTH = 30
"""Cells the Managed by column asks for at least (its texts are worked out only for the rows on screen, so
its width cannot follow them): up to its cap when the terminal has the room."""

TRAFFIC_COLUMNS = ("tx_bps", "rx_bps")
"""The rate columns: the first to go on a narrow terminal, and hidden altogether by the traffic toggle."""

# Which columns go, in this order, when the terminal is too narrow for all of them.
_DROP_PLANS: tuple[tuple[str, ...], ...] = (
    (),
    TRAFFIC_COLUMNS,
    (*TRAFFIC_COLUMNS, "remote_service"),
    (*TRAFFIC_COLUMNS, "remote_service", "local_service"),
    (*TRAFFIC_COLUMNS, "remote_service", "local_service", "user"),
)
# Which columns give up width, and down to what, in order: first down to comfortable widths (then
# the least useful columns are dropped), then, on very narrow terminals, to the minimum. Addresses
# shrink together, the wider one first, so an IPv4 address stays whole as long as possible.
_SOFT_STEPS: tuple[str, ...] = (
    "managed_by", "addresses", "host", "netns", "process", "local_service", "remote_service", "user", "pid",
)
_HARD_STEPS: tuple[tuple[str, int], ...] = (
    ("pid", 6), ("process", 12), ("addresses", 13), ("process", 8), ("addresses", 9),
    ("process", 6), ("addresses", 7), ("pid", 5),
)


def visible_columns(names: Sequence[str]) -> tuple[frozenset[str] | None, list[str]]:
    """The columns named by ``names`` (ids such as ``local_port`` or unambiguous titles such as
    "State", any case) and the names that match none. None: show every column (no name matched).
    """
    by_id = {
        c.name: c.name for c in (*TABLE_COLUMNS, HOST_COLUMN, NETNS_COLUMN, MANAGED_COLUMN) if c.name != MARK_COLUMN
    }
    labels: dict[str, list[str]] = {}
    for column in (*TABLE_COLUMNS, HOST_COLUMN, NETNS_COLUMN, MANAGED_COLUMN):
        if column.label:
            labels.setdefault(column.label.lower(), []).append(column.name)
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        key = name.strip().lower()
        titled = labels.get(key, [])
        if key in by_id:
            chosen.add(by_id[key])
        elif len(titled) == 1:
            chosen.add(titled[0])
        else:
            unknown.append(name)
    return (frozenset(chosen) if chosen else None), unknown


def layout_columns(
    available: int, data_widths: Mapping[str, int], hidden: Collection[str] = TRAFFIC_COLUMNS
) -> list[tuple[Column, int]]:
    """Pick the columns and their widths for ``available`` cells (one space between columns); the
    ``hidden`` columns are never shown (by default the rate columns, shown only with traffic data).

    Columns start at their data width (capped), shrink to a comfortable width, then the least
    useful columns are dropped, and only then do the rest shrink to their minimum. The result
    may still be wider than ``available`` on a tiny terminal; the table then scrolls sideways.
    """
    # The host goes right after the mark gutter, before everything it qualifies.
    table = (TABLE_COLUMNS[0], HOST_COLUMN, *TABLE_COLUMNS[1:]) if data_widths.get("host") else TABLE_COLUMNS
    if data_widths.get("netns"):  # another network namespace than portmon's has rows
        table = (*table, NETNS_COLUMN)
    if data_widths.get(MANAGED_COLUMN.name):
        table = (*table, MANAGED_COLUMN)
    natural = {}
    for column in table:
        if column.fixed:
            natural[column.name] = column.fixed
        else:
            wanted = max(data_widths.get(column.name, 0), len(column.label))
            natural[column.name] = max(column.soft, min(wanted, column.cap))
    by_name = {c.name: c for c in table}
    columns: list[Column] = []
    widths: dict[str, int] = {}
    excess = 0
    for dropped in _DROP_PLANS:
        columns = [c for c in table if c.name not in dropped and c.name not in hidden]
        widths = {c.name: natural[c.name] for c in columns}
        excess = sum(widths.values()) + len(columns) - 1 - available
        for name in _SOFT_STEPS:
            if excess <= 0:
                break
            excess = _shrink(widths, name, excess, lambda n: min(natural[n], by_name[n].soft))
        if excess <= 0:
            return [(c, widths[c.name]) for c in columns]
    for name, limit in _HARD_STEPS:
        if excess <= 0:
            break

        def hard_floor(n: str, limit: int = limit) -> int:
            return max(by_name[n].hard, min(limit, widths[n]))

        excess = _shrink(widths, name, excess, hard_floor)
    return [(c, widths[c.name]) for c in columns]


def _shrink(widths: dict[str, int], name: str, excess: int, floor: Callable[[str], int]) -> int:
    """Take up to ``excess`` cells from one column (or both addresses); return what is still missing."""
    if name == "addresses":
        floors = {a: floor(a) for a in ("local_addr", "remote_addr") if a in widths}
        while excess > 0:
            room = [a for a in floors if widths[a] > floors[a]]
            if not room:
                break
            widest = max(room, key=lambda a: widths[a])
            widths[widest] -= 1
            excess -= 1
        return excess
    if name not in widths:
        return excess
    take = min(excess, widths[name] - floor(name))
    if take > 0:
        widths[name] -= take
        excess -= take
    return excess


def natural_width(data_widths: Mapping[str, int], hidden: Collection[str] = TRAFFIC_COLUMNS) -> int:
    """Cells the table wants for ``data_widths`` when nothing has to give way (gaps included)."""
    layout = layout_columns(1 << 20, data_widths, hidden)
    return sum(w for _, w in layout) + len(layout) - 1


def column_at(layout: Sequence[tuple[Column, int]], x: int) -> str | None:
    """The column at ``x`` cells from the table's left edge (a column owns the gap after it), or None past the last."""
    left = 0
    for column, width in layout:
        if left <= x < left + width + 1:
            return column.name
        left += width + 1
    return None


def fit(text: str, width: int, right: bool = False) -> str:
    """Pad or cut ``text`` to exactly ``width`` terminal cells, marking a cut with an ellipsis."""
    length = cell_len(text)
    if length > width:
        if width <= 0:
            return ""
        text = (chop_cells(text, width - 1)[0] if width > 1 else "") + ELLIPSIS
        length = cell_len(text)
    pad = " " * max(0, width - length)
    return pad + text if right else text + pad
