"""What each speed trick saves: every trick against its plain version, at 10,000 sockets.

Pure functions run in this process on ``synthetic_snapshot(10_000)``; the command-line tricks run
``portmon list --json`` in fresh processes (output read through a pipe) over a real loopback load
of 10,000 sockets (bench/loopback.py), each variant with one trick replaced by its plain version.
Variants run interleaved; each figure is the median (p10-p90) of ``--runs`` runs, in ms. A trick
whose saving stays under 2 ms belongs in the plain code (issue 11).

    python bench/bench_tricks.py                 # everything, with its own 10,000-socket load
    python bench/bench_tricks.py --runs 31 --pure-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portmon.collect.fake import synthetic_snapshot  # noqa: E402
from portmon.output import iter_sockets_json, socket_record, to_json  # noqa: E402
from portmon.query.sorting import sort_sockets, sort_sockets_plain  # noqa: E402

PLAIN = {
    "all tricks": "",
    "plain gc (run_without_gc)": "m.run_without_gc = lambda runner, ctx: runner(ctx)\n",
    "plain exit (exit_skipping_teardown)": (
        "def plain_exit(code, out, err):\n    raise SystemExit(code)\nm.exit_skipping_teardown = plain_exit\n"
    ),
    "no early walk (start_cold_walk_early)": "launch.start_cold_walk_early = lambda argv: None\n",
    "argparse's formatter (help_formatter)": ("import argparse\nctx_mod.help_formatter = argparse.HelpFormatter\n"),
}
"""Command-line variants: the code run before ``launch.main()`` to put one trick's plain version in."""

DRIVER = (
    "import sys\n"
    "sys.argv = ['portmon', 'list', '--json']\n"
    "from portmon.cli import launch\n"
    "import portmon.cli.main as m\n"
    "import portmon.cli.context as ctx_mod\n"
    "{synthetic}"
    "{patch}"
    "launch.main()\n"
)
SYNTHETIC = (
    "import portmon.collect.choose as choose\n"
    "from portmon.collect.fake import ScriptedCollector, synthetic_snapshot\n"
    "choose.default_collector = lambda services=None, prefer='auto': (\n"
    "    ScriptedCollector([lambda: synthetic_snapshot(10_000)]))\n"
    "launch.start_cold_walk_early = lambda argv: None\n"
)
"""With --synthetic: the command lists ``synthetic_snapshot(10_000)`` instead of the host's sockets.

Building the snapshot stands in for the scan: the same number of objects allocated, without the
noise of reading /proc on a busy host. There is then no fd walk, so the early walk is not measured."""


def spread(values: list[float]) -> str:
    values = sorted(values)
    q = statistics.quantiles(values, n=10) if len(values) > 1 else [values[0]] * 9
    return f"{statistics.median(values):7.2f} ({q[0]:.1f}-{q[-1]:.1f}) [{values[0]:.1f}]"


def timed(
    fast: Callable[[], object], plain: Callable[[], object], runs: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[list[float], list[float]]:
    """Both versions' times, interleaved so the host's load falls on both alike."""
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, times in ((fast, out[0]), (plain, out[1])):
            started = clock()
            fn()
            times.append((clock() - started) * 1000.0)
    return out


def pure(runs: int) -> None:
    sockets = list(synthetic_snapshot(10_000).sockets)
    print(f"pure functions on synthetic_snapshot(10_000), median (p10-p90) of {runs}, ms")
    print(f"  {'trick':44} {'trick':>20} {'plain':>20}")
    fast, slow = timed(
        lambda: "".join(iter_sockets_json(sockets)), lambda: to_json([socket_record(s) for s in sockets]), runs
    )
    print(f"  {'list --json text (iter_sockets_json)':44} {spread(fast):>20} {spread(slow):>20}")
    for column in ("local_port", "remote_port", "process", "pid", "state", "local_addr", "remote_addr"):
        fast, slow = timed(
            lambda c=column: sort_sockets(sockets, c), lambda c=column: sort_sockets_plain(sockets, c), runs
        )
        print(f"  {'sort by ' + column + ' (packed_sort_keys)':44} {spread(fast):>20} {spread(slow):>20}")


def components(runs: int) -> None:
    """Each command-line trick alone, in CPU time (less swayed by a busy host than wall time)."""
    import io

    from portmon.cli import list as list_command
    from portmon.cli.context import Context
    from portmon.cli.main import build_parser, run_without_gc

    print(f"\ncommand-line tricks alone, CPU ms, median (p10-p90) of {runs}; min in []")
    parser, _ = build_parser()

    def one_list(wrap: Callable[..., int]) -> Callable[[], object]:
        def run() -> None:
            import portmon.collect.choose as choose
            from portmon.collect.fake import ScriptedCollector

            ctx = Context(parser.parse_args(["list", "--json"]), io.StringIO(), io.StringIO())
            saved = choose.default_collector
            choose.default_collector = lambda services=None, prefer="auto": ScriptedCollector(  # type: ignore[assignment]
                [lambda: synthetic_snapshot(10_000)]
            )
            try:
                wrap(list_command.run, ctx)
            finally:
                choose.default_collector = saved

        return run

    fast, slow = timed(
        one_list(run_without_gc), one_list(lambda runner, ctx: runner(ctx)), runs, clock=time.process_time
    )
    print(f"  {'list --json, gc off (run_without_gc)':44} {spread(fast):>28} {spread(slow):>28}")

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    build = (
        "import io, os, sys\n"
        "from portmon.collect.fake import synthetic_snapshot\n"
        "from portmon.output import iter_sockets_json\n"
        "from portmon.query.sorting import sort_sockets\n"
        "socks = sort_sockets(synthetic_snapshot(10_000).sockets, 'local_port')\n"
        "text = ''.join(iter_sockets_json(socks))\n"
        "sys.stdout.flush()\n"
    )

    def child_cpu(code: str) -> float:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL)
        _, _, usage = os.wait4(proc.pid, 0)
        return (usage.ru_utime + usage.ru_stime) * 1000.0

    hard: list[float] = []
    plain: list[float] = []
    for _ in range(runs):
        hard.append(child_cpu(build + "os._exit(0)\n"))
        plain.append(child_cpu(build))
    print(f"  {'exit after 10k sockets (exit_skipping_teardown)':44} {spread(hard):>28} {spread(plain):>28}")

    def shutil_import() -> float:
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import argparse, os, re, shutil"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(li for li in res.stderr.splitlines() if li.rstrip().endswith("| shutil"))
        return int(line.split("|")[1]) / 1000.0

    cost = [shutil_import() for _ in range(runs)]
    print(f"  {'shutil import that help_formatter avoids':44} {spread(cost):>28}")


def command(runs: int, load_needed: bool, synthetic: bool, only: str = "") -> None:
    load = None
    if load_needed:
        from bench.loopback import LoopbackLoad

        load = LoopbackLoad(10_000)
        load.__enter__()
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))

        def driver(patch: str) -> str:
            return DRIVER.format(patch=patch, synthetic=SYNTHETIC if synthetic else "")

        wall: dict[str, list[float]] = {name: [] for name in PLAIN}
        cpu: dict[str, list[float]] = {name: [] for name in PLAIN}
        for patch in PLAIN.values():  # warm the bytecode cache
            subprocess.run([sys.executable, "-c", driver(patch)], env=env, capture_output=True, check=True)
        for _ in range(runs):
            for name, patch in PLAIN.items():
                if (synthetic and "walk" in name) or (only and name != "all tricks" and only not in name):
                    continue
                started = time.perf_counter()
                proc = subprocess.Popen(
                    [sys.executable, "-c", driver(patch)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
                assert proc.stdout is not None
                head = proc.stdout.read()
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                wall[name].append((time.perf_counter() - started) * 1000.0)
                cpu[name].append((usage.ru_utime + usage.ru_stime) * 1000.0)
                assert head.startswith(b"[") and proc.returncode == 0
        what = "synthetic_snapshot(10_000)" if synthetic else "the host's sockets (10,000-socket load)"
        print(f"\nportmon list --json over {what}, median (p10-p90) of {runs}; min in []")
        print(f"  {'variant':44} {'wall ms':>20} {'CPU ms (with children)':>24}  saving: wall / CPU")
        for name in [n for n in PLAIN if wall[n]]:
            saving = ""
            if name != "all tricks":
                dw = statistics.median(wall[name]) - statistics.median(wall["all tricks"])
                dc = statistics.median(cpu[name]) - statistics.median(cpu["all tricks"])
                mw = min(wall[name]) - min(wall["all tricks"])
                saving = f"  median {dw:+.1f} / {dc:+.1f}, min {mw:+.1f}"
            print(f"  {name:44} {spread(wall[name]):>20} {spread(cpu[name]):>24}{saving}")
    finally:
        if load is not None:
            load.__exit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--only", default="", help="run only the command-line variants whose name has this text")
    parser.add_argument("--pure-only", action="store_true", help="only the in-process functions")
    parser.add_argument("--no-load", action="store_true", help="use the sockets already on this host")
    parser.add_argument(
        "--synthetic", action="store_true", help="list synthetic_snapshot(10_000), not the host (no load, no walk)"
    )
    args = parser.parse_args()
    if not args.only:
        pure(args.runs)
        components(args.runs)
    if not args.pure_only:
        command(args.runs, not (args.no_load or args.synthetic), args.synthetic, args.only)


if __name__ == "__main__":
    main()
