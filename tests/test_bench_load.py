"""The benchmark load generator (bench/loads.py): process shapes, server-first closes, churn and clean-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loads import Load, LoadSpec, count_tcp_states, issue18, realistic, split_to_fit, spread  # noqa: E402

needs_proc_net = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")


def _tcp_sockets_of(pid: int) -> int:
    """Socket fds a process holds (from /proc/PID/fd)."""
    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{name}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def test_spread_sums_to_the_total_within_bounds() -> None:
    counts = spread(4000, 300, lo=1, hi=200, seed=0)
    assert len(counts) == 300
    assert sum(counts) == 4000
    assert min(counts) >= 1 and max(counts) <= 200
    # Skewed: most processes hold a few, a few hold many.
    ordered = sorted(counts)
    assert ordered[len(ordered) // 2] < 10 < ordered[-1]


def test_spread_is_deterministic_and_grows_the_process_count_when_needed() -> None:
    assert spread(1234, 50, seed=3) == spread(1234, 50, seed=3)
    counts = spread(1000, 2, lo=1, hi=200)
    assert len(counts) == 5 and all(c == 200 for c in counts)
    assert spread(3, 10) == [1, 1, 1]
    with pytest.raises(ValueError):
        spread(0, 10)


def test_split_to_fit_splits_only_what_exceeds_the_limit_into_equal_parts() -> None:
    assert split_to_fit((10, 25, 5), 10) == [10, 9, 8, 8, 5]
    assert split_to_fit((11_900,) * 3, 9_968) == [5950, 5950] * 3


def test_realistic_and_issue18_shapes() -> None:
    spec = realistic(10_000)
    assert spec.peer == "server" and len(spec.holders) == 300
    assert spec.held_sockets == 8000 and spec.time_wait_steady == 2000
    big = issue18()
    assert big.holders == (3400, 3400, 3400) and big.peer == "self"
    assert big.held_sockets == 20_400 and big.churn_per_s == 200.0
    assert sum(issue18(3.5).holders) == 3 * 11_900


@needs_proc_net
def test_server_load_holds_connections_closes_short_ones_first_and_cleans_up() -> None:
    spec = LoadSpec(holders=(2, 3), peer="server", churn_per_s=0.0, prefill=5)
    load = Load(spec, max_seconds=120.0).start(timeout=60.0)
    try:
        assert len(load.holder_pids) == 2 and load.server_pid is not None and load.churner_pid is not None
        assert [_tcp_sockets_of(pid) for pid in load.holder_pids] == [2, 3]
        # The server holds the other ends plus its listeners.
        assert _tcp_sockets_of(load.server_pid) == 5 + len(load.held_ports) + len(load.short_ports)
        # The server closed first, so the TIME_WAIT sockets are on its side: its short port is their local port.
        assert count_tcp_states(set(load.short_ports)).get("TIME_WAIT", 0) >= 5
        assert load.churn(50.0) == 2
        assert sorted(_tcp_sockets_of(pid) for pid in load.holder_pids) == [2, 3]
        pids = load.pids
    finally:
        load.stop()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}/fd") or not _tcp_sockets_of(pid)


@needs_proc_net
def test_self_load_holds_both_ends_in_each_process() -> None:
    load = Load(LoadSpec(holders=(4, 4, 4), peer="self"), max_seconds=120.0).start(timeout=60.0)
    try:
        assert load.server_pid is None and load.churner_pid is None
        # Both ends of four connections plus the holder's own listener.
        assert [_tcp_sockets_of(pid) for pid in load.holder_pids] == [9, 9, 9]
    finally:
        load.stop()
