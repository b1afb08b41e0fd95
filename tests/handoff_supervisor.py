"""A supervisor that restarts its listener the moment the old one is told to stop: a re-bind with no timing.

Run as ``python handoff_supervisor.py``. The first child listens on a free loopback port (SO_REUSEPORT)
and the supervisor prints ``READY <port> <child pid>``. When a child gets SIGTERM it asks the supervisor
for a successor; the supervisor starts one, which binds the same port (SO_REUSEPORT lets it join while
the old one still listens), and only then lets the old child exit. So once the old child has exited, the
port is already held again, by a new pid whose parent is the supervisor. Everything ends when the
supervisor's stdin closes, or after 120 s.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time


def child(port: int, want: int, ready: int, ack: int) -> None:
    """Listen on ``port`` (0: any), report it, and on SIGTERM hand over to a successor before exiting."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()

    def hand_over(signum: int, frame: object) -> None:
        os.write(want, b"R")
        os.read(ack, 1)  # the successor listens now
        os._exit(0)

    signal.signal(signal.SIGTERM, hand_over)
    os.write(ready, f"{sock.getsockname()[1]}\n".encode())
    end = time.monotonic() + 120
    while time.monotonic() < end:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    want_r, want_w = os.pipe()
    ready_r, ready_w = os.pipe()
    ack_r, ack_w = os.pipe()
    kids: list[int] = []

    def start(port: int) -> tuple[int, int]:
        pid = os.fork()
        if pid == 0:
            child(port, want_w, ready_w, ack_r)
        kids.append(pid)
        line = b""
        while not line.endswith(b"\n"):
            line += os.read(ready_r, 1)
        return pid, int(line)

    first, port = start(0)
    print("READY", port, first, flush=True)
    end = time.monotonic() + 120
    try:
        while time.monotonic() < end:
            readable, _, _ = select.select([want_r, sys.stdin], [], [], 1.0)
            if sys.stdin in readable and not sys.stdin.readline():
                break
            if want_r in readable:
                os.read(want_r, 1)
                start(port)
                os.write(ack_w, b"A")
            for pid in list(kids):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    kids.remove(pid)
    finally:
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


class Handoff:
    """The supervisor started from a test: its ``port``, the ``first`` child's pid, and ``proc`` itself."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        if len(words) != 3:
            self.close()
            raise RuntimeError("the handoff supervisor did not start")
        self.port, self.first = int(words[1]), int(words[2])

    def close(self) -> None:
        """End the supervisor and its children."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()
