"""Collector benchmark: portmon's procfs collector against ``ss -tuanp`` and psutil, at 1k/10k/(50k) loopback sockets.

Two loads (``--load``), both on loopback from processes this script starts (bench/loads.py,
bench/loopback.py), taken down after each size:

* ``realistic`` (the default): about N sockets as on a busy host: 300 processes holding 1-200
  connections each (most a few, a few many) to one busy server that holds the other ends, plus
  short connections closed by the server first, so 20 % of the sockets are TIME_WAIT once the
  churn has run a minute (half of that is made before measuring, so the TIME_WAIT count grows
  from ~10 % to ~20 % during a size; the figures report the sockets each scan saw);
* ``dense``: every socket in one process (client/server pairs to itself), churn closed with a reset
  (no TIME_WAIT): the favourable load the earlier figures came from.

Everything is measured side by side in one run on this host, for each socket count:

* ``ss -tuanp`` and ``python -m portmon list --json``: wall time of the whole command (process
  start included, output read through a pipe). ``list --json`` runs with a warm bytecode cache
  (``PYTHONPYCACHEPREFIX`` in a temporary directory), as an installed package would.
* ProcfsCollector, in this process: cold scan (a new collector each time), steady-state scan (no
  change in the held connections since the last scan; the short connections keep coming), scan
  after 1 % churn (1 % of the held connections reset and reopened just before the scan), and the
  time to read the tables alone through netlink and through /proc/net.
* PsutilCollector scan (the portable reference).
* A live-monitor run in a separate process: one scan per second for ``--seconds`` seconds, first
  with no change to the held connections, then with 1 % of them churned every second; CPU share
  of a core per second (user+sys CPU time / wall time) and resident memory (VmRSS, and how much
  the collector added to the bare interpreter).

Each figure is the median of its samples with the 10th-90th percentile spread in brackets;
``-`` marks a figure not measured.

Targets (issue 5): at 10k sockets ``list --json`` <= 1.0x ``ss -tuanp``, steady scan <= 0.5x,
scan with 1 % churn <= 0.7x; at 50k a scan under 300 ms.

Run (as root for 50k sockets, or with a hard RLIMIT_NOFILE that allows them)::

    python bench/bench_collect.py                      # realistic load, 1k and 10k
    python bench/bench_collect.py --sockets 50000      # add sizes with --sockets (repeatable)
    python bench/bench_collect.py --load dense --sockets 10000 --runs 9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loads import Load, realistic  # noqa: E402
from bench.loopback import LoopbackLoad  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.collect.psutil_collector import PsutilCollector  # noqa: E402
from portmon.collect.tables import TABLES, NetlinkReader, ProcNetReader  # noqa: E402
from portmon.model import TIME_WAIT  # noqa: E402


class BenchLoad(Protocol):
    """What the benchmark needs of a load: its processes, and churn of its held connections."""

    @property
    def pids(self) -> list[int]: ...

    @property
    def ports(self) -> list[int]: ...

    def churn(self, percent: float) -> int: ...


def quantile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples``, interpolated between the nearest two."""
    ordered = sorted(samples)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Figure:
    """Samples of one measured figure; printed as ``median (p10-p90)``."""

    def __init__(self, samples: list[float]) -> None:
        self.samples = list(samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def text(self, digits: int = 1) -> str:
        if len(self.samples) == 1:
            return f"{self.samples[0]:.{digits}f}"
        lo, hi = quantile(self.samples, 0.1), quantile(self.samples, 0.9)
        return f"{self.median:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def ms(samples: list[float]) -> Figure:
    """Seconds to a figure in milliseconds."""
    return Figure([x * 1000.0 for x in samples])


def time_command(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> Figure | None:
    """Wall times (ms) of running ``cmd`` to completion, stdout read through a pipe."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            print(f"  ! {' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
            return None
    return ms(samples)


def time_call(fn: Callable[[], object], runs: int, before: Callable[[], object] | None = None) -> list[float]:
    """Wall times (s) of ``fn()``, ``before()`` run untimed ahead of each call."""
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def read_tables(reader: NetlinkReader | ProcNetReader) -> int:
    """Read all four tables; the number of sockets."""
    return sum(len(reader.read(t)) for t in TABLES)


def vm_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def monitor_child(seconds: float, interval: float) -> None:
    """Run as a child: scan every ``interval`` s for ``seconds`` s after a first (cold) scan; print JSON.

    CPU share is sampled per interval (user+sys CPU time of the interval / its wall time).
    """
    base_rss = vm_rss_kb()
    collector = ProcfsCollector()
    collector.scan()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent starts its churn clock, then says go
    started = time.monotonic()
    scans: list[float] = []
    shares: list[float] = []
    rss: list[int] = []
    next_at = started
    while time.monotonic() - started < seconds:
        wall0 = time.monotonic()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        scans.append(collector.scan().scan_ms)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        shares.append(100.0 * cpu / (time.monotonic() - wall0))
        rss.append(vm_rss_kb())
    print(json.dumps({"shares": shares, "rss_kb": rss, "base_rss_kb": base_rss, "scans": scans}))


def run_monitor(load: BenchLoad, seconds: float, churn: float) -> dict[str, Any]:
    """Start a monitor child; churn ``churn`` % of the held connections every second while it runs."""
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--monitor-child", str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("monitor child failed to start")
        child.stdin.write("go\n")
        child.stdin.flush()
        if churn:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(1.0)
                load.churn(churn)
        result: dict[str, Any] = json.loads(child.stdout.readline())
        return result
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def start_load(n: int, args: argparse.Namespace) -> tuple[BenchLoad, Callable[[], None], str]:
    """The load for ``n`` sockets, a function that stops it, and a line describing it."""
    if args.load == "dense":
        dense = LoopbackLoad(n, procs=args.procs).start()
        return dense, dense.stop, f"dense: {dense.sockets:,} sockets in {len(dense.pids)} process(es), resets only"
    spec = realistic(n)
    load = Load(spec, max_seconds=1800.0).start()
    return load, load.stop, f"realistic: {spec.describe()}" + (f"\n   ({load.note})" if load.note else "")


def bench_size(n: int, args: argparse.Namespace, list_env: dict[str, str] | None) -> dict[str, Any]:
    """Every figure for one socket count."""
    runs = args.runs
    out: dict[str, Any] = {"requested": n}
    print(f"\n== {n} sockets: starting the {args.load} loopback load ...", flush=True)
    load, stop, description = start_load(n, args)
    try:
        print(f"   {description}", flush=True)
        out["load_procs"] = len(load.pids)
        time.sleep(0.2)
        out["ss"] = time_command(["ss", "-tuanp"], runs)
        out["ss_no_p"] = time_command(["ss", "-tuan"], runs)
        if list_env is not None:
            out["list_json"] = time_command([sys.executable, "-m", "portmon", "list", "--json"], runs, env=list_env)

        netlink = NetlinkReader()
        try:
            out["tables_netlink"] = ms(time_call(lambda: read_tables(netlink), runs))
        except OSError as exc:
            print(f"  ! netlink unavailable: {exc}")
        finally:
            netlink.close()
        out["tables_procnet"] = ms(time_call(lambda: read_tables(ProcNetReader()), runs))

        out["cold"] = ms(time_call(lambda: ProcfsCollector().scan(), runs))
        collector = ProcfsCollector()
        collector.scan()
        seen: list[float] = []
        own: list[float] = []
        time_wait: list[float] = []
        pids, ports = set(load.pids), set(load.ports)

        def scan() -> None:
            snap = collector.scan()
            seen.append(len(snap.sockets))
            own.append(sum(1 for s in snap.sockets if s.local_port in ports or any(h.pid in pids for h in s.holders)))
            time_wait.append(sum(1 for s in snap.sockets if s.state == TIME_WAIT))

        out["source"] = collector.table_source
        out["steady"] = ms(time_call(scan, max(runs, 10)))
        out["churn"] = ms(time_call(scan, runs, before=lambda: load.churn(1.0)))
        out["sockets"] = Figure(seen)
        out["own"] = Figure(own)
        out["time_wait"] = Figure(time_wait)
        if not args.no_psutil:
            out["psutil"] = ms(time_call(lambda: PsutilCollector().scan(), max(1, min(runs, 3))))
        if args.seconds > 0:
            for label, pct in (("idle", 0.0), ("churning", 1.0)):
                mon = run_monitor(load, args.seconds, pct)
                out[f"cpu_{label}"] = Figure(mon["shares"])
                out[f"scan_{label}"] = Figure(mon["scans"])
                out["rss_mb"] = Figure([kb / 1024.0 for kb in mon["rss_kb"]])
                out["rss_added_mb"] = Figure([(kb - mon["base_rss_kb"]) / 1024.0 for kb in mon["rss_kb"]])
    finally:
        stop()
    return out


def fmt(value: Figure | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else value.text(digits) + unit


def ratio(a: Figure | None, b: Figure | None) -> str:
    """Ratio of the medians."""
    return "-" if a is None or b is None or not b.median else f"{a.median / b.median:.2f}x"


def report(results: list[dict[str, Any]], list_note: str | None) -> None:
    """Print the figures side by side, then the targets."""
    print(
        "\nTimes in ms: median (p10-p90) of the samples; ratios are of medians, against `ss -tuanp` in the same run."
        "\n'-': not measured.\n"
    )
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("sockets seen by the scans", lambda r: fmt(r.get("sockets"), digits=0)),
        ("  of which the load's", lambda r: fmt(r.get("own"), digits=0)),
        ("  of which TIME_WAIT", lambda r: fmt(r.get("time_wait"), digits=0)),
        ("processes holding the load", lambda r: str(r.get("load_procs", "-"))),
        ("ss -tuanp", lambda r: fmt(r.get("ss"))),
        ("ss -tuan (no owners)", lambda r: fmt(r.get("ss_no_p"))),
        ("portmon list --json", lambda r: fmt(r.get("list_json"))),
        ("  / ss -tuanp  (target <= 1.0x at 10k)", lambda r: ratio(r.get("list_json"), r.get("ss"))),
        ("tables only: netlink", lambda r: fmt(r.get("tables_netlink"))),
        ("tables only: /proc/net", lambda r: fmt(r.get("tables_procnet"))),
        ("procfs cold scan", lambda r: fmt(r.get("cold"))),
        ("procfs steady scan", lambda r: fmt(r.get("steady"))),
        ("  / ss -tuanp  (target <= 0.5x)", lambda r: ratio(r.get("steady"), r.get("ss"))),
        ("procfs scan, 1% churn", lambda r: fmt(r.get("churn"))),
        ("  / ss -tuanp  (target <= 0.7x)", lambda r: ratio(r.get("churn"), r.get("ss"))),
        ("psutil scan", lambda r: fmt(r.get("psutil"))),
        ("CPU % of a core at 1 s, no change", lambda r: fmt(r.get("cpu_idle"))),
        ("CPU % of a core at 1 s, 1% churn/s", lambda r: fmt(r.get("cpu_churning"))),
        ("  scans in those runs, no change", lambda r: fmt(r.get("scan_idle"))),
        ("  scans in those runs, 1% churn/s", lambda r: fmt(r.get("scan_churning"))),
        ("resident memory (MB)", lambda r: fmt(r.get("rss_mb"))),
        ("  of which the collector's state", lambda r: fmt(r.get("rss_added_mb"))),
    ]
    width = max(len(label) for label, _ in rows) + 2
    col = 26
    print("".ljust(width) + "".join(f"{r['requested']:>{col}}" for r in results))
    for label, get in rows:
        print(label.ljust(width) + "".join(f"{get(r):>{col}}" for r in results))
    print(f"\ntable source: {', '.join(sorted({str(r.get('source', '-')) for r in results}))}")
    if list_note:
        print(list_note)
    print("\nTargets (on medians):")
    for r in results:
        n = r["requested"]
        ss = r.get("ss")
        checks = []
        if 5000 <= n <= 20000 and ss is not None:
            if r.get("list_json") is not None:
                checks.append(("list --json <= 1.0x ss", r["list_json"].median <= ss.median, ratio(r["list_json"], ss)))
            checks.append(("steady <= 0.5x ss", r["steady"].median <= 0.5 * ss.median, ratio(r["steady"], ss)))
            checks.append(("1% churn <= 0.7x ss", r["churn"].median <= 0.7 * ss.median, ratio(r["churn"], ss)))
        if n >= 40000:
            worst = max(max(r["steady"].samples), max(r["churn"].samples))
            checks.append(("scan < 300 ms (slowest steady/churn scan)", worst < 300, f"{worst:.1f} ms"))
        for name, ok, value in checks:
            print(f"  {n:>6} sockets: {name:<42} {value:>10}  {'ok' if ok else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--monitor-child"]:
        monitor_child(float(argv[1]), 1.0)
        return 0
    parser = argparse.ArgumentParser(description="portmon collector benchmark (Linux)")
    parser.add_argument(
        "--sockets", type=int, action="append", help="socket count; repeat for several (default 1000 and 10000)"
    )
    parser.add_argument(
        "--load", choices=["realistic", "dense"], default="realistic",
        help="realistic: 300 processes, a busy server, TIME_WAIT churn (default); dense: one process, resets only",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median and p10-p90 reported)")
    parser.add_argument("--procs", type=int, default=1, help="dense load: processes holding it")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each live-monitor run (0 skips them)")
    parser.add_argument("--no-psutil", action="store_true", help="skip the (slow) psutil scans")
    args = parser.parse_args(argv)
    if not ProcfsCollector.available():
        print("needs Linux with /proc/net", file=sys.stderr)
        return 1
    if shutil.which("ss") is None:
        print("needs `ss` (iproute2)", file=sys.stderr)
        return 1
    sizes = args.sockets or [1000, 10000]
    pyc = tempfile.mkdtemp(prefix="portmon-bench-pyc-")
    try:
        list_env = dict(os.environ)
        list_env.pop("PYTHONDONTWRITEBYTECODE", None)
        list_env["PYTHONPYCACHEPREFIX"] = pyc
        list_env["PYTHONPATH"] = str(ROOT) + os.pathsep + list_env.get("PYTHONPATH", "")
        # Fill the bytecode cache once, as installing the package would.
        subprocess.run(
            [sys.executable, "-m", "portmon", "list", "--json"], stdout=subprocess.DEVNULL, env=list_env, cwd=ROOT
        )
        list_note = "portmon list --json: run with a warm bytecode cache (PYTHONPYCACHEPREFIX)"
        release = os.uname().release
        print(f"host: {os.cpu_count()} CPUs, Linux {release}, python {sys.version.split()[0]}, euid {os.geteuid()}")
        print(f"load: {args.load}; command: {' '.join(['python', 'bench/bench_collect.py', *argv])}")
        results = [bench_size(n, args, list_env) for n in sizes]
    finally:
        shutil.rmtree(pyc, ignore_errors=True)
    report(results, list_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
