"""The live monitor's poller lengthens its interval when a refresh costs much CPU on its thread."""

from __future__ import annotations

import itertools
import threading

from portmon.collect.fake import ScriptedCollector, demo_snapshot
from portmon.ui.poller import CPU_PACED_MAX, POLLER_CPU_SHARE, SLOW_SCAN_SHARE, Poller, paced_interval
from portmon.ui.view import Update, ViewSpec


def test_paced_interval_takes_the_longest_of_asked_slow_scan_and_cpu() -> None:
    assert paced_interval(1.0, 0.1, 0.05) == 1.0
    assert paced_interval(1.0, 0.5, 0.05) == 0.5 * SLOW_SCAN_SHARE
    assert paced_interval(1.0, 0.1, 0.6) == 0.6 / POLLER_CPU_SHARE
    assert paced_interval(1.0, 0.1, 0.25) == 1.0  # 1.25 s would be a small step: the interval asked for stays
    assert paced_interval(5.0, 0.5, 0.6) == 5.0
    assert paced_interval(1.0, 0.1, 60.0) == CPU_PACED_MAX  # the CPU rule alone stops at 3 s
    assert paced_interval(1.0, 2.0, 60.0) == 2.0 * SLOW_SCAN_SHARE  # a slow scan still lengthens it


def test_a_costly_refresh_lengthens_the_next_interval() -> None:
    ticks = itertools.count()
    updates: list[Update] = []
    two = threading.Event()

    def deliver(update: Update) -> None:
        updates.append(update)
        if len(updates) >= 2:
            two.set()

    # Each refresh "costs" one CPU second on the poller thread (the fake clock moves 0.5 s per reading).
    poller = Poller(ScriptedCollector([demo_snapshot()]), deliver, lambda: ViewSpec(), interval=0.05,
                    cpu_clock=lambda: float(next(ticks)) * 0.5)  # fmt: skip
    poller.start()
    try:
        assert two.wait(30), "the poller did not refresh twice"
    finally:
        poller.stop()
    assert updates[0].interval == 0.05  # nothing known yet about the cost
    assert updates[1].interval == 0.5 / POLLER_CPU_SHARE  # 0.5 s of CPU per refresh at 20 %: 2.5 s
