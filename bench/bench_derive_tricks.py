"""What the live monitor's per-scan tricks after the scan save (event diff, widths, states): each against its plain one.

Two real scans a second apart are taken with the procfs collector in the network namespace this
runs in, then each trick and its plain version are timed on that pair, alternately, with what a
live monitor has in hand when it gets there primed: for the plain diff the old side's key map
(kept from the last scan), for the trick the last scan's identity tally and the pair's split by
object (``changed_objects``, which the change marks asked for first). Figures: best wall and
median CPU of ``--runs`` runs, in ms (the wall time includes the untimed setup: read the CPU).

    unshare -n sh -c 'ip link set lo up && python bench/bench_derive_tricks.py --load issue18'
    nsenter -n -t LOAD_PID python bench/bench_derive_tricks.py      # on a load already running
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_collect_tricks import Figures, compare, print_figures  # noqa: E402
from bench.loads import Load, issue18  # noqa: E402
from portmon import sameobjects  # noqa: E402
from portmon.model import Snapshot  # noqa: E402
from portmon.query import diff  # noqa: E402
from portmon.ui.view import LiveMeasures, column_widths, moved_state_counts, state_counts  # noqa: E402


def _forget_caches() -> None:
    diff._key_maps.clear()
    sameobjects._ids.clear()
    sameobjects._last_split = None
    diff._last_compared = None


def event_diff_figures(old: Snapshot, new: Snapshot, runs: int) -> list[Figures]:
    """``diff_changed_objects`` (with the last scan's identity tally) against ``diff_snapshots``."""
    assert diff.diff_changed_objects(old.sockets, new.sockets, new.taken_at)[0] == diff.diff_snapshots(old, new)

    def fast() -> float:
        _forget_caches()
        # The monitor's change marks already split this pair by object (``changes``) when the events ask.
        sameobjects.changed_objects(old.sockets, new.sockets)
        tally = diff.IdentityTally(old.sockets)
        started = time.process_time()
        diff.diff_changed_objects(old.sockets, new.sockets, new.taken_at, tally)
        return time.process_time() - started

    def plain() -> float:
        _forget_caches()
        diff._key_map(old.sockets, by_identity=True)  # the last scan's key map, as the monitor kept it
        started = time.process_time()
        diff.diff_snapshots(old.sockets, new.sockets, new.taken_at)
        return time.process_time() - started

    changed = sum(map(len, sameobjects.changed_objects(old.sockets, new.sockets)))
    name = f"event diff, {len(new.sockets)} sockets ({changed} changed objects)"
    return [compare(name, fast, plain, runs)]


def widths_figures(old: Snapshot, new: Snapshot, runs: int) -> list[Figures]:
    """``LiveMeasures`` of the last scan moved on to this one against ``column_widths`` of every row."""
    gone, came = sameobjects.changed_objects(old.sockets, new.sockets)
    measures = LiveMeasures(old.sockets)
    assert measures.advanced(came, gone).widths() == column_widths(new.sockets)

    def fast() -> float:
        started = time.process_time()
        measures.advanced(came, gone).widths()
        return time.process_time() - started

    def plain() -> float:
        started = time.process_time()
        column_widths(new.sockets)
        return time.process_time() - started

    counts = state_counts(old.sockets)
    assert moved_state_counts(counts, came, gone) == state_counts(new.sockets)

    def fast_states() -> float:
        started = time.process_time()
        moved_state_counts(counts, came, gone)
        return time.process_time() - started

    def plain_states() -> float:
        started = time.process_time()
        state_counts(new.sockets)
        return time.process_time() - started

    changed = len(came) + len(gone)
    return [
        compare(f"column widths, {len(new.sockets)} rows ({changed} changed)", fast, plain, runs),
        compare(f"state counts, {len(new.sockets)} rows ({changed} changed)", fast_states, plain_states, runs),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=31, help="runs of each side per figure")
    parser.add_argument("--load", choices=["none", "issue18"], default="none", help="start this load first")
    parser.add_argument("--pairs", type=int, default=3, help="scan pairs to measure, a second apart")
    args = parser.parse_args()
    from portmon.collect.procfs import ProcfsCollector

    load: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if args.load == "issue18":
        load = Load(issue18())
    rows: list[Figures] = []
    with load:
        collector = ProcfsCollector()
        collector.scan()
        before = collector.scan()
        for _ in range(args.pairs):
            time.sleep(1.0)
            after = collector.scan()
            rows += event_diff_figures(before, after, args.runs)
            rows += widths_figures(before, after, args.runs)
            before = after
    print_figures(rows)


if __name__ == "__main__":
    main()
