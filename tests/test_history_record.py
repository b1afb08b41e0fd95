"""``portmon record`` and ``portmon history`` as real processes, recording real listeners on loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from listener_child import ListenerChild

from portmon.history.queries import IntervalRecord, find_intervals
from portmon.history.store import open_db
from portmon.query.filters import parse_filter

ROOT = Path(__file__).resolve().parent.parent
WAIT = 120.0
"""Seconds to wait for a condition before failing (a safety net, never a measured time)."""
POLL = 0.02

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="records with the Linux collector")


def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL)


def portmon(*argv: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "portmon", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class RecorderProcess:
    """``portmon record`` running in a child process; its stderr lines are collected by a thread."""

    def __init__(self, db: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", "record", "--db", str(db), "--interval", "0.1",
             "--flush-every", "0", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: any("recording" in line for line in self.lines) or self.proc.poll() is not None,
                 "the recorder to start")
        assert self.proc.poll() is None, self.lines

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "history.sqlite3"


@pytest.fixture
def recorders() -> Iterator[Callable[..., RecorderProcess]]:
    started: list[RecorderProcess] = []

    def start(db: Path, *args: str) -> RecorderProcess:
        rec = RecorderProcess(db, *args)
        started.append(rec)
        return rec

    yield start
    for rec in started:
        rec.stop()


def intervals(db: Path, terms: str = "") -> list[IntervalRecord]:
    conn = open_db(db, create=False)
    try:
        return find_intervals(conn, parse_filter(terms))
    finally:
        conn.close()


def test_history_at_says_who_held_a_real_listener_inside_its_interval_and_nobody_outside(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild]
) -> None:
    rec = recorders(db)
    child = spawn("history-test-marker")
    port = f":{child.port}"
    opened = wait_for(lambda: intervals(db, port), "the listener's interval")[0]
    assert opened.closed is None and [h.pid for h in opened.holders] == [child.pid]
    inside = portmon("history", "--db", str(db), "--at", "now", port)
    assert inside.returncode == 0, inside.stderr
    assert f"pid {child.pid}" in inside.stdout and "history-test-marker" in inside.stdout
    assert "open" in inside.stdout
    child.stop()
    closed = wait_for(lambda: [r for r in intervals(db, port) if r.closed is not None], "the interval to close")[0]
    assert closed.end_reason == "closed" and closed.opened == opened.opened
    middle = (closed.opened + closed.closed) / 2  # type: ignore[operator]
    for when, code in ((middle, 0), (closed.opened - 0.5, 1), (closed.closed + 0.001, 1)):  # type: ignore[operator]
        got = portmon("history", "--db", str(db), "--at", f"@{when}", port, "--json")
        assert got.returncode == code, (when, got.stdout, got.stderr)
        answer = json.loads(got.stdout)
        assert len(answer) == code ^ 1
    answer = json.loads(portmon("history", "--db", str(db), "--at", f"@{middle}", port, "--json").stdout)[0]
    assert {"proto", "family", "local_addr", "local_port", "state", "pid", "process", "user", "cmdline", "opened",
            "closed", "holders"} <= set(answer)
    assert (answer["proto"], answer["local_port"], answer["state"], answer["pid"]) == (
        "tcp", child.port, "LISTEN", child.pid)
    assert "history-test-marker" in answer["cmdline"]
    assert answer["closed"] is not None and answer["holders"][0]["pid"] == child.pid
    nobody = portmon("history", "--db", str(db), "--at", f"@{closed.opened - 0.5}", port)
    assert nobody.returncode == 1 and "no socket matching" in nobody.stdout
    assert rec.terminate() == 0


def test_history_lists_newest_first_and_reports_bad_input_in_one_line(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild]
) -> None:
    rec = recorders(db)
    first = spawn()
    wait_for(lambda: intervals(db, f":{first.port}"), "the first listener")
    second = spawn()
    wait_for(lambda: intervals(db, f":{second.port}"), "the second listener")
    assert rec.terminate() == 0
    got = portmon("history", "--db", str(db), "--json", f"pid:{first.pid},{second.pid}")
    assert got.returncode == 0
    assert [r["pid"] for r in json.loads(got.stdout)] == [second.pid, first.pid]
    assert all(r["closed"] is not None for r in json.loads(got.stdout))  # the recorder stopped
    for argv in (["--at", "tomorrowish"], ["--since", "2h", "--until", "3h"], ["port:x"]):
        bad = portmon("history", "--db", str(db), *argv)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    missing = portmon("history", "--db", str(db.with_name("none.sqlite3")))
    assert missing.returncode == 1 and "no history database" in missing.stderr


SECRETS = ("s3cr3t-one", "s3cr3t-two", "s3cr3t-three", "s3cr3t-four", "s3cr3t-five", "s3cr3t-six")


def test_secrets_in_command_lines_never_reach_the_database_file_or_its_wal(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild]
) -> None:
    rec = recorders(db)
    child = spawn("--password=s3cr3t-one", "--api-key", "s3cr3t-two", "token=s3cr3t-three", "-ps3cr3t-four",
                  "postgres://bob:s3cr3t-five@db.example/app", "AWS_SECRET_ACCESS_KEY=s3cr3t-six", "visible-marker")
    got = wait_for(lambda: intervals(db, f":{child.port}"), "the listener's interval")[0]
    argv = got.holders[0].cmdline
    assert argv is not None and "visible-marker" in argv  # the command line was stored...
    assert "postgres://bob:***@db.example/app" in argv and "-p***" in argv
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert any(p.name.endswith("-wal") for p in files)  # ... and the WAL is there to search too

    def leaked() -> list[str]:
        blobs = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
        return [s for s in SECRETS if s.encode() in blobs]

    assert leaked() == []
    out = portmon("history", "--db", str(db), "--json", f":{child.port}").stdout
    assert "visible-marker" in out and not [s for s in SECRETS if s in out]
    assert rec.terminate() == 0
    assert leaked() == []


CHURN = r"""
import socket, sys, time
print("READY", flush=True)
while True:
    held = []
    for _ in range(20):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        held.append(s)
    time.sleep(0.2)  # a batch is always open: every scan sees new listeners and misses old ones
    for s in held:
        s.close()
"""


def test_kill_9_mid_write_leaves_a_sound_database_and_the_next_recorder_cleans_up(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild], tmp_path: Path
) -> None:
    steady = spawn()
    churn = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             text=True)
    try:
        assert churn.stdout is not None and churn.stdout.readline().strip() == "READY"
        mine = f"pid:{churn.pid},{steady.pid}"
        first_id: int | None = None
        for round_ in range(3):
            rec = recorders(db, mine)
            before = len(intervals(db, f"pid:{churn.pid}"))
            # Killed while it writes a churning load: a write lands every 100 ms.
            wait_for(lambda: len(intervals(db, f"pid:{churn.pid}")) >= before + 40, "churned intervals")  # noqa: B023
            rec.kill()
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
            ids = {r.id for r in intervals(db, f":{steady.port}")}
            assert len(ids) == 1, f"round {round_}: the steady listener has one interval, taken over each time"
            first_id = first_id or ids.pop()
    finally:
        churn.kill()
        churn.wait(WAIT)
    # No recorder runs now: what the dead one left open ended at its last observation.
    nobody = portmon("history", "--db", str(db), "--at", "now", f":{steady.port}")
    assert nobody.returncode == 1, nobody.stdout
    left = json.loads(portmon("history", "--db", str(db), "--json", f":{steady.port}").stdout)
    assert [(r["closed"] is not None, r["end_reason"]) for r in left] == [(True, "lost")]
    rec = recorders(db, mine)

    def cleaned_up() -> bool:
        open_ones = [r for r in intervals(db, mine) if r.closed is None]
        return [r.local_port for r in open_ones] == [steady.port]

    wait_for(cleaned_up, "the intervals the killed recorders left open to be closed")
    reasons = {r.end_reason for r in intervals(db, f"pid:{churn.pid}")}
    assert reasons <= {"closed", "lost"} and "closed" in reasons
    assert [r.id for r in intervals(db, f":{steady.port}")] == [first_id]
    assert rec.terminate() == 0


def test_a_second_recorder_on_the_same_database_is_refused_and_the_first_goes_on(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild]
) -> None:
    rec = recorders(db)
    second = portmon("record", "--db", str(db), "--interval", "0.1")
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"portmon: another recorder (pid {rec.proc.pid}) is already recording into {db}; "
        "stop it first, or give this one another --db"
    )
    child = spawn()
    wait_for(lambda: intervals(db, f":{child.port}"), "the first recorder to go on recording")
    assert rec.terminate() == 0
    assert "portmon: recording stopped" in rec.lines
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    conn.close()
    # Released: a new recorder may start.
    again = recorders(db)
    assert again.terminate() == 0


def test_the_database_and_its_companions_are_private(
    db: Path, recorders: Callable[..., RecorderProcess], spawn: Callable[..., ListenerChild]
) -> None:
    old = os.umask(0o022)
    try:
        rec = recorders(db)
        child = spawn()
        wait_for(lambda: intervals(db, f":{child.port}"), "an interval")
        modes = {p.name: p.stat().st_mode & 0o777 for p in db.parent.iterdir() if p.name.startswith(db.name)}
        assert set(modes.values()) == {0o600}, modes
        assert rec.terminate() == 0
    finally:
        os.umask(old)


def test_ctrl_c_ends_the_recorder_cleanly(db: Path, recorders: Callable[..., RecorderProcess]) -> None:
    rec = recorders(db)
    rec.proc.send_signal(signal.SIGINT)
    assert rec.proc.wait(WAIT) == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM sessions WHERE ended IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM intervals WHERE closed IS NULL").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize(
    "argv",
    [["--keep", "forever"], ["--max-size", "lots"], ["port:abc"], ["--flush-every", "-1"], ["--interval", "0"]],
)
def test_bad_record_arguments_are_one_line_and_exit_2(db: Path, argv: list[str]) -> None:
    got = portmon("record", "--db", str(db), *argv)
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and "Traceback" not in got.stderr
    assert not db.exists()
