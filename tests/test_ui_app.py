"""Pilot tests of the live monitor: keys, sorting, filtering, the cursor, highlights, errors and hostile text."""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import Static

from portmon.collect.fake import DEMO_TIME, HOSTILE_NAME, HOSTILE_NAME_2, ScriptedCollector, demo_process, demo_snapshot
from portmon.model import CLOSE_WAIT, ESTABLISHED, Snapshot, Socket
from portmon.ui.app import PortmonApp
from portmon.ui.help import HelpScreen
from portmon.ui.monitor import MonitorScreen
from portmon.ui.sockettable import SocketTable
from portmon.ui.view import CHANGED_SECONDS, CLOSED_SECONDS, MARK_CHANGED, MARK_CLOSED, MARK_NEW, MARK_NONE, NEW_SECONDS

SIZE = (160, 50)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = DEMO_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(steps: list[Any] | None = None, clock: Clock | None = None, **options: Any) -> PortmonApp:
    collector = ScriptedCollector(steps or [demo_snapshot()])
    options.setdefault("poll", False)
    return PortmonApp(collector, clock=clock or Clock(), process_reader=demo_process, **options)


Body = Callable[[Pilot, MonitorScreen, SocketTable], Awaitable[None]]


def run(app: PortmonApp, body: Body, size: tuple[int, int] = SIZE) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor, app.monitor.table)

    asyncio.run(main())


def ports(table: SocketTable) -> list[int]:
    return [s.local_port for s in table.rows]


def row_text(table: SocketTable, row: int) -> str:
    """What the table shows on a row (rendered through the Line API)."""
    return "".join(segment.text for segment in table._row_strip(row))


def row_of(table: SocketTable, predicate: Callable[[Socket], bool]) -> int:
    return next(i for i, s in enumerate(table.rows) if predicate(s))


def with_extra(snapshot: Snapshot, *extra: Socket, drop: Callable[[Socket], bool] = lambda s: False) -> Snapshot:
    return snapshot._replace(sockets=tuple(s for s in snapshot.sockets if not drop(s)) + extra)


def test_starts_sorted_by_local_port_with_the_cursor_on_the_first_row() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert len(table.rows) == len(demo_snapshot().sockets)
        assert ports(table) == sorted(ports(table))
        assert table.cursor_row == 0 and table.cursor_key == table.rows[0].key
        assert screen.focused is table
        header = "".join(s.text for s in table._header_strip())
        assert "Port ▲" in header or "Port▲" in header

    run(make_app(), body)


def test_sort_keys_move_and_invert_the_sort_column() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("greater_than_sign")
        assert screen.spec.column == "local_service" and table.sort_column == "local_service"
        await pilot.press("less_than_sign", "less_than_sign")
        assert screen.spec.column == "local_addr"
        await pilot.press("greater_than_sign", "i")
        assert screen.spec.column == "local_port" and screen.spec.descending
        assert ports(table) == sorted(ports(table), reverse=True)
        header = "".join(s.text for s in table._header_strip())
        assert "▼" in header and "▲" not in header
        status = str(screen.query_one("#status", Static).content)
        assert "sort: local port ▼" in status

    run(make_app(), body)


def test_clicking_a_header_sorts_by_it_and_again_inverts() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        x = next(sum(w + 1 for _, w in table.columns[:i]) for i, (c, _) in enumerate(table.columns) if c.name == "pid")
        await pilot.click(SocketTable, offset=(x + 1, 0))
        assert screen.spec.column == "pid" and not screen.spec.descending
        pids = [s.pid for s in table.rows if s.pid is not None]
        assert pids == sorted(pids)
        await pilot.click(SocketTable, offset=(x + 1, 0))
        assert screen.spec.column == "pid" and screen.spec.descending
        pids = [s.pid for s in table.rows if s.pid is not None]
        assert pids == sorted(pids, reverse=True)

    run(make_app(), body)


def test_clicking_a_row_selects_it() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.click(SocketTable, offset=(2, 5))
        assert table.cursor_row == 4
        assert table.cursor_key == table.rows[4].key

    run(make_app(), body)


def test_navigation_keys() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("down", "down")
        assert table.cursor_row == 2
        await pilot.press("up")
        assert table.cursor_row == 1
        await pilot.press("end")
        assert table.cursor_row == len(table.rows) - 1
        assert round(table.scroll_y) > 0, "the last row is scrolled into view"
        await pilot.press("home")
        assert table.cursor_row == 0 and round(table.scroll_y) == 0
        await pilot.press("pagedown")
        assert table.cursor_row == table.data_height - 1
        await pilot.press("pageup")
        assert table.cursor_row == 0

    run(make_app(), body, size=(120, 16))


def test_filter_applies_live_and_enter_returns_to_the_table() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("slash")
        assert screen.focused is screen.query_one("#filter")
        await pilot.press(*":80")
        assert table.rows and all(80 in (s.local_port, s.remote_port) for s in table.rows)
        await pilot.press("enter")
        assert screen.focused is table
        assert screen.spec.filter.text == "port:80" or screen.spec.filter.text == ":80"
        assert "filter:" in str(screen.query_one("#status", Static).content)
        await pilot.press("slash", "escape")
        assert screen.spec.filter.is_empty
        assert len(table.rows) == len(demo_snapshot().sockets)
        assert screen.focused is table

    run(make_app(), body)


def test_typed_letters_go_to_the_filter_not_to_the_key_bindings() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("slash", *"nginx", "space", *"lq")
        assert not screen.spec.listening_only and not screen.paused
        assert screen.query_one("#filter").value == "nginx lq"
        assert screen.app.is_running

    run(make_app(), body)


def test_invalid_filter_shows_the_error_and_keeps_the_last_valid_filter() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        box = screen.query_one("#filter")
        box.value = "proc:nginx"
        await pilot.pause()
        nginx_rows = list(table.rows)
        assert nginx_rows and all(s.process == "nginx" for s in nginx_rows)
        box.value = "port:abc"
        await pilot.pause()
        error = screen.query_one("#filter-error", Static)
        assert error.has_class("shown") and error.display
        assert "invalid filter term 'port:abc'" in str(error.content)
        assert screen.filter_error is not None
        assert list(table.rows) == nginx_rows
        assert screen.spec.filter.text == "proc:nginx"
        box.value = ""
        await pilot.pause()
        assert not error.has_class("shown")
        assert len(table.rows) == len(demo_snapshot().sockets)

    run(make_app(), body)


def test_initial_filter_and_listening_only_options() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert table.rows and all(s.listening and s.proto == "tcp" for s in table.rows)
        assert screen.query_one("#filter").value == "proto:tcp"

    run(make_app(filter_text="proto:tcp", listening_only=True), body)


def test_listening_only_toggle() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        total = len(table.rows)
        await pilot.press("l")
        assert screen.spec.listening_only
        assert 0 < len(table.rows) < total and all(s.listening for s in table.rows)
        assert "listening only" in str(screen.query_one("#status", Static).content)
        await pilot.press("l")
        assert len(table.rows) == total

    run(make_app(), body)


def test_cursor_follows_its_socket_across_refresh_sort_and_filter() -> None:
    first = demo_snapshot()
    newcomers = tuple(Socket("tcp", 4, "127.0.0.1", 20 + i, "127.0.0.1", 40000 + i, ESTABLISHED) for i in range(3))
    second = with_extra(first, *newcomers)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        target = row_of(table, lambda s: s.local_port == 8000 and s.state == "LISTEN")
        table.move_cursor(target)
        key = table.cursor_key
        on_screen = table.cursor_row - round(table.scroll_y)
        await pilot.press("r")
        assert table.cursor_key == key
        assert table.cursor_row == target + 3, "three rows were added above it"
        assert table.cursor_row - round(table.scroll_y) == on_screen
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert screen.spec.column == "remote_addr"
        assert table.cursor_key == key
        screen.query_one("#filter").value = "python3"
        await pilot.pause()
        assert table.cursor_key == key
        assert table.cursor_socket is not None and table.cursor_socket.key == key

    run(make_app([first, second]), body, size=(160, 20))


def test_a_vanished_selection_stays_marked_closed_then_moves_to_its_neighbour() -> None:
    clock = Clock()
    first = demo_snapshot()
    victim = next(s for s in first.sockets if s.local_port == 5432 and s.remote_port == 41822)
    second = with_extra(first, drop=lambda s: s.key == victim.key)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        row = row_of(table, lambda s: s.key == victim.key)
        follower = table.rows[row + 1].key
        table.move_cursor(row)
        clock.now += 1
        await pilot.press("r")
        assert table.cursor_key == victim.key, "the closed row is still shown for a moment"
        assert table.marks.mark(victim.key, clock.now) == MARK_CLOSED
        assert "5432" in row_text(table, table.cursor_row)
        clock.now += CLOSED_SECONDS + 1
        await pilot.press("r")
        assert victim.key not in {s.key for s in table.rows}
        assert table.cursor_key == follower, "the cursor goes to the row that followed, not to the top"
        assert table.cursor_row == row

    run(make_app([first, second], clock=clock), body)


def test_new_closed_and_changed_rows_are_highlighted_until_the_clock_moves_on() -> None:
    clock = Clock()
    first = demo_snapshot()
    closing = next(s for s in first.sockets if s.remote_port == 53122)
    changing = next(s for s in first.sockets if s.remote_port == 61044)
    opened = Socket("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52802, ESTABLISHED, holders=changing.holders)
    second = with_extra(
        first,
        changing._replace(state=CLOSE_WAIT),
        opened,
        drop=lambda s: s.key in (closing.key, changing.key),
    )

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        clock.now += 1
        await pilot.press("r")
        assert table.marks.mark(opened.key, clock.now) == MARK_NEW
        assert table.marks.mark(closing.key, clock.now) == MARK_CLOSED
        assert table.marks.mark(changing.key, clock.now) == MARK_CHANGED
        closed_row = row_of(table, lambda s: s.key == closing.key)
        new_row = row_of(table, lambda s: s.key == opened.key)
        changed_row = row_of(table, lambda s: s.key == changing.key)
        styles = {
            name: table._style(name) for name in ("new", "closed", "changed")
        }
        assert any(seg.style and seg.style.strike for seg in table._row_strip(closed_row))
        assert any(seg.style and seg.style.bgcolor == styles["new"].bgcolor for seg in table._row_strip(new_row))
        changed_bg = styles["changed"].bgcolor
        assert any(seg.style and seg.style.bgcolor == changed_bg for seg in table._row_strip(changed_row))
        clock.now += max(NEW_SECONDS, CLOSED_SECONDS) + 1
        screen.refresh_marks()
        await pilot.pause()
        assert closing.key not in {s.key for s in table.rows}
        assert table.marks.mark(opened.key, clock.now) == MARK_NONE
        new_row = row_of(table, lambda s: s.key == opened.key)
        assert not any(seg.style and seg.style.bgcolor == styles["new"].bgcolor for seg in table._row_strip(new_row))

    run(make_app([first, second], clock=clock), body)


def test_a_tick_repaints_only_the_visible_rows_whose_highlight_ran_out() -> None:
    clock = Clock()
    first = demo_snapshot()
    changing = next(s for s in first.sockets if s.remote_port == 61044)
    opened = Socket("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52802, ESTABLISHED, holders=changing.holders)
    second = with_extra(first, changing._replace(state=CLOSE_WAIT), opened, drop=lambda s: s.key == changing.key)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        clock.now += 1
        await pilot.press("r")
        await pilot.pause()  # painted: the new and the changed row with their highlights
        assert table.refresh_marks() == 0  # nothing ran out yet
        new_style = table._style("new")
        new_row = row_of(table, lambda s: s.key == opened.key)
        assert any(seg.style and seg.style.bgcolor == new_style.bgcolor for seg in table.render_line(new_row + 1))
        clock.now += NEW_SECONDS + CHANGED_SECONDS + 1
        assert table.refresh_marks() == 2  # exactly the two highlighted rows, both on screen
        await pilot.pause()
        assert table.refresh_marks() == 0  # repainted without their highlights
        assert not any(seg.style and seg.style.bgcolor == new_style.bgcolor for seg in table.render_line(new_row + 1))

    run(make_app([first, second], clock=clock), body)


def test_scan_error_shows_a_banner_and_keeps_the_last_good_rows() -> None:
    first = demo_snapshot()

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        banner = screen.query_one("#banner", Static)
        assert not banner.has_class("shown")
        await pilot.press("r")
        assert banner.has_class("shown") and banner.has_class("error")
        assert "scan failed: RuntimeError: netlink went away" in str(banner.content)
        assert len(table.rows) == len(first.sockets)
        await pilot.press("r")
        assert not banner.has_class("shown")

    run(make_app([first, RuntimeError("netlink went away"), first]), body)


def test_a_first_scan_that_fails_shows_the_banner_on_an_empty_table() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert not table.rows
        assert "scan failed: PermissionError" in str(screen.query_one("#banner", Static).content)

    run(make_app([PermissionError("denied")]), body)


def test_hostile_process_names_are_shown_literally_and_clicking_them_runs_nothing() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        row = row_of(table, lambda s: s.process == HOSTILE_NAME)
        assert HOSTILE_NAME in row_text(table, row)
        evil = row_of(table, lambda s: s.process == HOSTILE_NAME_2)
        assert "[/]\\x1b[2Jevil" in row_text(table, evil)
        assert "\x1b" not in row_text(table, evil)
        columns = table.columns
        x = next(sum(w + 1 for _, w in columns[:i]) for i, (c, _) in enumerate(columns) if c.name == "process")
        for _ in range(2):
            await pilot.click(SocketTable, offset=(x + 3, row + 1))
        assert screen.app.is_running
        assert table.cursor_row == row
        await pilot.press("d")
        text = screen.detail.text
        assert HOSTILE_NAME in text and "[bold red]127.0.0.1:9999[/]" in text
        table.move_cursor(evil)
        await pilot.pause()
        assert "\\x1b]0;pwned\\x07" in screen.detail.text
        assert screen.app.is_running

    run(make_app(), body)


def test_detail_pane_shows_the_process_its_parents_and_its_sockets() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert not screen.detail.display
        table.move_cursor(row_of(table, lambda s: s.local_port == 80 and s.family == 4))
        await pilot.press("d")
        assert screen.detail.display and screen.detail_visible
        text = screen.detail.text
        assert "Held by 3 processes" in text
        for pid in ("1290", "1291", "1292"):
            assert pid in text
        assert "1 systemd" in text
        assert "nginx: master process" in text
        assert "Sockets held by pid 1290 (3)" in text
        assert "up 8d 23h" in text
        await pilot.press("d")
        assert not screen.detail.display

    run(make_app(), body)


def test_detail_pane_explains_rows_without_an_owner() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("d")
        table.move_cursor(row_of(table, lambda s: s.state == "TIME_WAIT"))
        await pilot.pause()
        assert "kernel keeps it" in screen.detail.text and "clears by itself" in screen.detail.text
        table.move_cursor(row_of(table, lambda s: s.local_port == 631))
        await pilot.pause()
        assert "Run portmon as root" in screen.detail.text

    run(make_app(), body)


def test_enter_opens_and_focuses_the_detail_pane_escape_goes_back() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert screen.has_class("narrow")
        await pilot.press("enter")
        assert screen.detail.display and screen.focused is screen.detail
        assert screen.detail.region.y > table.region.y, "below the table on a narrow terminal"
        await pilot.press("escape")
        assert screen.focused is table
        assert not screen.detail.display

    run(make_app(), body, size=(80, 24))


def test_pause_shows_paused_and_refresh_still_scans() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        collector = screen.collector
        assert isinstance(collector, ScriptedCollector)
        await pilot.press("space")
        assert screen.paused
        assert "PAUSED" in str(screen.query_one("#status", Static).content)
        calls = collector.calls
        await pilot.press("r")
        assert collector.calls == calls + 1
        await pilot.press("space")
        assert not screen.paused
        assert "PAUSED" not in str(screen.query_one("#status", Static).content)

    run(make_app(), body)


def test_names_key_shows_resolved_host_names() -> None:
    names = {"192.168.1.7": "laptop.lan", "203.0.113.5": "client.example"}

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        row = row_of(table, lambda s: s.remote_addr == "192.168.1.7")
        assert "laptop.lan" not in row_text(table, row)
        await pilot.press("n")
        assert screen.resolving
        for _ in range(200):
            await pilot.pause(0.01)
            if "laptop.lan" in row_text(table, row):
                break
        assert "laptop.lan" in row_text(table, row)
        assert "host names on" in str(screen.query_one("#status", Static).content)
        await pilot.press("n")
        assert "laptop.lan" not in row_text(table, row)

    run(make_app(resolve=names.get), body)


def test_help_lists_every_key_and_closes() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("question_mark")
        help_screen = screen.app.screen
        assert isinstance(help_screen, HelpScreen)
        keys_group = help_screen.query_one(Static).content
        table_text = str(keys_group.renderables[0].columns[0]._cells)  # type: ignore[union-attr]
        for key in ("/", "l", "<", ">", "i", "space", "r", "d", "enter", "n", "k", "?", "q", "escape"):
            assert f"'{key}'" in table_text, key
        await pilot.press("escape")
        assert screen.app.screen is screen

    run(make_app(), body)


def test_palette_offers_the_actions_but_not_the_screenshot_command() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        titles = [command.title for command in screen.app.get_system_commands(screen)]
        assert "Screenshot" not in titles
        assert any("Pause" in t for t in titles) and any("Kill" in t for t in titles)
        assert any("Filter" in t for t in titles) and any("Listening" in t for t in titles)
        assert "Quit" in titles

    run(make_app(), body)


def test_q_quits() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("q")
        await pilot.pause()
        assert not screen.app.is_running

    run(make_app(), body)


class RecordingKillModal(ModalScreen[str | None]):
    """Stands in for the real kill modal: records what it was given."""

    instances: list[RecordingKillModal] = []

    def __init__(self, socket: Socket, snapshot: Snapshot, *, grace: float | None = None) -> None:
        super().__init__()
        self.socket = socket
        self.snapshot = snapshot
        self.grace = grace
        RecordingKillModal.instances.append(self)


def test_kill_captures_the_socket_at_key_press_and_reports_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("portmon.ui.killmodal")
    module.KillModal = RecordingKillModal  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "portmon.ui.killmodal", module)
    RecordingKillModal.instances.clear()
    first = demo_snapshot()
    second = with_extra(first, *(Socket("tcp", 4, "127.0.0.1", 1 + i, None, None, "LISTEN") for i in range(5)))

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        target = row_of(table, lambda s: s.local_port == 8000 and s.state == "LISTEN")
        table.move_cursor(target)
        selected = table.cursor_socket
        await pilot.press("k")
        modal = RecordingKillModal.instances[-1]
        assert screen.app.screen is modal
        assert modal.socket == selected and modal.snapshot is screen.snapshot
        assert modal.grace == screen.kill_grace == 3.0  # the config file's grace, by default
        screen.action_refresh_now()  # the table re-sorts behind the modal
        await pilot.pause()
        assert table.rows[target] != selected
        assert modal.socket == selected
        modal.dismiss("port 8000/tcp freed")
        await pilot.pause()
        assert screen.app.screen is screen
        assert screen.outcome == "port 8000/tcp freed"
        assert "port 8000/tcp freed" in str(screen.query_one("#status", Static).content)
        assert any("port 8000/tcp freed" in str(n.message) for n in screen.app._notifications)

    run(make_app([first, second]), body)


def test_poller_thread_delivers_scans_and_quitting_does_not_wait_for_a_stuck_scan() -> None:
    entered = threading.Event()
    release = threading.Event()
    finished = threading.Event()
    scans = [demo_snapshot(), demo_snapshot()]

    def stuck() -> Snapshot:
        entered.set()
        release.wait(30)
        finished.set()
        return demo_snapshot()

    app = make_app([*scans, stuck], poll=True, interval=0.01)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        for _ in range(500):
            if entered.is_set():
                break
            await pilot.pause(0.01)
        assert entered.is_set(), "the poller scanned on its own"
        assert screen.scans >= 2
        assert len(table.rows) == len(demo_snapshot().sockets)
        await pilot.press("q")

    try:
        run(app, body)
        assert not finished.is_set(), "the app exited while the scan was still running"
    finally:
        release.set()


def test_slow_scans_stretch_the_interval() -> None:
    import time as _time

    def slow() -> Snapshot:
        _time.sleep(0.05)
        return demo_snapshot()

    app = make_app([slow], poll=True, interval=0.01)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        for _ in range(500):
            if screen.scans:
                break
            await pilot.pause(0.01)
        assert screen.interval >= 0.15
        assert "slowed from 0.01 s" in str(screen.query_one("#status", Static).content)

    run(app, body)


@pytest.mark.parametrize("paused", [False, True])
def test_a_tick_drops_expired_closed_rows_only_when_the_next_refresh_is_far(paused: bool) -> None:
    clock = Clock()
    first = demo_snapshot()
    victim = next(s for s in first.sockets if s.local_port == 5432 and s.remote_port == 41822)
    second = with_extra(first, drop=lambda s: s.key == victim.key)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        clock.now += 1
        await pilot.press("r")
        assert victim.key in {s.key for s in table.rows}  # shown closed for a moment
        screen.paused = paused
        screen._tick()  # nothing ran out yet
        assert victim.key in {s.key for s in table.rows}
        clock.now += CLOSED_SECONDS + 1
        screen._tick()
        # At a 1 s interval the next refresh drops it; paused, the tick does.
        assert (victim.key in {s.key for s in table.rows}) is not paused
        assert table.marks.mark(victim.key, clock.now) == MARK_NONE  # either way no longer marked closed

    run(make_app([first, second], clock=clock), body)
