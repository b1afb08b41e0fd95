"""What each speed trick in portmon/collect saves: the trick against its plain version, at N loopback sockets.

Every trick that trades clarity for milliseconds names its saving in its docstring; this script
gives the figures. A trick saving under 2 ms at 10,000 sockets is not worth its obscurity.

* fd tables: ``read_fd_table`` reading a big table by number against listing it first, and
  with two threads against one (the load's process holds every socket).
* cold walk: a first scan and its JSON with a forked child walking the fds while this process
  reads the tables (what ``portmon list`` starts even before its imports) against none.
* gc: the same with the cyclic garbage collector on (``portmon list`` turns it off).
* TCP tables: ``NetlinkReader`` dumping both TCP tables at once (one walk of the kernel's
  established hash) against one dump per table, with tcp_info and without.
* messages: ``RowScanner`` cutting each read of a dump with one regular expression against
  ``unpack_rows``' loop over the messages.
* first read: ``TableCache._first_read`` taking a first scan's rows in bulk against ``read``'s loop.
* rates: ``moving_rates`` against ``connection_rates`` filtered to the connections that moved
  bytes, on two scans a second apart.

``--load issue18`` runs them on issue 18's load instead (bench/loads.py: 3 x 3,400 connections,
both ends held, and 200 short connections a second closed server-first: ~31,000 sockets, a third
in TIME_WAIT); the fd figures then read the first holder's table.

Wall times are the best run (the least disturbed on a shared machine), CPU times the median.
The CPU time of a forked child is not counted: for the cold walk the wall time is the figure.

For figures of the sockets this load opens only, run it in a fresh network namespace (root)::

    unshare -n sh -c 'ip link set lo up && python bench/bench_collect_tricks.py --sockets 10000'
    unshare -n sh -c 'ip link set lo up && python bench/bench_collect_tricks.py --load issue18 --only-scan'
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loads import Load, issue18  # noqa: E402
from bench.loopback import LoopbackLoad  # noqa: E402
from portmon.collect.fdwalk import DIR_FLAGS, read_fd_table, socket_fds  # noqa: E402

Figures = tuple[str, float, float, float, float]
"""(trick, wall ms with it, wall ms plain, CPU ms with it, CPU ms plain)."""


def print_figures(rows: list[Figures]) -> None:
    """The tricks' table: wall and CPU with each trick, plain, and the saving; names as wide as the longest."""
    width = max([len("trick"), *(len(row[0]) for row in rows)])
    head = f"{'wall: with':>10} {'plain':>8} {'saves':>8}   {'CPU: with':>9} {'plain':>8} {'saves':>8}"
    print(f"{'trick':{width}} {head}")
    for name, fast, plain, fast_cpu, plain_cpu in rows:
        print(
            f"{name:{width}} {fast:10.1f} {plain:8.1f} {plain - fast:8.1f}   "
            f"{fast_cpu:9.1f} {plain_cpu:8.1f} {plain_cpu - fast_cpu:8.1f}  ms"
        )


def compare(name: str, fast: Callable[[], float], plain: Callable[[], float], runs: int) -> Figures:
    """Run ``fast`` and ``plain`` alternately (each returns the CPU seconds it used); best wall, median CPU.

    On a shared machine the best wall time is the least disturbed run, and CPU time is what the
    work itself cost; alternating keeps a change in the machine's load from favouring one side.
    """
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for i, fn in enumerate((fast, plain)):
            started = time.perf_counter()
            cpu = fn()
            walls[i].append(time.perf_counter() - started)
            cpus[i].append(cpu)
    return (
        name,
        min(walls[0]) * 1000.0,
        min(walls[1]) * 1000.0,
        statistics.median(cpus[0]) * 1000.0,
        statistics.median(cpus[1]) * 1000.0,
    )


def cpu_of(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` returning the CPU time this process used in it (every thread)."""

    def run() -> float:
        started = time.process_time()
        fn()
        return time.process_time() - started

    return run


def fd_figures(pid: int, runs: int) -> list[Figures]:
    dfd = os.open(f"/proc/{pid}/fd", DIR_FLAGS)
    try:
        count = os.fstat(dfd).st_size
        by_number = cpu_of(lambda: read_fd_table(dfd, count, threads=False))
        listed = cpu_of(lambda: socket_fds(dfd, os.listdir(dfd)))
        two = cpu_of(lambda: read_fd_table(dfd, count, threads=True))
        return [
            compare(f"read_fd_table by number vs listed ({count} fds)", by_number, listed, runs),
            compare(f"read_fd_table 2 threads vs 1 ({count} fds)", two, by_number, runs),
        ]
    finally:
        os.close(dfd)


def cold_scan_figures(runs: int) -> list[Figures]:
    """A first scan plus its JSON (what ``list --json`` does after its imports), in this process."""
    import gc

    from portmon.collect.procfs import ProcfsCollector
    from portmon.output import sockets_json

    def first_scan(walk: bool, collect: bool) -> Callable[[], float]:
        def run() -> float:
            collector = ProcfsCollector()
            if walk:
                collector.start_cold_walk()
            if not collect:
                gc.disable()
            started = time.process_time()
            try:
                sockets_json(collector.scan().sockets)
            finally:
                gc.enable()
            return time.process_time() - started

        return run

    return [
        compare("first scan + JSON: cold walk child vs none", first_scan(True, False), first_scan(False, False), runs),
        compare("first scan + JSON: gc.disable() vs gc on", first_scan(True, False), first_scan(True, True), runs),
    ]


def scan_figures(runs: int) -> list[Figures]:
    """The steady scan's tricks: the combined TCP dump, and the rates of what moved."""
    from portmon.collect.procfs import ProcfsCollector
    from portmon.collect.tables import TABLES, NetlinkReader
    from portmon.query.rates import Sample, connection_rates, moving_rates

    def tcp_tables(reader: NetlinkReader, counters: bool) -> Callable[[], float]:
        return cpu_of(lambda: [reader.read_rows(table, counters) for table in TABLES[:2]])

    plain_readers = {"1 dump vs 2": {"combine": False}, "RowScanner vs unpack_rows": {"fast": False}}
    rows = [
        compare(
            f"TCP tables, tcp_info {'on' if counters else 'off'}: {trick}",
            tcp_tables(NetlinkReader(), counters),
            tcp_tables(NetlinkReader(**plain), counters),
            runs,
        )
        for trick, plain in plain_readers.items()
        for counters in (True, False)
    ]
    from portmon.collect.tablecache import TableCache

    def first_read(bulk: bool) -> Callable[[], float]:
        def run() -> float:
            tables = TableCache()
            tables.bulk_first = bulk
            return cpu_of(tables.read)()

        return run

    rows.append(compare("first read of the tables: in bulk vs plain loop", first_read(True), first_read(False), runs))
    collector = ProcfsCollector()
    collector.scan()
    before = collector.scan()
    time.sleep(1.0)
    after = collector.scan()
    pair = (Sample(before, before.taken_at), Sample(after, after.taken_at))
    rows.append(
        compare(
            f"rates of {len(after.sockets)} sockets: moving_rates vs filtered",
            cpu_of(lambda: moving_rates(*pair)),
            cpu_of(lambda: [r for r in connection_rates(*pair) if r.tx_bps or r.rx_bps]),
            runs,
        )
    )
    return rows


def command_figures(runs: int) -> list[Figures]:
    """``portmon list --json`` started as the console script does against the same without a cold walk."""
    import subprocess
    import tempfile

    launch = "from portmon.cli.launch import main; main()"
    no_walk = "import sys; from portmon.cli.main import main; sys.exit(main(exit_hard=True))"
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTHONPYCACHEPREFIX=cache, PYTHONPATH=str(ROOT))

        def command(code: str) -> Callable[[], float]:
            def run() -> float:
                done = subprocess.run(
                    [sys.executable, "-c", code, "list", "--json"], capture_output=True, env=env, cwd=ROOT, check=False
                )
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.decode(errors="replace")[-400:])
                return 0.0  # a forked child's CPU time is not counted: wall time is the figure

            return run

        command(launch)()  # warms the bytecode cache
        return [compare("list --json command: cold walk child vs none", command(launch), command(no_walk), runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10000, help="loopback sockets to hold (default 10000)")
    parser.add_argument("--runs", type=int, default=15, help="runs of each side per figure")
    parser.add_argument("--load", choices=["loopback", "issue18"], default="loopback", help="the load to run on")
    parser.add_argument("--only-scan", action="store_true", help="only the steady scan's tricks (tables, rates)")
    args = parser.parse_args()
    load: LoopbackLoad | Load = LoopbackLoad(args.sockets) if args.load == "loopback" else Load(issue18())
    with load:
        print(f"{args.load} load, holder pid {load.pids[0]}; {args.runs} runs each, alternating", flush=True)
        rows = scan_figures(args.runs)
        if not args.only_scan:
            rows = (
                fd_figures(load.pids[0], args.runs)
                + cold_scan_figures(args.runs)
                + command_figures(args.runs)
                + [*rows]
            )
    print_figures(rows)


if __name__ == "__main__":
    main()
