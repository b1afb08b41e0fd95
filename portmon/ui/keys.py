"""The monitor's keys: every binding of the screen, and how the help screen groups them with the widgets' own."""

from __future__ import annotations

from textual.binding import Binding, BindingType

from portmon.ui.detail import DetailPane
from portmon.ui.filterbox import FilterInput
from portmon.ui.sockettable import SocketTable

MONITOR_BINDINGS: list[BindingType] = [
    # Priority: handled as the key arrives, so keys typed right after it already go to the filter box.
    Binding("slash", "focus_filter", "Filter", priority=True,
            tooltip="Filter: focus the filter box (enter: apply, escape: clear)"),
    # Two bindings per toggle, one shown at a time (MonitorScreen.check_action): the footer says the state.
    Binding("l", "listening(True)", "Listening: off", tooltip="Listening only: show only listening sockets (toggle)"),
    Binding("l", "listening(False)", "Listening: on", tooltip="Listening only: show only listening sockets (toggle)"),
    Binding("less_than_sign", "sort_previous", "Sort ◂", key_display="<", show=False,
            tooltip="Sort by the column to the left"),
    Binding("greater_than_sign", "sort_next", "Sort ▸", key_display=">", show=False,
            tooltip="Sort by the column to the right"),
    Binding("i", "invert_sort", "Invert", show=False,
            tooltip="Invert the sort order (a click on a header sorts by it)"),
    Binding("space", "pause(True)", "Pause", tooltip="Pause or resume refreshing"),
    Binding("space", "pause(False)", "Resume", tooltip="Pause or resume refreshing"),
    Binding("r", "refresh_now", "Refresh", show=False, tooltip="Refresh now"),
    Binding("d", "toggle_detail", "Details", tooltip="Show or hide the detail pane"),
    Binding("n", "toggle_names", "Names", show=False,
            tooltip="Show remote host names (reverse DNS in the background; toggle)"),
    Binding("k", "kill", "Kill", tooltip="Kill the processes holding the selected socket (asks first)"),
    Binding("x", "close_connection", "Close conn", show=False,
            tooltip="Close the selected TCP connection, not its process (root; asks first)"),
    Binding("m", "toggle_managers", "Managers", show=False,
            tooltip="Show or hide the Managed by column (unit, container, supervisor; shown when wide enough)"),
    Binding("t", "toggle_traffic", "Traffic", show=False,
            tooltip="Show or hide the TX/s and RX/s columns (rates since the last scan)"),
    Binding("e", "toggle_events", "Events",
            tooltip="Event log: sockets opened, closed or changed, newest first (toggle)"),
    Binding("c", "copy", "Copy", show=False,
            tooltip="Copy the selected socket's pid, command line or address to the clipboard"),
    Binding("w", "why", "Why", show=False,
            tooltip="Why is this port busy? Test-bind the selected row's port, or type one"),
    Binding("h", "port_history", "History", show=False,
            tooltip="History: who held the selected row's port before, and when"),
    Binding("question_mark", "help", "Help", key_display="?", tooltip="Help: this list of keys"),
    Binding("q", "quit", "Quit", tooltip="Quit portmon (also ctrl+q, ctrl+c)"),
]
"""The monitor screen's bindings (the Footer, the help screen and the command palette read them)."""


QUIT_BINDINGS: list[BindingType] = [
    # Not a priority binding: in the filter box, ctrl+c with text selected copies it first.
    Binding("ctrl+c", "quit", "Quit", show=False, tooltip="Quit portmon (in the filter box: copy the selection)"),
    Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="Quit portmon"),
    Binding("ctrl+z", "suspend", "Suspend", show=False, tooltip="Suspend to the shell (fg resumes)"),
]
"""The app's keys, active on every screen: htop, btop and k9s users quit with ctrl+c."""


def once_per_key(bindings: list[BindingType]) -> list[BindingType]:
    """``bindings`` without the second binding of a toggle's key (the help lists each key once)."""
    seen: set[str] = set()
    out: list[BindingType] = []
    for binding in bindings:
        key = binding.key if isinstance(binding, Binding) else str(binding[0])
        if key not in seen:
            seen.add(key)
            out.append(binding)
    return out


def key_groups(monitor: list[BindingType]) -> list[tuple[str, list[BindingType]]]:
    """The bindings the help screen lists, grouped: ``monitor`` (the screen's own) first."""
    return [
        ("Monitor", once_per_key(monitor)),
        ("Table", list(SocketTable.BINDINGS)),
        ("Filter box", list(FilterInput.BINDINGS)),
        # The detail pane and the event log share their one key (escape: back to the table).
        ("Panes", list(DetailPane.BINDINGS)),
        (
            "Anywhere",
            [
                *QUIT_BINDINGS,
                Binding("ctrl+p", "", "Command palette: every action by name, sorting by any column"),
                Binding("tab", "", "Next part: table, filter box, detail pane, event log"),
            ],
        ),
        (
            "Mouse",
            [
                Binding("click", "", "On a column title: sort by it (again: invert); on a row: select it"),
                Binding("double-click", "", "On a row: open the detail pane"),
            ],
        ),
        (
            "Kill dialog",
            [
                Binding("y", "", "Send the chosen signal (enter on the Send button too)"),
                Binding("s", "", "Choose the signal: TERM, INT, HUP, KILL"),
                Binding("f", "", "SIGKILL now (after a survived TERM: to the survivors)"),
                Binding("m", "", "Stop the manager instead (its own stop command; m or y again runs it)"),
                Binding("n", "", "Cancel (escape too)"),
            ],
        ),
        ("Why dialog", [Binding("enter", "", "Check the port typed"), Binding("k", "", "Kill what holds it")]),
    ]
