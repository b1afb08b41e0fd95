"""History benchmark: ``portmon record``'s CPU share and the database's growth per day on a busy loopback load.

Two runs, each ``--seconds`` long with one scan a second, on the same load: ``--sockets`` loopback
connections (bench/loopback.py) with ``--churn`` % of the pairs replaced every second, plus a
child that opens ``--listeners`` new listening sockets and closes as many old ones every second
(a build host starting test servers).

* ``record`` (listening sockets, the default): what a server would run.
* ``record --all``: every connection too, so every churned connection is an interval.

Each is preceded by ``portmon watch`` with the same flags for as long: the same scans and diffs with
nothing stored, so the difference is what recording costs. Every listener on the host is recorded
(not only the load's), so other programs' churn counts too: bytes per interval is the figure that
carries over to another host.

For each: the recorder's CPU share (user+sys CPU time of the recorder process / wall time, the
first scan excluded), the intervals written, and the database's growth: bytes in use (pages in
use, WAL checkpointed) at the end minus after the first scan, extrapolated to a day. Targets
(issue 16): the listening recorder under 2 % of a core at 10,000 sockets; growth per day stated.

    python bench/bench_history.py                      # 10,000 sockets, 1 % churn, 10 listeners/s, 60 s each
    python bench/bench_history.py --sockets 2000 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loopback import LoopbackLoad  # noqa: E402

LISTENER_CHURN = r"""
import socket, sys, time
per_second = int(sys.argv[1])
held = []
print("ready", flush=True)
while True:
    started = time.monotonic()
    for _ in range(per_second):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
    while len(held) > 4 * per_second:
        held.pop(0).close()
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def used_bytes(db: Path) -> tuple[int, int]:
    """(bytes in use after a WAL checkpoint, intervals) of the database."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM intervals").fetchone()[0]
        return page * (pages - free), rows
    finally:
        conn.close()


def wait_for_rows(db: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if db.exists() and used_bytes(db)[1] > 0:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise TimeoutError("the recorder wrote nothing")


def run(load: LoopbackLoad, churn: float, seconds: float, all_: bool, workdir: Path, watch: bool = False
        ) -> dict[str, float]:
    """One measured run of ``record`` (or, with ``watch``, of ``portmon watch``: the same scans, nothing stored)."""
    db = workdir / ("all.sqlite3" if all_ else "listening.sqlite3")
    flags = ["--all"] if all_ else []
    if watch:
        cmd = [sys.executable, "-m", "portmon", "watch", "--interval", "1", *flags]
    else:
        cmd = [sys.executable, "-m", "portmon", "record", "--db", str(db), "--interval", "1", *flags]
    rec = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def churner() -> None:
        while not stop.wait(1.0):
            if churn > 0:
                load.churn(churn)

    try:
        if watch:
            assert rec.stderr is not None
            rec.stderr.readline()  # "watching N sockets": the first scan is done
            bytes0 = rows0 = 0
        else:
            wait_for_rows(db)
            bytes0, rows0 = used_bytes(db)
        cpu0, wall0 = cpu_seconds(rec.pid), time.monotonic()
        thread = threading.Thread(target=churner, daemon=True)
        thread.start()
        time.sleep(seconds)  # the measured period (a benchmark, not a test)
        cpu1, wall1 = cpu_seconds(rec.pid), time.monotonic()
        stop.set()
        thread.join()
        rec.terminate()
        rec.wait(30)
        bytes1, rows1 = used_bytes(db) if not watch else (0, 0)
    finally:
        stop.set()
        if rec.poll() is None:
            rec.kill()
            rec.wait()
    wall = wall1 - wall0
    return {
        "cpu_share": (cpu1 - cpu0) / wall,
        "intervals": rows1 - rows0,
        "bytes": bytes1 - bytes0,
        "per_day": (bytes1 - bytes0) / wall * 86400,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--churn", type=float, default=1.0, help="%% of pairs replaced every second")
    parser.add_argument("--listeners", type=int, default=10, help="listeners opened (and closed) every second")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portmon-bench-history-") as tmp, LoopbackLoad(args.sockets) as load:
        lc = subprocess.Popen([sys.executable, "-c", LISTENER_CHURN, str(args.listeners)], stdout=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True)
        try:
            assert lc.stdout is not None and lc.stdout.readline().strip() == "ready"
            from portmon.collect.choose import default_collector

            host = len(default_collector().scan().sockets)
            print(f"host: {host} sockets in all (the load and whatever else runs), load average "
                  f"{os.getloadavg()[0]:.1f}")
            print(f"load: {load.sockets} loopback sockets, {args.churn:g} % of pairs churned/s, "
                  f"{args.listeners} listeners opened and closed/s; {args.seconds:g} s per run, 1 scan/s")
            for all_ in (False, True):
                scan = run(load, args.churn, args.seconds, all_, Path(tmp), watch=True)
                got = run(load, args.churn, args.seconds, all_, Path(tmp))
                label = "record --all" if all_ else "record (listening)"
                per = got["bytes"] / max(got["intervals"], 1)
                print(f"{label:20} CPU {got['cpu_share'] * 100:5.2f} % of a core (watch, the same scans: "
                      f"{scan['cpu_share'] * 100:5.2f} %)   {got['intervals']:6.0f} intervals, {per:5.0f} B each"
                      f"   +{got['bytes'] / 1024:8.1f} KiB in {args.seconds:g} s"
                      f" = {got['per_day'] / 1024 ** 2:7.1f} MiB/day before retention")
        finally:
            lc.kill()
            lc.wait()


if __name__ == "__main__":
    main()
