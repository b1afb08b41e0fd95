"""What ownership costs on this host: family order, roles and managers for every socket of one real scan.

Run `python bench/bench_ownership.py`. It scans once, then times (best of 5) the work ``list --json``
adds: ``Ownership.order`` over all sockets and ``record_extra`` per distinct holders tuple, cold (a new
``Ownership``, as a one-shot command has) and warm (a refresh of the live monitor); and ``preflight``
of one process without enrichment.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from portmon.collect.procfs import ProcfsCollector  # noqa: E402
from portmon.ownership.preflight import preflight  # noqa: E402
from portmon.ownership.view import Ownership  # noqa: E402


def main() -> None:
    sockets = list(ProcfsCollector().scan().sockets)
    tuples = {id(s.holders): s.holders for s in sockets if s.holders}
    pids = {h.pid for hs in tuples.values() for h in hs}
    print(f"{len(sockets)} sockets, {len(tuples)} distinct holder sets, {len(pids)} processes")
    cold = []
    warm = []
    for _ in range(5):
        own = Ownership()
        t0 = time.perf_counter()
        ordered = own.order(sockets)
        for sock in {id(s.holders): s for s in ordered if s.holders}.values():
            own.record_extra(sock)
        cold.append(time.perf_counter() - t0)
        own.new_scan()
        t0 = time.perf_counter()
        ordered = own.order(sockets)
        for sock in {id(s.holders): s for s in ordered if s.holders}.values():
            own.record_extra(sock)
        warm.append(time.perf_counter() - t0)
    print(f"order + holders + managers, cold: {min(cold) * 1000:.1f} ms; warm: {min(warm) * 1000:.1f} ms")
    pid = next(iter(pids), os.getpid())
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        preflight([pid])
        times.append(time.perf_counter() - t0)
    print(f"preflight of pid {pid} (no systemd/engine): {min(times) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
