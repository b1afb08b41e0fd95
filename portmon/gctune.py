"""The cyclic garbage collector's pace for the commands that scan on and on (the live monitor, ``watch``,
``serve``): one named setting, measured."""

from __future__ import annotations

import gc

LONG_RUN_THRESHOLDS = (10_000, 10, 10)
"""Young-generation threshold 10,000 allocations (Python's default is 700); the older generations' as default."""


def pace_for_long_runs() -> None:
    """Collect the young generation every 10,000 tracked allocations instead of every 700 (speed trick).

    Each refresh builds a few container objects as big as the socket table (the snapshot's tuple, the
    table cache's dicts, the identity sets): a collection that finds them young walks all their
    entries, and at 700 allocations a refresh triggers ~30 young and ~3 middle collections that walk
    them again and again. At 10,000 a refresh triggers about one. Cyclic garbage is still collected,
    only in larger batches (tests/test_gctune.py). Measured on issue 18's load (34,000 sockets, the
    live monitor at 1 s in a 160x45 terminal, time inside the collector's callbacks over 25 s of
    steady refreshing, twice each): 0.20-0.32 s instead of 0.62-0.67 s, i.e. ~1.5 % of a core less;
    ``bench/bench_gc.py`` (the poller's scan and derive without the UI, both paces side by side, 20
    refreshes): 0.5 ms instead of 7.8 ms a refresh in collections, 99 ms instead of 112 ms of CPU.
    The plain version is Python's default thresholds (``gc.set_threshold(700, 10, 10)``).
    """
    gc.set_threshold(*LONG_RUN_THRESHOLDS)
