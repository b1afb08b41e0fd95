"""Snapshot tests of the monitor's layout: fake data, a fixed clock, no poll timer, no cursor blink."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot, demo_snapshot_after
from portmon.ui.app import PortmonApp
from portmon.ui.owners import DemoOwnership

WIDE = (160, 45)
NARROW = (80, 24)

SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start times in the detail pane are local times: pin the zone so the snapshots match anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def demo_app(steps: list[Any] | None = None, **options: Any) -> PortmonApp:
    collector = ScriptedCollector(steps or [demo_snapshot()])
    options.setdefault("ownership", DemoOwnership())
    return PortmonApp(collector, poll=False, clock=lambda: DEMO_TIME + 1.0, process_reader=demo_process, **options)


def test_default_view(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), terminal_size=WIDE)


def test_live_changes_are_highlighted(snap_compare: SnapCompare) -> None:
    app = demo_app([demo_snapshot(), demo_snapshot_after()])
    assert snap_compare(app, press=["r"], terminal_size=WIDE)


def test_listening_only(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), press=["l"], terminal_size=WIDE)


def test_filtered(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(filter_text="proc:python3 port:8000"), terminal_size=WIDE)


def test_filter_error(snap_compare: SnapCompare) -> None:
    app = demo_app(filter_text="proc:nginx")

    async def type_bad_term(pilot: Any) -> None:
        await pilot.pause()
        pilot.app.monitor.query_one("#filter").value = "proc:nginx port:99999"
        await pilot.pause()

    assert snap_compare(app, run_before=type_bad_term, terminal_size=WIDE)


def test_detail_pane(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), press=["down"] * 4 + ["d"], terminal_size=WIDE)


def test_narrow_terminal(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), terminal_size=NARROW)


def test_narrow_terminal_with_detail(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), press=["down"] * 13 + ["enter"], terminal_size=NARROW)


def test_scan_error_banner(snap_compare: SnapCompare) -> None:
    app = demo_app([demo_snapshot(), RuntimeError("netlink socket closed")])
    assert snap_compare(app, press=["r"], terminal_size=WIDE)


def test_help_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(), press=["question_mark"], terminal_size=WIDE)


def why_app(**options: Any) -> PortmonApp:
    """The demo with the "why" dialog's test binds simulated from the demo sockets, answering as root."""
    from portmon.actions.binds import simulated_binder

    return demo_app(binder=simulated_binder(demo_snapshot().sockets), privileged=True, **options)


def test_event_log_pane(snap_compare: SnapCompare) -> None:
    app = demo_app([demo_snapshot(), demo_snapshot_after()])
    assert snap_compare(app, press=["r", "e"], terminal_size=WIDE)


def test_event_log_pane_narrow(snap_compare: SnapCompare) -> None:
    app = demo_app([demo_snapshot(), demo_snapshot_after()])
    assert snap_compare(app, press=["r", "e"], terminal_size=NARROW)


def test_why_dialog(snap_compare: SnapCompare) -> None:
    async def select_dev_server(pilot: Any) -> None:
        await pilot.pause()
        table = pilot.app.monitor.table
        table.move_cursor(next(i for i, s in enumerate(table.rows) if s.local_port == 8000 and s.state == "LISTEN"))
        await pilot.press("w")
        await pilot.pause()

    assert snap_compare(why_app(), run_before=select_dev_server, terminal_size=WIDE)


def test_detail_pane_at_120_columns(snap_compare: SnapCompare) -> None:
    # The State column stays whole beside the pane.
    assert snap_compare(demo_app(), press=["down"] * 12 + ["d"], terminal_size=(120, 35))


def test_detail_pane_at_200_columns(snap_compare: SnapCompare) -> None:
    # The table takes what its columns want, the pane the rest: no gap between them.
    assert snap_compare(demo_app(), press=["down"] * 4 + ["d"], terminal_size=(200, 50))


def test_narrow_terminal_with_both_panes(snap_compare: SnapCompare) -> None:
    app = demo_app([demo_snapshot(), demo_snapshot_after()])
    assert snap_compare(app, press=["r", "down", "d", "e"], terminal_size=NARROW)


def test_filter_box_focused_and_paused(snap_compare: SnapCompare) -> None:
    # The footer says the state (Resume, Listening: on) and, in the filter box, offers its own keys.
    assert snap_compare(demo_app(), press=["space", "l", "slash"], terminal_size=WIDE)
