"""How the socket table draws a row and its header: each cell's text and style, joined into a Strip."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from portmon.model import (
    CLOSE_WAIT,
    ESTABLISHED,
    LISTEN,
    OWNER_HIDDEN,
    OWNER_UNSEEN,
    TIME_WAIT,
    Socket,
)
from portmon.output import LOCAL_HOST_LABEL
from portmon.textsafe import visible
from portmon.ui.columns import MARK_COLUMN, Column, fit
from portmon.ui.traffic import TX_COLUMN, rate_text
from portmon.ui.view import MARK_CHANGED, MARK_CLOSED, MARK_NEW, MARK_NONE

SORT_UP = "▲"
SORT_DOWN = "▼"

ROW_STYLES = frozenset({"header", "header-sorted", "cursor", "new", "closed", "changed", "backlog-full"})
"""Styles of whole rows (marks, cursor, header): they keep their background."""
CELL_STYLES = frozenset(
    {"listen", "established", "time-wait", "close-wait", "other-state", "dim", "no-owner"}
)
"""Styles of single cells: only their colour and attributes count, so the row's background shows."""

StyleOf = Callable[[str], Style]
"""A component's style by its short name ("dim", "listen", "cursor", ...): see ``SocketTable._style``."""
HostName = Callable[[str], "str | None"]
ManagedBy = Callable[[Socket], "str | None"]
"""The Managed by cell of a row: its text, or None while it is being worked out (see portmon.ui.owners)."""
FamilyLabel = Callable[[Socket], str]
"""``+3 workers`` for a shared socket's Process cell (see ``portmon.ui.owners.ManagerNames.family_label``)."""
PENDING = "…"
"""A Managed by cell not worked out yet."""
Layout = Sequence[tuple[Column, int]]

MARK_SIGNS = {MARK_NEW: "+", MARK_CHANGED: "~", MARK_CLOSED: "×", MARK_NONE: " "}
"""The gutter's sign per mark: the highlight readable without colour (NO_COLOR, colour-blind users)."""

_OWNER_LABELS = {OWNER_HIDDEN: "hidden", OWNER_UNSEEN: "unseen"}
_STATE_STYLES = {LISTEN: "listen", ESTABLISHED: "established", TIME_WAIT: "time-wait", CLOSE_WAIT: "close-wait"}


def process_text(sock: Socket, family: FamilyLabel | None = None) -> str:
    """The Process cell: the main holder's name (``+3 workers``, or +N more holders without ``family``),
    or who owns an ownerless socket."""
    if not sock.holders:
        return _OWNER_LABELS.get(sock.owner_note or "", "kernel")
    name = sock.holders[0].name
    text = visible(name) if name is not None else "?"
    if len(sock.holders) > 1:
        label = family(sock) if family is not None else ""
        text = f"{text} {label or f'+{len(sock.holders) - 1}'}"
    return text


Rate = tuple[float, float]
"""A connection's (TX, RX) bytes per second."""


def cell(
    sock: Socket,
    column: str,
    host_name: HostName | None,
    rate: Rate | None = None,
    managed_by: ManagedBy | None = None,
    family: FamilyLabel | None = None,
) -> tuple[str, str | None]:
    """The text of one cell (untrusted parts made visible) and the name of its own style, if any."""
    if column == "proto":
        return sock.proto_label, None
    if column == "local_addr":
        return visible(sock.local_addr), None
    if column == "local_port":
        return str(sock.local_port), None
    if column == "local_service":
        return visible(sock.local_service or ""), "dim"
    if column == "remote_addr":
        addr = sock.remote_addr
        if addr is None:
            return "", None
        if host_name is not None:
            name = host_name(addr)
            if name:
                return visible(name), None
        return visible(addr), None
    if column == "remote_port":
        return ("" if sock.remote_port is None else str(sock.remote_port)), None
    if column == "remote_service":
        return visible(sock.remote_service or ""), "dim"
    if column == "state":
        state = sock.state
        if state is None:
            return "", None
        known = _STATE_STYLES.get(state)
        if known is not None:
            return state, known
        return visible(state), "other-state"
    if column == "pid":
        pid = sock.pid
        return ("-" if pid is None else str(pid)), ("dim" if pid is None else None)
    if column == "process":
        return process_text(sock, family), (None if sock.holders else "no-owner")
    if column == "user":
        return visible(sock.user or ""), "dim"
    if column in ("tx_bps", "rx_bps"):
        if rate is None:
            return "", None
        bps = rate[0] if column == TX_COLUMN else rate[1]
        return rate_text(bps), ("dim" if bps < 0.5 else None)
    if column == "host":
        return (LOCAL_HOST_LABEL, "dim") if sock.host is None else (visible(sock.host), None)
    if column == "netns":
        return ("-", "dim") if sock.netns is None else (visible(str(sock.netns)), None)
    if column == "managed_by":
        text = managed_by(sock) if managed_by is not None else ""
        return (PENDING, "dim") if text is None else (text, None)  # managed_by_text escapes it already
    return "", None


def layout_width(layout: Layout) -> int:
    """Cells the columns take, one space between each two."""
    return sum(w for _, w in layout) + max(0, len(layout) - 1)


def header_strip(
    layout: Layout, sort_column: str, descending: bool, plain: Style, sorted_style: Style, width: int
) -> Strip:
    """The header: column titles, the sort column's with an arrow, filled with ``plain`` to ``width``."""
    segments: list[Segment] = []
    for i, (column, cells) in enumerate(layout):
        if i:
            segments.append(Segment(" ", plain))
        if column.name == sort_column:
            arrow = SORT_DOWN if descending else SORT_UP
            label = column.label if len(column.label) + 2 <= cells else fit(column.label, cells - 1).rstrip()
            text = f"{label} {arrow}" if len(column.label) + 2 <= cells else label + arrow
            segments.append(Segment(fit(text, cells, column.right), sorted_style))
        else:
            segments.append(Segment(fit(column.label, cells, column.right), plain))
    total = layout_width(layout)
    return Strip(segments, total).extend_cell_length(max(total, width), plain)


def row_strip(
    sock: Socket,
    mark: str,
    is_cursor: bool,
    layout: Layout,
    base: Style,
    style_of: StyleOf,
    host_name: HostName | None,
    width: int,
    rate: Rate | None = None,
    managed_by: ManagedBy | None = None,
    family: FamilyLabel | None = None,
) -> Strip:
    """One socket's row: ``base`` plus its mark's style, the cursor's on top; marked rows fill ``width``.

    A listener whose accept queue is full is highlighted as a whole row; ``rate`` fills the rate columns.
    """
    row_style = base
    full = sock.accept_queue_full
    if full:
        row_style = row_style + style_of("backlog-full")
    if mark != MARK_NONE:
        row_style = row_style + style_of(mark)
    cursor = style_of("cursor") if is_cursor else None
    segments: list[Segment] = []
    gap = Segment(" ", row_style + cursor if cursor is not None else row_style)
    for i, (column, cells) in enumerate(layout):
        if i:
            segments.append(gap)
        if column.name == MARK_COLUMN:
            text, extra = MARK_SIGNS.get(mark, " "), None
        else:
            text, extra = cell(sock, column.name, host_name, rate, managed_by, family)
            if family is not None and column.name == "process" and len(text) > cells:
                text = process_text(sock)  # too narrow for "+2 workers": the plain "+2" reads better than "+2 wo…"
        style = row_style + style_of(extra) if extra is not None else row_style
        if cursor is not None:
            style = style + cursor
        segments.append(Segment(fit(text, cells, column.right), style))
    total = layout_width(layout)
    strip = Strip(segments, total)
    if cursor is not None or mark != MARK_NONE or full:
        fill = row_style + cursor if cursor is not None else row_style
        strip = strip.extend_cell_length(max(total, width), fill)
    return strip
