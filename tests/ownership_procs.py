"""Process trees the ownership tests start: restart loops, fake supervisors, pre-fork masters."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence


def read_line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    """One line of the process's stdout, waiting at most ``timeout`` seconds (RuntimeError after that)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"no line within {timeout} s (got {data!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(f"stdout closed (got {data!r})")
            data += chunk
    return data.decode()


def ready_pids(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> list[int]:
    """The pids of the next READY line a listener under ``proc`` prints."""
    while True:
        words = read_line(proc, timeout).split()
        if words and words[0] == "READY":
            return [int(p) for p in words[2].split(",")]


class Tree:
    """A process tree started in its own process group; ``stop()`` kills the group (only our processes)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, bufsize=0,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def wait_for(condition: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition()`` until true or the deadline passes (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
