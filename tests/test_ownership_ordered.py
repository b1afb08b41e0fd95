"""FamilyOrdered: the live monitor's collector wrapper that puts a shared socket's main holder first."""

from __future__ import annotations

from pathlib import Path

from portmon.model import LISTEN, Holder, Snapshot, Socket
from portmon.ownership.families import order_sockets, proc_lookup
from portmon.ownership.ordered import FamilyOrdered, none_shared_since, shared_positions, shared_positions_plain


def fake_proc(root: Path, procs: dict[int, tuple[str, int, int]]) -> str:
    """A /proc tree with a stat file per pid: {pid: (comm, parent pid, start ticks)}."""
    for pid, (comm, ppid, ticks) in procs.items():
        (root / str(pid)).mkdir(parents=True)
        rest = ["S", str(ppid)] + ["0"] * 17 + [str(ticks)] + ["0"] * 10
        (root / str(pid) / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    return str(root)


MASTER = Holder(100, "gunicorn", "www", 1.0)
W1, W2 = Holder(101, "gunicorn", "www", 2.0), Holder(102, "gunicorn", "www", 2.5)


class Scripted:
    """Hands back the same snapshot object (as the procfs collector hands back unchanged sockets)."""

    name = "scripted"

    def __init__(self, sockets: tuple[Socket, ...]) -> None:
        self.snapshot = Snapshot(sockets, taken_at=1.0)
        self.scans = 0

    def scan(self) -> Snapshot:
        self.scans += 1
        return self.snapshot


def test_the_master_comes_first_and_a_reordered_socket_keeps_its_identity(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, {1: ("init", 0, 1), 100: ("gunicorn", 1, 100), 101: ("gunicorn", 100, 200),
                                  102: ("gunicorn", 100, 250)})  # fmt: skip
    shared = Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(W2, MASTER, W1))
    alone = Socket("tcp", 4, "127.0.0.1", 9000, state=LISTEN, holders=(W1,))
    inner = Scripted((shared, alone))
    wrapped = FamilyOrdered(inner, procfs)
    first = wrapped.scan()
    assert [h.pid for h in first.sockets[0].holders] == [100, 101, 102]
    assert first.sockets[1] is alone  # one holder: passed through as is
    second = wrapped.scan()
    assert second.sockets[0] is first.sockets[0]  # the same unchanged socket, the same reordered object
    assert inner.scans == 2 and wrapped.name == "scripted"


def test_a_snapshot_with_nothing_to_reorder_is_passed_through(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, {1: ("init", 0, 1), 100: ("gunicorn", 1, 100), 101: ("gunicorn", 100, 200)})
    inner = Scripted((Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(MASTER, W1)),))
    assert FamilyOrdered(inner, procfs).scan() is inner.snapshot


def test_shared_positions_equal_the_plain_loop_and_ordering_only_them_changes_nothing(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, {1: ("init", 0, 1), 100: ("gunicorn", 1, 100), 101: ("gunicorn", 100, 200),
                                  102: ("gunicorn", 100, 250)})  # fmt: skip
    sockets = []
    for i in range(40):
        holders = [(), (W1,), (W2, MASTER, W1), (MASTER, W1), (W2, W1)][i % 5]
        sockets.append(Socket("tcp", 4, "0.0.0.0", 8000 + i, state=LISTEN, holders=holders))
    assert shared_positions(sockets) == shared_positions_plain(sockets) == [i for i in range(40) if i % 5 >= 2]
    assert shared_positions([]) == shared_positions_plain([]) == []
    # The wrapper's scan equals ordering every socket.
    scanned = FamilyOrdered(Scripted(tuple(sockets)), procfs).scan().sockets
    assert list(scanned) == order_sockets(sockets, proc_lookup(procfs))
    # (W2, MASTER, W1) and (W2, W1) are reordered, 8 of each.
    assert [s is t for s, t in zip(scanned, sockets, strict=True)].count(False) == 16


class Steps:
    """Hands back one snapshot per scan from a list (the last one again at the end)."""

    name = "steps"

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots
        self.scans = 0

    def scan(self) -> Snapshot:
        snapshot = self.snapshots[min(self.scans, len(self.snapshots) - 1)]
        self.scans += 1
        return snapshot


def test_after_scans_with_nothing_shared_only_new_sockets_are_looked_at(tmp_path: Path) -> None:
    procfs = fake_proc(tmp_path, {1: ("init", 0, 1), 100: ("gunicorn", 1, 100), 101: ("gunicorn", 100, 200),
                                  102: ("gunicorn", 100, 250)})  # fmt: skip
    alone = [Socket("tcp", 4, "127.0.0.1", 9000 + i, state=LISTEN, holders=(W1,)) for i in range(20)]
    shared = Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(W2, MASTER, W1))
    scans = [tuple(alone), tuple(alone[:15]), (*alone[:15], alone[0]._replace(local_port=7000)),
             (*alone[:15], shared), (*alone[:10], shared), tuple(alone[:10])]  # fmt: skip
    for last, sockets in zip(scans, scans[1:], strict=False):
        if not shared_positions(last):
            assert none_shared_since(last, sockets) == (not shared_positions(sockets))
    wrapped = FamilyOrdered(Steps([Snapshot(s, taken_at=float(i)) for i, s in enumerate(scans)]), procfs)
    for sockets in scans:
        assert list(wrapped.scan().sockets) == order_sockets(sockets, proc_lookup(procfs))
