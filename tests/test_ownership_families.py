"""Process families: the pre-fork master is the main holder, first, whatever order the holders come in."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from listener_child import ListenerChild

from portmon.collect.procfs import ProcfsCollector
from portmon.model import LISTEN, Holder, Socket
from portmon.ownership.families import (
    ACTIVATOR,
    MAIN,
    PEER,
    WORKER,
    family,
    family_order,
    order_sockets,
    proc_lookup,
    workers_label,
)


def fake_lookup(table: dict[int, tuple[int, int, str]]) -> Callable[[int], tuple[int, int, str] | None]:
    return table.get


def test_prefork_master_and_three_workers_master_first(spawn: Callable[..., ListenerChild]) -> None:
    child = spawn("fork=3")
    master, *workers = child.pids
    scanned = ProcfsCollector().scan().sockets
    sock = next(s for s in scanned if s.local_port == child.port and s.state == LISTEN and s.proto == "tcp")
    assert {h.pid for h in sock.holders} == set(child.pids)
    lookup = proc_lookup()
    for perm in itertools.permutations(sock.holders):
        members = family(perm, lookup)
        assert [m.holder.pid for m in members] == [master, *sorted(workers)]
        assert [m.role for m in members] == [MAIN, WORKER, WORKER, WORKER]
        assert all(m.parent == master for m in members[1:])
        assert workers_label(members) == "+3 workers"
    reversed_sock = sock._replace(holders=tuple(reversed(sock.holders)))
    (ordered,) = order_sockets([reversed_sock], lookup)
    assert ordered.pid == master


def test_worker_with_a_smaller_pid_than_its_master_still_comes_second() -> None:
    # pid numbers wrap: a worker may get a smaller pid than the master that forked it.
    table = {900: (1, 500, "python3"), 120: (900, 510, "python3"), 121: (900, 510, "python3"), 1: (0, 1, "init")}
    holders = (Holder(120, "python3"), Holder(121, "python3"), Holder(900, "python3"))
    assert [h.pid for h in family_order(holders, fake_lookup(table))] == [900, 120, 121]


def test_grandchild_worker_through_a_non_holding_process() -> None:
    table = {10: (1, 5, "master"), 11: (10, 6, "sh"), 12: (11, 7, "worker")}
    members = family((Holder(12), Holder(10)), fake_lookup(table))
    assert [(m.holder.pid, m.role, m.parent) for m in members] == [(10, MAIN, None), (12, WORKER, 10)]


def test_unrelated_roots_oldest_first_and_tie_by_pid() -> None:
    table = {30: (1, 900, "b"), 20: (1, 100, "a"), 40: (1, 100, "c")}
    members = family((Holder(30), Holder(40), Holder(20)), fake_lookup(table))
    assert [(m.holder.pid, m.role) for m in members] == [(20, MAIN), (40, PEER), (30, PEER)]


def test_socket_activation_pid1_goes_last() -> None:
    table = {1: (0, 1, "systemd"), 700: (1, 5000, "sshd")}
    members = family((Holder(1, "systemd"), Holder(700, "sshd")), fake_lookup(table))
    assert [(m.holder.pid, m.role) for m in members] == [(700, MAIN), (1, ACTIVATOR)]
    # Alone, pid 1 is simply the holder.
    assert [(m.holder.pid, m.role) for m in family((Holder(1),), fake_lookup(table))] == [(1, MAIN)]


def test_a_gone_process_does_not_break_the_order() -> None:
    table = {10: (1, 5, "master")}
    assert [h.pid for h in family_order((Holder(99), Holder(10)), fake_lookup(table))] == [10, 99]


def test_order_sockets_keeps_untouched_sockets_identical() -> None:
    one = Socket("tcp", 4, "127.0.0.1", 1, holders=(Holder(5),))
    hs = (Holder(10), Holder(11))
    table = {10: (1, 5, "m"), 11: (10, 6, "w")}
    a = Socket("tcp", 4, "127.0.0.1", 2, holders=hs)
    out = order_sockets([one, a], fake_lookup(table))
    assert out[0] is one and out[1] is a


def test_family_labeller_marks_workers_and_owner_notes() -> None:
    from portmon.ownership.families import family_labeller

    table = {10: (1, 5, "m"), 11: (10, 6, "w"), 12: (10, 6, "w"), 30: (1, 9, "x")}
    label = family_labeller(fake_lookup(table))
    prefork = Socket("tcp", 4, "0.0.0.0", 80, state="LISTEN", holders=(Holder(10, "gunicorn"), Holder(11), Holder(12)))
    mixed = Socket("tcp", 4, "0.0.0.0", 81, state="LISTEN", holders=(Holder(10, "gunicorn"), Holder(11), Holder(30)))
    assert label(prefork) == "gunicorn +2 workers"
    assert label(mixed) == "gunicorn +1 worker, +1 other"
    assert label(Socket("tcp", 4, "0.0.0.0", 82, holders=(Holder(30, "x\x1b[2J"),))) == "x\\x1b[2J"
    assert label(Socket("tcp", 4, "127.0.0.1", 83, state="TIME_WAIT", owner_note="kernel")) == "(kernel)"
