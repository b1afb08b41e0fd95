"""Reading which sockets each process holds from /proc/PID/fd, and the cold walk a forked child does for a first scan.

This module imports only the standard library's os and marshal, so the ``portmon`` command can
start a cold walk (``ColdWalk``) before it loads anything else: the child reads every fd while
the parent is still importing, parsing its arguments and reading the socket tables.
"""

from __future__ import annotations

import marshal
import os

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
PARALLEL_FDS = 4096
"""A process with at least this many fds is walked by two threads."""


def socket_fds(dfd: int, names: list[str]) -> tuple[dict[str, int], int]:
    """(fd name -> socket inode for the fds in ``names`` that are sockets, how many of ``names`` are open).

    ``dfd`` is the process's fd directory, open. PermissionError means the whole process became
    unreadable; any other error on one fd means it closed since it was listed.
    """
    fds: dict[str, int] = {}
    readlink = os.readlink
    closed = 0
    for name in names:
        try:
            link = readlink(name, dir_fd=dfd)
        except PermissionError:
            raise  # the whole process became unreadable: the caller gives up on it
        except OSError:
            closed += 1  # closed since the listing (or not a link we can read)
            continue
        if link[:8] == "socket:[":
            fds[name] = int(link[8:-1])
    return fds, len(names) - closed


def socket_fds_parallel(dfd: int, names: list[str]) -> tuple[dict[str, int], int]:
    """``socket_fds`` by two threads, each reading half of ``names``.

    Speed trick: readlink releases the GIL and most of its cost is in the kernel, so two threads
    read a 10,000-fd table in ~22 ms instead of ~37 ms (saves ~15 ms wall for ~5 ms more CPU;
    nothing when the other core is busy), measured on a 2-core VM with ``chrt -f 10 python
    bench/bench_collect_tricks.py``. Same answer as one thread: tests/test_fdwalk.py. A bare
    thread, not a pool: concurrent.futures costs ~5 ms to import, a tenth of a one-shot ``list``.
    """
    import threading

    half = len(names) // 2
    first: list[tuple[dict[str, int], int]] = []
    failed: list[BaseException] = []

    def read_first_half() -> None:
        try:
            first.append(socket_fds(dfd, names[:half]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failed.append(exc)

    worker = threading.Thread(target=read_first_half, name="portmon-fdwalk", daemon=True)
    worker.start()
    try:
        fds, found = socket_fds(dfd, names[half:])
    finally:
        worker.join()  # the worker reads through dfd, which the caller closes
    if failed:
        raise failed[0]
    fds.update(first[0][0])
    return fds, found + first[0][1]


def read_fd_table(dfd: int, count: int = -1, threads: bool = True) -> tuple[list[str], dict[str, int]]:
    """(every fd number, fd number -> socket inode of its socket fds) of a process; ``dfd`` is its fd directory.

    ``count``: how many fds the process has open, when known (the directory's size, on Linux
    >= 6.2), else -1. Speed trick: a big table (PARALLEL_FDS fds or more) is read by number, 0 to
    count - 1, without listing the directory first; at 10,000 fds that saves ~7 ms of ~44 (wall
    and CPU; ``chrt -f 10 python bench/bench_collect_tricks.py``, 2-core VM). The kernel hands out
    the lowest free fd, so a table is usually dense, and when all of those numbers are open there
    is no other. When some are not, the directory is listed and the numbers not read yet are read
    too. Same answer as listing: tests/test_fdwalk.py. ``threads``: big tables are read by two
    threads (``socket_fds_parallel``).
    """

    def read(names: list[str]) -> tuple[dict[str, int], int]:
        if threads and len(names) >= PARALLEL_FDS:
            return socket_fds_parallel(dfd, names)
        return socket_fds(dfd, names)

    if count >= PARALLEL_FDS:
        numbers = [str(fd) for fd in range(count)]
        fds, found = read(numbers)
        if found == count:
            return numbers, fds
        listed = os.listdir(dfd)
        open_now = set(listed)
        fds = {name: ino for name, ino in fds.items() if name in open_now}
        probed = set(numbers)
        fds.update(read([name for name in listed if name not in probed])[0])
        return listed, fds
    names = os.listdir(dfd)
    return names, read(names)[0]


ColdProcess = tuple[int, list[str] | None, dict[str, int] | None]
"""What a cold walk learned of one process: (start time in clock ticks, every fd number, fd
number -> socket inode of its socket fds); the two are None when its fds may not be read."""


def start_and_parent(procfs: str, name: str) -> tuple[int, int]:
    """(start time in clock ticks since boot, parent pid) of process ``name`` from its /proc stat file.

    The pid and the start time identify a process: a reused pid has another start time.
    """
    fd = os.open(f"{procfs}/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    # The name in parentheses may hold spaces and ")": the fields follow the last ")".
    fields = data[data.rindex(b")") + 2 :].split(None, 20)
    return int(fields[19]), int(fields[1])


def walk_all_fds(procfs: str = "/proc") -> dict[int, ColdProcess]:
    """Every process's fds, read the way a first scan reads them; processes that exit meanwhile are left out."""
    found: dict[int, ColdProcess] = {}
    for name in os.listdir(procfs):
        if not name.isdigit():
            continue
        try:
            start = start_and_parent(procfs, name)[0]
            dfd = os.open(f"{procfs}/{name}/fd", DIR_FLAGS)
        except (PermissionError, NotADirectoryError):
            try:
                found[int(name)] = (start_and_parent(procfs, name)[0], None, None)
            except (OSError, ValueError, IndexError):
                pass
            continue
        except (OSError, ValueError, IndexError):
            continue  # gone, or not a process we can make sense of
        try:
            names, fds = read_fd_table(dfd, os.fstat(dfd).st_size)
        except PermissionError:
            found[int(name)] = (start, None, None)
            continue
        except OSError:
            continue
        finally:
            os.close(dfd)
        found[int(name)] = (start, names, fds)
    return found


_LENGTH_BYTES = 8
"""The child's answer is its length (8 bytes, little-endian) then the marshal data: the parent
stops reading when it has it all, without waiting for the child to exit."""

_unreaped: list[int] = []
"""Children that had answered but not yet exited when their answer was read: reaped later."""

_walking: set[int] = set()
"""Children started and not yet answered or cancelled (their pids cannot be reused meanwhile)."""


def own_pids() -> frozenset[int]:
    """portmon's own pid and its fd-walk children not yet reaped: never holders of a socket.

    A socket portmon inherited (socket activation, a leaked fd) is in its fd table, and in a walk
    child's until it closes it: neither is a process that holds the socket in any useful sense. An
    unreaped child's pid cannot name another process, so leaving it out never hides a real holder.
    """
    return frozenset((os.getpid(), *_walking, *_unreaped))


def own_socket_inodes(procfs: str = "/proc") -> frozenset[int]:
    """Inodes of the sockets portmon itself has open now (empty when its fd table cannot be read).

    The collectors leave portmon out of every socket's holders; this is how ``who``, ``why`` and
    ``kill`` tell a socket held only by portmon's inherited copy from one whose owner is unseen.
    """
    try:
        dfd = os.open(f"{procfs}/{os.getpid()}/fd", DIR_FLAGS)
    except OSError:
        return frozenset()
    try:
        return frozenset(read_fd_table(dfd)[1].values())
    except OSError:
        return frozenset()
    finally:
        os.close(dfd)


def _close_inherited(keep: int) -> None:
    """Close every fd above ``keep`` (the walk child's answer pipe), however high it is numbered.

    RLIMIT_NOFILE's soft limit is no bound: a fd opened before the limit was lowered may lie above it.
    """
    top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
    try:
        dfd = os.open("/proc/self/fd", DIR_FLAGS)
        try:
            top = max(top, *(int(name) + 1 for name in os.listdir(dfd)))
        finally:
            os.close(dfd)
    except (OSError, ValueError):
        pass
    os.closerange(keep + 1, top)


def _reap(pid: int) -> None:
    """Reap ``pid`` if it has exited, else remember to try again (with the next cold walk)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if not done:
        _unreaped.append(pid)


def _read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from the pipe, or None when it ends first (the child died)."""
    chunks = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class ColdWalk:
    """``walk_all_fds`` run in a forked child process, its answer read back through a pipe.

    Speed trick: the ``portmon`` command starts one before its imports (portmon.cli.launch), so
    the walk of every process's fds overlaps the imports and the table reads: ``list --json`` at
    10,000 loopback sockets took 271 ms instead of 394 ms (best of 11 alternating runs on a
    2-core VM shared with other test loads, ``chrt -f 10 python bench/bench_collect_tricks.py``).
    Same answer as walking in-process: tests/test_fdwalk.py and tests/test_collect_tricks.py.

    Fork only from a process with a single thread: a child forked while another thread holds a
    lock (the allocator's, say) can hang on it.
    """

    def __init__(self, procfs: str = "/proc") -> None:
        self._pid = 0
        self._fd = -1
        for pid in _unreaped[:]:
            _unreaped.remove(pid)
            _reap(pid)
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: walk, answer, and leave without running any of the parent's cleanup
            code = 1
            try:
                os.close(read_end)
                # Let go of the parent's stdin, stdout and stderr: a child slowed down in /proc
                # must not keep a pipe the parent writes to open after the parent is done.
                null = os.open(os.devnull, os.O_RDWR)
                for std in (0, 1, 2):
                    os.dup2(null, std)
                os.close(null)
                # And of every other inherited fd: a socket portmon inherited (socket activation, a
                # leaked fd) must not list this short-lived child among its holders. The pipe moves to 3.
                if write_end != 3:
                    os.dup2(write_end, 3)
                    write_end = 3
                _close_inherited(3)
                payload = marshal.dumps(walk_all_fds(procfs))
                data = memoryview(len(payload).to_bytes(_LENGTH_BYTES, "little") + payload)
                while data:
                    data = data[os.write(write_end, data) :]
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        _walking.add(pid)
        self._pid = pid
        self._fd = read_end

    @property
    def pid(self) -> int:
        """The child's pid while its answer is pending (0 once taken or cancelled, or if fork failed)."""
        return self._pid

    def cancel(self) -> None:
        """Stop the child if it still runs and reap it (a walk nobody will take)."""
        if not self._pid:
            return
        pid, self._pid = self._pid, 0
        try:
            os.kill(pid, 9)  # SIGKILL: our own child, never anyone else
        except ProcessLookupError:
            pass
        os.close(self._fd)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        _walking.discard(pid)

    def result(self) -> dict[int, ColdProcess] | None:
        """The child's answer (waiting for it), or None when there is none (fork or walk failed)."""
        if not self._pid:
            return None
        pid, self._pid = self._pid, 0
        payload = None
        try:
            header = _read_exactly(self._fd, _LENGTH_BYTES)
            if header is not None:
                payload = _read_exactly(self._fd, int.from_bytes(header, "little"))
        except OSError:
            payload = None
        finally:
            os.close(self._fd)
            _walking.discard(pid)
            _reap(pid)  # one not yet exited waits in _unreaped (still one of portmon's own)
        if payload is None:
            return None
        try:
            answer = marshal.loads(payload)
        except (EOFError, ValueError, TypeError):
            return None
        return answer if isinstance(answer, dict) else None
