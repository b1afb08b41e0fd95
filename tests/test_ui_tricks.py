"""Each speed trick of the TUI against the plain way of doing the same thing: the same result, only faster.

The savings themselves are measured by bench/bench_ui_tricks.py, not here.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot

from portmon.collect.fake import (
    DEMO_TIME,
    ScriptedCollector,
    demo_process,
    demo_snapshot,
    demo_snapshot_after,
    synthetic_snapshot,
)
from portmon.model import Snapshot
from portmon.procinfo import ProcessDetail
from portmon.query.filters import parse_filter
from portmon.query.sorting import sort_sockets
from portmon.ui import view as view_module
from portmon.ui.app import PortmonApp
from portmon.ui.monitor import MonitorScreen
from portmon.ui.scans import freeze_long_lived_objects
from portmon.ui.status import Banner, banner_text
from portmon.ui.view import (
    NEW_SECONDS,
    NO_MARKS,
    RowIndex,
    View,
    ViewSpec,
    advance_marks,
    column_widths,
    column_widths_plain,
    derive_view,
    port_order,
)

SIZE = (160, 50)


class Clock:
    def __init__(self, now: float = DEMO_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(app: PortmonApp, body: Callable[[Pilot, MonitorScreen], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor)

    asyncio.run(main())


def screen_text(app: Any) -> str:
    """Everything on screen, styles included (the SVG export of the current frame)."""
    return str(app.export_screenshot())


def test_row_index_finds_what_a_dict_finds() -> None:
    sockets = synthetic_snapshot(3000, seed=4).sockets
    index = RowIndex(sockets)
    plain = {s.key: i for i, s in enumerate(sockets)}
    for key, row in plain.items():
        assert index.get(key) == row
        assert index[key] == row
        assert key in index
    other = synthetic_snapshot(50, seed=5).sockets
    for sock in other:
        assert index.get(sock.key) == plain.get(sock.key)
        assert (sock.key in index) == (sock.key in plain)


@pytest.mark.parametrize("descending", [False, True])
def test_row_index_by_binary_search_finds_what_a_dict_finds(descending: bool) -> None:
    # Many rows per local port (a server's connections), and some without a remote port (listeners).
    base = synthetic_snapshot(3000, seed=4).sockets
    sockets = [s._replace(local_port=8080 + i % 3) if i % 4 == 0 else s for i, s in enumerate(base)]
    sockets += [s._replace(remote_addr=None, remote_port=None, inode=10_000 + i) for i, s in enumerate(base[:40])]
    rows = sort_sockets(sockets, "local_port", descending)
    index = RowIndex(rows, port_order(ViewSpec(column="local_port", descending=descending)))
    plain = {s.key: i for i, s in enumerate(rows)}
    assert len(plain) == len(rows)
    for key, row in plain.items():
        assert index.get(key) == row
    for sock in synthetic_snapshot(50, seed=5).sockets:
        assert index.get(sock.key) == plain.get(sock.key)
        assert (sock.key in index) == (sock.key in plain)


def test_the_view_finds_rows_by_binary_search_only_when_sorted_by_local_port() -> None:
    assert port_order(ViewSpec(column="local_port")) == 1
    assert port_order(ViewSpec(column="local_port", descending=True)) == -1
    assert port_order(ViewSpec(column="remote_port")) == 0
    assert port_order(ViewSpec(column="process")) == 0


def test_column_widths_equal_the_plain_loop() -> None:
    samples = (synthetic_snapshot(3000, seed=2).sockets, demo_snapshot().sockets, demo_snapshot_after().sockets, ())
    for sockets in samples:
        assert column_widths(sockets) == column_widths_plain(sockets)


def test_the_row_cache_returns_what_rendering_gives() -> None:
    clock = Clock()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        clock.now += 1
        await pilot.press("r", "down", "down")  # marks on some rows, the cursor off the first
        await pilot.pause()
        table = screen.table
        for row in range(len(table.rows)):
            sock = table.rows[row]
            first = table._row_strip(row)
            again = table._row_strip(row)  # from the cache
            assert again is first
            fresh = table._render_row(sock, table.marks.mark(sock.key, clock()), row == table.cursor_row)
            assert list(again) == list(fresh)

    app = PortmonApp(ScriptedCollector([demo_snapshot(), demo_snapshot_after()]), poll=False, clock=clock,
                     process_reader=demo_process)
    run(app, body)


def test_a_tick_paints_what_a_full_repaint_paints() -> None:
    clock = Clock()

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        clock.now += 1
        await pilot.press("r")
        await pilot.pause()
        clock.now += NEW_SECONDS + 0.5  # the new and changed rows' highlights ran out; closed rows stay
        assert screen.table.refresh_marks() > 0
        await pilot.pause()
        ticked = screen_text(pilot.app)
        screen.table.invalidate()  # the plain way: render every row again
        await pilot.pause()
        assert screen_text(pilot.app) == ticked

    app = PortmonApp(ScriptedCollector([demo_snapshot(), demo_snapshot_after()]), poll=False, clock=clock,
                     process_reader=demo_process)
    run(app, body)


def test_a_detail_refresh_without_a_layout_pass_shows_what_a_layout_pass_shows() -> None:
    reads = {"n": 0}

    def reader(pid: int, create_time: float | None = None) -> ProcessDetail:
        # Each read has other one-line values: the head is redrawn without a layout pass.
        reads["n"] += 1
        detail = demo_process(pid, create_time)
        return replace(detail, cpu_percent=float(reads["n"]), rss=(detail.rss or 0) + reads["n"] * 4096)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("down", "down", "down", "d")
        await pilot.pause()
        before = reads["n"]
        await pilot.press("r")
        await pilot.pause()
        assert reads["n"] > before and f"{float(reads['n']):.1f} %" in screen.detail.text
        unforced = screen_text(pilot.app)
        screen.refresh(layout=True)  # the plain way: lay the whole screen out again
        await pilot.pause()
        assert screen_text(pilot.app) == unforced

    steps: list[Snapshot] = [demo_snapshot(), demo_snapshot()]
    run(PortmonApp(ScriptedCollector(steps), poll=False, clock=Clock(), process_reader=reader), body)


def test_the_banner_skips_only_updates_that_change_nothing() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("r")
        await pilot.pause()
        banner = screen.query_one("#banner", Banner)
        expected = banner_text(screen.snapshot, screen.interval)
        assert expected is not None and str(banner.content) == expected.plain
        assert banner.has_class("shown") and banner.has_class("error")
        banner.show(screen.snapshot, screen.interval)  # the same again: skipped, and still right
        assert str(banner.content) == expected.plain
        banner.show(demo_snapshot(), screen.interval)  # a good scan: the banner goes
        assert str(banner.content) == "" and not banner.has_class("shown")

    app = PortmonApp(ScriptedCollector([demo_snapshot(), RuntimeError("netlink socket closed")]), poll=False,
                     clock=Clock(), process_reader=demo_process)
    run(app, body)


def test_frozen_objects_still_live_and_later_garbage_is_still_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    kept = Node()
    kept.other = kept
    freeze_long_lived_objects()
    try:
        assert gc.get_freeze_count() > 0
        assert kept.other is kept
        cycle = Node()
        cycle.other = cycle
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None  # a cycle made after the freeze is collected as without it
    finally:
        gc.unfreeze()


def _all_styles(screen: MonitorScreen) -> dict[int, str]:
    return {id(node): node.styles.css for node in screen.walk_children(with_self=True)}


def test_toggling_a_pane_restyles_as_a_full_restyle_does() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        for size in ((160, 50), (80, 24)):  # beside the table, and under it (the "narrow" rules)
            await pilot.resize_terminal(*size)
            await pilot.pause()
            for key in ("d", "e", "d", "e", "e", "d"):  # every combination of the two panes
                await pilot.press(key)
                await pilot.pause()
                trick, shown = _all_styles(screen), screen_text(pilot.app)
                screen.update_node_styles()  # the plain way: restyle every widget on the screen
                await pilot.pause()
                assert _all_styles(screen) == trick
                assert screen_text(pilot.app) == shown
                assert screen.detail.display == screen.detail_visible
                assert screen.query_one("#events").display == screen.events_visible

    app = PortmonApp(ScriptedCollector([demo_snapshot()]), poll=False, clock=Clock(), process_reader=demo_process)
    run(app, body)


def _fields(view: View) -> tuple[object, ...]:
    return (view.spec, view.rows, dict(view.widths), view.total, view.shown, dict(view.states),
            dict(view.shown_states))


def test_a_sort_change_derives_the_view_a_derive_from_scratch_gives() -> None:
    old = synthetic_snapshot(2000, seed=7)
    new = synthetic_snapshot(0, base=old, churn=0.05, seed=8)
    marks = advance_marks(NO_MARKS, old, new, DEMO_TIME)  # closed rows still shown
    assert marks.ghosts(DEMO_TIME)
    for listening_only in (False, True):
        for filter_text in ("", "state:established", "!proc:nginx", ""):  # each after the one before
            step = ViewSpec(filter=parse_filter(filter_text), listening_only=listening_only)
            derive_view(new, marks, step, DEMO_TIME)
            for column in ("process", "local_service", "state", "local_port", "remote_addr"):
                for descending in (False, True):
                    other = replace(step, column=column, descending=descending)
                    reused = derive_view(new, marks, other, DEMO_TIME)  # after a derive of the same rows
                    view_module._last_derived = None  # the plain way: measure and count from scratch
                    assert _fields(derive_view(new, marks, other, DEMO_TIME)) == _fields(reused)


def test_scan_ahead_gives_the_same_scans_as_the_collector_itself() -> None:
    from portmon.ui.poller import ScanAhead

    def script() -> list[Any]:
        return [demo_snapshot(), RuntimeError("table gone"), demo_snapshot_after()]

    plain = ScriptedCollector(script())
    ahead_inner = ScriptedCollector(script())
    ahead = ScanAhead(ahead_inner)
    for _ in range(3):
        try:
            expected: Snapshot | str = plain.scan()
        except RuntimeError as exc:
            expected = str(exc)
        try:
            got: Snapshot | str = ahead.scan()
        except RuntimeError as exc:
            got = str(exc)
        assert got == expected
    assert ahead_inner.calls == plain.calls == 3
    assert ahead.name == "fake" and ahead.calls == 3  # everything else is the wrapped collector's


def test_scan_ahead_hands_over_a_failed_first_scan() -> None:
    from portmon.collect.base import guarded_scan
    from portmon.ui.poller import ScanAhead

    ahead = ScanAhead(ScriptedCollector([RuntimeError("no netlink"), demo_snapshot()]))
    failed = guarded_scan(ahead, None)
    assert failed.error == "scan failed: RuntimeError: no netlink" and failed.sockets == ()
    assert guarded_scan(ahead, failed) == demo_snapshot()


def _counting_repaints(table: Any) -> list[int]:
    """Count the table's own repaints (Widget.refresh calls) from now on."""
    calls: list[int] = []
    refresh = table.refresh

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return refresh(*args, **kwargs)

    table.refresh = counted
    return calls


@pytest.mark.parametrize("on_screen", [False, True])
def test_a_refresh_that_changes_no_row_on_screen_paints_what_a_full_repaint_paints(on_screen: bool) -> None:
    clock = Clock()
    first = synthetic_snapshot(500, seed=3)
    # New sockets on the highest port: sorted by local port they land at the bottom, far off screen.
    extra = tuple(s._replace(local_port=65535, inode=900_000 + i) for i, s in enumerate(first.sockets[:30]))
    second = first._replace(sockets=first.sockets + extra, taken_at=DEMO_TIME + 1)
    if on_screen:  # and one more on the lowest port: on the first line
        second = second._replace(sockets=(*second.sockets, first.sockets[0]._replace(local_port=1, inode=999_999)))

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        table = screen.table
        repaints = _counting_repaints(table)
        clock.now += 1
        await pilot.press("r")
        await pilot.pause()
        assert len(table.rows) == 530 + on_screen and table.virtual_size.height == len(table.rows) + 1
        assert table.vertical_scrollbar.window_virtual_size == len(table.rows) + 1  # the thumb follows
        assert bool(repaints) is on_screen  # unchanged rows on screen: the table was not repainted
        shown = screen_text(pilot.app)
        table.invalidate()  # the plain way: render every row again
        await pilot.pause()
        assert screen_text(pilot.app) == shown

    app = PortmonApp(ScriptedCollector([first, second]), poll=False, clock=clock, process_reader=demo_process)
    run(app, body)
