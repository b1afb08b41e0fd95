"""Pilot tests of the live monitor's everyday keys and layouts: quitting, the status line, the footer,
columns beside the detail pane, the palette, the clipboard, change signs and the first frame."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Input
from textual.widgets._input import Selection

from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot, demo_snapshot_after
from portmon.model import Snapshot
from portmon.query.filters import parse_filter
from portmon.query.sorting import COLUMNS
from portmon.ui.app import PortmonApp
from portmon.ui.columns import MARK_COLUMN
from portmon.ui.detail import endpoint
from portmon.ui.monitor import DETAIL_MIN, DETAIL_MIN_NARROW, MonitorScreen
from portmon.ui.status import NOTICE_FADE_SECONDS, NOTICE_SECONDS, Part, StatusInfo, layout_status, status_parts
from portmon.ui.view import COLUMN_TITLES, NO_MARKS, ViewSpec, derive_view


class Clock:
    def __init__(self, now: float = DEMO_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(steps: list[Any] | None = None, clock: Clock | None = None, **options: Any) -> PortmonApp:
    options.setdefault("poll", False)
    collector = ScriptedCollector(steps or [demo_snapshot()])
    return PortmonApp(collector, clock=clock or Clock(), process_reader=demo_process, **options)


Body = Callable[[Pilot, MonitorScreen], Awaitable[None]]


def run(app: PortmonApp, body: Body, size: tuple[int, int] = (160, 45)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor)

    asyncio.run(main())


def status_of(screen: MonitorScreen) -> str:
    return str(screen.query_one("#status").content)  # type: ignore[attr-defined]


def footer_keys(screen: MonitorScreen) -> dict[str, str]:
    """What the footer offers now: key -> label, for the bindings it shows."""
    return {key: b.binding.description for key, b in screen.active_bindings.items() if b.binding.show}


# -- quitting and suspending ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["table", "filter box"])
def test_ctrl_c_quits(where: str) -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        if where == "filter box":
            await pilot.press("slash", "p", "r")
            assert isinstance(screen.focused, Input)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running

    run(app, body)
    assert app.return_code == 0


def test_ctrl_c_in_the_filter_box_with_text_selected_copies_it() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("slash", *"proc:nginx")
        box = screen.query_one("#filter", Input)
        box.selection = Selection(5, 10)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        assert app.clipboard == "nginx"

    run(app, body)


def test_ctrl_z_suspends_where_the_terminal_allows_and_says_so_where_not(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    suspended: list[bool] = []
    notices: list[str] = []

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        monkeypatch.setattr(app, "action_suspend_process", lambda: suspended.append(True))
        monkeypatch.setattr(app, "notify", lambda message, **_: notices.append(str(message)))
        await pilot.press("ctrl+z")  # the headless driver cannot suspend
        await pilot.pause()
        assert not suspended and any("cannot be suspended" in n for n in notices)
        monkeypatch.setattr(type(app._driver), "can_suspend", property(lambda self: True))
        monkeypatch.setattr("portmon.ui.app.job_control", lambda: False)  # a session leader: nobody to resume it
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert not suspended
        monkeypatch.setattr("portmon.ui.app.job_control", lambda: True)
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert suspended == [True]

    run(app, body)


def test_every_quit_key_is_in_the_help() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        listed = {(b.key, b.description) for _, bindings in screen.key_groups() for b in bindings}  # type: ignore[union-attr]
        keys = {key for key, _ in listed}
        assert {"q", "ctrl+q", "ctrl+c", "ctrl+z"} <= keys
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running

    run(app, body)


# -- the status line ------------------------------------------------------------------------------


DEFAULT_SPEC = ViewSpec()


def info_for(snapshot: Snapshot | None, spec: ViewSpec = DEFAULT_SPEC, **extra: Any) -> StatusInfo:
    if snapshot is None:
        return StatusInfo(0, 0, {}, None, 1.0, 1.0, False, spec, **extra)
    view = derive_view(snapshot, NO_MARKS, spec, DEMO_TIME)
    return StatusInfo(view.shown, view.total, view.shown_states, snapshot, 3.0, 1.0, True, spec, resolving=True,
                      outcome="port 8000/tcp freed", **extra)


def test_the_status_line_never_splits_a_unit_and_drops_by_priority() -> None:
    parts = status_parts(info_for(demo_snapshot()))
    for width in range(20, 220):
        text = layout_status(parts, width).plain
        lines = text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= width for line in lines)
        kept = [p for p in parts if any(p.text.plain in line for line in lines)]
        # A unit is whole on one line or not there at all: never "every 1" here and "s" there.
        for part in parts:
            if part not in kept:
                assert part.text.plain not in text.replace("\n", " ")
        assert "PAUSED" in lines[0] and "30/30 sockets" in text
        dropped = [p.priority for p in parts if p not in kept]
        if dropped:
            assert max(p.priority for p in kept) <= min(dropped)
    wide = layout_status(parts, 400).plain
    assert "LISTEN 12" in wide and "host names on" in wide and "scan 12 ms" in wide


def test_at_80_columns_the_state_counts_stay_and_the_details_go() -> None:
    text = layout_status(status_parts(info_for(demo_snapshot())), 52).plain
    assert "LISTEN 12" in text and "ESTAB 8" in text
    assert "host names on" not in text and "scan 12 ms" not in text


def test_a_notice_fades_then_goes() -> None:
    def notice(age: float) -> Part | None:
        parts = status_parts(info_for(demo_snapshot(), outcome_age=age))
        return next((p for p in parts if "last kill" in p.text.plain), None)

    fresh, faded, gone = notice(0.0), notice(NOTICE_SECONDS + 1), notice(NOTICE_FADE_SECONDS + 1)
    assert fresh is not None and any("bold" in str(span.style) for span in fresh.text.spans)
    assert faded is not None and all("dim" in str(span.style) for span in faded.text.spans)
    assert gone is None


def test_filtered_state_counts_are_for_what_is_shown() -> None:
    spec = ViewSpec(filter=parse_filter("proc:nginx"))
    text = layout_status(status_parts(info_for(demo_snapshot(), spec)), None).plain
    assert "sockets shown" in text
    assert "LISTEN 3" in text and "ESTAB 1" in text and "LISTEN 12" not in text


def test_the_first_frame_says_scanning_until_the_first_scan() -> None:
    assert "scanning…" in layout_status(status_parts(info_for(None)), 80).plain
    assert "0/0" not in layout_status(status_parts(info_for(None)), 80).plain
    release = threading.Event()

    class Slow:
        def scan(self) -> Snapshot:
            release.wait(30)
            return demo_snapshot()

    app = PortmonApp(Slow(), interval=60.0, clock=Clock(), process_reader=demo_process)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        assert "scanning…" in status_of(screen) and "0/0" not in status_of(screen)
        release.set()
        for _ in range(200):
            await pilot.pause(0.02)
            if screen.scans:
                break
        assert "30/30 sockets" in status_of(screen)

    try:
        run(app, body)
    finally:
        release.set()


def test_a_kill_notice_in_the_live_status_line_fades() -> None:
    clock = Clock()
    app = make_app(clock=clock)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        screen.kill_reported("port 8000/tcp freed")
        assert "last kill: port 8000/tcp freed" in status_of(screen)
        clock.now += NOTICE_FADE_SECONDS + 1
        screen._show_status()
        assert "last kill" not in status_of(screen)

    run(app, body)


# -- the footer -----------------------------------------------------------------------------------


def test_the_footer_shows_the_toggles_state() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        assert footer_keys(screen)["l"] == "Listening: off" and footer_keys(screen)["space"] == "Pause"
        await pilot.press("l", "space")
        await pilot.pause()
        assert screen.spec.listening_only and screen.paused
        assert footer_keys(screen)["l"] == "Listening: on" and footer_keys(screen)["space"] == "Resume"
        await pilot.press("l", "space")
        await pilot.pause()
        assert not screen.spec.listening_only and not screen.paused

    run(app, body)


def test_the_footer_offers_the_filter_box_keys_while_it_has_focus() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("slash")
        await pilot.pause()
        keys = footer_keys(screen)
        assert keys.get("enter") == "Apply" and keys.get("escape") == "Clear"
        assert "l" not in keys and "k" not in keys  # letters are text here
        await pilot.press(*"proc:sshd", "enter")
        await pilot.pause()
        assert screen.focused is screen.table and screen.spec.filter.text == "proc:sshd"
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert screen.spec.filter.is_empty and screen.focused is screen.table

    run(app, body)


# -- columns beside the detail pane ---------------------------------------------------------------


def test_at_120_columns_the_state_column_is_never_cut() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("d")
        await pilot.pause()
        widths = {c.name: w for c, w in screen.table.columns}
        assert widths["state"] == len("ESTABLISHED")
        assert screen.detail.outer_size.width >= DETAIL_MIN_NARROW

    run(app, body, size=(120, 35))


def test_at_200_columns_the_table_takes_what_it_needs_and_the_pane_the_rest() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("d")
        await pilot.pause()
        table = screen.table
        assert table.size.width == table.natural_width()  # no empty gap right of the columns
        assert screen.detail.outer_size.width + table.outer_size.width == 200
        assert screen.detail.outer_size.width >= DETAIL_MIN

    run(app, body, size=(200, 50))


def test_at_80x24_with_both_panes_the_detail_pane_keeps_room() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("down", "d", "e")
        await pilot.pause()
        assert screen.detail.size.height >= 7
        assert screen.table.size.height >= 4

    run(app, body, size=(80, 24))


# -- palette, clipboard, change signs -------------------------------------------------------------


def test_the_palette_sorts_by_every_column_and_toggles() -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        commands = {c.title: c for c in app.get_system_commands(screen)}
        for column in COLUMNS:
            command = commands[f"Sort by {COLUMN_TITLES[column]}"]
            command.callback()
            assert screen.spec.column == column
        assert any("Listening only" in title for title in commands)
        assert any("detail pane" in title for title in commands)
        assert any("Event log" in title for title in commands)
        assert any("Pause" in title for title in commands)

    run(app, body)


@pytest.mark.parametrize("key,expected", [("p", "pid"), ("a", "local"), ("c", "command"), ("r", "remote")])
def test_copy_puts_the_selected_socket_s_value_on_the_clipboard(key: str, expected: str) -> None:
    app = make_app()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        row = next(i for i, s in enumerate(screen.table.rows) if s.remote_addr and s.holders)
        screen.table.move_cursor(row)
        sock = screen.table.rows[row]
        await pilot.press("c")
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()
        values = {
            "pid": str(sock.pid),
            "local": endpoint(sock.local_addr, sock.local_port, sock.family),
            "remote": endpoint(sock.remote_addr, sock.remote_port, sock.family),
            "command": " ".join(demo_process(sock.pid or 0).cmdline or ()),
        }
        assert app.clipboard == values[expected]

    run(app, body)


def test_new_changed_and_closed_rows_carry_a_sign_not_only_a_colour() -> None:
    clock = Clock()
    app = make_app([demo_snapshot(), demo_snapshot_after()], clock=clock)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        clock.now += 1
        await pilot.press("r")
        await pilot.pause()
        table = screen.table
        assert table.columns[0][0].name == MARK_COLUMN
        signs = {table.marks.mark(s.key, clock()): "".join(seg.text for seg in table._row_strip(i))[0]
                 for i, s in enumerate(table.rows)}
        assert signs["new"] == "+" and signs["changed"] == "~" and signs["closed"] == "×" and signs[""] == " "

    run(app, body)


def test_text_spans_are_plain_text_not_markup() -> None:
    # The status line takes the filter as typed: markup in it stays literal.
    spec = ViewSpec(filter=parse_filter("[bold]x"))
    text = layout_status(status_parts(info_for(demo_snapshot(), spec)), None)
    assert isinstance(text, Text) and "[bold]x" in text.plain


# -- the why dialog's k ---------------------------------------------------------------------------


def test_k_in_the_why_dialog_opens_the_kill_dialog_for_the_port() -> None:
    from portmon.actions.binds import simulated_binder
    from portmon.ui.killmodal import KillModal
    from portmon.ui.whymodal import WhyModal

    app = make_app(binder=simulated_binder(demo_snapshot().sockets), privileged=True)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        table = screen.table
        table.move_cursor(next(i for i, s in enumerate(table.rows) if s.local_port == 8000 and s.state == "LISTEN"))
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, WhyModal)
        await pilot.press("k")
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, KillModal)
        assert app.screen.socket.local_port == 8000 and app.screen.socket.state == "LISTEN"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen

    run(app, body)


def test_k_in_the_why_dialog_on_a_free_port_kills_nothing() -> None:
    from portmon.actions.binds import simulated_binder
    from portmon.ui.whymodal import WhyModal

    app = make_app(binder=simulated_binder(demo_snapshot().sockets), privileged=True)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("w")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, WhyModal)
        box = modal.query_one("#why-port", Input)
        box.value = "4999"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()
        assert app.screen is modal  # nothing holds 4999: the dialog stays, saying so

    run(app, body)


def test_the_pane_keeps_its_width_while_the_data_changes() -> None:
    # A refresh with narrower data does not shrink the table under the reader (the pane would re-wrap).
    wide = demo_snapshot()
    narrow = wide._replace(sockets=tuple(s for s in wide.sockets if len(s.local_addr) <= 9))
    app = make_app([wide, narrow, wide])

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("d")
        await pilot.pause()
        before = screen.detail.outer_size.width
        await pilot.press("r")
        await pilot.pause()
        assert screen.detail.outer_size.width == before
        await pilot.press("d", "d")  # closing and opening the pane fits it again
        await pilot.pause()
        assert screen.table.outer_size.width <= screen.table.natural_width()

    run(app, body, size=(200, 50))
