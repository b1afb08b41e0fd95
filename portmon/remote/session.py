"""One remote host's long-lived ssh session: a reader thread keeps the host's latest snapshot."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, NamedTuple

from portmon.collect.base import ServiceLookup
from portmon.model import Snapshot
from portmon.remote.actions import RemoteRun, run_portmon
from portmon.remote.agentless import MARK, SCRIPT, AgentlessParser
from portmon.remote.hosts import HostSpec
from portmon.remote.ssh import Ssh, SshError, last_error_line
from portmon.remote.stream import StreamDecoder, StreamError, parse_hello
from portmon.textsafe import safe

MODE_CONNECTING = "connecting"
MODE_PORTMON = "portmon"
"""portmon is installed on the host: its streaming mode sends snapshots."""
MODE_AGENTLESS = "agentless"
"""Nothing installed: a shell loop sends ``ss`` tables."""


class HostState(NamedTuple):
    """What the session knows of its host right now."""

    label: str
    mode: str
    snapshot: Snapshot | None
    """The latest snapshot received (kept while the host fails, so its rows stay in view)."""
    error: str | None
    """Why the host is not answering now, or None; printable (control characters escaped)."""


class HostSession:
    """Keeps one ssh connection to a host open and its latest snapshot at hand.

    The remote side is ``sh -s`` fed SCRIPT: portmon's stream when portmon is installed there,
    else an ``ss`` loop. Nothing here ever waits on the host for a caller: ``state()`` returns
    at once with whatever arrived last, so a slow or hung host never stalls a table. A dropped
    connection is retried with a growing delay. ``wait_ready`` is for one-shot commands.
    """

    def __init__(
        self,
        spec: HostSpec,
        ssh: Ssh,
        interval: float = 1.0,
        services: ServiceLookup | None = None,
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
        retry_delays: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.spec = spec
        self._ssh = ssh
        self._interval = interval
        self._services = services
        self._clock = clock
        self._stale_after = stale_after if stale_after is not None else max(10.0, 3 * interval)
        self._retry_delays = retry_delays
        self._lock = threading.Lock()
        self._mode = MODE_CONNECTING
        self._snapshot: Snapshot | None = None
        self._error: str | None = None
        self._last_heard = clock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    @property
    def label(self) -> str:
        """The host as the user named it."""
        return self.spec.label

    def start(self) -> None:
        """Connect in the background (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"portmon-ssh-{self.label}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Close the connection and end the reader thread."""
        self._stop.set()
        self._kill()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run_portmon(self, words: Sequence[str], timeout: float) -> RemoteRun:
        """Run ``portmon WORDS`` on the host (kill, why), over the session's master connection."""
        return run_portmon(self._ssh, self.spec, words, timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the first snapshot or the first error; False when neither came within ``timeout``."""
        return self._ready.wait(timeout)

    def state(self) -> HostState:
        """The latest snapshot and error, at once; a host silent for too long gets an error saying so."""
        with self._lock:
            mode, snap, error, heard = self._mode, self._snapshot, self._error, self._last_heard
        if error is None and not self._stop.is_set():
            silent = self._clock() - heard
            if silent > self._stale_after:
                what = "no answer" if snap is None else "no update"
                error = f"{what} for {silent:.0f} s"
        return HostState(self.label, mode, snap, error)

    def _set(self, **changes: object) -> None:
        with self._lock:
            if "mode" in changes:
                self._mode = str(changes["mode"])
            if "snapshot" in changes:
                self._snapshot = changes["snapshot"]  # type: ignore[assignment]  # a Snapshot, from _read only
                self._error = None
                self._last_heard = self._clock()
            if "error" in changes:
                error = changes["error"]
                self._error = None if error is None else safe(str(error), 300)
        if "snapshot" in changes or "error" in changes:
            self._ready.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            got_snapshot = self._connect_once()
            if self._stop.is_set():
                return
            failures = 0 if got_snapshot else failures + 1
            first, cap = self._retry_delays
            delay = min(cap, first * (2 ** max(0, failures - 1)))
            self._stop.wait(delay)

    def _connect_once(self) -> bool:
        """One connection, read until it ends; True when it delivered at least one snapshot."""
        self._set(mode=MODE_CONNECTING)
        with self._lock:
            self._last_heard = self._clock()
        try:
            argv = self._ssh.argv(self.spec, ["sh", "-s", "--", f"{self._interval:g}"])
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: stop() ends a wrapper script's children too
            )
        except (OSError, SshError) as exc:
            self._set(error=f"cannot run ssh: {exc}")
            return False
        self._proc = proc
        if self._stop.is_set():
            self._kill()
        errors: collections.deque[str] = collections.deque(maxlen=20)
        drain = threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)
        drain.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(SCRIPT)
            proc.stdin.flush()  # kept open: the remote stream may watch it for the end of the session
        except (OSError, ValueError):
            pass  # the reason shows in ssh's stderr and exit status
        got = False
        try:
            got = self._read(proc)
        except (StreamError, ValueError, OSError) as exc:
            self._set(error=f"bad data from the host: {exc}")
            self._kill()
        code = proc.wait()
        drain.join(timeout=2)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        self._proc = None
        if self._stop.is_set():
            return got
        with self._lock:
            had_error = self._error is not None
        if not had_error or got:
            reason = last_error_line("\n".join(errors))
            if reason is None:
                reason = f"connection ended (exit status {code})"
            self._set(error=reason)
        return got

    def _read(self, proc: subprocess.Popen[str]) -> bool:
        assert proc.stdout is not None
        stdout = proc.stdout
        first = stdout.readline()
        if not first:
            return False
        got = False
        if first.startswith(MARK):
            head = first[len(MARK) :].split()
            if head[:1] == ["error"]:
                self._set(error=first[len(MARK) :].strip()[len("error") :].strip())
                return False
            parser = AgentlessParser(self.label, self._services, self._clock)
            parser.feed(first.rstrip("\n"))
            self._set(mode=MODE_AGENTLESS)
            for line in stdout:
                snap = parser.feed(line.rstrip("\n"))
                if snap is not None:
                    self._set(snapshot=snap)
                    got = True
            return got
        collector, _ = parse_hello(first)
        decoder = StreamDecoder(self.label, f"portmon:{collector}")
        self._set(mode=MODE_PORTMON)
        for line in stdout:
            self._set(snapshot=decoder.feed(line, self._clock()))
            got = True
        return got

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created for it, nothing else
            except (ProcessLookupError, PermissionError):
                pass


def _drain(stream: IO[str] | None, keep: collections.deque[str]) -> None:
    """Read a pipe to its end, keeping the last lines (ssh's reasons for failing)."""
    if stream is None:
        return
    try:
        for line in stream:
            keep.append(line)
    except (OSError, ValueError):
        pass
