"""The monitor screen: owns the snapshot, the view settings and the selection, and wires the widgets together."""

from __future__ import annotations

import gc
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
from textual.timer import Timer
from textual.widgets import Footer, Input, Sparkline, Static

from portmon.actions.why import Binder, WhyReport, explain, probe_binds
from portmon.collect.base import Collector, guarded_scan
from portmon.model import Snapshot, Socket
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessDetail, ProcessReader, uptime_text
from portmon.query.diff import Event
from portmon.query.events import DEFAULT_EVENT_LIMIT, EventLog, EventStream, clock_time, event_in_scope, is_listening
from portmon.query.filters import FilterError, parse_filter
from portmon.textsafe import visible
from portmon.ui.background import DaemonPool, HostNames
from portmon.ui.detail import DetailPane, describe, held_lines, held_sockets
from portmon.ui.eventlog import EventLogPane
from portmon.ui.help import HelpScreen
from portmon.ui.poller import Poller
from portmon.ui.sockettable import SocketTable
from portmon.ui.status import CountHistory, StatusInfo, banner_text, status_text
from portmon.ui.view import MARK_CLOSED, NO_MARKS, Marks, Pipeline, Update, View, ViewSpec, derive_view, state_counts

NARROW_WIDTH = 120
"""Below this many columns the detail pane goes under the table instead of beside it."""
DEBOUNCE_ROWS = 35_000
"""Above this many sockets, filtering waits for a pause in typing."""
DEBOUNCE_SECONDS = 0.3
TICK_SECONDS = 0.5
# With shorter refresh intervals, the next refresh removes expired closed rows anyway.
GHOST_REDERIVE_INTERVAL = 2.0


def _height_shape(process: ProcessDetail | None) -> ProcessDetail | None:
    """``process`` without the values that change from read to read but always fit on one line."""
    if process is None:
        return None
    return replace(process, cpu_percent=None if process.cpu_percent is None else 0.0, rss=None, threads=None, status=None)


class ScanCompleted(Message):
    """A scan finished (posted from the poller thread; carries only immutable values)."""

    def __init__(self, update: Update, events: tuple[Event, ...] = ()) -> None:
        super().__init__()
        self.update = update
        self.events = events
        """What changed since the previous good scan (diffed on the poller thread)."""


class ProcessRead(Message):
    """Details of a process arrived from a background read."""

    def __init__(self, pid: int, create_time: float | None, detail: ProcessDetail) -> None:
        super().__init__()
        self.pid = pid
        self.create_time = create_time
        self.detail = detail


class HostResolved(Message):
    """A reverse lookup finished; the table shows the name."""

    def __init__(self, addr: str) -> None:
        super().__init__()
        self.addr = addr


class FilterInput(Input):
    """The filter box: typing filters live, enter goes back to the table, escape clears."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear the filter", show=False),
    ]

    class Cleared(Message):
        """Escape: the filter was emptied."""

    def action_clear_filter(self) -> None:
        """Empty the filter and go back to the table."""
        self.value = ""
        self.post_message(self.Cleared())


class MonitorScreen(Screen[None]):
    """The live socket table with its filter box, detail pane, status line and sparkline."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: handled as the key arrives, so keys typed right after it already go to the filter box.
        Binding("slash", "focus_filter", "Filter", priority=True,
                tooltip="Filter: focus the filter box (enter: back, escape: clear)"),
        Binding("l", "toggle_listening", "Listening", tooltip="Listening only: show only listening sockets (toggle)"),
        Binding("less_than_sign", "sort_previous", "Sort ◂", key_display="<", show=False,
                tooltip="Sort by the column to the left"),
        Binding("greater_than_sign", "sort_next", "Sort ▸", key_display=">", show=False,
                tooltip="Sort by the column to the right"),
        Binding("i", "invert_sort", "Invert", show=False, tooltip="Invert the sort order (a click on a header sorts by it)"),
        Binding("space", "toggle_pause", "Pause", tooltip="Pause or resume refreshing"),
        Binding("r", "refresh_now", "Refresh", show=False, tooltip="Refresh now"),
        Binding("d", "toggle_detail", "Details", tooltip="Show or hide the detail pane"),
        Binding("n", "toggle_names", "Names", show=False,
                tooltip="Show remote host names (reverse DNS in the background; toggle)"),
        Binding("k", "kill", "Kill", tooltip="Kill the processes holding the selected socket (asks first)"),
        Binding("e", "toggle_events", "Events", tooltip="Event log: sockets opened, closed or changed, newest first (toggle)"),
        Binding("w", "why", "Why", tooltip="Why is this port busy? Test-bind the selected row's port, or type one"),
        Binding("h", "port_history", "History", show=False, tooltip="History: who held the selected row's port before, and when"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="Help: this list of keys"),
        Binding("q", "app.quit", "Quit", tooltip="Quit portmon"),
    ]

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
    ) -> None:
        super().__init__()
        self.collector = collector
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
        """The last kill outcome, shown in the status line."""
        self.filter_error: str | None = None
        self.history = CountHistory()
        self.scans = 0
        """How many scan results were applied (for tests)."""
        self._process_reader = process_reader
        self._resolve = resolve
        self._pipeline = Pipeline()
        self._poller: Poller | None = None
        self._details: dict[tuple[int, float | None], ProcessDetail] = {}
        self._reading: set[tuple[int, float | None]] = set()
        self._reader_pool: DaemonPool | None = None
        self._names: HostNames | None = None
        self._debounce: Timer | None = None
        self._ghosts_shown = 0
        self.events = EventLog(event_limit)
        """The session's events (bounded); the event log pane shows them filtered like the table."""
        self.events_visible = False
        # Fed by whoever scans: the poller thread while polling, else the event loop (never both).
        self._event_stream = EventStream()
        self._binder = binder
        self._privileged = privileged
        # The detail pane's list for (snapshot, pid), and what the pane shows now: a refresh that
        # changes neither redraws nothing (the list can hold 200 lines of a 10,000-socket process).
        self._held: tuple[Snapshot, int, tuple[Socket, ...], int] | None = None
        self._detail_head: tuple[object, ...] | None = None
        self._detail_list: tuple[tuple[Socket, ...], int] | None = None
        self._banner_shown: tuple[str | None, bool] | None = None
        self._detail_shape: tuple[object, ...] | None = None

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
            )
        yield Static("", id="filter-error", markup=False)
        yield Static("", id="banner", markup=False)
        with Horizontal(id="main"):
            yield SocketTable(clock=self.clock, id="table")
            yield DetailPane(id="detail")
        yield EventLogPane(id="events")
        with Horizontal(id="status-bar"):
            yield Static("", id="status", markup=False)
            with Vertical(id="history"):
                yield Static("sockets, 5 min", id="history-label", markup=False)
                yield Sparkline([], id="sparkline")
        yield Footer()

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
        self._set_narrow(self.size.width)
        self.table.focus()
        self._show_status()
        if self.poll:
            stream = self._event_stream
            self._poller = Poller(
                self.collector,
                # Called on the poller thread: the events are diffed there too, off the event loop.
                lambda update: self.post_message(ScanCompleted(update, stream.feed(update.snapshot))),
                lambda: self.spec,
                interval=self.requested_interval,
                clock=self.clock,
            )
            self._poller.start()
            self.set_interval(TICK_SECONDS, self._tick)
        else:
            self._scan_here()

    def on_unmount(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        if self._reader_pool is not None:
            self._reader_pool.shutdown()
        if self._names is not None:
            self._names.shutdown()

    def on_resize(self, event: Resize) -> None:
        self._set_narrow(event.size.width)

    def _set_narrow(self, width: int) -> None:
        narrow = width < NARROW_WIDTH
        self.set_class(narrow, "narrow")
        # The palette's footer hint does not fit beside the keys at 80 columns; ctrl+p still works.
        footer = self.query_one(Footer)
        footer.show_command_palette = not narrow
        # Compact spacing keeps every key, up to "q Quit", on one line at 80 columns.
        footer.compact = narrow

    # -- scans -----------------------------------------------------------------------------------

    def _scan_here(self) -> None:
        """Scan on the event loop: only with polling off (tests, screenshots), where scans are fake and instant."""
        snapshot = guarded_scan(self.collector, self._pipeline.last_good)
        update = self._pipeline.step(snapshot, self.spec, self.clock(), self.requested_interval)
        self._apply(update, self._event_stream.feed(snapshot))

    def on_scan_completed(self, message: ScanCompleted) -> None:
        self._apply(message.update, message.events)

    def _apply(self, update: Update, events: tuple[Event, ...] = ()) -> None:
        self.scans += 1
        if self.scans == 1 and self.poll:
            # The app, Textual and the first snapshot's sockets (most of which live on, scan after
            # scan) go out of the collector's sight: a full collection at 10k sockets then walks the
            # objects made since, instead of 110-140 ms of long-lived ones. Refcounting still frees them.
            gc.freeze()
        if events:
            self.events.add(events)
        self.snapshot = update.snapshot
        self.marks = update.marks
        self.interval = update.interval
        view = update.view
        if view.spec != self.spec:
            # The user changed the view while the poller was deriving: derive again with what they asked.
            view = derive_view(update.snapshot, update.marks, self.spec, self.clock(), view.states)
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
        self.table.set_rows(view.rows, view.index, view.widths, self.marks, view.spec.column, view.spec.descending)
        self._show_status()

    def _rederive(self) -> None:
        """Derive the rows again after the user changed the view (on the event loop: it is their keypress)."""
        if self.snapshot is None:
            self._show_status()
            return
        states = self.view.states if self.view is not None else state_counts(self.snapshot.sockets)
        self._show(derive_view(self.snapshot, self.marks, self.spec, self.clock(), states))

    def _set_spec(self, spec: ViewSpec) -> None:
        if spec != self.spec:
            self.spec = spec
            self._rederive()
            if self.events_visible:
                self._show_events()

    def _tick(self) -> None:
        """Let highlights fade and closed rows go between refreshes (only while polling)."""
        now = self.clock()
        if not self.marks:
            return
        expiry = self.marks.next_expiry()
        if expiry is not None and now >= expiry:
            alive = len(self.marks.ghosts(now))
            if alive < self._ghosts_shown and (self.paused or self.interval >= GHOST_REDERIVE_INTERVAL):
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
            states=view.states if view is not None else {},
            snapshot=self.snapshot,
            interval=self.interval,
            requested_interval=self.requested_interval,
            paused=self.paused,
            spec=self.spec,
            resolving=self.resolving,
            outcome=self.outcome,
        )
        # Fixed size (two lines, the bar's width): no layout pass for a status change.
        self.query_one("#status", Static).update(status_text(info), layout=False)

    def _show_banner(self) -> None:
        banner = self.query_one("#banner", Static)
        text = banner_text(self.snapshot, self.interval)
        error = self.snapshot is not None and self.snapshot.error is not None
        shown = (text.plain if text is not None else None, error)
        if shown == self._banner_shown:
            # Usually no banner at all: an update would cost a layout pass on every refresh.
            return
        self._banner_shown = shown
        banner.set_class(text is not None, "shown")
        banner.set_class(error, "error")
        banner.update(text if text is not None else "")

    # -- filter ----------------------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        total = len(self.snapshot.sockets) if self.snapshot is not None else 0
        if total > DEBOUNCE_ROWS and self.poll:
            self._debounce = self.set_timer(DEBOUNCE_SECONDS, lambda: self._apply_filter(event.value))
        else:
            self._apply_filter(event.value)

    def _apply_filter(self, text: str) -> None:
        error = self.query_one("#filter-error", Static)
        try:
            parsed = parse_filter(text)
        except FilterError as exc:
            # Keep the last valid filter in effect; the message names the bad term.
            self.filter_error = str(exc)
            error.update(Text(visible(str(exc))))
            error.add_class("shown")
            return
        self.filter_error = None
        error.update("")
        error.remove_class("shown")
        self._set_spec(replace(self.spec, filter=parsed))

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
            self._apply_filter(event.value)
        self.table.focus()

    @on(FilterInput.Cleared)
    def _filter_cleared(self) -> None:
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """"/" typed in the filter box is text (an address range, a path), not the focus key."""
        if action == "focus_filter" and isinstance(self.focused, Input):
            return False
        return True

    def action_focus_filter(self) -> None:
        """Focus the filter box."""
        # At once, not with Widget.focus() (deferred): keys typed right after "/" are already queued
        # and would otherwise go to the table, where "l" or "k" runs an action instead of typing.
        self.set_focus(self.query_one("#filter", FilterInput))

    # -- view actions ----------------------------------------------------------------------------

    def action_toggle_listening(self) -> None:
        """Show only listening sockets, or everything again."""
        self._set_spec(replace(self.spec, listening_only=not self.spec.listening_only))

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
        self.sort_by(event.column)

    def action_toggle_pause(self) -> None:
        """Pause or resume refreshing."""
        self.paused = not self.paused
        if self._poller is not None:
            self._poller.paused = self.paused
        self._show_status()

    def action_refresh_now(self) -> None:
        """Scan now (also while paused)."""
        if self._poller is not None:
            self._poller.scan_now()
        else:
            self._scan_here()

    # -- detail pane -----------------------------------------------------------------------------

    def action_toggle_detail(self) -> None:
        """Show or hide the detail pane."""
        self.set_detail(not self.detail_visible)

    def set_detail(self, visible_: bool, focus: bool = False) -> None:
        """Show or hide the detail pane (and focus it)."""
        self.detail_visible = visible_
        self.set_class(visible_, "with-detail")
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

    def _held_by(self, pid: int) -> tuple[tuple[Socket, ...], int]:
        """The first sockets ``pid`` holds in the current snapshot and how many in all (once per snapshot and pid)."""
        snapshot = self.snapshot
        if snapshot is None:
            return (), 0
        cached = self._held
        if cached is not None and cached[0] is snapshot and cached[1] == pid:
            return cached[2], cached[3]
        held, total = held_sockets(snapshot.sockets, pid)
        self._held = (snapshot, pid, held, total)
        return held, total

    def _show_detail(self, reread: bool) -> None:
        sock = self.table.cursor_socket
        process: ProcessDetail | None = None
        held: tuple[Socket, ...] = ()
        total = 0
        if sock is not None and sock.holders:
            holder = sock.holders[0]
            if reread:
                self._read_process(holder.pid, holder.create_time)
            process = self._details.get((holder.pid, holder.create_time))
            held, total = self._held_by(holder.pid)
        now = self.clock()
        closed = sock is not None and self.marks.mark(sock.key, now) == MARK_CLOSED
        # The head depends on the clock only through the process's uptime.
        uptime = uptime_text(now - process.create_time) if process is not None and process.create_time is not None else None
        head = (sock, closed, process, uptime, total)
        if head != self._detail_head:
            self._detail_head = head
            # What decides the head's height. When only the short one-line values changed (CPU,
            # memory, threads, status, an uptime of the same length), the pane keeps its size and a
            # layout pass of the whole screen (the costliest part of a refresh) is not needed.
            shape = (sock, closed, total, _height_shape(process), len(uptime or ""))
            content = describe(sock, held, process, now, closed=closed, held_total=total, list_held=False)
            self.detail.show_head(content, layout=shape != self._detail_shape)
            self._detail_shape = shape
        listed = (held, total)
        if listed != self._detail_list:
            self._detail_list = listed
            self.detail.show_held(held_lines(held, total))

    def _read_process(self, pid: int, create_time: float | None) -> None:
        ident = (pid, create_time)
        if ident in self._reading:
            return
        self._reading.add(ident)
        if not self.poll:
            # Deterministic mode: the reader is a fake, read it here.
            self._details[ident] = self._process_reader(pid, create_time)
            self._reading.discard(ident)
            return
        if self._reader_pool is None:
            self._reader_pool = DaemonPool(1, "portmon-procinfo")
        reader = self._process_reader

        def job() -> None:
            self.post_message(ProcessRead(pid, create_time, reader(pid, create_time)))

        self._reader_pool.submit(job)

    def on_process_read(self, message: ProcessRead) -> None:
        ident = (message.pid, message.create_time)
        self._reading.discard(ident)
        if len(self._details) > 256:
            self._details.clear()
        self._details[ident] = message.detail
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
        self.set_class(visible_, "with-events")
        pane = self.query_one("#events", EventLogPane)
        if visible_:
            self._show_events()
        elif self.focused is pane:
            self.table.focus()

    def _event_matches(self, event: Event) -> bool:
        spec = self.spec
        if spec.listening_only and not event_in_scope(event, is_listening):
            return False
        return spec.filter.is_empty or spec.filter.matches(event.socket)

    def _show_events(self) -> None:
        """Hand the pane the session's events that pass the table's filter, newest first."""
        pane = self.query_one("#events", EventLogPane)
        spec = self.spec
        narrowed = not spec.filter.is_empty or spec.listening_only
        rows = self.events.newest_first(self._event_matches if narrowed else None)
        log = self.events
        title = f"Events · {len(rows)}"
        if narrowed:
            title += f" of {len(log)} match the filter"
        title += " · newest first"
        if log.dropped:
            title += f" · oldest {log.dropped} dropped (keeps {log.limit})"
        pane.border_title = title
        since = self._event_stream.baseline_at
        if self.paused and not rows:
            empty = "No events: refreshing is paused (space resumes)."
        elif since is None:
            empty = "Waiting for the first scan…"
        elif len(log) and narrowed:
            empty = "No event matches the filter."
        else:
            empty = f"No changes since {clock_time(since)}: sockets that open, close or change state appear here."
        pane.set_rows(rows, empty)

    @on(EventLogPane.BackRequested)
    def _events_back(self) -> None:
        self.table.focus()

    def why_probe(self, spec: PortSpec, sockets: Sequence[Socket]) -> WhyReport:
        """Test-bind ``spec`` and explain it against ``sockets`` (runs on a worker thread while polling)."""
        return explain(
            spec, sockets, binder=self._binder, reader=self._process_reader, privileged=self._privileged, now=self.clock()
        )

    def action_why(self) -> None:
        """Why is the selected row's port busy? (The dialog also takes a typed port.)"""
        from portmon.ui.whymodal import WhyModal

        sock = self.table.cursor_socket
        spec = PortSpec(sock.local_port, sock.proto) if sock is not None and sock.local_port else None

        def sockets() -> Sequence[Socket]:
            return self.snapshot.sockets if self.snapshot is not None else ()

        self.app.push_screen(WhyModal(spec, self.why_probe, sockets, background=self.poll))

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
            self.table.host_name = self._names.get
        else:
            self.table.host_name = None
        self.table._layout_width = -1
        self.table.invalidate()
        self._show_status()

    def on_host_resolved(self, message: HostResolved) -> None:
        if self.resolving:
            self.table.invalidate()

    def action_kill(self) -> None:
        """Ask to kill the holders of the selected socket, as it is now."""
        # Capture the socket and snapshot at the key press: the modal acts on these, whatever the
        # table shows by the time the user confirms.
        sock = self.table.cursor_socket
        snapshot = self.snapshot
        if sock is None or snapshot is None:
            self.notify("No socket selected.", severity="warning")
            return
        try:
            from portmon.ui.killmodal import KillModal
        except ModuleNotFoundError as exc:
            if exc.name != "portmon.ui.killmodal":
                raise
            self.notify("kill is not available yet", severity="warning")
            return
        self.app.push_screen(KillModal(sock, snapshot), self._kill_finished)

    def _kill_finished(self, outcome: str | None) -> None:
        if outcome is None:
            return
        self.outcome = outcome
        self.notify(visible(outcome), title="kill", markup=False)
        self._show_status()
        self.action_refresh_now()

    def action_help(self) -> None:
        """Show every key."""
        self.app.push_screen(HelpScreen(self.key_groups()))

    def key_groups(self) -> list[tuple[str, list[BindingType]]]:
        """The bindings the help screen lists, grouped."""
        return [
            ("Monitor", list(self.BINDINGS)),
            ("Table", list(SocketTable.BINDINGS)),
            ("Filter box", [Binding("enter", "", "Back to the table (the filter stays)"), *FilterInput.BINDINGS]),
            # The detail pane and the event log share their one key (escape: back to the table).
            ("Panes", list(DetailPane.BINDINGS)),
            ("Anywhere", [Binding("ctrl+p", "", "Command palette: every action by name")]),
        ]
