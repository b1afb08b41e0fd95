"""Time filtering, sorting and diffing 50,000 synthetic sockets: run `python bench/bench_filter.py`."""

from __future__ import annotations

import gc
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Holder, Snapshot, Socket  # noqa: E402
from portmon.query import filters  # noqa: E402
from portmon.query.diff import changes, diff_snapshots  # noqa: E402
from portmon.query.filters import SocketFilter, parse_filter  # noqa: E402
from portmon.query.sorting import COLUMNS, sort_sockets  # noqa: E402

N = 50_000
REPEATS = 7


def synthetic_sockets(n: int, seed: int = 1) -> list[Socket]:
    """A busy server's mix: listeners, established connections to a few server ports, TIME_WAIT, UDP."""
    rng = random.Random(seed)
    users = ["root", "www-data", "alice", "postgres", "Bob"]
    holders = [Holder(pid=1000 + i, name=f"proc{i % 97}", user=users[i % len(users)]) for i in range(300)]
    services = {22: "ssh", 80: "http", 443: "https", 5432: "postgresql", 53: "domain"}
    server_ports = [22, 80, 443, 5432, 8080]
    sockets = []
    for i in range(n):
        v6 = rng.random() < 0.3
        family = 6 if v6 else 4
        kind = rng.random()
        local = f"2001:db8::{rng.randrange(1, 4):x}" if v6 else f"10.0.0.{rng.randrange(1, 4)}"
        if v6:
            remote = f"2001:db8:1::{rng.randrange(1, 3000):x}"
        else:
            remote = f"192.168.{rng.randrange(12)}.{rng.randrange(256)}"
        holder = (holders[rng.randrange(len(holders))],)
        if i < 8 * len(server_ports):
            # Each server port has eight SO_REUSEPORT listeners (one per worker).
            sock = Socket("tcp", family, local, server_ports[i % len(server_ports)], state=LISTEN, holders=holder)
        elif kind < 0.02:
            sock = Socket("tcp", family, local, rng.randrange(1024, 65536), state=LISTEN, holders=holder)
        elif kind < 0.10:
            sock = Socket("udp", family, local, rng.randrange(65536), holders=holder)
        elif kind < 0.30:
            sock = Socket("tcp", family, local, rng.choice(server_ports), remote, rng.randrange(32768, 61000),
                          state=TIME_WAIT, owner_note="kernel")
        else:
            sock = Socket("tcp", family, local, rng.choice(server_ports), remote, rng.randrange(32768, 61000),
                          state=ESTABLISHED, holders=holder)
        sockets.append(Socket(
            sock.proto, sock.family, sock.local_addr, sock.local_port, sock.remote_addr, sock.remote_port,
            sock.state, sock.holders, sock.owner_note, inode=0, seq=i % 3,
            local_service=services.get(sock.local_port),
            remote_service=services.get(sock.remote_port) if sock.remote_port is not None else None,
        ))
    return sockets


def best_ms(fn: Callable[[], object], repeats: int = REPEATS, setup: Callable[[], object] | None = None) -> float:
    """Best wall time of ``repeats`` runs, in milliseconds; ``setup`` runs untimed before each."""
    best = float("inf")
    for _ in range(repeats):
        if setup is not None:
            setup()
        gc.collect()  # keep the garbage of the setup out of the timed call
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best * 1000.0


def fresh_copies(sockets: Sequence[Socket]) -> list[Socket]:
    """Equal sockets as new objects, as the next scan would give them (cold caches)."""
    return [
        Socket(s.proto, s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.state,
               s.holders, s.owner_note, s.inode, s.local_service, s.remote_service, s.seq)
        for s in sockets
    ]


class Fresh:
    """A new snapshot tuple of the same sockets per run: what every refresh hands the table."""

    def __init__(self, sockets: Sequence[Socket]) -> None:
        self.sockets = sockets
        self.copy: tuple[Socket, ...] = ()

    def renew(self) -> None:
        self.copy = ()
        self.copy = tuple(fresh_copies(self.sockets))
        filters.clear_cache()
        # The collector that made the new sockets pays for collecting their generation, not the
        # first call that happens to allocate after it.
        gc.collect()


def main() -> None:
    sockets = tuple(synthetic_sockets(N))  # a snapshot's sockets are a tuple
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{N} synthetic sockets, best of {REPEATS} runs; Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {load:.2f}")
    fresh = Fresh(sockets)

    # Each run reads ``fresh.copy`` when called, so it sees the copy its ``setup`` just renewed.
    def filter_copy(flt: SocketFilter) -> object:
        return flt.apply(fresh.copy)

    def sort_copy(column: str, descending: bool = False) -> object:
        return sort_sockets(fresh.copy, column, descending=descending)

    # Cold: a new snapshot, as after every refresh. Warm: the same snapshot again (typing in the box),
    # with its holders' texts cached.
    for text in ["proc42", "192.168.3", "port:443", "state:listen", "!proto:udp", "proc:proc4 user:ali",
                 "addr:192.168.0.0/16", "range:dynamic", "pid:1000-1100", "https port:443 !state:time_wait"]:
        flt = parse_filter(text)
        cold = best_ms(partial(filter_copy, flt), setup=fresh.renew)
        warm = best_ms(partial(flt.apply, sockets))
        rows = len(flt.apply(sockets))
        print(f"filter {text!r:40} {rows:6} rows  cold {cold:6.1f} ms  warm {warm:6.1f} ms")
    text = "https port:443 !state:time_wait"
    print(f"parse  {text!r:40} {best_ms(lambda: parse_filter(text)):6.2f} ms")

    for column in COLUMNS:
        up = best_ms(partial(sort_copy, column), setup=fresh.renew)
        down = best_ms(partial(sort_copy, column, descending=True), setup=fresh.renew)
        print(f"sort   {column:16} asc {up:6.1f} ms  desc {down:6.1f} ms  (new Socket objects each run)")

    # Diff a chain of snapshots as the live table does (each new one is the next call's old one), with
    # fresh Socket objects every time, 1% of sockets closing and 1% opening at each step.
    base = synthetic_sockets(10_000, seed=2)
    rng = random.Random(3)
    chain = []
    current = base
    for step in range(REPEATS + 2):
        kept = [s for s in current if rng.random() >= 0.01]
        current = kept + synthetic_sockets(len(current) - len(kept), seed=100 + step)
        chain.append(Snapshot(tuple(fresh_copies(current)), taken_at=float(step)))
    for name, fn in (("diff_snapshots", diff_snapshots), ("changes", changes)):
        fn(chain[0], chain[1])  # the first call also builds the old side's key map
        times = []
        for old, new in zip(chain[1:], chain[2:], strict=False):
            gc.collect()
            started = time.perf_counter()
            fn(old, new)
            times.append((time.perf_counter() - started) * 1000.0)
        print(f"diff   10000 sockets, 1% churn: {name:15} best {min(times):5.1f} ms  worst {max(times):5.1f} ms")
    unseen = Snapshot(tuple(fresh_copies(chain[0].sockets)), 0.0)
    gc.collect()
    started = time.perf_counter()
    events = diff_snapshots(unseen, chain[1])
    print(f"diff   10000 sockets, neither side seen before: {(time.perf_counter() - started) * 1000.0:5.1f} ms, "
          f"{len(events)} events")


if __name__ == "__main__":
    main()
