"""A listener whose holder hands it over to a new process on request: a port that changes holders without a rebind."""

from __future__ import annotations

import subprocess
import sys

import psutil

HANDOFF = """\
import socket, subprocess, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.readline()  # then hand the listener to a new process and exit
child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], pass_fds=[s.fileno()])
print(child.pid, flush=True)
"""
"""A listener whose holder, told to on stdin, passes it to a new process (which lives until stdin ends) and exits."""


class Handoff:
    """A HANDOFF process this test started: ``port``, ``pid`` (the first holder) and, after ``hand_off``, ``heir``."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HANDOFF], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid
        self.heir: psutil.Process | None = None

    def hand_off(self) -> int:
        """The first holder passes the listener on and exits; the new holder's pid."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        heir = int(self.proc.stdout.readline())
        self.heir = psutil.Process(heir)  # captured while it surely is the process this test started
        assert self.proc.wait(60) == 0
        return heir

    def heir_alive(self) -> bool:
        return self.heir is not None and self.heir.is_running() and self.heir.status() != psutil.STATUS_ZOMBIE

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the heir reads the same stdin: it exits too
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)
        if self.heir is not None:
            try:
                self.heir.wait(60)
            except psutil.NoSuchProcess:
                pass
