"""``portmon baseline save|check``: real listeners added, removed and changed between a save and a check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portmon.history.baseline import compare

ROOT = Path(__file__).resolve().parent.parent
WAIT = 30.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renames processes through /proc")

# A listener named by its first argument (written to /proc/self/comm); "rename NAME" on stdin renames
# it while it keeps its socket, so the endpoint stays and its process changes. It exits on EOF.
SERVER = r"""
import socket, sys
def name(text):
    with open("/proc/self/comm", "w") as fh:
        fh.write(text)
name(sys.argv[1])
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("READY", s.getsockname()[1], flush=True)
for line in sys.stdin:
    if line.startswith("rename "):
        name(line.split()[1])
        print("RENAMED", flush=True)
"""


class Server:
    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        assert words[:1] == ["READY"], words
        self.port = int(words[1])

    def rename(self, name: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"rename {name}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "RENAMED"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def servers() -> Iterator[Callable[[str], Server]]:
    started: list[Server] = []

    def start(name: str) -> Server:
        server = Server(name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def portmon(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portmon", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=WAIT, stdin=subprocess.DEVNULL)


def test_save_then_check_finds_added_removed_and_changed_listeners(
    tmp_path: Path, servers: Callable[[str], Server]
) -> None:
    tag = f"bl{os.getpid() % 100000}"  # this test's servers only, whatever else listens on the host
    a, b = servers(f"{tag}a"), servers(f"{tag}b")
    file = tmp_path / "surface.json"
    saved = portmon("baseline", "save", str(file), f"proc:{tag}")
    assert saved.returncode == 0, saved.stderr
    doc = json.loads(file.read_text())
    listeners = doc["listeners"]
    assert sorted((r["process"], r["port"]) for r in listeners) == [(f"{tag}a", a.port), (f"{tag}b", b.port)]
    assert all(set(r) == {"proto", "family", "address", "port", "process", "user", "exe", "manager"} for r in listeners)
    assert all(r["exe"] and os.path.basename(r["exe"]).startswith("python") for r in listeners)
    same = portmon("baseline", "check", str(file))
    assert (same.returncode, same.stdout.startswith("same as")) == (0, True), same.stdout + same.stderr

    c = servers(f"{tag}c")
    b.stop()
    a.rename(f"{tag}z")
    got = portmon("baseline", "check", str(file), "--json")
    assert got.returncode == 1, got.stderr
    diff = json.loads(got.stdout)
    assert diff["same"] is False
    assert [(r["process"], r["port"]) for r in diff["added"]] == [(f"{tag}c", c.port)]
    assert [(r["process"], r["port"]) for r in diff["removed"]] == [(f"{tag}b", b.port)]
    (changed,) = diff["changed"]
    assert changed["port"] == a.port
    assert [r["process"] for r in changed["before"]] == [f"{tag}a"]
    assert [r["process"] for r in changed["after"]] == [f"{tag}z"]
    text = portmon("baseline", "check", str(file))
    assert text.returncode == 1
    kinds = sorted(line.split()[0] for line in text.stdout.splitlines())
    assert kinds == ["added", "changed", "removed"]
    # Saving again makes the new surface the baseline.
    assert portmon("baseline", "save", str(file), f"proc:{tag}").returncode == 0
    assert portmon("baseline", "check", str(file)).returncode == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ('{"format": "other"}', "is not a portmon baseline"),
        ('{"format": "portmon-baseline", "version": 1, "listeners": [{"port": 1}]}', "lacks one of"),
    ],
)
def test_a_missing_or_broken_baseline_is_exit_2_with_one_line_naming_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    file = tmp_path / "baseline.json"
    if content is not None:
        file.write_text(content)
    got = portmon("baseline", "check", str(file))
    assert got.returncode == 2
    assert got.stderr.count("\n") == 1 and str(file) in got.stderr and message in got.stderr
    assert "Traceback" not in got.stderr


def test_compare_groups_by_endpoint() -> None:
    def rec(port: int, process: str) -> dict[str, object]:
        return {"proto": "tcp", "family": 4, "address": "0.0.0.0", "port": port, "process": process, "user": "u",
                "exe": None, "manager": None}

    diff = compare([rec(80, "nginx"), rec(80, "nginx-worker"), rec(22, "sshd")],
                   [rec(80, "nginx-worker"), rec(80, "nginx"), rec(22, "dropbear"), rec(443, "nginx")])
    assert diff["added"] == [rec(443, "nginx")]
    assert diff["removed"] == []
    assert [(c["port"], c["before"], c["after"]) for c in diff["changed"]] == [(22, [rec(22, "sshd")],
                                                                                [rec(22, "dropbear")])]
