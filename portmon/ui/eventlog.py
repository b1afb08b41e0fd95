"""The event log pane: the session's socket events, newest first, rendered line by line (only what is on screen)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from portmon.query.diff import CLOSE, OPEN, STATE, Event
from portmon.query.events import (
    EventLog,
    LoggedEvent,
    clock_time,
    endpoints_text,
    event_in_scope,
    is_listening,
    owner_text,
    service_text,
    state_text,
)
from portmon.ui.columns import fit
from portmon.ui.view import ViewSpec

HEADER = ("Time", "Event", "Proto", "Local → remote", "State", "Process (pid)", "Service")
_CAPS = {"endpoints": 64, "state": 32, "owner": 32}
"""Widest the variable columns get; longer text is cut with an ellipsis."""

_Cells = tuple[str, str, str, str, str, str, str]

_ENDPOINTS_MIN = 21
"""Narrowest the endpoints column gets when it gives way to the state column (an IPv4 address and port)."""


def fitted_widths(natural: Sequence[int], width: int) -> tuple[int, ...]:
    """Column widths for a view ``width`` cells wide: the endpoints column gives way so State stays whole.

    At 80 columns a state change (``CLOSE_WAIT (was ESTABLISHED)``) would otherwise fall off the right
    edge behind a long ``local -> remote`` pair; the columns after State (owner, service) may still
    run off the edge, where horizontal scrolling reaches them.
    """
    widths = list(natural)
    through_state = sum(widths[:5]) + 2 * 4
    excess = through_state - width
    if excess > 0 and width > 0:
        widths[3] = max(min(widths[3], _ENDPOINTS_MIN), widths[3] - excess)
    return tuple(widths)


def event_cells(item: LoggedEvent) -> _Cells:
    """The text of one row (every untrusted field escaped)."""
    event = item.event
    sock = event.socket
    return (
        clock_time(event.time),
        event.kind,
        sock.proto_label,
        endpoints_text(sock),
        state_text(event),
        owner_text(sock),
        service_text(sock),
    )


def event_matches(event: Event, spec: ViewSpec) -> bool:
    """Whether the table's filter and listening-only switch let ``event`` through (state changes: before or after)."""
    if spec.listening_only and not event_in_scope(event, is_listening):
        return False
    return spec.filter.is_empty or spec.filter.matches(event.socket)


def pane_content(
    log: EventLog, spec: ViewSpec, *, paused: bool, since: float | None
) -> tuple[list[LoggedEvent], str, str]:
    """What the pane shows: the events that pass the table's filter (newest first), its title, and the
    text shown when there are none. ``since`` is when the first scan came in (None: not yet)."""
    narrowed = not spec.filter.is_empty or spec.listening_only
    rows = log.newest_first((lambda event: event_matches(event, spec)) if narrowed else None)
    title = f"Events · {len(rows)}"
    if narrowed:
        title += f" of {len(log)} match the filter"
    title += " · newest first"
    if log.dropped:
        title += f" · oldest {log.dropped} dropped (keeps {log.limit})"
    if paused and not rows:
        empty = "No events: refreshing is paused (space resumes)."
    elif since is None:
        empty = "Waiting for the first scan…"
    elif len(log) and narrowed:
        empty = "No event matches the filter."
    else:
        empty = f"No changes since {clock_time(since)}: sockets that open, close or change state appear here."
    return rows, title, empty


class EventLogPane(ScrollView, can_focus=True):
    """Shows the rows the screen hands it (:meth:`set_rows`), newest first, and keeps the reader's place.

    When the reader has scrolled down, new events arriving at the top do not move what they are reading.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back to the table", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "event-log--header",
        "event-log--open",
        "event-log--close",
        "event-log--state",
        "event-log--dim",
        "event-log--empty",
    }

    DEFAULT_CSS = """
    EventLogPane {
        background: $surface;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
    }
    EventLogPane > .event-log--header { text-style: bold; color: $foreground; background: $panel; }
    EventLogPane > .event-log--open { color: $success; text-style: bold; }
    EventLogPane > .event-log--close { color: $error; text-style: bold; }
    EventLogPane > .event-log--state { color: $warning; text-style: bold; }
    EventLogPane > .event-log--dim { color: $text-muted; }
    EventLogPane > .event-log--empty { color: $text-muted; text-style: italic; }
    """

    class BackRequested(Message):
        """Escape in the pane: the screen moves focus back to the table."""

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.rows: tuple[LoggedEvent, ...] = ()
        """What is shown, newest first."""
        self.empty_text = "No events yet."
        """Shown when there are no rows."""
        self._cells: dict[int, _Cells] = {}
        self._natural: tuple[int, ...] = tuple(len(h) for h in HEADER)
        self._styles: dict[str, Style] = {}

    # -- content --------------------------------------------------------------------------------

    def set_rows(self, rows: Sequence[LoggedEvent], empty_text: str = "No events yet.") -> None:
        """Show ``rows`` (newest first). A reader scrolled down keeps the same event at the top."""
        old_top: int | None = None
        top = round(self.scroll_y)
        if top > 0 and top < len(self.rows):
            old_top = self.rows[top].seq
        self.rows = tuple(rows)
        self.empty_text = empty_text
        keep = {item.seq for item in self.rows}
        if len(self._cells) > 2 * max(len(keep), 256):
            self._cells = {seq: cells for seq, cells in self._cells.items() if seq in keep}
        widths = [len(h) for h in HEADER]
        for item in self.rows:
            cells = self._cells.get(item.seq)
            if cells is None:
                cells = self._cells[item.seq] = event_cells(item)
            for i in (3, 4, 5, 6):
                if len(cells[i]) > widths[i]:
                    widths[i] = len(cells[i])
        widths[0] = max(widths[0], 8)
        widths[3] = min(widths[3], _CAPS["endpoints"])
        widths[4] = min(widths[4], _CAPS["state"])
        widths[5] = min(widths[5], _CAPS["owner"])
        widths[6] = min(widths[6], 16)
        self._natural = tuple(widths)
        self.virtual_size = Size(self._total_width(), len(self.rows) + 1)
        if old_top is not None:
            # Rows are ordered by descending sequence number: find where the old top row went.
            new_index = self._index_of(old_top)
            if new_index is not None and new_index != top:
                self.scroll_to(y=new_index, animate=False, force=True)
        self.refresh()

    def _index_of(self, seq: int) -> int | None:
        lo, hi = 0, len(self.rows)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.rows[mid].seq > seq:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.rows) and self.rows[lo].seq == seq:
            return lo
        return None

    @property
    def _widths(self) -> tuple[int, ...]:
        return fitted_widths(self._natural, self.scrollable_content_region.width)

    def _total_width(self) -> int:
        return sum(self._widths) + 2 * (len(self._widths) - 1)

    @property
    def lines(self) -> list[str]:
        """Every row as plain text, header first (for tests)."""
        return [self._plain(HEADER)] + [self._plain(self._cells.get(i.seq) or event_cells(i)) for i in self.rows]

    def _plain(self, cells: Sequence[str]) -> str:
        return "  ".join(fit(c, w) for c, w in zip(cells, self._widths, strict=False)).rstrip()

    # -- rendering ------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            full = self.get_component_rich_style(f"event-log--{name}")
            style = full if name == "header" else Style.from_color(full.color) + full.without_color
            self._styles[name] = style
        return style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x = round(self.scroll_x)
        base = self.rich_style
        if y == 0:
            style = base + self._style("header")
            strip = Strip([Segment(self._plain(HEADER), style)])
            strip = strip.extend_cell_length(max(width, self._total_width()), style)
            return strip.crop_extend(scroll_x, scroll_x + width, base)
        row = round(self.scroll_y) + y - 1
        if not self.rows:
            if y == 1:
                return Strip([Segment(" " + self.empty_text, base + self._style("empty"))]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if row >= len(self.rows):
            return Strip.blank(width, base)
        item = self.rows[row]
        cells = self._cells.get(item.seq) or event_cells(item)
        kind_style = {OPEN: "open", CLOSE: "close", STATE: "state"}.get(item.event.kind, "dim")
        segments: list[Segment] = []
        for i, (text, w) in enumerate(zip(cells, self._widths, strict=False)):
            if i:
                segments.append(Segment("  ", base))
            if i == 0 or i == 6:
                style = base + self._style("dim")
            elif i == 1:
                style = base + self._style(kind_style)
            else:
                style = base
            segments.append(Segment(fit(text, w), style))
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, base)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(self._total_width(), len(self.rows) + 1)

    def action_back(self) -> None:
        """Go back to the table."""
        self.post_message(self.BackRequested())
