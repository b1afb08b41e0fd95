"""What the Managed by column costs the live monitor: on the event loop, and on its own thread.

    python bench/bench_managed_by.py              # 10,000 synthetic sockets, 200x50, medians of many runs
    python bench/bench_managed_by.py --rows 50000

On the event loop, the column adds a dict look-up per row drawn (the text of a main holder identity
already worked out) or, for one not worked out yet, a queue put: it prints a screen of rows rendered
without the column, with it (texts known), with it (texts pending, the first paint), and a whole
refresh (``set_rows`` of the 10,000 rows and the repaint) without and with the column. Off the event
loop it prints what working out the texts costs per process identity on this host, read from /proc
(the real processes holding sockets here), cold (a new ``Ownership``) and warm (the next refresh).
There is no target beyond "a refresh on the event loop is not slower by more than noise".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from portmon.collect.fake import ScriptedCollector, synthetic_snapshot  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402

SIZE = (200, 50)


def _ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _in_app(rows: int) -> None:
    from portmon.ui.app import PortmonApp
    from portmon.ui.owners import LiveOwnership, ManagerNames

    snapshot = synthetic_snapshot(rows, seed=1)
    app = PortmonApp(ScriptedCollector([snapshot]), poll=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.monitor
        table = screen.table
        view = screen.view
        assert view is not None
        visible = range(round(table.scroll_y), round(table.scroll_y) + table.data_height)
        resolved: list[int] = []
        names = ManagerNames(LiveOwnership(), lambda: resolved.append(1), background=True)

        def paint() -> None:
            for row in visible:
                sock = table.rows[row]
                table._render_row(sock, "", row == table.cursor_row)

        def refresh() -> None:
            table.set_rows(view.rows, view.index, view.widths, screen.marks, view.spec.column, view.spec.descending)
            table._generation += 1  # every visible row drawn again, as after a scan that changed them
            for row in visible:
                table._row_strip(row)

        table.set_managed_by(names.get, False)
        await pilot.pause()
        without = _ms(paint, 200)
        refresh_without = _ms(refresh, 30)
        table.set_managed_by(names.get, True)
        await pilot.pause()
        pending_started = time.perf_counter()
        paint()  # the first paint: every identity queued for the thread
        pending = (time.perf_counter() - pending_started) * 1000
        deadline = time.monotonic() + 30
        while not resolved and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        known = _ms(paint, 200)
        refresh_with = _ms(refresh, 30)
        names.shutdown()
        n = len(visible)
        print(f"one screen ({n} rows) without the column   {without:7.2f} ms")
        print(f"one screen with it, texts pending (queued)  {pending:7.2f} ms  (once per new identity)")
        print(f"one screen with it, texts known             {known:7.2f} ms")
        print(f"refresh of {rows:,} rows + repaint, without  {refresh_without:7.2f} ms")
        print(f"refresh of {rows:,} rows + repaint, with     {refresh_with:7.2f} ms")


def _thread_cost() -> None:
    from portmon.ui.owners import LiveOwnership

    sockets = [s for s in ProcfsCollector().scan().sockets if s.holders]
    firsts = {(s.holders[0].pid, s.holders[0].create_time): s for s in sockets}
    socks = list(firsts.values())
    cold = []
    warm = []
    for _ in range(5):
        own = LiveOwnership()
        started = time.perf_counter()
        for s in socks:
            own.managed_by(s)
        cold.append((time.perf_counter() - started) * 1000)
        own.new_scan()
        started = time.perf_counter()
        for s in socks:
            own.managed_by(s)
        warm.append((time.perf_counter() - started) * 1000)
    n = max(1, len(socks))
    print(f"off the event loop: {len(socks)} process identities holding sockets on this host")
    print(f"  cold (new Ownership)  {min(cold):7.2f} ms in all, {min(cold) / n * 1000:6.0f} us each")
    print(f"  warm (next refresh)   {min(warm):7.2f} ms in all, {min(warm) / n * 1000:6.0f} us each")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args(argv)
    asyncio.run(_in_app(args.rows))
    _thread_cost()
    return 0


if __name__ == "__main__":
    sys.exit(main())
