"""Several checkouts' live monitors (or ``watch --all``) on one load at the same moment: CPU share of each.

On a machine shared with other work, runs one after another differ by more than most changes save
(the same checkout measured 29 % and 34 % five minutes apart). Run side by side, every checkout
meets the same load and the same neighbours, so their difference is the change's. Each monitor runs
in tmux at 160x45 (``python -m portmon --interval 1`` plus ``--args``); after ``--settle`` seconds
the user+system CPU time of each process and its children is read over ``--seconds``. ``--watch``
runs ``portmon watch --all --interval 1`` instead (output to /dev/null).

The load runs in a network namespace of its own, so other sockets on the host stay out of it::

    unshare -n sh -c 'ip link set lo up; exec python bench/loads.py issue18 --seconds 3600' &
    python bench/side_by_side.py --netns-pid PID --args=--no-history /work/main .
    python bench/side_by_side.py --netns-pid PID --watch /work/main .

(PID: the ``loads.py`` process; ``bench/loopback.py 10000`` gives issue 15's 10,000 connections.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (s) of ``pid`` (all threads), its reaped children, and its live descendants."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        total = sum(int(x) for x in data[data.rindex(")") + 2 :].split()[11:15]) / CLK_TCK
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
    except (OSError, ValueError):
        return 0.0
    return total


def command(root: Path, netns_pid: int | None, argv: list[str]) -> list[str]:
    enter = ["nsenter", "-n", "-t", str(netns_pid)] if netns_pid else []
    return [*enter, "env", f"PYTHONPATH={root}", "TERM=xterm-256color", sys.executable, "-m", "portmon", *argv]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts to measure")
    parser.add_argument("--netns-pid", type=int, help="run inside the network namespace of this process")
    parser.add_argument("--args", default="", help="extra arguments of the live monitor (e.g. --no-history)")
    parser.add_argument("--watch", action="store_true", help="measure 'watch --all' instead of the live monitor")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    roots = [r.resolve() for r in args.roots]
    if not args.watch and shutil.which("tmux") is None:
        print("side_by_side: needs tmux", file=sys.stderr)
        return 1
    sessions: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    pids: list[int] = []
    try:
        for i, root in enumerate(roots):
            if args.watch:
                cmd = command(root, args.netns_pid, ["watch", "--all", "--interval", "1"])
                proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs.append(proc)
                pids.append(proc.pid)
                continue
            name = f"side{os.getpid()}_{i}"
            monitor = command(root, args.netns_pid, ["--interval", "1", *args.args.split()])
            line = f"cd {root} && exec " + " ".join(monitor)
            subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "45", line], check=True)
            sessions.append(name)
            time.sleep(0.5)
            panes = subprocess.run(["tmux", "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True,
                                   text=True, check=True)  # fmt: skip
            pids.append(int(panes.stdout.split()[0]))
        time.sleep(args.settle)
        before = [cpu_seconds(p) for p in pids]
        started = time.monotonic()
        time.sleep(args.seconds)
        after = [cpu_seconds(p) for p in pids]
        wall = time.monotonic() - started
        what = "watch --all" if args.watch else f"live monitor {args.args}".rstrip()
        for root, a, b in zip(roots, before, after, strict=True):
            print(f"{what}: {root}: {100 * (b - a) / wall:.2f} % of a core over {wall:.0f} s")
    finally:
        for name in sessions:
            subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        for proc in procs:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
