"""Start-up benchmark (issue 18): from starting the live monitor to its first socket row painted, A/B over checkouts.

``python -m portmon --interval 1`` starts in a real pseudo-terminal of 160x45 (as bench/bench_scale.py
runs it) and the time until the first socket row is painted is taken; then, after ``--linger``
seconds of refreshing, its resident size, and it is quit. Runs alternate between the checkouts given
(``--root``, repeatable; default this one), so neighbours' load on a shared host falls on each alike;
each checkout's median and range are printed with the target (< 1000 ms). The CPU time the process
and its children had spent by the first rows is printed too: on a busy host it says more about a
change than the wall time, which the neighbours stretch. After ``--linger`` seconds of refreshing
the resident size is read (target <= 100 MB), and over the last two thirds of them the CPU share
of the UI thread (Textual's event loop: compositor, driver, applying rows) and of the whole process
with its children (target <= 12 %).

The checkout's modules are compiled to bytecode first (``bench_scale.bytecode_env``), as a pip install has
them: with PYTHONDONTWRITEBYTECODE set, a checkout would otherwise compile every module at each start.

The load is issue 18's (bench/loads.py ``issue18()``: 20,400 held loopback sockets plus TIME_WAIT
from 200 short connections a second), started here unless ``--no-load`` (then the sockets already on
the host are measured). Run it in a network namespace of its own, so other sockets stay out::

    unshare -n sh -c 'ip link set lo up && python bench/bench_startup.py --root /work/main --root . --runs 7'
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import ptyterm  # noqa: E402
from ptyterm import Terminal  # noqa: E402

from bench.bench_scale import (  # noqa: E402
    CLK_TCK,
    SIZE,
    StyledScreen,
    _poll,
    bytecode_env,
    cpu_seconds,
    kernel_sockets,
    rss_mb,
    table_rows,
)
from bench.loads import Load, issue18  # noqa: E402

TARGET_MS = 1000.0
RSS_TARGET_MB = 100.0
CPU_TARGET = 12.0


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), TERM="xterm-256color", COLORTERM="truecolor")
    env.update(bytecode_env(root))  # as installed: bytecode compiled beforehand
    for name in [n for n in env if n.startswith("TEXTUAL")]:
        del env[name]
    return env


def main_thread_seconds(pid: int) -> float:
    """CPU time (s) of the main thread of ``pid``: the UI thread (Textual's event loop) of the live monitor."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


Figures = tuple[float, float, float, float, float]


def first_rows(root: Path, linger: float, extra: list[str]) -> Figures | None:
    """Of one start of ``root``'s monitor: (ms to the first row painted, CPU ms spent by then, RSS in MB after
    ``linger`` more seconds, the UI thread's and the whole process's CPU share over the last two thirds of
    them, in % of a core)."""
    ptyterm.ROOT = root  # ``python -m portmon`` imports from the pty's cwd first
    started = time.perf_counter()
    term = Terminal(["--interval", "1", *extra], _env(root), size=SIZE)
    term._screen = StyledScreen(*SIZE)
    try:
        if _poll(term, lambda s: bool(table_rows(s)), 60.0) is None:
            return None
        first = (time.perf_counter() - started) * 1000.0
        pid = term.proc.pid
        cpu = cpu_seconds(pid) * 1000.0
        time.sleep(linger / 3)  # the first refreshes (the cold walk's diff walks) are not the steady state
        ui0, all0, t0 = main_thread_seconds(pid), cpu_seconds(pid), time.monotonic()
        time.sleep(linger * 2 / 3)
        wall = time.monotonic() - t0
        ui = 100.0 * (main_thread_seconds(pid) - ui0) / wall
        whole = 100.0 * (cpu_seconds(pid) - all0) / wall
        rss = rss_mb(pid)[0]
        term.send("q")
        _poll(term, lambda s: False, 5.0, 0.05)
    finally:
        term.close()
    return first, cpu, rss, ui, whole


def _line(label: str, values: list[float], target: float | None, unit: str, fmt: str = "{:7.0f}") -> str:
    if not values:
        return f"  {label:<42} -"
    median = statistics.median(values)
    verdict = "" if target is None else ("ok" if median <= target else "MISSED")
    aim = "" if target is None else f"target <= {target:g}"
    low, high = fmt.format(min(values)).strip(), fmt.format(max(values)).strip()
    return f"  {label:<42} median {fmt.format(median)} {unit}  (range {low}-{high}, n={len(values)})  {aim} {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, action="append", help="a checkout to measure (repeatable; default this one)"
    )
    parser.add_argument("--runs", type=int, default=5, help="starts per checkout")
    parser.add_argument(
        "--linger", type=float, default=15.0, help="seconds of refreshing after the first rows (CPU shares, RSS)"
    )
    parser.add_argument("--no-load", action="store_true", help="measure with the sockets already on the host")
    parser.add_argument("--args", default="", help="extra arguments of the live monitor (e.g. --no-history)")
    args = parser.parse_args(argv)
    roots = [r.resolve() for r in (args.root or [ROOT])]
    for root in roots:
        if not (root / "portmon" / "__main__.py").exists():
            print(f"bench_startup: no portmon package under {root}", file=sys.stderr)
            return 2
    print(f"host: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; terminal {SIZE[0]}x{SIZE[1]}")
    print(f"command: python bench/bench_startup.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    for root in roots:
        head = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
        print(f"  {root}: {head.stdout.strip()}")
    load = None if args.no_load else Load(issue18(), max_seconds=1800.0)
    try:
        if load is not None:
            load.start()
        print(f"sockets on the host: {kernel_sockets():,}", flush=True)
        names = ("first", "cpu", "rss", "ui", "whole")
        got: dict[Path, dict[str, list[float]]] = {r: {name: [] for name in names} for r in roots}
        for n in range(args.runs):
            for root in roots if n % 2 == 0 else list(reversed(roots)):
                figures = first_rows(root, args.linger, args.args.split())
                if figures is None:
                    print(f"  run {n + 1} {root}: no rows painted", flush=True)
                    continue
                for name, value in zip(names, figures, strict=True):
                    got[root][name].append(value)
                ms, cpu, mb, ui, whole = figures
                print(f"  run {n + 1} {root}: first rows {ms:.0f} ms, CPU by then {cpu:.0f} ms, RSS {mb:.0f} MB, "
                      f"UI thread {ui:.1f} %, whole {whole:.1f} %", flush=True)
        print(f"sockets on the host at the end: {kernel_sockets():,}")
        for root in roots:
            print(f"{root}:")
            print(_line("first rows (ms)", got[root]["first"], TARGET_MS, "ms"))
            print(_line("CPU by the first rows (ms, with children)", got[root]["cpu"], None, "ms"))
            print(_line(f"RSS {args.linger:g} s later (MB)", got[root]["rss"], RSS_TARGET_MB, "MB"))
            print(_line("UI thread CPU (% of a core)", got[root]["ui"], None, "%", "{:7.1f}"))
            print(_line("whole process CPU (% of a core)", got[root]["whole"], CPU_TARGET, "%", "{:7.1f}"))
    finally:
        if load is not None:
            load.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
