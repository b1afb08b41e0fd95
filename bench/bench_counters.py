"""What the traffic counters (tcp_info over sock_diag) cost the collector, and how true the rates are.

For each socket count, on the realistic loopback load (bench/loads.py), side by side:

* ``ss -tuanp`` and ``ss -tuani`` (ss with tcp_info): wall time of the command, median;
* ProcfsCollector steady scans (nothing changed since the last scan) with counters and without:
  median and p10-p90; the budget is steady scan <= 0.5x ``ss -tuanp``;
* a monitor loop (one scan a second and the rates between scans) with counters and without: CPU
  share (CPU time / wall time); the budget is no more than a third more than without;
* the rate error: a sender paced at --rate bytes/s on loopback, two samples --interval apart,
  the reported TX rate against the paced one.

Run (root for 50k sockets, and alone in a network namespace for figures of this load only)::

    unshare -n sh -c 'ip link set lo up && python bench/bench_counters.py --sockets 1000 10000 50000'
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loads import Load, realistic  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.query.rates import Sample, connection_rates, moving_rates  # noqa: E402


def spread(samples: list[float]) -> str:
    """Median and p10-p90 of ``samples`` (seconds) in ms."""
    ms = sorted(s * 1000.0 for s in samples)
    p10, p90 = ms[len(ms) // 10], ms[(len(ms) * 9) // 10 - (1 if len(ms) >= 10 else 0)]
    return f"{statistics.median(ms):8.1f} ({p10:.1f}-{p90:.1f})"


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def command(args: list[str]) -> Callable[[], object]:
    return lambda: subprocess.run(args, capture_output=True, check=False)


def steady(counters: bool, runs: int) -> list[float]:
    collector = ProcfsCollector(counters=counters)
    collector.scan()
    collector.scan()
    return timed(collector.scan, runs)


def monitor_share(counters: bool, seconds: float) -> float:
    """CPU share of one scan a second plus the rates between scans, for ``seconds``."""
    collector = ProcfsCollector(counters=counters)
    last = Sample(collector.scan(), time.monotonic())
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    next_at = started
    while time.monotonic() - started < seconds:
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.monotonic()))
        now = Sample(collector.scan(), time.monotonic())
        moving_rates(last, now)  # what the live monitor computes: the connections that moved bytes
        last = now
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (time.monotonic() - started)


PACER = """
import socket, sys, threading, time
rate = float(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
threading.Thread(target=lambda: [None for _ in iter(lambda: server.recv(1 << 20), b"")], daemon=True).start()
print(client.getsockname()[1], flush=True)
tick = 0.01
chunk = b"x" * int(rate * tick)
next_at = time.monotonic()
while True:
    client.sendall(chunk)
    next_at += tick
    time.sleep(max(0.0, next_at - time.monotonic()))
"""


def rate_error(rate: float, interval: float) -> tuple[float, float]:
    """(paced rate, reported rate) of a loopback sender paced at ``rate`` bytes/s in its own process."""
    pacer = subprocess.Popen([sys.executable, "-c", PACER, str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        assert pacer.stdout is not None
        port = int(pacer.stdout.readline())
        collector = ProcfsCollector()
        collector.scan()  # the cold scan, before the samples
        time.sleep(0.5)  # the sender settles into its pace
        first = Sample(collector.scan(), time.monotonic())
        time.sleep(interval)
        second = Sample(collector.scan(), time.monotonic())
        mine = [r for r in connection_rates(first, second) if r.socket.local_port == port]
        return rate, mine[0].tx_bps if mine else float("nan")
    finally:
        pacer.kill()
        pacer.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sockets", type=int, nargs="*", default=[1000, 10000, 50000], help="socket counts (none: the rate error only)"
    )
    parser.add_argument("--runs", type=int, default=11, help="runs per timing (median and p10-p90)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each monitor loop (0 skips them)")
    parser.add_argument("--rate", type=float, default=1_000_000.0, help="paced sender's bytes/s")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between the two rate samples")
    args = parser.parse_args()
    paced, reported = rate_error(args.rate, args.interval)
    print(f"rate error: paced {paced:,.0f} B/s, reported {reported:,.0f} B/s ({(reported / paced - 1) * 100:+.1f} %)")
    for n in args.sockets:
        spec = realistic(n)
        with Load(spec, max_seconds=1800.0) as load:
            print(f"\n== {n:,} sockets: {spec.describe()} {load.note}", flush=True)
            rows = [
                ("ss -tuanp", timed(command(["ss", "-tuanp"]), args.runs)),
                ("ss -tuani", timed(command(["ss", "-tuani"]), args.runs)),
                ("steady scan, counters", steady(True, args.runs)),
                ("steady scan, no counters", steady(False, args.runs)),
            ]
            for name, samples in rows:
                print(f"  {name:28} {spread(samples)} ms")
            ss_p = statistics.median(rows[0][1])
            print(f"  steady scan with counters / ss -tuanp: {statistics.median(rows[2][1]) / ss_p:.2f}x (budget 0.5x)")
            if args.seconds > 0:
                on, off = monitor_share(True, args.seconds), monitor_share(False, args.seconds)
                grow = (on / off - 1) * 100 if off else float("nan")
                print(f"  monitor loop CPU share: {on * 100:.2f} % with counters, {off * 100:.2f} % without "
                      f"({grow:+.0f} %, budget +33 %)")  # fmt: skip
    print(f"\n(pid {os.getpid()}; load processes stopped)")


if __name__ == "__main__":
    main()
