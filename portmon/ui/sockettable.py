"""A virtual socket table on Textual's Line API: only the visible rows are rendered, and the cursor follows a socket."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from portmon.model import Socket, SocketKey
from portmon.ui.columns import (
    HOST_COLUMN,
    MANAGED_COLUMN,
    MANAGED_WIDTH,
    MARK_COLUMN,
    TABLE_COLUMNS,
    TRAFFIC_COLUMNS,
    Column,
    column_at,
    layout_columns,
    natural_width,
)
from portmon.ui.rows import (
    CELL_STYLES,
    ROW_STYLES,
    FamilyLabel,
    ManagedBy,
    Rate,
    header_strip,
    layout_width,
    row_strip,
)
from portmon.ui.traffic import Traffic
from portmon.ui.view import MARK_NONE, NO_MARKS, Marks, RowIndex, cursor_after

AUTO = "auto"
"""The Managed by column's default: shown when the terminal is wide enough for every other column and it."""
ROW_CACHE_LIMIT = 1024
"""Rendered rows kept (~3 KB each): some twenty screens to scroll back through without rendering again.
A larger cache only makes a long session's memory grow further before it is cleared (bench/soak.py)."""


class SocketTable(ScrollView, can_focus=True):
    """A table of sockets that renders only what is on screen and keeps its cursor on a socket, not a row number.

    The screen owns the rows: it calls :meth:`set_rows` after each refresh or view change. The table
    posts :class:`SelectionChanged` when the selected socket changes, :class:`HeaderClicked` when a
    column title is clicked and :class:`RowActivated` on a double click or enter.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Previous row", show=False),
        Binding("down", "cursor_down", "Next row", show=False),
        Binding("pageup", "page_up", "One page up", show=False),
        Binding("pagedown", "page_down", "One page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last row", show=False),
        Binding("enter", "activate", "Details", show=False, tooltip="Open the detail pane and move into it"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"socket-table--{name}" for name in ROW_STYLES | CELL_STYLES}

    DEFAULT_CSS = """
    SocketTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        scrollbar-gutter: stable;
        scrollbar-size-vertical: 1;
    }
    SocketTable > .socket-table--header { text-style: bold; background: $panel; color: $foreground; }
    SocketTable > .socket-table--header-sorted { text-style: bold; background: $panel; color: $accent; }
    SocketTable > .socket-table--cursor { background: $block-cursor-blurred-background; }
    SocketTable:focus > .socket-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    SocketTable > .socket-table--new { background: $success 25%; }
    SocketTable > .socket-table--closed { color: $error; text-style: strike; }
    SocketTable > .socket-table--changed { background: $warning 20%; }
    SocketTable > .socket-table--backlog-full { background: $error 35%; text-style: bold; }
    SocketTable > .socket-table--listen { color: $success; }
    SocketTable > .socket-table--established { color: $primary-lighten-2; }
    SocketTable > .socket-table--time-wait { color: $text-muted; }
    SocketTable > .socket-table--close-wait { color: $warning; }
    SocketTable > .socket-table--other-state { color: #b48ead; }
    SocketTable > .socket-table--dim { color: $text-muted; }
    SocketTable > .socket-table--no-owner { color: $text-muted; text-style: italic; }
    """

    class SelectionChanged(Message):
        """The cursor is on a different socket (or on none)."""

        def __init__(self, socket: Socket | None) -> None:
            super().__init__()
            self.socket = socket

    class HeaderClicked(Message):
        """A column title was clicked: the screen sorts by it (or inverts when already sorted)."""

        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    class RowActivated(Message):
        """Enter or a double click on a row: the screen shows the detail pane."""

        def __init__(self, socket: Socket) -> None:
            super().__init__()
            self.socket = socket

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._clock = clock
        self.rows: Sequence[Socket] = ()
        self._index: RowIndex | Mapping[SocketKey, int] = {}
        self._data_widths: Mapping[str, int] = {}
        self.marks: Marks = NO_MARKS
        self.sort_column = "local_port"
        self.sort_descending = False
        self.cursor_row = 0
        """Row number of the cursor (meaningless when there are no rows)."""
        self.cursor_key: SocketKey | None = None
        """The socket the cursor is on: what a refresh keeps it on."""
        self.shown_columns: frozenset[str] | None = None
        """The columns the user chose to see (the config file's ``columns``); None: all of them."""
        self.host_name: Callable[[str], str | None] | None = None
        """When set, remote addresses are shown as the name this returns (None: not known yet)."""
        self._layout: list[tuple[Column, int]] = []
        self._layout_width = -1
        self._generation = 0
        # key -> (socket, mark, is cursor, generation, strip, rate): a row is rendered again only when one changed.
        self._cache: dict[SocketKey, tuple[Socket, str, bool, int, Strip, Rate | None]] = {}
        self.traffic: Traffic | None = None
        """The rates shown in the TX/s and RX/s columns."""
        self.show_traffic = False
        """Whether the rate columns are in the layout (the screen decides: a toggle, and counters present)."""
        self._styles: dict[str, Style] = {}
        self.managed_by: ManagedBy | None = None
        self.family_label: FamilyLabel | None = None
        """``+3 workers`` for a shared socket's Process cell (None: the plain ``+3``)."""
        """The Managed by cells' texts (None: no such column)."""
        self.managed_mode: str | bool = AUTO
        """The Managed by column: True (shown), False (hidden) or AUTO (shown when it fits)."""
        self.managed_shown = False
        """Whether the current layout has the Managed by column."""

    # -- the model ---------------------------------------------------------------------------

    @property
    def cursor_socket(self) -> Socket | None:
        """The socket under the cursor, or None when the table is empty."""
        if 0 <= self.cursor_row < len(self.rows):
            return self.rows[self.cursor_row]
        return None

    @property
    def data_height(self) -> int:
        """How many rows fit below the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def set_rows(
        self,
        rows: Sequence[Socket],
        index: RowIndex | Mapping[SocketKey, int],
        data_widths: Mapping[str, int],
        marks: Marks,
        sort_column: str,
        sort_descending: bool,
    ) -> None:
        """Show new rows, keeping the cursor on its socket and that socket at the same place on screen.

        If the cursor's socket is gone, the cursor moves to its nearest surviving neighbour.
        """
        old_rows = self.rows
        old_row = self.cursor_row
        old_key = self.cursor_key
        old_socket = self.cursor_socket
        shown = self.visible_window()
        screen_offset = old_row - round(self.scroll_y)
        self.rows = rows
        self._index = index
        self.marks = marks
        self.sort_column = sort_column
        self.sort_descending = sort_descending
        if dict(data_widths) != dict(self._data_widths):
            self._data_widths = data_widths
            self._layout_width = -1
        self.cursor_row = cursor_after(old_rows, old_row, old_key, rows, index)
        new_socket = self.cursor_socket
        self.cursor_key = new_socket.key if new_socket is not None else None
        self._update_virtual_size()
        height = self.data_height
        if 0 <= screen_offset < height:
            target = self.cursor_row - screen_offset
        else:
            target = round(self.scroll_y)
        self._set_scroll(max(0, min(target, max(0, len(rows) - height))))
        self._keep_cursor_visible()
        if len(self._cache) > ROW_CACHE_LIMIT:
            self._cache.clear()
        if self.visible_window() != shown:
            self.refresh()
        if new_socket is not old_socket and (
            new_socket is None or old_socket is None or new_socket != old_socket
        ):
            self.post_message(self.SelectionChanged(new_socket))

    def visible_window(self) -> tuple[object, ...]:
        """Everything the table's visible lines are drawn from: the layout, the scroll position, and each row on
        screen with its mark, rate and cursor. A refresh whose rows leave this unchanged repaints nothing.

        At 31,000 sockets sorted by port most refreshes change no row on screen (new connections and
        TIME_WAIT land elsewhere), and repainting the unchanged lines through Textual's compositor was
        most of the UI thread's work: it used 1.0-1.4 % of a core instead of 2.2-2.8 % (issue 18's
        load, two monitors side by side at 160x45, 20 s each; ``python bench/bench_startup.py`` prints
        the UI thread's share). Highlights that fade with the clock are repainted by
        :meth:`refresh_marks`, on the screen's tick. tests/test_ui_tricks.py checks that a refresh
        skipped this way shows what a full repaint shows. The layout is taken as it
        is (a layout not yet redone counts as changed).
        """
        top = round(self.scroll_y)
        rows = self.rows[top : top + self.data_height]
        marks = self.marks
        now = self._clock()
        traffic = self.traffic if self.show_traffic else None
        return (
            self._generation,
            self._layout_width,
            self.sort_column,
            self.sort_descending,
            top,
            round(self.scroll_x),
            self.cursor_row - top,
            tuple(rows),
            tuple(marks.mark(s.key, now) for s in rows) if marks else (MARK_NONE,) * len(rows),
            tuple(traffic.rate(s) for s in rows) if traffic is not None else (),
        )

    def select_key(self, key: SocketKey) -> bool:
        """Put the cursor on the socket with this key; False when it is not in the table."""
        row = self._index.get(key)
        if row is None:
            return False
        self.move_cursor(row)
        return True

    def set_host_names(self, host_name: Callable[[str], str | None] | None) -> None:
        """Show remote addresses as the names ``host_name`` returns (None: addresses again)."""
        self.host_name = host_name
        self._layout_width = -1
        self.invalidate()

    def invalidate(self) -> None:
        """Render every row again (host names or styles changed)."""
        self._generation += 1
        self.refresh()

    # -- layout --------------------------------------------------------------------------------

    def _available_width(self) -> int:
        return self.scrollable_content_region.width

    def set_traffic(self, traffic: Traffic | None, show: bool) -> None:
        """Take the rates of the latest scan; ``show`` puts the TX/s and RX/s columns in or out of the layout.

        Rows are repainted only where their rate changed (the row cache compares it), and only when shown.
        """
        self.traffic = traffic
        if show != self.show_traffic:
            self.show_traffic = show
            self._layout_width = -1
            self.refresh()

    def set_managed_by(self, managed_by: ManagedBy | None, mode: str | bool) -> None:
        """Where the Managed by texts come from, and whether the column shows (True, False or AUTO)."""
        self.managed_by = managed_by
        self.managed_mode = mode
        self._layout_width = -1
        self.invalidate()

    def _managed_wanted(self, available: int, widths: dict[str, int], hidden: tuple[str, ...]) -> bool:
        if self.managed_by is None or self.managed_mode is False:
            return False
        if self.managed_mode is True:
            return True
        if self.shown_columns is not None and MANAGED_COLUMN.name not in self.shown_columns:
            return False
        # AUTO: only when every other column keeps its natural width beside it.
        return natural_width(widths, hidden) + 1 + MANAGED_WIDTH <= available

    def _hidden(self) -> tuple[str, ...]:
        hidden = () if self.show_traffic else TRAFFIC_COLUMNS
        if self.shown_columns is not None:
            # The user's choice of columns (the config file); the mark gutter and the host column stay.
            kept = (*self.shown_columns, MARK_COLUMN, HOST_COLUMN.name)
            hidden = (*hidden, *(c.name for c in TABLE_COLUMNS if c.name not in kept))
        return hidden

    def _wanted_widths(self) -> dict[str, int]:
        widths = dict(self._data_widths)
        if self.host_name is not None:
            widths["remote_addr"] = max(widths.get("remote_addr", 0), 30)
        return widths

    def natural_width(self) -> int:
        """Cells the table wants for its rows when no column has to give way (its scrollbar included)."""
        widths = self._wanted_widths()
        if self.managed_by is not None and self.managed_mode is True:
            widths[MANAGED_COLUMN.name] = MANAGED_WIDTH
        return natural_width(widths, self._hidden()) + 1

    def _ensure_layout(self) -> None:
        width = self._available_width()
        if width != self._layout_width:
            widths = self._wanted_widths()
            hidden = self._hidden()
            self.managed_shown = self._managed_wanted(width, widths, hidden)
            if self.managed_shown:
                room = width - natural_width(widths, hidden) - 2  # its gap and the scrollbar
                widths[MANAGED_COLUMN.name] = max(MANAGED_WIDTH, min(MANAGED_COLUMN.cap, room))
            self._layout = layout_columns(width, widths, hidden)
            self._layout_width = width
            self._generation += 1

    @property
    def columns(self) -> list[tuple[Column, int]]:
        """The visible columns and their widths at the current size."""
        self._ensure_layout()
        return list(self._layout)

    def _update_virtual_size(self) -> None:
        self._ensure_layout()
        size = Size(layout_width(self._layout), len(self.rows) + 1)
        old = self.virtual_size
        if size == old:
            return
        if size.width == old.width and min(size.height, old.height) > self.size.height:
            # Only the row count changed, with the scrollbar shown before and after: the scrollbar is
            # updated, but the table is not repainted (the virtual_size reactive would repaint it all
            # and ask for a layout; visible_window says when the rows on screen need painting).
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    def on_resize(self, event: events.Resize) -> None:
        # The layout is redone only if the width changed (_ensure_layout compares it): often the
        # first frame at the new size already did it, and doing it again would render every row twice.
        self._update_virtual_size()
        self._keep_cursor_visible()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._generation += 1

    def on_focus(self) -> None:
        self._generation += 1
        self.refresh()

    def on_blur(self) -> None:
        self._generation += 1
        self.refresh()

    # -- rendering -----------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        """A component's style. Row styles (marks, cursor, header) keep their background; cell styles
        (state colours, dim text) keep only colour and attributes, so the row's background shows."""
        style = self._styles.get(name)
        if style is None:
            # The full style blends translucent CSS colours ("$success 25%") over the background.
            full = self.get_component_rich_style(f"socket-table--{name}")
            if name in ROW_STYLES:
                style = full
            else:
                style = Style.from_color(full.color) + full.without_color
            self._styles[name] = style
        return style

    def render_line(self, y: int) -> Strip:
        self._ensure_layout()
        width = self.scrollable_content_region.width
        scroll_x = round(self.scroll_x)
        base = self.rich_style
        if y == 0:
            strip = self._header_strip()
        else:
            row = round(self.scroll_y) + y - 1
            if row >= len(self.rows):
                return Strip.blank(width, base)
            strip = self._row_strip(row)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header_strip(self) -> Strip:
        base = self.rich_style
        strip = header_strip(
            self._layout,
            self.sort_column,
            self.sort_descending,
            base + self._style("header"),
            base + self._style("header-sorted"),
            self._available_width(),
        )
        return strip

    def _row_strip(self, row: int) -> Strip:
        """Row ``row`` as drawn, from the row cache while its socket, mark and cursor are unchanged.

        A repaint of a 48-row screen from the cache costs 0.02 ms instead of 1.6-3.3 ms rendering each
        row again (``python bench/bench_ui_tricks.py``); tests/test_ui_tricks.py checks both agree.
        """
        sock = self.rows[row]
        key = sock.key
        mark = self.marks.mark(key, self._clock()) if self.marks else MARK_NONE
        is_cursor = row == self.cursor_row
        rate = self.traffic.rate(sock) if self.show_traffic and self.traffic is not None else None
        cached = self._cache.get(key)
        if (
            cached is not None
            and cached[3] == self._generation
            and cached[1] == mark
            and cached[2] == is_cursor
            and cached[5] == rate
            and cached[0] == sock
        ):
            return cached[4]
        strip = self._render_row(sock, mark, is_cursor, rate)
        self._cache[key] = (sock, mark, is_cursor, self._generation, strip, rate)
        return strip

    def _render_row(self, sock: Socket, mark: str, is_cursor: bool, rate: Rate | None = None) -> Strip:
        return row_strip(
            sock,
            mark,
            is_cursor,
            self._layout,
            self.rich_style,
            self._style,
            self.host_name,
            self._available_width(),
            rate,
            self.managed_by if self.managed_shown else None,
            self.family_label,
        )

    # -- cursor and scrolling ------------------------------------------------------------------

    def refresh_marks(self) -> int:
        """Repaint the visible rows whose highlight changed with the clock (a fade ran out); return how many.

        A tick between refreshes usually changes no visible row, or one or two: repainting only
        those spares the whole table's paint twice a second while highlights fade: 3.2-4 ms of CPU
        per tick instead of 7.8-9.7 ms at 10,000 sockets and 160x50 (``python bench/bench_ui_tricks.py``).
        tests/test_ui_tricks.py checks the result looks as after a full repaint.
        """
        if not self.marks or not self.rows:
            return 0
        now = self._clock()
        top = round(self.scroll_y)
        changed = 0
        for row in range(top, min(len(self.rows), top + self.data_height)):
            key = self.rows[row].key
            cached = self._cache.get(key)
            # A row not painted yet gets its mark when it is; one painted with another mark is stale.
            if cached is not None and cached[1] != self.marks.mark(key, now):
                self.refresh_line(row + 1)  # the header is line 0
                changed += 1
        return changed

    def _set_scroll(self, y: int) -> None:
        self.scroll_to(y=y, animate=False, force=True)

    def _keep_cursor_visible(self) -> None:
        if not self.rows:
            return
        height = self.data_height
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self._set_scroll(self.cursor_row)
        elif self.cursor_row >= top + height:
            self._set_scroll(self.cursor_row - height + 1)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on row number ``row`` (clamped), scroll it into view and announce it."""
        if not self.rows:
            return
        row = max(0, min(row, len(self.rows) - 1))
        old = self.cursor_row
        old_key = self.cursor_key
        self.cursor_row = row
        self.cursor_key = self.rows[row].key
        self.refresh_line(old + 1)
        self.refresh_line(row + 1)
        self._keep_cursor_visible()
        if old_key != self.cursor_key:
            self.post_message(self.SelectionChanged(self.rows[row]))

    def action_cursor_up(self) -> None:
        """Move the cursor up one row."""
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        """Move the cursor down one row."""
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        """Move the cursor up one page, scrolling with it."""
        step = max(1, self.data_height - 1)
        self._set_scroll(max(0, round(self.scroll_y) - step))
        self.move_cursor(self.cursor_row - step)

    def action_page_down(self) -> None:
        """Move the cursor down one page, scrolling with it."""
        step = max(1, self.data_height - 1)
        self._set_scroll(round(self.scroll_y) + step)
        self.move_cursor(self.cursor_row + step)

    def action_first(self) -> None:
        """Move the cursor to the first row."""
        self.move_cursor(0)

    def action_last(self) -> None:
        """Move the cursor to the last row."""
        self.move_cursor(len(self.rows) - 1)

    def action_activate(self) -> None:
        """Ask the screen to show the selected socket's details."""
        sock = self.cursor_socket
        if sock is not None:
            self.post_message(self.RowActivated(sock))

    # -- mouse ---------------------------------------------------------------------------------

    def column_at(self, x: int) -> str | None:
        """The column under content offset ``x`` (scroll included), or None between/after columns."""
        self._ensure_layout()
        return column_at(self._layout, x + round(self.scroll_x))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        event.stop()
        if offset.y == 0:
            column = self.column_at(offset.x)
            if column is not None:
                self.post_message(self.HeaderClicked(column))
            return
        row = round(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self.rows):
            self.move_cursor(row)
            if event.chain >= 2:
                self.post_message(self.RowActivated(self.rows[row]))
