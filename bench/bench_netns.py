"""What reading other network namespaces costs a scan: the NetnsCollector around the procfs collector, at 10,000
loopback sockets (bench/loopback.py), against the procfs collector alone.

Measured, in one run (root only: without root the wrapper reads no namespace at all):

* ``inner``: a steady-state ProcfsCollector scan (no change since the last scan);
* ``wrapped, 0 extra``: the same scan through NetnsCollector with no other namespace on the host,
  the listing of namespaces made every scan (``every=0``: the worst case) and at the default
  cadence (5 s: a scan between listings adds a clock read);
* ``listing``: one listing of the namespaces (a readlink of /proc/PID/ns/net per process);
* ``wrapped, 1 extra``: with one ``unshare -n`` namespace holding a listener and 100 connections.

So that "0 extra namespaces" holds on a shared host (containers, other people's ``unshare -n``), the
script re-runs itself in a new PID namespace with its own /proc (``unshare --pid --fork --mount-proc``):
/proc then lists only this benchmark's processes, all in the host's network namespace. ``--here``
runs in place instead (every namespace on the host is then read).

Inner and wrapped scans alternate (A, B, A, B, ...) so a busy host slows both alike. Figures are the
median with the 10th-90th percentile spread in brackets, in milliseconds.

    sudo python bench/bench_netns.py [--sockets 10000] [--runs 41] [--here]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loopback import LoopbackLoad  # noqa: E402
from portmon.collect.netns import NetnsCollector, list_namespaces  # noqa: E402
from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.model import Snapshot  # noqa: E402

# 1 listener and 50 client/server pairs on lo in a new network namespace; prints READY when up.
FOREIGN = r"""
import fcntl, socket, struct, sys, time
s = socket.socket()
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(128)
keep = []
for _ in range(50):
    c = socket.create_connection(srv.getsockname()); a, _ = srv.accept(); keep += [c, a]
print("READY", flush=True)
time.sleep(600)
"""


def spread(samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=10)
    return f"{statistics.median(samples):7.2f} ms [{qs[0]:.2f}-{qs[-1]:.2f}]"


def timed(scan: Callable[[], object]) -> float:
    started = time.perf_counter()
    scan()
    return (time.perf_counter() - started) * 1000.0


def alternate(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for _ in range(runs):
        xs.append(timed(a))
        ys.append(timed(b))
    return xs, ys


class Timed:
    """A collector that remembers how long its inner scan took, so the wrapper's own share can be told apart."""

    def __init__(self, inner: ProcfsCollector) -> None:
        self.inner = inner
        self.name = inner.name
        self.last = 0.0

    def scan(self) -> Snapshot:
        started = time.perf_counter()
        snap = self.inner.scan()
        self.last = (time.perf_counter() - started) * 1000.0
        return snap


def overhead(collector: NetnsCollector, timed_inner: Timed, runs: int) -> tuple[list[float], list[float]]:
    """(whole scans, the wrapper's share of each) over ``runs`` scans."""
    whole, own = [], []
    for _ in range(runs):
        total = timed(collector.scan)
        whole.append(total)
        own.append(total - timed_inner.last)
    return whole, own


def measure(sockets: int, runs: int) -> None:
    print(f"processes in view: {sum(1 for n in os.listdir('/proc') if n.isdigit())}, "
          f"network namespaces: {len(list_namespaces())}")
    with LoopbackLoad(sockets):
        for label, every in (("listing every scan", 0.0), ("5 s cadence", 5.0)):
            inner = Timed(ProcfsCollector(counters=False))
            wrapped = NetnsCollector(inner, every=every)
            wrapped.scan()
            seen = len(wrapped.scan().sockets)
            whole, own = overhead(wrapped, inner, runs)
            print(f"0 extra, {label}: {seen} sockets, scan {spread(whole)}, the wrapper's share {spread(own)}")
        unshare = shutil.which("unshare")
        if unshare is None:
            print("1 extra: - (no unshare)")
            return
        child = subprocess.Popen([unshare, "-n", sys.executable, "-c", FOREIGN], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "READY":
                print("1 extra: - (the namespace did not come up)")
                return
            inner = Timed(ProcfsCollector(counters=False))
            one = NetnsCollector(inner)
            one.scan()
            extra = sum(1 for s in one.scan().sockets if s.netns is not None)
            whole, own = overhead(one, inner, runs)
            print(f"1 extra ({extra} sockets in it): scan {spread(whole)}, the wrapper's share {spread(own)}")
        finally:
            child.kill()
            child.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--here", action="store_true", help="do not isolate /proc (read the host's namespaces)")
    parser.add_argument("--isolated", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_netns: needs root (without it no other namespace is read, so there is nothing to measure)")
        return 2
    if not args.isolated:
        procs = sum(1 for n in os.listdir("/proc") if n.isdigit())
        listing = [timed(list_namespaces) for _ in range(args.runs)]
        print(f"one listing of the host's namespaces ({procs} processes, {len(list_namespaces())} namespaces): "
              f"{spread(listing)}")
    if not args.here and not args.isolated:
        unshare = shutil.which("unshare")
        if unshare is None:
            print("bench_netns: unshare is missing: use --here")
            return 2
        argv = [unshare, "--pid", "--fork", "--mount-proc", sys.executable, __file__, "--isolated",
                "--sockets", str(args.sockets), "--runs", str(args.runs)]
        return subprocess.call(argv)
    measure(args.sockets, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
