"""The long-run collector pace: set as named, and cyclic garbage is still collected without being asked."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from portmon.gctune import LONG_RUN_THRESHOLDS, pace_for_long_runs


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    enabled = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        if not enabled:
            gc.disable()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_long_run_pace_still_collects_cycles(thresholds: None) -> None:
    pace_for_long_runs()
    assert gc.get_threshold() == LONG_RUN_THRESHOLDS
    gc.collect()
    watched = []
    for _ in range(50):
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: refcounting alone never frees it
        watched.append(weakref.ref(a))
        del a, b
    assert all(ref() is not None for ref in watched)  # not yet: fewer allocations than the threshold
    filler = [[i] for i in range(LONG_RUN_THRESHOLDS[0] * 3)]  # tracked allocations, as a refresh makes
    assert all(ref() is None for ref in watched)  # collected along the way, nobody called gc.collect()
    assert len(filler) == LONG_RUN_THRESHOLDS[0] * 3
