"""The listener child process the kill tests start and signal, and ``ListenerChild``, the handle on one.

Shared by test_killer, test_killcmd and test_ui_killmodal; the ``spawn`` and ``record_file`` fixtures
that use it live in conftest.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from portmon.model import LISTEN, Holder, Socket

# Options: port=N, proto=udp, fork=N (children share the socket), ignore-term, record=PATH
# (TERM/INT/HUP are written there, then the process exits); any other word is ignored (it only
# shows up in the command line). It prints "READY <port> <pid,pid,...>" once listening.
CHILD = r"""
import os, signal, socket, sys, time
opts = dict(a.split("=", 1) if "=" in a else (a, "1") for a in sys.argv[1:])
record = opts.get("record")
def note(sig, frame):
    with open(record, "a") as fh:
        fh.write(signal.Signals(sig).name + "\n")
    os._exit(0)
if "ignore-term" in opts:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif record:
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, note)
udp = opts.get("proto") == "udp"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(opts.get("port", "0"))))
except OSError as exc:
    print("ERR", exc, flush=True)
    sys.exit(3)
if not udp:
    s.listen()
pids = [os.getpid()]
for _ in range(int(opts.get("fork", "0"))):
    pid = os.fork()
    if pid == 0:
        pids = None
        break
    pids.append(pid)
if pids is not None:
    print("READY", s.getsockname()[1], ",".join(map(str, pids)), flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    time.sleep(0.1)
"""


class ListenerChild:
    """A listener process a test started; ``stop()`` signals only the pids it reported (identity-checked).

    It runs ``python -c CHILD`` or, given ``script`` (a file holding CHILD), ``python SCRIPT`` so the
    command line stays short. A child that does not print READY is not an error here: ``ok`` is False
    and ``words`` holds what it printed instead, so a test can retry (say on a taken port) or call
    ``require()`` to turn it into a RuntimeError.
    """

    def __init__(
        self, *opts: str, script: Path | None = None, python: str = sys.executable, user: str | None = None
    ) -> None:
        self.script = script
        program = [str(script)] if script is not None else ["-c", CHILD]
        self.proc = subprocess.Popen(
            [python, *program, *opts], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, user=user
        )
        assert self.proc.stdout is not None
        self.words = self.proc.stdout.readline().split()
        self.ok = bool(self.words) and self.words[0] == "READY"
        self.port = int(self.words[1]) if self.ok else 0
        self.pids = [int(p) for p in self.words[2].split(",")] if self.ok else []
        # Captured now, while the pids surely are our children: later checks and kills go through
        # these objects, which psutil refuses to use once a pid names another process.
        self.procs = {pid: psutil.Process(pid) for pid in self.pids}

    def require(self) -> ListenerChild:
        """This child, or a RuntimeError naming what it printed when it did not start (it is stopped first)."""
        if not self.ok:
            self.stop()
            raise RuntimeError(f"child did not start: {self.words}")
        return self

    @property
    def pid(self) -> int:
        """The first reported pid: the process this class started (the others are its forks)."""
        return self.pids[0]

    @property
    def ps(self) -> psutil.Process:
        """The ``psutil.Process`` of ``pid``, captured at start."""
        return self.procs[self.pid]

    def alive(self, pid: int | None = None) -> bool:
        """Whether ``pid`` (by default ``self.pid``), one of the reported pids, still runs (a zombie does not)."""
        proc = self.procs[pid if pid is not None else self.pid]
        try:
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False

    def holders(self, proto: str = "tcp") -> Socket:
        """The socket as a collector would report it, with every holder's captured identity."""
        return Socket(
            proto=proto,
            family=4,
            local_addr="127.0.0.1",
            local_port=self.port,
            state=LISTEN if proto == "tcp" else None,
            holders=tuple(Holder(pid, p.name(), p.username(), p.create_time()) for pid, p in self.procs.items()),
        )

    def stop(self) -> None:
        """Kill the reported pids and the started process; safe to call more than once."""
        for proc in self.procs.values():
            try:
                proc.kill()  # psutil refuses when the pid now names another process
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
        # The started process is not reaped yet, so its pid cannot have been reused: killing it is
        # safe, and covers a child that never reported its pids.
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
