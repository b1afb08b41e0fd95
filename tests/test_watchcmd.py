"""``portmon watch``: scripted scans in-process, and the real command watching listeners this test starts."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portmon.cli import main as cli
from portmon.cli import watch as watchcmd
from portmon.collect.fake import ScriptedCollector
from portmon.model import ESTABLISHED, LISTEN, Holder, Snapshot, Socket

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_268_800.0
WAIT = 30.0
"""Seconds to wait for an expected line before giving up (a safety net, never a measured time)."""


# -- in-process, with a scripted collector ----------------------------------------------------------


def sock(port: int, state: str | None = LISTEN, *, remote: int | None = None, name: str = "python3",
         pid: int = 4121, proto: str = "tcp", inode: int = 0) -> Socket:
    return Socket(
        proto=proto,
        family=4,
        local_addr="127.0.0.1" if remote else "0.0.0.0",
        local_port=port,
        remote_addr="127.0.0.1" if remote else None,
        remote_port=remote,
        state=state if proto == "tcp" else None,
        holders=(Holder(pid, name, "alice"),),
        inode=inode or port * 10 + (remote or 0),
    )


def snap(*socks: Socket, at: float) -> Snapshot:
    return Snapshot(sockets=tuple(socks), taken_at=at, collector="fake")


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run_scripted(
    monkeypatch: pytest.MonkeyPatch, steps: list[Any], *argv: str, asked: list[bool] | None = None
) -> tuple[int, str, str]:
    """Run ``watch`` in-process over scripted scans; the script ends with Ctrl-C (a KeyboardInterrupt).

    ``asked`` gets the ``counters`` argument of each collector the command asks for.
    """
    collector = ScriptedCollector([*steps, KeyboardInterrupt()])

    def make(self: object, counters: bool = True) -> ScriptedCollector:
        if asked is not None:
            asked.append(counters)
        return collector

    monkeypatch.setattr(cli.Context, "collector", make)
    monkeypatch.setattr(watchcmd.time, "sleep", lambda seconds: None)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["watch", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


WEB = sock(8000)
CONN = sock(8000, ESTABLISHED, remote=52714)


def test_baseline_then_events_as_text_and_ctrl_c_exits_zero(monkeypatch: pytest.MonkeyPatch, utc: None) -> None:
    dns = sock(5353, proto="udp", name="avahi-daemon", pid=640)
    steps = [snap(WEB, at=T0), snap(WEB, CONN, dns, at=T0 + 63), snap(CONN, dns, at=T0 + 64)]
    code, out, err = run_scripted(monkeypatch, steps)
    assert code == 0
    # The connection is not a listener: left out without --all. The existing listener is the baseline.
    assert out.splitlines() == [
        "12:01:03 open  udp4 0.0.0.0:5353 avahi-daemon (640)",
        "12:01:04 close tcp4 0.0.0.0:8000 LISTEN python3 (4121)",
    ]
    assert err.splitlines() == ["portmon: watching 1 listening socket for changes every 1 s; Ctrl-C stops"]


def test_all_includes_connections_and_state_changes(monkeypatch: pytest.MonkeyPatch, utc: None) -> None:
    closing = sock(8000, "CLOSE_WAIT", remote=52714)
    steps = [snap(WEB, at=T0), snap(WEB, CONN, at=T0 + 1), snap(WEB, closing, at=T0 + 2)]
    code, out, _ = run_scripted(monkeypatch, steps, "--all")
    assert code == 0
    assert out.splitlines() == [
        "12:00:01 open  tcp4 127.0.0.1:8000 -> 127.0.0.1:52714 ESTABLISHED python3 (4121)",
        "12:00:02 state tcp4 127.0.0.1:8000 -> 127.0.0.1:52714 CLOSE_WAIT (was ESTABLISHED) python3 (4121)",
    ]


def test_json_lines_and_filter_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    other = sock(9000, name="nginx", pid=77)
    steps = [snap(at=T0), snap(WEB, other, at=T0 + 1), snap(at=T0 + 2)]
    code, out, _ = run_scripted(monkeypatch, steps, "--json", "proc:python")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["event"], r["local_port"], r["pid"], r["process"]) for r in records] == [
        ("open", 8000, 4121, "python3"),
        ("close", 8000, 4121, "python3"),
    ]
    assert records[0]["new_state"] == LISTEN and records[1]["old_state"] == LISTEN
    assert all(dt.datetime.fromisoformat(r["time"]).tzinfo is not None for r in records)


@pytest.mark.parametrize(("argv", "counters"), [((), False), (("--all",), False), (("--json",), True)])
def test_only_the_json_stream_asks_for_traffic_counters(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], counters: bool
) -> None:
    # The text lines show no counters, so the text stream saves reading tcp_info; --json prints them.
    asked: list[bool] = []
    code, _, _ = run_scripted(monkeypatch, [snap(WEB, at=T0)], *argv, asked=asked)
    assert code == 0
    assert asked == [counters]


def test_a_failing_scan_is_one_line_on_stderr_and_watching_goes_on(monkeypatch: pytest.MonkeyPatch, utc: None) -> None:
    boom = RuntimeError("netlink socket closed")
    steps = [snap(at=T0), boom, boom, boom, snap(WEB, at=T0 + 5)]
    code, out, err = run_scripted(monkeypatch, steps)
    assert code == 0
    assert out.splitlines() == ["12:00:05 open  tcp4 0.0.0.0:8000 LISTEN python3 (4121)"]
    failures = [line for line in err.splitlines() if "scan failed" in line]
    assert failures == [
        "portmon: warning: scan failed: RuntimeError: netlink socket closed; still watching, retrying every 1 s"
    ]
    assert "portmon: warning: scans work again" in err.splitlines()


def test_untrusted_names_are_escaped_in_text_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    evil = sock(9999, name="[/]\x1b[2Jevil\n", pid=31338)
    code, out, _ = run_scripted(monkeypatch, [snap(at=T0), snap(evil, at=T0 + 1)])
    assert code == 0
    assert "\x1b" not in out and out.count("\n") == 1
    assert "[/]\\x1b[2Jevil\\n (31338)" in out


def test_an_invalid_filter_is_exit_2_before_any_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = ScriptedCollector([RuntimeError("must not be scanned")])
    monkeypatch.setattr(cli.Context, "collector", lambda self, counters=True: collector)
    err = io.StringIO()
    assert cli.main(["watch", "port:99999"], stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith("portmon: invalid filter term 'port:99999'")
    assert err.getvalue().count("\n") == 1
    assert collector.calls == 0


def test_interval_is_accepted_after_the_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_scripted(monkeypatch, [snap(at=T0)], "--interval", "0.25")
    assert code == 0 and "every 0.25 s" in err


# -- the real command, watching real listeners on loopback ---------------------------------------------

LISTENER = textwrap.dedent(
    """
    import socket, sys
    name = sys.argv[1]
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[2])))
    s.listen()
    print(s.getsockname()[1], flush=True)
    sys.stdin.read()
    """
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGINT on a child process group")


class Lines:
    """Reads a child's stream on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, stream: Any) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: Any, what: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {WAIT:g} s; saw {self.seen!r}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended before {what}; saw {self.seen!r}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self) -> list[str]:
        """Everything up to the end of the stream (the child has exited)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return self.seen
            self.seen.append(line)
        raise AssertionError(f"stream did not end within {WAIT:g} s; saw {self.seen!r}")


class Watch:
    """``portmon watch`` running in a child process this test started (and only ever signals)."""

    def __init__(self, *args: str, read_stdout: bool = True, sigint_ignored: bool = False) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", "watch", "--interval", "0.2", *args],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # As a shell without job control starts a background command: SIGINT ignored.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )
        self.out = Lines(self.proc.stdout) if read_stdout else None
        self.err = Lines(self.proc.stderr)
        # The notice comes after the baseline scan: from here on, every change is reported.
        self.err.wait_for(lambda line: line.startswith("portmon: watching"), "start notice")

    @property
    def lines(self) -> Lines:
        """Its standard output, line by line."""
        assert self.out is not None
        return self.out

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)


class Listener:
    """A TCP listener on 127.0.0.1 in a child process; it exits when its stdin closes."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LISTENER, name, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(WAIT)


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Everything the test starts, stopped at the end whatever happens."""
    things: list[Any] = []
    yield things
    for thing in things:
        if isinstance(thing, Watch):
            thing.stop()
        else:
            thing.close()


def _expected_name(name: str, pid: int) -> str:
    import psutil

    return psutil.Process(pid).name() if sys.platform != "linux" else name


@posix_only
def test_watch_json_sees_a_listener_open_and_close(started: list[Any]) -> None:
    # Our namespace only: a busy container's sockets (other ones on the same port numbers, and the time
    # reading them adds to each scan) are not what this test is about.
    watch = Watch("--json", "--netns", "host")
    started.append(watch)
    listener = Listener("pm-watch-json")
    started.append(listener)
    name = _expected_name("pm-watch-json", listener.pid)

    def about(kind: str) -> Any:
        return lambda line: (lambda r: r["event"] == kind and r["local_port"] == listener.port)(json.loads(line))

    opened = json.loads(watch.lines.wait_for(about("open"), "open event"))
    assert opened["pid"] == listener.pid and opened["process"] == name
    assert opened["proto"] == "tcp" and opened["local_addr"] == "127.0.0.1" and opened["state"] == LISTEN
    assert opened["new_state"] == LISTEN

    listener.close()
    closed = json.loads(watch.lines.wait_for(about("close"), "close event"))
    assert closed["pid"] == listener.pid and closed["process"] == name and closed["old_state"] == LISTEN

    assert watch.interrupt() == 0
    assert "Traceback" not in "\n".join(watch.err.seen)


@posix_only
def test_watch_text_with_a_filter_shows_only_matching_listeners(started: list[Any]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watch = Watch(f"lport:{port}")
    started.append(watch)
    other = Listener("pm-watch-other")
    started.append(other)
    mine = Listener("pm-watch-text", port)
    started.append(mine)
    name = _expected_name("pm-watch-text", mine.pid)
    pattern = rf"^\d\d:\d\d:\d\d open  tcp4 127\.0\.0\.1:{port} LISTEN {re.escape(name)} \({mine.pid}\)"
    watch.lines.wait_for(lambda line: re.match(pattern, line) is not None, "open line")
    mine.close()
    other.close()
    watch.lines.wait_for(lambda line: f" close tcp4 127.0.0.1:{port} LISTEN" in line, "close line")
    assert watch.interrupt() == 0
    assert not any(str(other.port) in line for line in watch.lines.seen)


@posix_only
def test_a_closed_pipe_ends_watch_quietly(started: list[Any]) -> None:
    watch = Watch("--all", read_stdout=False)
    started.append(watch)
    assert watch.proc.stdout is not None
    watch.proc.stdout.close()  # the reader goes away; the next event written finds the pipe closed
    listener = Listener("pm-watch-pipe")
    started.append(listener)
    assert watch.proc.wait(WAIT) == 0
    # Nothing but the start notice and notes about what portmon cannot see: no traceback, no error.
    assert not [line for line in watch.err.rest() if not line.startswith(("portmon: watching", "portmon: warning:"))]
    assert not any("Traceback" in line or "Error" in line for line in watch.err.seen)


@posix_only
def test_ctrl_c_ends_watch_even_when_started_with_sigint_ignored() -> None:
    watch = Watch(sigint_ignored=True)
    try:
        assert watch.interrupt() == 0
        assert "Traceback" not in "".join(watch.err.rest())
    finally:
        watch.stop()


# -- issue 14: the header count follows the filter; a connection's owner dying while it closes is one event


def test_the_start_notice_counts_what_the_filter_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    other = sock(9000, name="nginx", pid=77)
    third = sock(9100, name="nginx", pid=77)
    code, _, err = run_scripted(monkeypatch, [snap(WEB, other, third, at=T0)], "proc:nginx")
    assert code == 0
    assert err.splitlines() == [
        "portmon: watching 2 listening sockets matching 'proc:nginx' for changes every 1 s; Ctrl-C stops"
    ]
    code, _, err = run_scripted(monkeypatch, [snap(WEB, CONN, other, at=T0)], "--all", ":8000")
    assert err.splitlines()[0].startswith("portmon: watching 2 sockets matching ':8000' ")


def test_an_owner_dying_while_its_connection_closes_is_one_state_event(
    monkeypatch: pytest.MonkeyPatch, utc: None
) -> None:
    # The kernel keeps the connection (same endpoints) but it loses its inode and its process.
    orphan = CONN._replace(state="TIME_WAIT", holders=(), owner_note="kernel", inode=0)
    code, out, _ = run_scripted(monkeypatch, [snap(WEB, CONN, at=T0), snap(WEB, orphan, at=T0 + 1)], "--all")
    assert code == 0
    assert out.splitlines() == [
        "12:00:01 state tcp4 127.0.0.1:8000 -> 127.0.0.1:52714 TIME_WAIT (was ESTABLISHED) (kernel)",
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e308", "from 0.1 to 3600"),
        ("0.001", "from 0.1 to 3600"),
        ("nan", "from 0.1 to 3600"),
        ("9" * 5000, "(5000 characters)"),
        ("1\x1b[2J", "'1\\x1b[2J'"),
    ],
)
def test_the_interval_has_a_sane_range_named_in_the_error(value: str, message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["watch", "--interval", value], stdout=out, stderr=err) == 2
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and message in lines[0] and "--interval" in lines[0] and "\x1b" not in lines[0]
    assert "(see 'portmon watch --help')" in lines[0]


def test_interval_is_offered_only_where_it_does_something(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("list", "who", "why", "kill"):
        assert cli.main([command, "--help"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
        shown = capsys.readouterr().out
        assert "--interval" not in shown, command
        assert "--registry" in shown and "--collector" in shown
    assert cli.main(["watch", "--help"], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert "--interval" in capsys.readouterr().out
