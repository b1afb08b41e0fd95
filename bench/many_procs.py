"""Many processes: 2,000 idle child processes plus a loopback socket load; scan time and CPU of the collectors.

Starts ``--procs`` idle processes (forked by one small spawner; each waits on a pipe, and every
``--socket-every``-th holds one UDP socket on 127.0.0.1, so owners are spread over many processes)
and a ``LoopbackLoad`` of ``--sockets`` TCP sockets (bench/loopback.py). Then, for the procfs and the
psutil collector:

- cold scan: a new collector's first scan (what the first refresh costs);
- steady scan: nothing changed since the last scan; median and p95 of ``--scans``;
- churn scan: 1 % of the loopback pairs replaced just before each scan; median and p95;
- CPU per scan: user+sys CPU time of this process per steady scan (the collector's threads included),
  and what that is as a share of one core at the default 1 s refresh.

The same is measured without the idle processes first, for comparison. Finally the live app runs
headless for ``--seconds`` at the default 1 s refresh with the procfs collector, and its CPU share
(all threads) is reported.

    python bench/many_procs.py                       # 2,000 processes, 10,000 sockets
    python bench/many_procs.py --procs 5000 --sockets 20000 --scans 20

Target: with 2,000 idle processes a steady procfs scan stays under 100 ms, and the live app under 10 % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench.loopback import LoopbackLoad  # type: ignore[import-not-found]  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.collect.psutil_collector import PsutilCollector  # noqa: E402

_SPAWNER = textwrap.dedent(
    """
    import os, socket, sys
    n, every = int(sys.argv[1]), int(sys.argv[2])
    r, w = os.pipe()
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(w)
            keep = None
            if every and i % every == 0:
                keep = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                keep.bind(("127.0.0.1", 0))
            os.read(r, 1)  # EOF when the spawner exits: then leave
            os._exit(0)
        pids.append(pid)
    os.close(r)
    print(len(pids), flush=True)
    sys.stdin.read()
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    """
)


class IdleProcesses:
    """``n`` idle processes until ``stop()``."""

    def __init__(self, n: int, socket_every: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SPAWNER, str(n), str(socket_every)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"the spawner failed: {line!r}")
        self.count = int(line)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else float("nan")


def _measure(make: Callable[[], Any], scans: int, load: LoopbackLoad) -> dict[str, float]:
    out: dict[str, float] = {}
    started = time.perf_counter()
    collector = make()
    snap = collector.scan()
    out["cold_ms"] = (time.perf_counter() - started) * 1000
    out["sockets"] = len(snap.sockets)
    steady: list[float] = []
    cpu_started = time.process_time()
    for _ in range(scans):
        t = time.perf_counter()
        collector.scan()
        steady.append((time.perf_counter() - t) * 1000)
    out["cpu_ms_per_scan"] = (time.process_time() - cpu_started) * 1000 / scans
    out["steady_ms"] = _median(steady)
    out["steady_p95_ms"] = _p95(steady)
    churn: list[float] = []
    for _ in range(scans):
        load.churn(1.0)
        t = time.perf_counter()
        collector.scan()
        churn.append((time.perf_counter() - t) * 1000)
    out["churn_ms"] = _median(churn)
    out["churn_p95_ms"] = _p95(churn)
    return out


def _report(label: str, results: dict[str, dict[str, float]]) -> None:
    for name, r in results.items():
        print(
            f"  {label:<22} {name:<7} {int(r['sockets']):>7} {r['cold_ms']:>8.0f} ms"
            f" {r['steady_ms']:>7.1f} ms (p95 {r['steady_p95_ms']:>6.1f})"
            f" {r['churn_ms']:>7.1f} ms (p95 {r['churn_p95_ms']:>6.1f})"
            f" {r['cpu_ms_per_scan']:>7.1f} ms = {r['cpu_ms_per_scan'] / 10:>4.1f} % at 1 s",
            flush=True,
        )


async def _app_cpu(seconds: float) -> tuple[float, int, float]:
    from portmon.ui.app import PortmonApp

    app = PortmonApp(ProcfsCollector(), interval=1.0)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = app.monitor
        while screen.scans < 1:
            await asyncio.sleep(0.05)
        cpu = time.process_time()
        wall = time.perf_counter()
        first = screen.scans
        await asyncio.sleep(seconds)
        share = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        scans = screen.scans - first
        scan_ms = screen.snapshot.scan_ms if screen.snapshot is not None else float("nan")
        await pilot.press("q")
    return share, scans, scan_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2000, help="idle child processes")
    parser.add_argument(
        "--socket-every", type=int, default=4, help="every Nth idle process holds a UDP socket (0: none)"
    )
    parser.add_argument("--sockets", type=int, default=10_000, help="loopback TCP sockets (bench/loopback.py)")
    parser.add_argument("--scans", type=int, default=15, help="scans per measurement")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the live-app CPU measurement")
    args = parser.parse_args(argv)

    def procfs() -> Any:
        return ProcfsCollector()

    def psutil_collector() -> Any:
        return PsutilCollector()

    makers = {"procfs": procfs, "psutil": psutil_collector}
    entries = len(os.listdir('/proc')) if os.path.isdir('/proc') else '?'
    print(f"portmon with many processes: {os.cpu_count()} CPUs, {entries} /proc entries before")
    print(
        f"  {'':<22} {'':<7} {'sockets':>7} {'cold':>11} {'steady scan':>22} {'scan after 1 % churn':>24}"
        f" {'CPU per steady scan':>26}"
    )
    with LoopbackLoad(args.sockets) as load:
        base = {name: _measure(make, args.scans, load) for name, make in makers.items()}
        _report("loopback load only", base)
        started = time.perf_counter()
        idle = IdleProcesses(args.procs, args.socket_every)
        spawn_s = time.perf_counter() - started
        try:
            label = f"+ {idle.count:,} idle processes"
            many = {name: _measure(make, args.scans, load) for name, make in makers.items()}
            _report(label, many)
            share, scans, scan_ms = asyncio.run(_app_cpu(args.seconds))
        finally:
            idle.stop()
    print(f"(spawning the idle processes took {spawn_s:.1f} s)")
    print(
        f"live app (procfs, 1 s refresh, headless), {args.procs:,} idle processes + {args.sockets:,} sockets: "
        f"{share:.1f} % of a core over {args.seconds:g} s ({scans} refreshes, last scan {scan_ms:.0f} ms)"
    )
    ok = many["procfs"]["steady_ms"] < 100 and share < 10
    print("verdict:", "within target" if ok else "OVER target (steady procfs scan < 100 ms, app < 10 % of a core)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
