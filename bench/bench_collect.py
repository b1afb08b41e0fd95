"""Collector benchmark: portmon's procfs collector against ``ss -tuanp`` and psutil, at 1k/10k/50k loopback sockets.

Everything is measured side by side in one run on this host, for each socket count:

* ``ss -tuanp`` and ``python -m portmon list --json``: wall time of the whole command (process
  start included, output read through a pipe), median of ``--runs``. ``list --json`` runs with a
  warm bytecode cache (``PYTHONPYCACHEPREFIX`` in a temporary directory), as an installed
  package would; it is skipped with a note when portmon/cli.py does not exist.
* ProcfsCollector, in this process: cold scan (a new collector each time), steady-state scan (no
  change since the last scan), scan after 1 % churn (1 % of the pairs closed and reopened just
  before the scan), and the time to read the tables alone through netlink and through /proc/net.
* PsutilCollector scan (the portable reference).
* A live-monitor run in a separate process: one scan per second for ``--seconds`` seconds, first
  with no change, then with 1 % churn every second; CPU share (user+sys CPU time / wall time)
  and resident memory (VmRSS, and how much the collector added to the bare interpreter).

Targets (issue 5): at 10k sockets ``list --json`` <= 1.0x ``ss -tuanp``, steady scan <= 0.5x,
scan with 1 % churn <= 0.7x; at 50k a scan under 300 ms.

Run (as root for 50k sockets, or with a hard RLIMIT_NOFILE that allows them)::

    python bench/bench_collect.py                 # 1k, 10k and 50k
    python bench/bench_collect.py --sockets 10000 --runs 9
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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loopback import LoopbackLoad  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.collect.psutil_collector import PsutilCollector  # noqa: E402
from portmon.collect.tables import TABLES, NetlinkReader, ProcNetReader  # noqa: E402


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000.0


def time_command(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> float | None:
    """Median wall time (ms) of running ``cmd`` to completion, stdout read through a pipe."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            print(f"  ! {' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
            return None
    return _median_ms(samples)


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
    """Run as a child: scan every ``interval`` s for ``seconds`` s after a first (cold) scan; print JSON."""
    base_rss = vm_rss_kb()
    collector = ProcfsCollector()
    collector.scan()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent starts its churn clock, then says go
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    scans = []
    next_at = started
    while time.monotonic() - started < seconds:
        scans.append(collector.scan().scan_ms)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu": cpu, "wall": wall, "rss_kb": vm_rss_kb(), "base_rss_kb": base_rss, "scans": scans}))


def run_monitor(load: LoopbackLoad, seconds: float, churn: float) -> dict:
    """Start a monitor child; churn ``churn`` % of the load every second while it runs."""
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
        return json.loads(child.stdout.readline())
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def bench_size(n: int, args: argparse.Namespace, list_env: dict[str, str] | None) -> dict:
    """Every figure for one socket count."""
    runs = args.runs
    out: dict = {"requested": n}
    print(f"\n== {n} sockets: starting the loopback load ...", flush=True)
    with LoopbackLoad(n, procs=args.procs) as load:
        out["load_procs"] = len(load.pids)
        time.sleep(0.2)
        out["ss"] = time_command(["ss", "-tuanp"], runs)
        out["ss_no_p"] = time_command(["ss", "-tuan"], runs)
        if list_env is not None:
            out["list_json"] = time_command([sys.executable, "-m", "portmon", "list", "--json"], runs, env=list_env)

        netlink = NetlinkReader()
        try:
            out["tables_netlink"] = _median_ms(time_call(lambda: read_tables(netlink), runs))
        except OSError as exc:
            out["tables_netlink"] = None
            print(f"  ! netlink unavailable: {exc}")
        finally:
            netlink.close()
        out["tables_procnet"] = _median_ms(time_call(lambda: read_tables(ProcNetReader()), runs))

        out["cold"] = _median_ms(time_call(lambda: ProcfsCollector().scan(), runs))
        collector = ProcfsCollector()
        snap = collector.scan()
        collector.scan()
        out["sockets"] = len(snap.sockets)
        out["source"] = collector.table_source
        steady = time_call(collector.scan, max(runs, 10))
        out["steady"] = _median_ms(steady)
        out["steady_max"] = max(steady) * 1000.0
        churn = time_call(collector.scan, runs, before=lambda: load.churn(1.0))
        out["churn"] = _median_ms(churn)
        out["churn_max"] = max(churn) * 1000.0
        if not args.no_psutil:
            out["psutil"] = _median_ms(time_call(lambda: PsutilCollector().scan(), max(1, min(runs, 3))))
        if args.seconds > 0:
            for label, pct in (("idle", 0.0), ("churning", 1.0)):
                mon = run_monitor(load, args.seconds, pct)
                out[f"cpu_{label}"] = 100.0 * mon["cpu"] / mon["wall"]
                out[f"scan_{label}_max"] = max(mon["scans"])
                out["rss_mb"] = mon["rss_kb"] / 1024.0
                out["rss_added_mb"] = (mon["rss_kb"] - mon["base_rss_kb"]) / 1024.0
    return out


def fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def slowest(r: dict) -> str:
    """The slowest scan of the live-monitor runs."""
    return fmt(max(r.get("scan_idle_max", 0), r.get("scan_churning_max", 0)))


def report(results: list[dict], list_note: str | None) -> None:
    """Print the figures side by side, then the targets."""
    print("\nAll times in ms (medians); ratios are against `ss -tuanp` measured in the same run.\n")
    rows = [
        ("sockets seen by the scan", "sockets", lambda r: str(r.get("sockets", "-"))),
        ("holding processes (loopback load)", "", lambda r: str(r.get("load_procs", "-"))),
        ("ss -tuanp", "", lambda r: fmt(r.get("ss"))),
        ("ss -tuan (no owners)", "", lambda r: fmt(r.get("ss_no_p"))),
        ("portmon list --json", "", lambda r: fmt(r.get("list_json"))),
        ("  / ss -tuanp  (target <= 1.0x at 10k)", "", lambda r: ratio(r.get("list_json"), r.get("ss"))),
        ("tables only: netlink", "", lambda r: fmt(r.get("tables_netlink"))),
        ("tables only: /proc/net", "", lambda r: fmt(r.get("tables_procnet"))),
        ("procfs cold scan", "", lambda r: fmt(r.get("cold"))),
        ("procfs steady scan", "", lambda r: f"{fmt(r.get('steady'))} (max {fmt(r.get('steady_max'))})"),
        ("  / ss -tuanp  (target <= 0.5x)", "", lambda r: ratio(r.get("steady"), r.get("ss"))),
        ("procfs scan, 1% churn", "", lambda r: f"{fmt(r.get('churn'))} (max {fmt(r.get('churn_max'))})"),
        ("  / ss -tuanp  (target <= 0.7x)", "", lambda r: ratio(r.get("churn"), r.get("ss"))),
        ("psutil scan", "", lambda r: fmt(r.get("psutil"))),
        ("CPU share at 1 s, no change", "", lambda r: fmt(r.get("cpu_idle"), " %")),
        ("CPU share at 1 s, 1% churn/s", "", lambda r: fmt(r.get("cpu_churning"), " %")),
        ("  slowest scan in those runs", "", slowest),
        ("resident memory (MB)", "", lambda r: fmt(r.get("rss_mb"))),
        ("  of which the collector's state", "", lambda r: fmt(r.get("rss_added_mb"))),
    ]
    width = max(len(label) for label, _, _ in rows) + 2
    print("".ljust(width) + "".join(f"{r['requested']:>22}" for r in results))
    for label, _, get in rows:
        print(label.ljust(width) + "".join(f"{get(r):>22}" for r in results))
    print(f"\ntable source: {', '.join(sorted({str(r.get('source')) for r in results}))}")
    if list_note:
        print(list_note)
    print("\nTargets:")
    for r in results:
        n = r["requested"]
        ss = r.get("ss")
        checks = []
        if 5000 <= n <= 20000 and ss:
            if r.get("list_json") is not None:
                checks.append(("list --json <= 1.0x ss", r["list_json"] / ss <= 1.0, ratio(r["list_json"], ss)))
            checks.append(("steady <= 0.5x ss", r["steady"] / ss <= 0.5, ratio(r["steady"], ss)))
            checks.append(("1% churn <= 0.7x ss", r["churn"] / ss <= 0.7, ratio(r["churn"], ss)))
        if n >= 40000:
            worst = max(r["steady_max"], r["churn_max"])
            checks.append(("scan < 300 ms (slowest steady/churn scan)", worst < 300, fmt(worst, " ms")))
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
        "--sockets", type=int, action="append", help="socket count; repeat for several (default 1000, 10000, 50000)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument("--procs", type=int, default=1, help="processes holding the loopback load")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each live-monitor run (0 skips them)")
    parser.add_argument("--no-psutil", action="store_true", help="skip the (slow) psutil scans")
    args = parser.parse_args(argv)
    if not ProcfsCollector.available():
        print("needs Linux with /proc/net", file=sys.stderr)
        return 1
    if shutil.which("ss") is None:
        print("needs `ss` (iproute2)", file=sys.stderr)
        return 1
    sizes = args.sockets or [1000, 10000, 50000]
    list_env: dict[str, str] | None = None
    list_note: str | None = None
    pyc = tempfile.mkdtemp(prefix="portmon-bench-pyc-")
    try:
        if (ROOT / "portmon" / "cli.py").exists():
            list_env = dict(os.environ)
            list_env.pop("PYTHONDONTWRITEBYTECODE", None)
            list_env["PYTHONPYCACHEPREFIX"] = pyc
            list_env["PYTHONPATH"] = str(ROOT) + os.pathsep + list_env.get("PYTHONPATH", "")
            # Fill the bytecode cache once, as installing the package would.
            subprocess.run(
                [sys.executable, "-m", "portmon", "list", "--json"], stdout=subprocess.DEVNULL, env=list_env, cwd=ROOT
            )
            list_note = "portmon list --json: run with a warm bytecode cache (PYTHONPYCACHEPREFIX)"
        else:
            list_note = "portmon list --json: skipped, portmon/cli.py does not exist yet"
        release = os.uname().release
        print(f"host: {os.cpu_count()} CPUs, Linux {release}, python {sys.version.split()[0]}, euid {os.geteuid()}")
        results = [bench_size(n, args, list_env) for n in sizes]
    finally:
        shutil.rmtree(pyc, ignore_errors=True)
    report(results, list_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
