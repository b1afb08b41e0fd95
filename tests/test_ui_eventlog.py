"""Pilot tests of the event log pane (``e``) and the "why is this port busy?" dialog (``w``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from portmon.actions.binds import simulated_binder
from portmon.collect.fake import (
    DEMO_TIME,
    HOSTILE_NAME,
    ScriptedCollector,
    demo_process,
    demo_snapshot,
    demo_snapshot_after,
)
from portmon.model import LISTEN, Holder, Snapshot, Socket
from portmon.ui.app import PortmonApp
from portmon.ui.eventlog import EventLogPane, fitted_widths
from portmon.ui.help import HelpScreen
from portmon.ui.monitor import MonitorScreen
from portmon.ui.whymodal import WhyModal

SIZE = (160, 50)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(steps: list[Any] | None = None, **options: Any) -> PortmonApp:
    options.setdefault("poll", False)
    options.setdefault("binder", simulated_binder(demo_snapshot().sockets))
    options.setdefault("privileged", True)
    return PortmonApp(
        ScriptedCollector(steps or [demo_snapshot()]),
        clock=lambda: DEMO_TIME + 1.0,
        process_reader=demo_process,
        **options,
    )


def run(app: PortmonApp, body: Callable[[Pilot, MonitorScreen], Awaitable[None]], size: tuple[int, int] = SIZE) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor)

    asyncio.run(main())


def pane(screen: MonitorScreen) -> EventLogPane:
    return screen.query_one("#events", EventLogPane)


def kinds_and_ports(screen: MonitorScreen) -> list[tuple[str, int]]:
    return [(item.event.kind, item.event.socket.local_port) for item in pane(screen).rows]


def listener(port: int, pid: int = 5000, inode: int = 0) -> Socket:
    return Socket("tcp", 4, "0.0.0.0", port, state=LISTEN, holders=(Holder(pid, "python3", "alice", DEMO_TIME),),
                  inode=inode or port)


def with_sockets(base: Snapshot, *extra: Socket, at: float) -> Snapshot:
    return base._replace(sockets=base.sockets + extra, taken_at=at)


# -- the event log ------------------------------------------------------------------------------------


def test_e_toggles_the_pane_which_lists_the_refreshs_events_newest_first() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        assert not pane(screen).display
        await pilot.press("e")
        assert screen.events_visible and pane(screen).display
        assert pane(screen).rows == ()
        assert "No changes since 12:00:00" in pane(screen).empty_text
        await pilot.press("r")
        # demo_snapshot_after: the ssh session closed, nginx's connection changed state, two opened.
        assert kinds_and_ports(screen) == [("open", 52802), ("open", 8000), ("state", 443), ("close", 22)]
        lines = pane(screen).lines
        assert lines[0].split() [:3] == ["Time", "Event", "Proto"]
        assert lines[3].startswith("12:00:01  state  tcp4   192.168.1.20:443 -> 203.0.113.5:61044")
        assert "CLOSE_WAIT (was ESTABLISHED)" in lines[3] and "nginx (1291)" in lines[3]
        assert pane(screen).border_title == "Events · 4 · newest first"
        await pilot.press("e")
        assert not screen.events_visible and not pane(screen).display

    run(make_app([demo_snapshot(), demo_snapshot_after()]), body)


def test_at_80_columns_a_state_change_keeps_its_was_and_the_endpoints_give_way() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r")
        log = pane(screen)
        assert log.scrollable_content_region.width <= 80
        line = next(text for text in log.lines if " state " in text)
        state_at = line.index("CLOSE_WAIT (was ESTABLISHED)")
        assert state_at + len("CLOSE_WAIT (was ESTABLISHED)") <= log.scrollable_content_region.width
        assert "192.168.1.20:443 ->" in line and "…" in line

    run(make_app([demo_snapshot(), demo_snapshot_after()]), body, size=(80, 24))


def test_the_endpoints_column_shrinks_only_as_far_as_it_must() -> None:
    natural = (8, 5, 5, 40, 28, 20, 7)
    assert fitted_widths(natural, 200) == natural
    assert fitted_widths(natural, 80)[3] == 80 - (8 + 5 + 5 + 28 + 8)
    assert fitted_widths(natural, 40)[3] == 21
    assert fitted_widths((8, 5, 5, 12, 5, 5, 7), 30)[3] == 12


def test_newer_refreshes_go_on_top() -> None:
    first = demo_snapshot()
    second = with_sockets(first, listener(8080), at=DEMO_TIME + 61)
    third = first._replace(taken_at=DEMO_TIME + 122)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r", "r")
        assert kinds_and_ports(screen) == [("close", 8080), ("open", 8080)]
        assert [line.split()[0] for line in pane(screen).lines[1:]] == ["12:02:02", "12:01:01"]

    run(make_app([first, second, third]), body)


def test_the_table_filter_and_listening_only_filter_the_log_too() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("r", "e")
        assert len(pane(screen).rows) == 4
        screen.query_one("#filter").value = "proc:sshd"  # type: ignore[attr-defined]
        await pilot.pause()
        assert kinds_and_ports(screen) == [("close", 22)]
        assert pane(screen).border_title == "Events · 1 of 4 match the filter · newest first"
        screen.query_one("#filter").value = "proc:nobody-at-all"  # type: ignore[attr-defined]
        await pilot.pause()
        assert pane(screen).rows == () and pane(screen).empty_text == "No event matches the filter."
        screen.query_one("#filter").value = ""  # type: ignore[attr-defined]
        await pilot.pause()
        await pilot.press("escape", "l")  # back to the table; listening only: none of the events is a listener
        assert screen.spec.listening_only and pane(screen).rows == ()
        await pilot.press("l")
        assert len(pane(screen).rows) == 4

    run(make_app([demo_snapshot(), demo_snapshot_after()]), body)


def test_events_are_collected_while_the_pane_is_hidden() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("r")
        assert len(screen.events) == 4
        await pilot.press("e")
        assert len(pane(screen).rows) == 4

    run(make_app([demo_snapshot(), demo_snapshot_after()]), body)


def test_the_log_is_bounded_by_the_apps_event_limit() -> None:
    base = demo_snapshot()
    steps = [base] + [with_sockets(base, *(listener(20000 + i * 10 + j) for j in range(5)), at=DEMO_TIME + i + 1)
                      for i in range(3)]

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r", "r", "r")
        # Each refresh closes the previous five listeners and opens five new ones: 5 + 10 + 10 events.
        assert screen.events.total == 25 and len(screen.events) == 7
        assert len(pane(screen).rows) == 7
        assert "oldest 18 dropped (keeps 7)" in str(pane(screen).border_title)
        assert [e.socket.local_port for e in (item.event for item in pane(screen).rows)][:5] == [
            20024, 20023, 20022, 20021, 20020,
        ]

    run(make_app(steps, event_limit=7), body)


def test_an_event_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        make_app(event_limit=0)


def test_a_failed_scan_gives_no_events() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r")
        assert screen.snapshot is not None and screen.snapshot.error is not None
        assert len(screen.events) == 0
        await pilot.press("r")
        assert kinds_and_ports(screen) == [("open", 8080)]

    steps = [demo_snapshot(), RuntimeError("boom"), with_sockets(demo_snapshot(), listener(8080), at=DEMO_TIME + 5)]
    run(make_app(steps), body)


def test_a_reader_scrolled_down_keeps_their_place_when_events_arrive() -> None:
    base = demo_snapshot()
    many = with_sockets(base, *(listener(30000 + i) for i in range(40)), at=DEMO_TIME + 1)
    more = with_sockets(many, *(listener(31000 + i) for i in range(3)), at=DEMO_TIME + 2)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r")
        log = pane(screen)
        log.scroll_to(y=10, animate=False, force=True)
        await pilot.pause()
        top = log.rows[round(log.scroll_y)].seq
        await pilot.press("r")
        assert len(log.rows) == 43
        assert log.rows[round(log.scroll_y)].seq == top

    run(make_app([base, many, more]), body)


def test_escape_in_the_pane_goes_back_to_the_table() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e")
        pane(screen).focus()
        await pilot.pause()
        await pilot.press("escape")
        assert screen.focused is screen.table
        pane(screen).focus()
        await pilot.pause()
        await pilot.press("e")  # hiding the focused pane hands focus back
        assert screen.focused is screen.table

    run(make_app(), body)


def test_hostile_process_names_in_the_log_are_shown_escaped() -> None:
    base = demo_snapshot()
    evil = (*(s for s in base.sockets if s.local_port not in (9998, 9999)),)
    steps = [base, base._replace(sockets=evil, taken_at=DEMO_TIME + 1)]

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("e", "r")
        text = "\n".join(pane(screen).lines)
        assert HOSTILE_NAME in text  # shown literally, not run as an action
        assert "[/]\\x1b[2Jevil" in text and "\x1b" not in text
        assert screen.app.is_running

    run(make_app(steps), body)


def test_events_flow_from_the_poller_thread() -> None:
    steps = [demo_snapshot(), demo_snapshot_after()]

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        for _ in range(500):
            if len(screen.events) >= 4:
                break
            await pilot.pause(0.01)
        assert [e.event.kind for e in screen.events.newest_first()] == ["open", "open", "state", "close"]

    run(make_app(steps, poll=True, interval=0.01), body)


def test_help_lists_the_new_keys() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        groups = dict(screen.key_groups())
        keys = {b.key for b in groups["Monitor"]}  # type: ignore[union-attr]
        assert {"e", "w"} <= keys
        await pilot.press("question_mark")
        assert isinstance(screen.app.screen, HelpScreen)

    run(make_app(), body)


# -- why is this port busy? -------------------------------------------------------------------------------


def select_port(screen: MonitorScreen, port: int, state: str | None = LISTEN) -> None:
    table = screen.table
    row = next(i for i, s in enumerate(table.rows) if s.local_port == port and s.state == state)
    table.move_cursor(row)


def test_w_explains_the_selected_rows_port() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        select_port(screen, 8000)
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal)
        assert modal.report is not None and modal.spec is not None and str(modal.spec) == "8000/tcp"
        answer = modal.report.primary
        assert answer.reason == "partial" and not answer.free
        assert [h.pid for h in answer.holders] == [23001]
        text = modal.answer_text
        assert text.startswith("port 8000/tcp is taken on 127.0.0.1 only, by python3 (23001); still free on ::1")
        assert "cmd  python3 manage.py runserver 127.0.0.1:8000" in text
        assert "to free it: portmon kill 8000/tcp" in text
        await pilot.press("escape")
        assert screen.app.screen is screen

    run(make_app(), body)


def test_the_dialog_checks_a_typed_port_and_rejects_a_bad_one() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal)
        port_input = modal.query_one("#why-port")
        port_input.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"5353/udp", "enter")
        assert modal.report is not None and modal.report.primary.label == "5353/udp"
        assert modal.report.primary.reason == "held" and "avahi-daemon (640)" in modal.answer_text
        port_input.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"12345", "enter")
        assert [a.proto for a in modal.report.answers] == ["tcp", "udp"]
        assert modal.answer_text.startswith("port 12345/tcp is free")
        assert "also checked 12345/udp" in modal.answer_text
        port_input.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"99999", "enter")
        assert "invalid port '99999'" in modal.answer_text
        port_input.value = ""  # type: ignore[attr-defined]
        await pilot.press("0", "enter")
        assert "port 0" in modal.answer_text

    run(make_app(), body)


def test_time_wait_hidden_and_hostile_rows() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        select_port(screen, 631)
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal) and modal.report is not None
        assert modal.report.primary.reason == "hidden" and "run as root" in modal.answer_text
        await pilot.press("escape")
        select_port(screen, 9998)
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal)
        assert "[/]\\x1b[2Jevil" in modal.answer_text and "\x1b" not in modal.answer_text
        await pilot.press("escape")
        select_port(screen, 9999)
        await pilot.press("w")
        assert HOSTILE_NAME in screen.app.screen.answer_text  # type: ignore[attr-defined]
        assert screen.app.is_running

    run(make_app(), body)


def test_time_wait_remnants_only() -> None:
    base = demo_snapshot()
    remnant = next(s for s in base.sockets if s.state == "TIME_WAIT")
    only_remnant = base._replace(sockets=tuple(s for s in base.sockets if s.local_port != 443) + (remnant,))

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        select_port(screen, 443, "TIME_WAIT")
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal) and modal.report is not None
        assert modal.report.primary.reason == "time-wait"
        assert "60 s on Linux" in modal.answer_text and "SO_REUSEADDR can bind the port now" in modal.answer_text

    run(make_app([only_remnant], binder=simulated_binder(only_remnant.sockets)), body)


def test_w_on_an_empty_table_asks_for_a_port() -> None:
    empty = Snapshot(sockets=(), taken_at=DEMO_TIME)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal) and modal.report is None and modal.spec is None
        assert modal.answer_text == "Type a port and press enter."
        assert modal.focused is modal.query_one("#why-port")

    run(make_app([empty]), body)


def test_the_probe_runs_off_the_event_loop_when_polling() -> None:
    import threading

    threads: list[str] = []
    base = simulated_binder(demo_snapshot().sockets)

    def binder(port: int, proto: str) -> Any:
        threads.append(threading.current_thread().name)
        return base(port, proto)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        for _ in range(500):
            if screen.snapshot is not None:
                break
            await pilot.pause(0.01)
        select_port(screen, 8000)
        await pilot.press("w")
        modal = screen.app.screen
        assert isinstance(modal, WhyModal)
        for _ in range(500):
            if modal.report is not None:
                break
            await pilot.pause(0.01)
        assert modal.report is not None and modal.report.primary.reason == "partial"
        assert threads and threading.main_thread().name not in threads

    run(make_app([demo_snapshot()], poll=True, interval=0.05, binder=binder), body)
