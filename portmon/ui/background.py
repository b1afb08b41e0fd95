"""Small daemon thread pools for slow lookups (process details, reverse DNS) that must never hold up quitting."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable

MAX_NAMES = 4096
"""Host names kept before the cache starts over."""


class DaemonPool:
    """Run callables on ``workers`` daemon threads; jobs still queued at exit are simply dropped.

    Unlike ``concurrent.futures.ThreadPoolExecutor``, whose threads are joined at interpreter exit,
    a lookup stuck in the kernel or on a DNS timeout cannot delay quitting.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        self._started = False

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job``; exceptions it raises are swallowed (jobs report through their own callbacks)."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        self._jobs.put(job)

    def shutdown(self) -> None:
        """Let the threads end after their current job (never waits)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - a failed lookup must not kill the worker thread
                pass


def reverse_lookup(addr: str) -> str | None:
    """The host name of an IP address, or None when it has none (may block for the resolver's timeout)."""
    try:
        return socket.gethostbyaddr(addr.partition("%")[0])[0]
    except (OSError, UnicodeError, ValueError):
        return None


class HostNames:
    """Reverse DNS in the background, cached: :meth:`get` answers at once and never blocks.

    An address not looked up yet returns None and is queued; ``on_resolved(addr)`` is then called
    from a worker thread when its answer (a name or "no name") is cached.
    """

    def __init__(
        self,
        on_resolved: Callable[[str], object],
        resolve: Callable[[str], str | None] = reverse_lookup,
        workers: int = 4,
    ) -> None:
        self._on_resolved = on_resolved
        self._resolve = resolve
        self._names: dict[str, str | None] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._pool = DaemonPool(workers, "portmon-dns")

    def get(self, addr: str) -> str | None:
        """The cached name of ``addr``; None when unknown yet (a lookup is queued) or when it has none."""
        if addr in self._names:
            return self._names[addr]
        with self._lock:
            if addr in self._pending or addr in self._names:
                return self._names.get(addr)
            self._pending.add(addr)
        self._pool.submit(lambda: self._lookup(addr))
        return None

    def _lookup(self, addr: str) -> None:
        try:
            name = self._resolve(addr)
        except Exception:  # noqa: BLE001 - a broken resolver means "no name", not a crash
            name = None
        with self._lock:
            if len(self._names) >= MAX_NAMES:
                self._names.clear()
            self._names[addr] = name
            self._pending.discard(addr)
        self._on_resolved(addr)

    def shutdown(self) -> None:
        """Stop the lookup threads (pending lookups are dropped)."""
        self._pool.shutdown()
