"""A collector over several hosts: this machine's scan merged with each remote host's latest snapshot."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from portmon.collect.base import Collector, guarded_scan
from portmon.model import Snapshot, Socket
from portmon.remote.session import HostSession, HostState


class MultiHostCollector:
    """This machine (when ``local`` is given) and every remote host, merged into one snapshot.

    Scanning costs the local scan only: each remote host's session delivers in the background
    and its latest snapshot is taken as it is, so a slow host never stalls the table. A host
    that fails keeps its last rows in view and adds one note to the snapshot's warning; so does
    a failing local scan (the remote rows still come). ``host_states()`` tells each host's mode
    and error.
    """

    def __init__(
        self, local: Collector | None, sessions: Sequence[HostSession], on_close: Callable[[], None] | None = None
    ) -> None:
        self.local = local
        self._on_close = on_close
        self.sessions = tuple(sessions)
        hosts = f"{len(self.sessions)} host{'s' if len(self.sessions) != 1 else ''}"
        self.name = hosts if local is None else f"{local.name}+{hosts}"
        self._last_local: Snapshot | None = None
        self.quiet_warning: str | None = None
        """The last scan's warning without the failing hosts' notes (one-shot commands tell those apart)."""
        self._merged: tuple[list[tuple[Socket, ...]], tuple[Socket, ...]] | None = None

    def start(self) -> None:
        """Connect to every host (in the background)."""
        for session in self.sessions:
            session.start()

    def close(self) -> None:
        """Disconnect from every host (again: nothing)."""
        for session in self.sessions:
            session.stop()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def wait_ready(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds in all, for every host's first snapshot or error."""
        deadline = time.monotonic() + timeout
        for session in self.sessions:
            session.wait_ready(max(0.0, deadline - time.monotonic()))

    def session_for(self, host: str) -> HostSession | None:
        """The session of the host labelled ``host`` (a socket's ``host``), or None."""
        for session in self.sessions:
            if session.label == host:
                return session
        return None

    def host_states(self) -> list[HostState]:
        """Each remote host's mode, latest snapshot and error, in the order given."""
        return [session.state() for session in self.sessions]

    def scan(self) -> Snapshot:
        """The local scan (if any) and every host's latest sockets, in one snapshot."""
        started = time.perf_counter()
        notes: list[str] = []
        parts: list[tuple[Socket, ...]] = []
        hidden = 0
        local_error: str | None = None
        if self.local is not None:
            snap = guarded_scan(self.local, self._last_local)
            if snap.error is None:
                self._last_local = snap
            else:
                local_error = snap.error
            parts.append(snap.sockets)
            hidden += snap.hidden_owners
            if snap.warning:
                notes.append(snap.warning)
        extra: list[tuple[str, str]] = []
        failures: list[str] = []
        for state in self.host_states():
            remote = state.snapshot
            if remote is not None:
                parts.append(remote.sockets)
                hidden += remote.hidden_owners
            if state.error is not None:
                failures.append(f"{state.label}: {state.error}")
            elif remote is not None and remote.warning:
                notes.append(f"{state.label}: {remote.warning}")
            extra.append((f"host {state.label}", state.mode if state.error is None else f"{state.mode}, failing"))
        self.quiet_warning = "; ".join(notes) or None
        return Snapshot(
            sockets=self._merge(parts),
            taken_at=time.time(),
            scan_ms=(time.perf_counter() - started) * 1000.0,
            hidden_owners=hidden,
            warning="; ".join(failures + notes) or None,
            error=local_error,
            collector=self.name,
            extra=tuple(extra),
        )

    def _merge(self, parts: list[tuple[Socket, ...]]) -> tuple[Socket, ...]:
        # The same tuples as last time give the same merged tuple (identity lets the UI skip work).
        last = self._merged
        if last is not None and len(last[0]) == len(parts) and all(a is b for a, b in zip(last[0], parts, strict=True)):
            return last[1]
        merged = tuple(s for part in parts for s in part)
        self._merged = (parts, merged)
        return merged
