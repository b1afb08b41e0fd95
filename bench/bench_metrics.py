"""Metrics benchmark: the CPU cost of ``portmon serve --metrics`` at N loopback sockets (default 10,000).

Measured on this host, with LoopbackLoad holding N ESTABLISHED sockets (plus listeners):

* The metrics alone, in this process, over a synthetic snapshot of exactly N sockets (1 % churn
  between polls): the event diff a poll adds to its scan, the first scrape after a poll (families
  built and rendered) and a repeat scrape, median of ``--runs``. This part does not depend on
  what else runs on the host.
* In this process: one poll (scan + events) and one scrape (the metric families built and
  rendered by prometheus_client's ``generate_latest``, first scrape after a poll and a repeat
  scrape that reuses the poll's families), median of ``--runs``.
* ``portmon serve --metrics 127.0.0.1:0 --interval 1`` in a separate process for ``--seconds``
  seconds each: idle (nobody scrapes), scraped every 15 s (Prometheus's usual interval), and a
  scrape storm (10 scrapes a second). CPU share = the server's user+sys CPU time / wall time,
  as a percentage of one core.

Targets: serving adds little to scanning: a 15 s scrape costs under 1 % of a core over the
idle server, and a scrape storm never scans (its extra cost is formatting only).

    python bench/bench_metrics.py [--sockets 10000] [--seconds 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback import LoopbackLoad  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from portmon.collect.choose import default_collector  # noqa: E402
from portmon.collect.fake import ScriptedCollector, synthetic_snapshot  # noqa: E402
from portmon.export.metrics import MetricsState, Poller  # noqa: E402
from portmon.export.server import metrics_registry  # noqa: E402


def _median_ms(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def synthetic(n: int, runs: int) -> None:
    snaps = [synthetic_snapshot(n)]
    for i in range(runs * 2 + 2):
        snaps.append(synthetic_snapshot(n, seed=i + 1, churn=0.01, base=snaps[-1]))
    state = MetricsState()
    poller = Poller(ScriptedCollector(snaps), state, interval=1.0)
    registry = metrics_registry(state)
    poller.poll_once()
    polls: list[float] = []
    firsts: list[float] = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        poller.poll_once()
        polls.append((time.perf_counter() - started) * 1000.0)
        started = time.perf_counter()
        size = len(generate_latest(registry))
        firsts.append((time.perf_counter() - started) * 1000.0)
    repeat_ms = _median_ms(lambda: generate_latest(registry), runs)
    listening = sum(1 for s in snaps[-1].sockets if s.listening)
    print(f"  synthetic snapshot: {n} sockets ({listening} listening), 1 % churn between polls")
    print(f"  poll without the scan (events):  {statistics.median(polls):7.1f} ms")
    print(f"  first scrape after a poll:       {statistics.median(firsts):7.1f} ms ({size} bytes)")
    print(f"  repeat scrape (families reused): {repeat_ms:7.2f} ms")


def in_process(runs: int) -> None:
    state = MetricsState()
    poller = Poller(default_collector(), state, interval=1.0)
    poller.poll_once()
    registry = metrics_registry(state)
    poll_ms = _median_ms(poller.poll_once, runs)
    size = 0

    def first_scrape() -> None:
        nonlocal size
        poller.poll_once()  # a new generation: the families are built again by the scrape below
        started = time.perf_counter()
        size = len(generate_latest(registry))
        first_times.append((time.perf_counter() - started) * 1000.0)

    first_times: list[float] = []
    for _ in range(runs):
        first_scrape()
    repeat_ms = _median_ms(lambda: generate_latest(registry), runs)
    snap = state.snapshot
    assert snap is not None
    listening = sum(1 for s in snap.sockets if s.listening)
    print(f"  sockets in the snapshot: {len(snap.sockets)} ({listening} listening)")
    print(f"  poll (scan + events):            {poll_ms:7.1f} ms median of {runs}")
    print(f"  first scrape after a poll:       {statistics.median(first_times):7.1f} ms ({size} bytes)")
    print(f"  repeat scrape (families reused): {repeat_ms:7.1f} ms")


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def served(seconds: float) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", "serve", "--metrics", "127.0.0.1:0", "--interval", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.split(" on ", 1)[1].split(";")[0].strip()
        server = psutil.Process(proc.pid)
        urllib.request.urlopen(url, timeout=60).read()  # warm: first poll done, modules loaded
        time.sleep(2)
        for label, every in (("idle, never scraped", None), ("scraped every 15 s", 15.0), ("scrape storm, 10/s", 0.1)):
            cpu0, wall0 = _cpu(server), time.monotonic()
            scrapes = 0
            next_at = wall0
            while time.monotonic() - wall0 < seconds:
                if every is not None and time.monotonic() >= next_at:
                    urllib.request.urlopen(url, timeout=60).read()
                    scrapes += 1
                    next_at += every
                time.sleep(0.01)
            share = (_cpu(server) - cpu0) / (time.monotonic() - wall0) * 100.0
            print(f"  {label:<22} {share:6.2f} % of a core over {seconds:g} s ({scrapes} scrapes)")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"portmon serve at {args.sockets} loopback sockets ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print("metrics alone (synthetic snapshot, no scan):")
    synthetic(args.sockets, args.runs)
    with LoopbackLoad(args.sockets):
        print("in process, scanning this host:")
        in_process(args.runs)
        print("portmon serve --metrics, separate process, --interval 1:")
        served(args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
