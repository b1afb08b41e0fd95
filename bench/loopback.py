"""Loopback TCP load for benchmarks: N sockets held open in child processes, with churn on request.

``LoopbackLoad(10_000)`` starts one child process that listens on 127.0.0.1 and opens 5,000
client/server pairs to itself, so 10,000 ESTABLISHED sockets (plus the listeners) exist until
``stop()``. ``churn(1.0)`` closes 1 % of the pairs in every child and opens as many new ones,
so the socket count stays the same while 2 % of the inodes change.

What it needs: one file descriptor per socket in the holding process. The child raises its
RLIMIT_NOFILE soft limit to what it needs; when that exceeds the hard limit it raises the hard
limit too if it may (CAP_SYS_RESOURCE, up to ``/proc/sys/fs/nr_open``). When it may not, the
load is spread over more child processes so that each stays under the hard limit (with the
usual hard limit of 20,000 here, 50,000 sockets take 3 processes). Clients connect to several
listener ports (one per 8,000 pairs) so 50,000 sockets do not exhaust the ephemeral port range.

Churned pairs are closed with SO_LINGER 0 (a reset) by default, so no TIME_WAIT sockets pile up
and every scan of a run sees the same number of sockets; ``linger0=False`` closes them normally
(the client closes first, so the TIME_WAIT lands on the client side).

Run as a script it holds a load until Ctrl-C, for trying the TUI by hand::

    python bench/loopback.py 10000 [--procs 2] [--churn 1.0 --every 1.0]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import IO

PAIRS_PER_LISTENER = 8000
"""Client ports are picked per destination, so each listener port gives ~28k pairs; 8k leaves room."""

_SPARE_FDS = 64


def _may_raise_hard_limit() -> bool:
    """True with CAP_SYS_RESOURCE (root usually has it; some containers drop it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except OSError:
        pass
    return False


def _fd_headroom() -> int:
    """How many sockets one child may hold: the hard limit, or nr_open when we may raise the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard
    if _may_raise_hard_limit():
        try:
            with open("/proc/sys/fs/nr_open") as f:
                limit = max(limit, int(f.read()))
        except OSError:
            pass
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 20
    return max(limit - _SPARE_FDS, 2)


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        # Only root (CAP_SYS_RESOURCE) may raise the hard limit; let the error say what was needed.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError) as exc:
            raise RuntimeError(f"need RLIMIT_NOFILE >= {need}, hard limit is {hard}: {exc}") from exc
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


class _Holder:
    """The child side: listeners and pairs of connected sockets on loopback."""

    def __init__(self, pairs: int, host: str, linger0: bool) -> None:
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.linger0 = linger0
        self.listeners: list[socket.socket] = []
        for _ in range(max(1, math.ceil(pairs / PAIRS_PER_LISTENER))):
            lst = socket.socket(self.family, socket.SOCK_STREAM)
            lst.bind((host, 0))
            lst.listen(4096)
            self.listeners.append(lst)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self._next = 0
        self.open_pairs(pairs)

    def open_pairs(self, n: int) -> None:
        # Connect in batches smaller than the accept backlog, then accept the batch.
        while n > 0:
            batch = min(n, 1000)
            lst = self.listeners[self._next % len(self.listeners)]
            self._next += 1
            addr = lst.getsockname()[:2]
            clients = []
            for _ in range(batch):
                c = socket.socket(self.family, socket.SOCK_STREAM)
                c.connect(addr)
                clients.append(c)
            for c in clients:
                s, _ = lst.accept()
                self.pairs.append((c, s))
            n -= batch

    def close_pairs(self, n: int) -> None:
        # Close pairs from the middle, so churn is spread over the fd table.
        for _ in range(min(n, len(self.pairs))):
            self._close(*self.pairs.pop(len(self.pairs) // 2))

    def close_all(self) -> None:
        for c, s in self.pairs:
            self._close(c, s)
        self.pairs = []
        for lst in self.listeners:
            lst.close()

    def _close(self, c: socket.socket, s: socket.socket) -> None:
        if self.linger0:
            linger = struct.pack("ii", 1, 0)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.close()  # the client first: without linger0 the TIME_WAIT lands on the client side
        s.close()

    def churn(self, percent: float) -> int:
        n = int(round(len(self.pairs) * percent / 100.0))
        self.close_pairs(n)
        self.open_pairs(n)
        return n


def _child_main(pairs: int, host: str, linger0: bool) -> None:
    """Serve commands on stdin: ``churn <percent>``, ``stop``; EOF (parent gone) also stops."""
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = sys.stdout
    try:
        _raise_nofile(2 * pairs + _SPARE_FDS + pairs // PAIRS_PER_LISTENER)
        holder = _Holder(pairs, host, linger0)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        out.write(f"error {type(exc).__name__}: {exc}\n")
        out.flush()
        return
    ports = ",".join(str(lst.getsockname()[1]) for lst in holder.listeners)
    out.write(f"ready {ports} {2 * len(holder.pairs)}\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "stop":
            break
        if cmd[0] == "churn":
            n = holder.churn(float(cmd[1]))
            out.write(f"ok {n}\n")
        else:
            out.write(f"error unknown command {cmd[0]!r}\n")
        out.flush()
    # Closing with a reset (when churn does) leaves no TIME_WAIT behind to skew the next run.
    holder.close_all()


class LoopbackLoad:
    """N loopback TCP sockets held by child processes until ``stop()`` (also a context manager)."""

    def __init__(self, sockets: int, procs: int = 1, host: str = "127.0.0.1", linger0: bool = True) -> None:
        if sockets < 2:
            raise ValueError("need at least 2 sockets (one pair)")
        self.requested = sockets
        pairs = sockets // 2
        per_proc = _fd_headroom() // 2
        self.procs = max(1, procs, math.ceil(pairs / per_proc))
        self._pairs = [pairs // self.procs + (1 if i < pairs % self.procs else 0) for i in range(self.procs)]
        self.host = host
        self.linger0 = linger0
        self._children: list[subprocess.Popen[str]] = []
        self.ports: list[int] = []
        """Listener ports of all children."""
        self.sockets = 0
        """Connected sockets actually open (2 per pair), listeners not counted."""

    @property
    def pids(self) -> list[int]:
        """Pids of the child processes holding the sockets."""
        return [c.pid for c in self._children]

    def start(self, timeout: float = 120.0) -> LoopbackLoad:
        """Start the children and wait until every pair is connected."""
        try:
            for pairs in self._pairs:
                child = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "--child", str(pairs), self.host]
                    + ([] if self.linger0 else ["--no-linger0"]),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
                self._children.append(child)
            for child in self._children:
                words = self._reply(child, timeout)
                if words[0] != "ready":
                    raise RuntimeError(f"loopback child {child.pid} failed: {' '.join(words[1:])}")
                self.ports += [int(p) for p in words[1].split(",")]
                self.sockets += int(words[2])
        except BaseException:
            self.stop()
            raise
        return self

    def churn(self, percent: float, timeout: float = 60.0) -> int:
        """Close ``percent`` % of the pairs in every child and open as many new ones; returns pairs replaced."""
        for child in self._children:
            assert child.stdin is not None
            child.stdin.write(f"churn {percent}\n")
            child.stdin.flush()
        total = 0
        for child in self._children:
            words = self._reply(child, timeout)
            if words[0] != "ok":
                raise RuntimeError(f"loopback child {child.pid}: {' '.join(words)}")
            total += int(words[1])
        return total

    @staticmethod
    def _reply(child: subprocess.Popen[str], timeout: float) -> list[str]:
        stdout: IO[str] | None = child.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"loopback child {child.pid} did not answer in {timeout} s")
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"loopback child {child.pid} exited (status {child.wait()})")
        return line.split()

    def stop(self) -> None:
        """Tell every child to close its sockets and exit; kill any that does not within 10 s."""
        for child in self._children:
            try:
                if child.stdin is not None and child.poll() is None:
                    child.stdin.write("stop\n")
                    child.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
        for child in self._children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._children = []

    def __enter__(self) -> LoopbackLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Hold a loopback load until Ctrl-C (or run as a child with --child)."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        _child_main(int(argv[1]), argv[2], "--no-linger0" not in argv)
        return 0
    parser = argparse.ArgumentParser(description="Hold N loopback TCP sockets open until Ctrl-C.")
    parser.add_argument("sockets", type=int, help="connected sockets to hold (pairs x 2)")
    parser.add_argument("--procs", type=int, default=1, help="child processes to spread them over")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (127.0.0.1 or ::1)")
    parser.add_argument("--churn", type=float, default=0.0, help="percent of pairs to replace each step")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between churn steps")
    args = parser.parse_args(argv)
    with LoopbackLoad(args.sockets, procs=args.procs, host=args.host) as load:
        print(f"holding {load.sockets} sockets in pids {load.pids}, listeners on {load.ports}; Ctrl-C stops")
        try:
            while True:
                time.sleep(args.every)
                if args.churn:
                    load.churn(args.churn)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
