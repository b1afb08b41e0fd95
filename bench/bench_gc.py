"""Time spent in the cyclic garbage collector per refresh, Python's default pace against ``pace_for_long_runs``.

Runs what the live monitor's poller runs once a second (the procfs collector wrapped in
``FamilyOrdered``, then ``Pipeline.step`` with the default view) in two child processes, one with
Python's default thresholds and one with ``portmon.gctune.LONG_RUN_THRESHOLDS``, side by side on the
same load. Each counts the time spent inside collections (``gc.callbacks``) and the CPU time of the
refreshes over ``--scans`` refreshes after two warm-up ones, and prints both.

    unshare -n sh -c 'ip link set lo up && exec python bench/loads.py issue18 --seconds 3600' &
    nsenter -n -t LOAD_PID python bench/bench_gc.py [--scans 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
from portmon.collect.procfs import ProcfsCollector
from portmon.gctune import pace_for_long_runs
from portmon.ownership.ordered import FamilyOrdered
from portmon.ui.view import Pipeline, ViewSpec

if sys.argv[2] == "long":
    pace_for_long_runs()
spent = [0.0]
started = [0.0]

def watch(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - started[0]

gc.callbacks.append(watch)
collector, pipeline, spec = FamilyOrdered(ProcfsCollector()), Pipeline(None), ViewSpec()
cpu, collected = [], []
for n in range(int(sys.argv[3]) + 2):
    spent[0] = 0.0
    begun = time.thread_time()
    pipeline.step(collector.scan(), spec, time.time(), 1.0)
    if n >= 2:
        cpu.append((time.thread_time() - begun) * 1000)
        collected.append(spent[0] * 1000)
    time.sleep(max(0.0, 1.0 - (time.thread_time() - begun)))
print(json.dumps({"cpu": cpu, "gc": collected, "thresholds": gc.get_threshold()}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=30, help="refreshes measured in each process")
    args = parser.parse_args()
    runs = {
        pace: subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ROOT), pace, str(args.scans)], stdout=subprocess.PIPE, text=True
        )
        for pace in ("default", "long")
    }
    print(f"{'pace':<10}{'thresholds':>20}{'CPU ms/refresh':>18}{'in gc ms/refresh':>19}")
    for pace, proc in runs.items():
        out, _ = proc.communicate()
        figures = json.loads(out)
        cpu = sorted(figures["cpu"])[len(figures["cpu"]) // 2]
        gc_ms = sum(figures["gc"]) / len(figures["gc"])
        print(f"{pace:<10}{str(tuple(figures['thresholds'])):>20}{cpu:>18.1f}{gc_ms:>19.1f}")
    print("CPU: median; in gc: mean (a collection of the older generations comes every few refreshes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
