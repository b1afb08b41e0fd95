"""What each speed trick of the TUI saves at 10,000 sockets, against the plain way of doing the same thing.

    python bench/bench_ui_tricks.py              # 10,000 synthetic sockets, 160x50, medians of many runs
    python bench/bench_ui_tricks.py --rows 50000

Each line prints the plain version's time, the trick's, and the saving per occurrence (a refresh, a
repaint, a collection). The docstrings of the tricks quote these figures; a trick saving under 2 ms at
10,000 sockets is not worth its lines and goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from portmon.collect.fake import ScriptedCollector, synthetic_snapshot  # noqa: E402

SIZE = (160, 50)


def _ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _line(name: str, plain: float, trick: float, per: str) -> None:
    print(f"{name:<34} plain {plain:8.2f} ms   trick {trick:8.2f} ms   saves {plain - trick:8.2f} ms per {per}")


async def _in_app(rows: int) -> None:
    from portmon.ui.app import PortmonApp

    snapshot = synthetic_snapshot(rows, seed=1)
    app = PortmonApp(ScriptedCollector([snapshot]), poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.monitor
        table = screen.table
        visible = range(round(table.scroll_y), round(table.scroll_y) + table.data_height)

        # Row cache: a repaint of the visible rows from the cache, or rendering each again.
        def cached() -> None:
            for row in visible:
                table._row_strip(row)

        def rendered() -> None:
            for row in visible:
                sock = table.rows[row]
                table._render_row(sock, "", row == table.cursor_row)

        cached()
        _line("row cache (one screen of rows)", _ms(rendered, 200), _ms(cached, 200), "repaint")

        # Highlight tick: repaint the one visible row whose mark ran out, or the whole table.
        async def cpu_of(action: Callable[[], object]) -> float:
            times = []
            for _ in range(60):
                started = time.thread_time()
                action()
                await pilot.pause()
                times.append((time.thread_time() - started) * 1000)
            return statistics.median(times)

        full = await cpu_of(table.refresh)
        one = await cpu_of(lambda: table.refresh_line(2))
        _line("tick: visible changed rows only", full, one, "tick")

        # Layout pass: what the banner, the status line and the detail head avoid with layout=False.
        screen.set_detail(True)
        await pilot.pause()
        layout = await cpu_of(lambda: screen.refresh(layout=True))
        paint = await cpu_of(lambda: screen.refresh())
        _line("layout pass skipped (detail open)", layout, paint, "refresh")

        # The detail pane's class: the whole screen restyled, or only the panes its rules reach.
        from portmon.ui.restyle import set_screen_class

        def plain_toggle() -> None:
            screen.set_class(not screen.has_class("with-detail"), "with-detail")

        def trick_toggle() -> None:
            set_screen_class(screen, not screen.has_class("with-detail"), "with-detail", screen._panes())

        _line("restyle only the panes (d key)", await cpu_of(plain_toggle), await cpu_of(trick_toggle), "d")

        # gc.freeze: a full collection with the app and the snapshot alive, walked or frozen.
        gc.collect()
        walked = _ms(gc.collect, 9)
        gc.freeze()
        frozen = _ms(gc.collect, 9)
        gc.unfreeze()
        _line("gc.freeze (full collection)", walked, frozen, "collection")


def _pure(rows: int) -> None:
    from portmon.ui.view import RowIndex, column_widths, column_widths_plain

    snapshot = synthetic_snapshot(rows, seed=1)
    sockets = snapshot.sockets

    keys = [s.key for s in sockets[:: max(1, rows // 3)]]

    def by_dict() -> None:
        index = {s.key: i for i, s in enumerate(sockets)}
        for key in keys:
            index.get(key)

    def by_row_index() -> None:
        index = RowIndex(sockets)
        for key in keys:
            index.get(key)

    _line("RowIndex instead of a dict", _ms(by_dict, 30), _ms(by_row_index, 30), "refresh")

    # Rows sorted by local port (the default order): a binary search instead of the C-level scan.
    from portmon.query.sorting import sort_sockets

    by_port = sort_sockets(sockets, "local_port")

    def scanned() -> None:
        index = RowIndex(by_port)
        for key in keys:
            index.get(key)

    def searched() -> None:
        index = RowIndex(by_port, 1)
        for key in keys:
            index.get(key)

    _line("RowIndex by binary search", _ms(scanned, 30), _ms(searched, 30), "refresh")
    # A sort change: the rows measured and counted again, or the last derive's figures reused.
    from portmon.ui import view as view_module
    from portmon.ui.view import NO_MARKS, ViewSpec, derive_view

    now = snapshot.taken_at

    def sort_change(reuse: bool) -> Callable[[], object]:
        def run() -> None:
            derive_view(snapshot, NO_MARKS, ViewSpec(), now)
            if not reuse:
                view_module._last_derived = None
            started = time.perf_counter()
            derive_view(snapshot, NO_MARKS, ViewSpec(column="process"), now)
            timed.append((time.perf_counter() - started) * 1000)

        return run

    timed: list[float] = []
    for _ in range(15):
        sort_change(False)()
    plain = statistics.median(timed)
    timed.clear()
    for _ in range(15):
        sort_change(True)()
    _line("sort change reuses widths/counts", plain, statistics.median(timed), "sort key")
    _line(
        "column widths with map/set",
        _ms(lambda: column_widths_plain(sockets), 30),
        _ms(lambda: column_widths(sockets), 30),
        "refresh",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(f"{args.rows} sockets, {SIZE[0]}x{SIZE[1]}")
    _pure(args.rows)
    asyncio.run(_in_app(args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
