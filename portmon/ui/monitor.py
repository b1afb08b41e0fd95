"""The monitor screen: owns the snapshot, the view settings and the selection, and wires the widgets together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Sparkline, Static

from portmon.actions.binds import Binder, probe_binds
from portmon.collect.base import Collector
from portmon.collect.netstat import read_listen_counters
from portmon.model import Snapshot, Socket
from portmon.ownership.preflight import GRACE
from portmon.procinfo import ProcessReader
from portmon.query.diff import Event
from portmon.query.events import DEFAULT_EVENT_LIMIT, EventLog
from portmon.query.sorting import COLUMNS
from portmon.textsafe import visible
from portmon.ui.background import HostNames
from portmon.ui.closemodal import CloseModal, Closer, default_closer
from portmon.ui.detail import DetailPane
from portmon.ui.detailfeed import DetailFeed, OwnershipRead, ProcessRead
from portmon.ui.dialogs import Dialogs, why_prober
from portmon.ui.eventlog import EventLogPane, pane_content
from portmon.ui.filterbox import FilterInput
from portmon.ui.keys import MONITOR_BINDINGS, key_groups
from portmon.ui.owners import LiveOwnership, ManagerNames, OwnershipReader
from portmon.ui.restyle import set_screen_class
from portmon.ui.scans import ScanCompleted, ScanSource, freeze_long_lived_objects
from portmon.ui.sockettable import SocketTable
from portmon.ui.status import NOTICE_FADE_SECONDS, NOTICE_SECONDS, Banner, CountHistory, StatusInfo, StatusLine
from portmon.ui.traffic import HISTORY_SCANS, RATE_COLUMNS, ListenReader, Traffic, process_totals
from portmon.ui.traffictext import detail_section
from portmon.ui.view import NO_MARKS, Marks, Update, View, ViewSpec, derive_view, state_counts

TYPED_IN_FILTER = frozenset(b.action.partition("(")[0] for b in MONITOR_BINDINGS if isinstance(b, Binding))
"""The screen's actions: their keys (letters, "/", space, "?") are text in the filter box."""
DETAIL_MIN = 56
"""Cells the side detail pane keeps at least from 160 columns (its border and padding included)..."""
DETAIL_MIN_NARROW = 44
"""... and at 120, where the table needs the room: in between, 35% of the width."""
MIN_TABLE = 40
NARROW_WIDTH = 120
"""Below this many columns the detail pane goes under the table instead of beside it."""
DEBOUNCE_ROWS = 35_000
"""Above this many sockets, filtering waits for a pause in typing."""
TICK_SECONDS = 0.5
# With shorter refresh intervals, the next refresh removes expired closed rows anyway.
GHOST_REDERIVE_INTERVAL = 2.0


class HostResolved(Message):
    """A reverse lookup finished; the table shows the name."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr


class ManagersResolved(Message):
    """Managed by texts were worked out in the background: the table redraws its rows."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ManagersResolved)


class MonitorScreen(Screen[None]):
    """The live socket table with its filter box, detail pane, status line and sparkline."""

    BINDINGS: ClassVar[list[BindingType]] = MONITOR_BINDINGS

    def __init__(
        self,
        collector: Collector,
        *,
        interval: float,
        poll: bool,
        clock: Callable[[], float],
        spec: ViewSpec,
        process_reader: ProcessReader,
        resolve: Callable[[str], str | None],
        event_limit: int = DEFAULT_EVENT_LIMIT,
        binder: Binder = probe_binds,
        privileged: bool | None = None,
        columns: frozenset[str] | None = None,
        resolve_names: bool = False,
        ignored: str = "",
        listen: ListenReader | None = None,
        closer: Closer = default_closer,
        ownership: OwnershipReader | None = None,
        kill_grace: float = GRACE,
    ) -> None:
        """``listen`` reads the host's listen-queue counters (None: /proc/net/netstat while polling, else
        nothing); ``closer`` closes one connection (a fake in tests); ``ownership`` answers who manages a
        row's process (None: this machine's /proc, systemd and container engines)."""
        super().__init__()
        self.collector = collector
        self.shown_columns = columns
        """The columns to show (None: all)."""
        self.resolve_at_start = resolve_names
        self.ignored = ignored
        """The config file's ``ignore`` filters (normalized text): left out of every scan, named in the filter bar."""
        self.requested_interval = interval
        self.interval = interval
        """The refresh interval in effect (grows when scans are slow)."""
        self.poll = poll
        self.clock = clock
        self.spec = spec
        """What the user asked to see. Read by the poller thread; replaced, never mutated."""
        self.snapshot: Snapshot | None = None
        self.marks: Marks = NO_MARKS
        self.view: View | None = None
        self.paused = False
        self.detail_visible = False
        self.resolving = False
        self.outcome: str | None = None
        """The last kill outcome, shown in the status line (fading)."""
        self.outcome_at = 0.0
        self.filter_error: str | None = None
        self.history = CountHistory()
        self.scans = 0
        """How many scan results were applied (for tests)."""
        self._process_reader = process_reader
        self._resolve = resolve
        self.source = ScanSource(
            collector,
            lambda: self.spec,
            poll=poll,
            interval=interval,
            clock=clock,
            post=self.post_message,
            apply=self._apply,
            listen=listen if listen is not None else (read_listen_counters if poll else None),
        )
        """The scans: a poller thread while polling, else one scan at start and one per refresh key."""
        self.kill_grace = kill_grace
        """Seconds the kill dialog waits for a re-bind when a restart is predicted (config ``grace``)."""
        self.ownership: OwnershipReader = ownership if ownership is not None else LiveOwnership()
        """Who manages each row's process: the Managed by column and the detail pane."""
        self.managers = ManagerNames(self.ownership, lambda: self.post_message(ManagersResolved()), background=poll)
        """The Managed by texts, worked out for the rows on screen (off the event loop while polling)."""
        self.detail_feed = DetailFeed(process_reader, self.post_message, background=poll, ownership=self.ownership)
        """Reads the detail pane's process and hands the pane what changed."""
        self._table_width: int | str = "1fr"
        self._names: HostNames | None = None
        self._ghosts_shown = 0
        self._expiry: tuple[Marks | None, float | None] = (None, None)
        """The marks whose earliest expiry was last worked out, and that expiry (see ``_tick``)."""
        self.events = EventLog(event_limit)
        """The session's events (bounded); the event log pane shows them filtered like the table."""
        self.events_visible = False
        self.why_probe = why_prober(binder, process_reader, privileged, clock)
        """Test-binds a port and explains it (runs on a worker thread while polling)."""
        self.dialogs = Dialogs(self)
        self.traffic: Traffic | None = None
        """Rates between the last two scans and the listen counters (from the poller's pipeline)."""
        self.traffic_columns = True
        """The user's TX/s and RX/s toggle (the columns show only when the scan has byte counters, too)."""
        self.closer = closer
        """Closes one connection for the close dialog."""
        self._traffic_detail: tuple[object, ...] | None = None

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-bar"):
            yield Static("portmon", id="brand")
            yield FilterInput(
                value=self.spec.filter.text,
                placeholder="/ to filter:  :8080  state:listen  proc:nginx  !user:root",
                id="filter",
                compact=True,
                select_on_focus=False,
                debounce=self._debounce_filter,
            )
            if self.ignored:
                yield Static(Text(visible(f"ignoring: {self.ignored}")), id="ignored", markup=False)
        yield Static("", id="filter-error", markup=False)
        yield Banner(id="banner")
        with Horizontal(id="main"):
            yield SocketTable(clock=self.clock, id="table")
            yield DetailPane(id="detail")
        yield EventLogPane(id="events")
        with Horizontal(id="status-bar"):
            yield StatusLine(id="status")
            with Vertical(id="history"):
                yield Static("sockets, 5 min", id="history-label", markup=False)
                yield Sparkline([], id="sparkline")
        yield Footer()

    def _debounce_filter(self) -> bool:
        """Filtering a huge table waits for a pause in typing (only live: tests type without waiting)."""
        return self.poll and self.snapshot is not None and len(self.snapshot.sockets) > DEBOUNCE_ROWS

    @property
    def table(self) -> SocketTable:
        """The socket table."""
        return self.query_one("#table", SocketTable)

    @property
    def detail(self) -> DetailPane:
        """The detail pane."""
        return self.query_one("#detail", DetailPane)

    def on_mount(self) -> None:
        self.query_one("#filter", FilterInput).cursor_blink = self.poll
        self.table.shown_columns = self.shown_columns
        self.table.set_managed_by(self.managers.get, "auto")
        self.table.family_label = self.managers.family_label
        if self.resolve_at_start:
            self.action_toggle_names()
        self._set_narrow(self.size.width)
        self.table.focus()
        self._show_status()
        self.source.start()
        if self.poll:
            self.set_interval(TICK_SECONDS, self._tick)

    def on_unmount(self) -> None:
        self.source.stop()
        self.detail_feed.shutdown()
        self.managers.shutdown()
        if self._names is not None:
            self._names.shutdown()

    def on_resize(self, event: Resize) -> None:
        self._set_narrow(event.size.width)

    def _panes(self) -> tuple[Widget, ...]:
        """The widgets the style sheet's "with-detail" and "with-events" rules reach (portmon.tcss)."""
        return (self.detail, self.query_one("#events", EventLogPane))

    def _set_narrow(self, width: int) -> None:
        narrow = width < NARROW_WIDTH
        self.set_class(narrow, "narrow")
        # The palette's footer hint does not fit beside the keys at 80 columns; ctrl+p still works.
        footer = self.query_one(Footer)
        footer.show_command_palette = not narrow
        # Compact spacing keeps every key, up to "q Quit", on one line at 80 columns.
        footer.compact = narrow
        self._fit_table()

    # -- scans -----------------------------------------------------------------------------------

    def on_scan_completed(self, message: ScanCompleted) -> None:
        self._apply(message.update, message.events)

    def _apply(self, update: Update, events: tuple[Event, ...] = ()) -> None:
        self.scans += 1
        if self.scans == 1 and self.poll:
            freeze_long_lived_objects()
        if events:
            self.events.add(events)
        self.snapshot = update.snapshot
        self.managers.new_scan()
        self.marks = update.marks
        self.interval = update.interval
        self.traffic = update.traffic
        view = update.view
        if view.spec != self.spec:
            # The user changed the view while the poller was deriving: derive again with what they asked.
            view = derive_view(update.snapshot, update.marks, self.spec, self.clock(), view.states, self.traffic)
        if update.snapshot.error is None:
            self.history.add(update.snapshot.taken_at, len(update.snapshot.sockets))
            self.query_one("#sparkline", Sparkline).data = self.history.counts
        self._show(view)
        self._show_banner()
        if self.detail_visible:
            self._show_detail(reread=True)
        if self.events_visible and (events or self.scans == 1):
            self._show_events()

    def _show(self, view: View) -> None:
        self.view = view
        self._ghosts_shown = len(view.rows) - view.shown
        self.table.set_traffic(self.traffic, self.traffic_shown)
        self.table.set_rows(view.rows, view.index, view.widths, self.marks, view.spec.column, view.spec.descending)
        self._fit_table(grow_only=True)
        self._show_status()

    def _fit_table(self, grow_only: bool = False) -> None:
        """With the side pane open, the table takes the width its columns want and the pane the rest
        (so neither a cut State nor an empty gap beside a wrapping pane); the pane keeps DETAIL_MIN.

        After a refresh (``grow_only``) the table only grows: a pane whose width followed every
        change in the data would re-wrap under the reader's eyes.
        """
        width: int | str = "1fr"
        if self.detail_visible and not self.has_class("narrow"):
            pane = min(DETAIL_MIN, max(DETAIL_MIN_NARROW, self.size.width * 7 // 20))
            width = max(MIN_TABLE, min(self.table.natural_width(), self.size.width - pane))
            if grow_only and isinstance(self._table_width, int):
                width = max(width, self._table_width)
        if width != self._table_width:
            self._table_width = width
            self.table.styles.width = width

    def _rederive(self) -> None:
        """Derive the rows again after the user changed the view (on the event loop: it is their keypress)."""
        if self.snapshot is None:
            self._show_status()
            return
        states = self.view.states if self.view is not None else state_counts(self.snapshot.sockets)
        self._show(derive_view(self.snapshot, self.marks, self.spec, self.clock(), states, self.traffic))

    def _set_spec(self, spec: ViewSpec) -> None:
        if spec != self.spec:
            self.spec = spec
            self._rederive()
            if self.events_visible:
                self._show_events()

    def _tick(self) -> None:
        """Let highlights fade and closed rows go between refreshes (only while polling)."""
        now = self.clock()
        marks = self.marks
        if not marks:
            return
        # The marks change only with a refresh: their earliest expiry is worked out once per refresh,
        # not twice a second (a pass over every mark: hundreds under churn).
        if self._expiry[0] is not marks:
            self._expiry = (marks, marks.next_expiry())
        expiry = self._expiry[1]
        if expiry is not None and now >= expiry:
            # Closed rows are counted only when the next refresh is far enough away to matter.
            far = self.paused or self.interval >= GHOST_REDERIVE_INTERVAL
            if far and len(marks.ghosts(now)) < self._ghosts_shown:
                self._rederive()
            else:
                self.table.refresh_marks()

    def refresh_marks(self) -> None:
        """Re-evaluate highlights and closed rows against the clock now (what the tick does while polling)."""
        self._rederive()

    # -- status ----------------------------------------------------------------------------------

    def _show_status(self) -> None:
        view = self.view
        info = StatusInfo(
            shown=view.shown if view is not None else 0,
            total=view.total if view is not None else 0,
            states=view.shown_states if view is not None else {},
            snapshot=self.snapshot,
            interval=self.interval,
            requested_interval=self.requested_interval,
            paused=self.paused,
            spec=self.spec,
            resolving=self.resolving,
            outcome=self.outcome,
            outcome_age=self.clock() - self.outcome_at,
            traffic=self.traffic,
        )
        self.query_one("#status", StatusLine).show(info)

    def _show_banner(self) -> None:
        self.query_one("#banner", Banner).show(self.snapshot, self.interval)

    # -- filter ----------------------------------------------------------------------------------

    @on(FilterInput.Applied)
    def _filter_applied(self, event: FilterInput.Applied) -> None:
        self.filter_error = None
        error = self.query_one("#filter-error", Static)
        error.update("")
        error.remove_class("shown")
        self._set_spec(replace(self.spec, filter=event.filter))

    @on(FilterInput.Invalid)
    def _filter_invalid(self, event: FilterInput.Invalid) -> None:
        # The last valid filter stays in effect; the message names the bad term.
        self.filter_error = event.error
        error = self.query_one("#filter-error", Static)
        error.update(Text(visible(event.error)))
        error.add_class("shown")

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    @on(FilterInput.Cleared)
    def _filter_cleared(self) -> None:
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Which bindings are live (and shown in the footer).

        In the filter box, the screen's letter keys are text ("/" too: an address range, a path), so
        the footer shows the box's own keys instead. Of a toggle's two bindings, the one that would
        change the state is live: its label says the state now.
        """
        if isinstance(self.focused, Input) and action in TYPED_IN_FILTER:
            return False
        if action == "listening":
            return bool(parameters and parameters[0]) != self.spec.listening_only
        if action == "pause":
            return bool(parameters and parameters[0]) != self.paused
        return True

    def action_focus_filter(self) -> None:
        """Focus the filter box."""
        # At once, not with Widget.focus() (deferred): keys typed right after "/" are already queued
        # and would otherwise go to the table, where "l" or "k" runs an action instead of typing.
        self.set_focus(self.query_one("#filter", FilterInput))

    # -- view actions ----------------------------------------------------------------------------

    def action_toggle_listening(self) -> None:
        """Show only listening sockets, or everything again."""
        self.action_listening(not self.spec.listening_only)

    def action_listening(self, on: bool) -> None:
        """Show only listening sockets (``on``), or everything."""
        self._set_spec(replace(self.spec, listening_only=on))
        self.refresh_bindings()

    def action_sort_previous(self) -> None:
        """Sort by the column to the left."""
        self._set_spec(self.spec.with_column_step(-1))

    def action_sort_next(self) -> None:
        """Sort by the column to the right."""
        self._set_spec(self.spec.with_column_step(1))

    def action_invert_sort(self) -> None:
        """Invert the sort order."""
        self._set_spec(replace(self.spec, descending=not self.spec.descending))

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; when it is already the sort column, invert the order."""
        if column == self.spec.column:
            self._set_spec(replace(self.spec, descending=not self.spec.descending))
        else:
            self._set_spec(replace(self.spec, column=column, descending=False))

    @on(SocketTable.HeaderClicked)
    def _header_clicked(self, event: SocketTable.HeaderClicked) -> None:
        if event.column in COLUMNS or event.column in RATE_COLUMNS:  # not the mark gutter
            self.sort_by(event.column)

    def action_toggle_pause(self) -> None:
        """Pause or resume refreshing."""
        self.action_pause(not self.paused)

    def action_pause(self, paused: bool) -> None:
        """Pause refreshing (``paused``) or resume it."""
        self.paused = paused
        self.source.pause(paused)
        self._show_status()
        self.refresh_bindings()

    def action_refresh_now(self) -> None:
        """Scan now (also while paused)."""
        self.source.scan_now()

    # -- detail pane -----------------------------------------------------------------------------

    def action_toggle_detail(self) -> None:
        """Show or hide the detail pane."""
        self.set_detail(not self.detail_visible)

    def set_detail(self, visible_: bool, focus: bool = False) -> None:
        """Show or hide the detail pane (and focus it)."""
        self.detail_visible = visible_
        set_screen_class(self, visible_, "with-detail", self._panes())
        self._fit_table()
        if visible_:
            self._show_detail(reread=True)
            if focus:
                self.detail.focus()
        elif self.focused is self.detail:
            self.table.focus()

    @on(SocketTable.RowActivated)
    def _row_activated(self) -> None:
        self.set_detail(True, focus=True)

    @on(DetailPane.BackRequested)
    def _detail_back(self) -> None:
        if self.has_class("narrow"):
            self.set_detail(False)
        self.table.focus()

    @on(SocketTable.SelectionChanged)
    def _selection_changed(self) -> None:
        if self.detail_visible:
            self._show_detail(reread=True)

    def _show_detail(self, reread: bool) -> None:
        sock = self.table.cursor_socket
        self.detail_feed.show(self.detail, sock, self.snapshot, self.marks, self.clock(), reread)
        self._show_traffic_detail(sock)

    def _show_traffic_detail(self, sock: Socket | None) -> None:
        """The detail pane's traffic section and its process's rate sparkline (redrawn only when they changed)."""
        traffic = self.traffic
        shown = (sock, traffic)
        if shown == self._traffic_detail:
            return
        self._traffic_detail = shown
        totals = None
        if traffic is not None and traffic.counters and sock is not None and sock.holders and self.snapshot:
            # One pass over the snapshot, only while the pane is open and only when the scan or the selection changed.
            totals = process_totals(self.snapshot.sockets, sock.holders[0].pid)
        series = None
        if traffic is not None and totals is not None and sock is not None and sock.holders:
            history = traffic.series(sock.holders[0].pid)
            # A fixed time axis from zero: the bars move left scan by scan, and a first burst reads as one.
            series = [0.0] * (HISTORY_SCANS - len(history)) + history
        self.detail.show_traffic(detail_section(sock, traffic, totals), series)

    # -- traffic ---------------------------------------------------------------------------------

    @property
    def traffic_shown(self) -> bool:
        """Whether the table shows the rate columns: the user's toggle, and byte counters in the scan."""
        return self.traffic_columns and self.traffic is not None and self.traffic.counters

    def action_toggle_traffic(self) -> None:
        """Show or hide the TX/s and RX/s columns."""
        self.traffic_columns = not self.traffic_columns
        if self.traffic is None or not self.traffic.counters:
            self.notify("No traffic counters from this collector (Linux sock_diag gives them).", markup=False)
        if self.view is not None:
            self._show(self.view)
        self._fit_table()

    def action_close_connection(self) -> None:
        """Ask to close the selected TCP connection (not its process); never offered on a listener."""
        sock = self.selected
        if sock is None:
            self.notify("No socket selected.", severity="warning")
            return
        if sock.listening:
            self.notify(
                "Close is for one connection, never a listening socket (k kills its holders).", severity="warning"
            )
            return
        # The connection is captured now: the dialog acts on it, whatever the table shows by the time of "y".
        self.app.push_screen(CloseModal(sock, self.closer), self._close_reported)

    def _close_reported(self, result: str | None) -> None:
        if result is None:
            return
        self.notify(visible(result), title="close", markup=False)
        self.action_refresh_now()

    def on_managers_resolved(self, message: ManagersResolved) -> None:
        self.table.invalidate()

    def action_toggle_managers(self) -> None:
        """Show or hide the Managed by column (by default it shows when the terminal is wide enough)."""
        self.table.set_managed_by(self.managers.get, not self.table.managed_shown)
        self._fit_table()

    def on_ownership_read(self, message: OwnershipRead) -> None:
        self.detail_feed.received_ownership(message)
        if self.detail_visible:
            self._show_detail(reread=False)

    def on_process_read(self, message: ProcessRead) -> None:
        self.detail_feed.received(message)
        sock = self.table.cursor_socket
        if self.detail_visible and sock is not None and sock.holders and sock.holders[0].pid == message.pid:
            self._show_detail(reread=False)

    # -- event log and "why is this port busy?" ---------------------------------------------------

    def action_toggle_events(self) -> None:
        """Show or hide the event log pane."""
        self.set_events(not self.events_visible)

    def set_events(self, visible_: bool) -> None:
        """Show or hide the event log pane (focus stays where it is, unless it was in the pane)."""
        self.events_visible = visible_
        set_screen_class(self, visible_, "with-events", self._panes())
        pane = self.query_one("#events", EventLogPane)
        if visible_:
            self._show_events()
        elif self.focused is pane:
            self.table.focus()

    def _show_events(self) -> None:
        """Hand the pane the session's events that pass the table's filter, newest first."""
        pane = self.query_one("#events", EventLogPane)
        rows, title, empty = pane_content(
            self.events, self.spec, paused=self.paused, since=self.source.events.baseline_at
        )
        pane.border_title = title
        pane.set_rows(rows, empty)

    @on(EventLogPane.BackRequested)
    def _events_back(self) -> None:
        self.table.focus()

    def action_why(self) -> None:
        """Why is the selected row's port busy? (The dialog also takes a typed port.)"""
        self.dialogs.why()

    def action_port_history(self) -> None:
        """Who held the selected row's port before: its recorded intervals (portmon.ui.historyview)."""
        from portmon.ui.historyview import show_port_history

        show_port_history(self, self.table.cursor_socket, background=self.poll)

    # -- names, kill, help -----------------------------------------------------------------------

    def action_toggle_names(self) -> None:
        """Show remote host names (resolved in the background, cached), or addresses again."""
        self.resolving = not self.resolving
        if self.resolving:
            if self._names is None:
                self._names = HostNames(lambda addr: self.post_message(HostResolved(addr)), self._resolve)
            self.table.set_host_names(self._names.get)
        else:
            self.table.set_host_names(None)
        self._show_status()

    def on_host_resolved(self, message: HostResolved) -> None:
        if self.resolving:
            self.table.invalidate()

    def action_kill(self) -> None:
        """Ask to kill the holders of the selected socket, as it is now."""
        self.dialogs.kill()

    def kill_reported(self, outcome: str) -> None:
        """A kill finished: say so (the status line's notice fades), and scan at once."""
        self.outcome = outcome
        self.outcome_at = self.clock()
        # Redraw when the notice dims and when it goes.
        self.set_timer(NOTICE_SECONDS, self._show_status)
        self.set_timer(NOTICE_FADE_SECONDS, self._show_status)
        self.notify(visible(outcome), title="kill", markup=False)
        self._show_status()
        self.action_refresh_now()

    def action_copy(self) -> None:
        """Copy the selected socket's pid, command line or address to the clipboard (asks which)."""
        self.dialogs.copy()

    @property
    def selected(self) -> Socket | None:
        """The socket under the table's cursor."""
        return self.table.cursor_socket

    def cmdline_of(self, sock: Socket) -> Sequence[str] | None:
        """The command line of ``sock``'s first holder (read now when the detail pane has not yet)."""
        if not sock.holders:
            return None
        holder = sock.holders[0]
        detail = self.detail_feed.details.get((holder.pid, holder.create_time))
        if detail is None:
            detail = self._process_reader(holder.pid, holder.create_time)
        return detail.cmdline

    def action_quit(self) -> None:
        """Quit portmon."""
        self.app.exit()

    def action_help(self) -> None:
        """Show every key."""
        self.dialogs.help()

    def key_groups(self) -> list[tuple[str, list[BindingType]]]:
        """The bindings the help screen lists, grouped."""
        return key_groups(list(self.BINDINGS))
