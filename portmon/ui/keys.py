"""The monitor's keys: every binding of the screen, and how the help screen groups them with the widgets' own."""

from __future__ import annotations

from textual.binding import Binding, BindingType

from portmon.ui.detail import DetailPane
from portmon.ui.filterbox import FilterInput
from portmon.ui.sockettable import SocketTable

MONITOR_BINDINGS: list[BindingType] = [
    # Priority: handled as the key arrives, so keys typed right after it already go to the filter box.
    Binding("slash", "focus_filter", "Filter", priority=True,
            tooltip="Filter: focus the filter box (enter: back, escape: clear)"),
    Binding("l", "toggle_listening", "Listening", tooltip="Listening only: show only listening sockets (toggle)"),
    Binding("less_than_sign", "sort_previous", "Sort ◂", key_display="<", show=False,
            tooltip="Sort by the column to the left"),
    Binding("greater_than_sign", "sort_next", "Sort ▸", key_display=">", show=False,
            tooltip="Sort by the column to the right"),
    Binding("i", "invert_sort", "Invert", show=False,
            tooltip="Invert the sort order (a click on a header sorts by it)"),
    Binding("space", "toggle_pause", "Pause", tooltip="Pause or resume refreshing"),
    Binding("r", "refresh_now", "Refresh", show=False, tooltip="Refresh now"),
    Binding("d", "toggle_detail", "Details", tooltip="Show or hide the detail pane"),
    Binding("n", "toggle_names", "Names", show=False,
            tooltip="Show remote host names (reverse DNS in the background; toggle)"),
    Binding("k", "kill", "Kill", tooltip="Kill the processes holding the selected socket (asks first)"),
    Binding("e", "toggle_events", "Events",
            tooltip="Event log: sockets opened, closed or changed, newest first (toggle)"),
    Binding("w", "why", "Why", tooltip="Why is this port busy? Test-bind the selected row's port, or type one"),
    Binding("question_mark", "help", "Help", key_display="?", tooltip="Help: this list of keys"),
    Binding("q", "app.quit", "Quit", tooltip="Quit portmon"),
]
"""The monitor screen's bindings (the Footer, the help screen and the command palette read them)."""


def key_groups(monitor: list[BindingType]) -> list[tuple[str, list[BindingType]]]:
    """The bindings the help screen lists, grouped: ``monitor`` (the screen's own) first."""
    return [
        ("Monitor", monitor),
        ("Table", list(SocketTable.BINDINGS)),
        ("Filter box", [Binding("enter", "", "Back to the table (the filter stays)"), *FilterInput.BINDINGS]),
        # The detail pane and the event log share their one key (escape: back to the table).
        ("Panes", list(DetailPane.BINDINGS)),
        ("Anywhere", [Binding("ctrl+p", "", "Command palette: every action by name")]),
    ]
