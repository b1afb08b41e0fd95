"""Start-up benchmark (issue 18): from starting the live monitor to its first socket row painted, A/B over checkouts.

``python -m portmon --interval 1`` starts in a real pseudo-terminal of 160x45 (as bench/bench_scale.py
runs it) and the time until the first socket row is painted is taken; then, after ``--linger``
seconds of refreshing, its resident size, and it is quit. Runs alternate between the checkouts given
(``--root``, repeatable; default this one), so neighbours' load on a shared host falls on each alike;
each checkout's median, fastest and slowest are printed with the target (< 1000 ms). The CPU time
the process and its children had spent by the first rows is printed too: on a busy host it says
more about a change than the wall time, which the neighbours stretch.

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

from bench.bench_scale import SIZE, StyledScreen, _poll, cpu_seconds, kernel_sockets, rss_mb, table_rows  # noqa: E402
from bench.loads import Load, issue18  # noqa: E402

TARGET_MS = 1000.0


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), TERM="xterm-256color", COLORTERM="truecolor")
    for name in [n for n in env if n.startswith("TEXTUAL")]:
        del env[name]
    return env


def first_rows(root: Path, linger: float, extra: list[str]) -> tuple[float | None, float | None, float | None]:
    """(ms to the first row painted, CPU ms spent by then, RSS in MB after ``linger`` more seconds) of one
    start of ``root``'s monitor."""
    ptyterm.ROOT = root  # ``python -m portmon`` imports from the pty's cwd first
    started = time.perf_counter()
    term = Terminal(["--interval", "1", *extra], _env(root), size=SIZE)
    term._screen = StyledScreen(*SIZE)
    try:
        if _poll(term, lambda s: bool(table_rows(s)), 60.0) is None:
            return None, None, None
        first = (time.perf_counter() - started) * 1000.0
        cpu = cpu_seconds(term.proc.pid) * 1000.0
        time.sleep(linger)
        rss = rss_mb(term.proc.pid)[0]
        term.send("q")
        _poll(term, lambda s: False, 5.0, 0.05)
    finally:
        term.close()
    return first, cpu, rss


def _line(label: str, values: list[float], target: float | None, unit: str) -> str:
    if not values:
        return f"  {label:<40} -"
    median = statistics.median(values)
    verdict = "" if target is None else ("ok" if median < target else "MISSED")
    aim = "" if target is None else f"< {target:.0f}"
    return (f"  {label:<40} median {median:7.0f} {unit}  (fastest {min(values):.0f}, slowest {max(values):.0f}, "
            f"n={len(values)})  {aim} {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, action="append", help="a checkout to measure (repeatable; default this one)"
    )
    parser.add_argument("--runs", type=int, default=5, help="starts per checkout")
    parser.add_argument("--linger", type=float, default=3.0, help="seconds of refreshing before RSS is read")
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
        firsts: dict[Path, list[float]] = {r: [] for r in roots}
        cpus: dict[Path, list[float]] = {r: [] for r in roots}
        rss: dict[Path, list[float]] = {r: [] for r in roots}
        for n in range(args.runs):
            for root in roots if n % 2 == 0 else list(reversed(roots)):
                ms, cpu, mb = first_rows(root, args.linger, args.args.split())
                if ms is not None and cpu is not None and mb is not None:
                    firsts[root].append(ms)
                    cpus[root].append(cpu)
                    rss[root].append(mb)
                shown = [None if v is None else round(v) for v in (ms, cpu, mb)]
                print(f"  run {n + 1} {root}: first rows {shown[0]} ms, CPU by then {shown[1]} ms, RSS {shown[2]} MB",
                      flush=True)
        print(f"sockets on the host at the end: {kernel_sockets():,}")
        for root in roots:
            print(f"{root}:")
            print(_line("first rows (ms)", firsts[root], TARGET_MS, "ms"))
            print(_line("CPU by the first rows (ms, with children)", cpus[root], None, "ms"))
            print(_line(f"RSS after {args.linger:g} s (MB)", rss[root], None, "MB"))
    finally:
        if load is not None:
            load.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
