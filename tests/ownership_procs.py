"""Process trees the ownership tests start: restart loops, fake supervisors, pre-fork masters."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


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


PREFORK = r"""
import os, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen()
pids = [os.getpid()]
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        time.sleep(60); os._exit(0)
    pids.append(pid)
print("READY", s.getsockname()[1], ",".join(map(str, pids)), flush=True)
time.sleep(60)
"""
"""A pre-fork server: a master and 3 forked workers sharing one loopback listener. It prints
``READY PORT MASTER,WORKER,...``. Saved as a file named ``gunicorn`` and run with an argument, it
looks like a gunicorn master to the parent-chain rules."""


def start_prefork(
    directory: Path, trees: list[Tree], name: str = "prefork.py", *args: str
) -> tuple[int, int, list[int]]:
    """Start :data:`PREFORK` as ``directory/name`` (added to ``trees``): (port, master pid, worker pids)."""
    script = directory / name
    script.write_text(PREFORK)
    tree = Tree([sys.executable, str(script), *args])
    trees.append(tree)
    words = read_line(tree.proc).split()
    master, *workers = (int(p) for p in words[2].split(","))
    return int(words[1]), master, workers


def restart_loop(tmp_path: Path, child_script: Path, trees: list[Tree], delay: str = "0.05") -> tuple[Tree, int, int]:
    """A bash loop restarting ``child_script``'s listener ``delay`` s after it exits, on the port its first run got
    (added to ``trees``): (tree, port, first listener pid). The tree's own pid is the shell's."""
    portfile = tmp_path / "port"
    loop = tmp_path / "serve.sh"
    loop.write_text(
        "while true; do\n"
        f'  "{sys.executable}" "{child_script}" port=$(cat "{portfile}" 2>/dev/null || echo 0)\n'
        f"  sleep {delay}\n"
        "done\n"
    )
    tree = Tree([shutil.which("bash") or "bash", str(loop)], cwd=str(tmp_path))
    trees.append(tree)
    words = read_line(tree.proc).split()
    port, pid = int(words[1]), int(words[2])
    portfile.write_text(str(port))
    return tree, port, pid
