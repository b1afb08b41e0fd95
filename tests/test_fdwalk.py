"""Reading fd tables: by number for big dense tables, by listing otherwise, and the cold walk's forked child."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator

import pytest

from portmon.collect import fdwalk
from portmon.collect.fdwalk import ColdWalk, read_fd_table, socket_fds, walk_all_fds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/fd (Linux)")


def _counts_supported() -> bool:
    """Linux >= 6.2 reports the open-fd count as the size of /proc/PID/fd."""
    return os.stat("/proc/self/fd").st_size > 0


@pytest.fixture
def big_table(fd_room: Callable[[int], None]) -> Iterator[tuple[socket.socket, list[int]]]:
    """This process with over PARALLEL_FDS fds: a listener and many dups of it, filling the lowest numbers."""
    need = fdwalk.PARALLEL_FDS + 300
    fd_room(need + 1000)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    dups: list[int] = []
    try:
        dups = [os.dup(listener.fileno()) for _ in range(need)]
        yield listener, dups
    finally:
        for fd in dups:
            try:
                os.close(fd)
            except OSError:
                pass
        listener.close()


def _truth(dfd: int) -> tuple[set[str], dict[str, int]]:
    """Every fd number and the socket fds, by listing; the listing's own fd (the lowest free
    number, closed again once listed) is left out."""
    names = os.listdir(dfd)
    fds, _ = socket_fds(dfd, names)
    still_open = {n for n in names if _is_open(int(n))}
    return still_open, fds


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _open_fd_dir() -> int:
    return os.open(f"/proc/{os.getpid()}/fd", fdwalk.DIR_FLAGS)


def test_socket_fds_counts_what_is_open_and_maps_sockets_to_inodes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dfd = _open_fd_dir()
        try:
            fds, found = socket_fds(dfd, [str(s.fileno()), "999999", "0"])
        finally:
            os.close(dfd)
        assert found == 2  # fd 999999 is not open
        assert fds == {str(s.fileno()): os.fstat(s.fileno()).st_ino}


@pytest.mark.skipif(not _counts_supported(), reason="needs the open-fd count in /proc/PID/fd's size (Linux >= 6.2)")
def test_a_dense_big_table_is_read_by_number_without_listing(
    big_table: tuple[socket.socket, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, _ = big_table
    dfd = _open_fd_dir()
    try:
        names, truth = _truth(dfd)
        count = os.fstat(dfd).st_size
        if names != {str(n) for n in range(len(names))}:
            pytest.skip("this process's fd table has a gap below its highest fd")
        assert count == len(names)  # dfd itself is among them

        def no_listing(*args: object) -> list[str]:
            raise AssertionError("a dense table was listed")

        monkeypatch.setattr(fdwalk.os, "listdir", no_listing)
        got_names, got_fds = read_fd_table(dfd, count)
        monkeypatch.undo()
        assert set(got_names) == names
    finally:
        os.close(dfd)
    assert got_fds == truth
    assert got_fds[str(listener.fileno())] == os.fstat(listener.fileno()).st_ino


@pytest.mark.skipif(not _counts_supported(), reason="needs the open-fd count in /proc/PID/fd's size (Linux >= 6.2)")
def test_the_tricks_read_a_big_table_as_the_plain_listing_does(big_table: tuple[socket.socket, list[int]]) -> None:
    """Equivalence of read_fd_table's two tricks (by number; two threads) with listing and one thread."""
    dfd = _open_fd_dir()
    try:
        names, plain = _truth(dfd)
        count = os.fstat(dfd).st_size
        one_names, one = read_fd_table(dfd, count, threads=False)
        two_names, two = read_fd_table(dfd, count, threads=True)
    finally:
        os.close(dfd)
    assert one == two == plain
    assert names <= set(one_names) and names <= set(two_names)


@pytest.mark.parametrize("threads", [True, False])
def test_a_table_with_gaps_falls_back_to_listing(big_table: tuple[socket.socket, list[int]], threads: bool) -> None:
    _, dups = big_table
    # Close fds in the middle and open one far above: numbers below the count are missing, one is beyond it.
    for fd in dups[100:110]:
        os.close(fd)
    dups[100:110] = []
    high = os.dup2(dups[0], dups[-1] + 500)
    dups.append(high)
    dfd = _open_fd_dir()
    try:
        names, truth = _truth(dfd)
        got_names, got_fds = read_fd_table(dfd, os.fstat(dfd).st_size or len(names), threads)
        assert {n for n in got_names if _is_open(int(n))} == names  # its own listing's fd left out
    finally:
        os.close(dfd)
    assert got_fds == truth
    assert str(high) in got_fds


def test_a_small_table_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[int] = []
    real = os.listdir

    def counting(*args: object) -> list[str]:
        listed.append(1)
        return real(*args)  # type: ignore[arg-type]

    dfd = _open_fd_dir()
    try:
        truth = _truth(dfd)
        monkeypatch.setattr(fdwalk.os, "listdir", counting)
        got_names, got_fds = read_fd_table(dfd, 10)
        monkeypatch.undo()
        assert {n for n in got_names if _is_open(int(n))} == truth[0]
    finally:
        os.close(dfd)
    assert listed == [1]
    assert got_fds == truth[1]


def test_walk_all_fds_sees_this_process_and_its_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        found = walk_all_fds()
        start, names, fds = found[os.getpid()]
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        assert start == int(stat[stat.rindex(b")") + 2 :].split()[19])
        assert names is not None and fds is not None
        assert str(s.fileno()) in names
        assert fds[str(s.fileno())] == os.fstat(s.fileno()).st_ino


def test_the_cold_walk_child_answers_what_a_walk_here_finds() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        ino = os.fstat(s.fileno()).st_ino
        fd = str(s.fileno())
        walk = ColdWalk()
        assert walk.pid > 0
        answer = walk.result()
        here = walk_all_fds()
    assert walk.pid == 0
    assert answer is not None
    start, names, fds = answer[os.getpid()]
    # The same start time and sockets (the fd numbers differ by the fd each walk reads through).
    assert (start, fds) == (here[os.getpid()][0], here[os.getpid()][2])
    assert names is not None and fds is not None
    assert fds[fd] == ino
    assert walk.result() is None  # taken once


def test_a_cancelled_walk_is_reaped() -> None:
    walk = ColdWalk()
    pid = walk.pid
    assert pid > 0
    walk.cancel()
    assert walk.pid == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert walk.result() is None


def test_a_child_that_fails_gives_no_answer() -> None:
    walk = ColdWalk(procfs="/nonexistent-procfs")
    assert walk.result() is None


def test_the_child_lets_go_of_the_parents_output() -> None:
    # A reader of the parent's stdout must see EOF when the parent is done, whatever the child does.
    read_end, write_end = os.pipe()
    saved = os.dup(1)
    os.dup2(write_end, 1)
    os.close(write_end)  # the pipe's only write end is our fd 1 when the child is forked
    try:
        walk = ColdWalk()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    try:
        # Only the child could still hold the pipe's write end: EOF right away means it does not.
        os.set_blocking(read_end, False)
        assert walk.result() is not None
        assert os.read(read_end, 1) == b""
    finally:
        os.close(read_end)


class _StaleColdWalk:
    """A cold walk whose child listed this process before it opened anything but stdin, stdout and stderr."""

    def result(self) -> dict[int, fdwalk.ColdProcess]:
        start = fdwalk.start_and_parent("/proc", str(os.getpid()))[0]
        return {os.getpid(): (start, ["0", "1", "2"], {})}

    def cancel(self) -> None:
        pass


def test_fds_opened_between_the_cold_walk_and_the_first_scan_are_read_by_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portmon.collect import owners
    from portmon.collect.owners import OwnerIndex, fd_counts_work

    if not fd_counts_work("/proc"):
        pytest.skip("this kernel does not count a process's fds (Linux < 6.2)")
    monkeypatch.setattr(owners, "own_pids", frozenset)  # this process is walked like any other
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        inode = os.fstat(listener.fileno()).st_ino
        index = OwnerIndex(full_rescan_every=10_000)  # no rolling rescan to find it instead
        index.take_cold_walk(_StaleColdWalk())  # type: ignore[arg-type]  # a ColdWalk in all but name
        index.update(1, set(), {}, set, True, 0)
        me = index.procs[os.getpid()]
        assert me.nfds == 3 and inode not in me.inos  # the count the walk saw, not the one after it
        index.update(2, set(), {}, set, True, 0)
    assert index.stats["diff_walks"] >= 1 and index.where[inode] == {os.getpid()}
