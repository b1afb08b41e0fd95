"""Faults through the collectors and the live app: unreadable or unparsable socket tables, psutil refusing
the system-wide call, owners that vanish or turn zombie, scans slower than the interval, a burst of keys,
and the terminal resized again and again while refreshes keep coming."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections import namedtuple
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
from hostile import portmon_env
from ptyterm import HAVE_PTY, Terminal
from textual import events
from textual.drivers.headless_driver import HeadlessDriver
from textual.geometry import Size
from textual.pilot import Pilot
from textual.widgets import Static

from portmon.collect import tables as procnet
from portmon.collect.choose import default_collector
from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot, synthetic_snapshot
from portmon.collect.procfs import ProcfsCollector
from portmon.collect.psutil_collector import PsutilCollector
from portmon.model import Holder, Snapshot, Socket
from portmon.procinfo import read_process
from portmon.ui.app import PortmonApp
from portmon.ui.monitor import MonitorScreen

LINUX = sys.platform.startswith("linux")
linux_only = pytest.mark.skipif(not LINUX, reason="reads /proc (Linux)")
SIZE = (140, 40)


def run(app: PortmonApp, body: Callable[[Pilot, MonitorScreen], Awaitable[None]], size: tuple[int, int] = SIZE) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor)

    asyncio.run(main())


async def until(pilot: Pilot, predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Let the app run until ``predicate`` holds (fails after ``timeout`` seconds: a hang, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await pilot.pause(0.01)


def banner(screen: MonitorScreen) -> str:
    widget = screen.query_one("#banner", Static)
    return str(widget.content) if widget.has_class("shown") else ""


def status(screen: MonitorScreen) -> str:
    return str(screen.query_one("#status", Static).content)


# -- a small /proc for the real Linux collector -----------------------------------------------------------

_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _row(i: int, local: str, remote: str, state: int, inode: int) -> str:
    return f"   {i}: {local} {remote} {state:02X} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0\n"


class SmallProc:
    """A /proc tree with one listener (inode 5001, held by pid 4242) and one TIME_WAIT row."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "net").mkdir(parents=True)
        (root / "4242" / "fd").mkdir(parents=True)
        (root / "4242" / "stat").write_text("4242 (server) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0 0\n")
        os.symlink("socket:[5001]", root / "4242" / "fd" / "3")
        for name in ("tcp6", "udp", "udp6"):
            (root / "net" / name).write_text(_HEADER)
        self.good()

    def good(self) -> None:
        # 127.0.0.1:8080 LISTEN, and 127.0.0.1:8080 -> 127.0.0.1:40000 TIME_WAIT (little-endian hex).
        (self.root / "net" / "tcp").write_text(
            _HEADER
            + _row(0, "0100007F:1F90", "00000000:0000", 0x0A, 5001)
            + _row(1, "0100007F:1F90", "0100007F:9C40", 0x06, 0)
        )

    def garbage(self, text: str) -> None:
        with open(self.root / "net" / "tcp", "a") as f:
            f.write(text + "\n")


@pytest.fixture
def small_proc(tmp_path: Path) -> SmallProc:
    if sys.byteorder != "little":
        pytest.skip("the hand-written /proc/net rows are little-endian")
    return SmallProc(tmp_path / "proc")


def _rows(screen: MonitorScreen) -> list[tuple[int, int | None]]:
    return sorted((s.local_port, s.remote_port or 0) for s in screen.table.rows)  # type: ignore[misc]


def test_unreadable_proc_net_tcp_is_reported_and_the_last_good_rows_stay(
    small_proc: SmallProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    denied = {"on": False}
    real_open = os.open

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        # What an unprivileged container sees when /proc/net is masked (root would not hit a mode bit).
        if denied["on"] and str(path).endswith("/net/tcp"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(procnet.os, "open", guarded_open)
    collector = ProcfsCollector(procfs=str(small_proc.root))
    app = PortmonApp(collector, poll=False, process_reader=demo_process, clock=lambda: DEMO_TIME)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        good = _rows(screen)
        assert good == [(8080, 0), (8080, 40000)] and banner(screen) == ""
        assert screen.table.rows[0].holders[0].name == "server"
        denied["on"] = True
        await pilot.press("r")
        assert "scan failed: PermissionError" in banner(screen) and "/net/tcp" in banner(screen)
        assert "showing the last good scan" in banner(screen)
        assert _rows(screen) == good
        denied["on"] = False
        await pilot.press("r")
        assert banner(screen) == ""
        assert _rows(screen) == good
        assert screen.table.rows[0].holders[0].name == "server", "holders survive a failed scan"

    run(app, body)


def test_an_unparsable_table_is_reported_escaped_and_the_last_good_rows_stay(small_proc: SmallProc) -> None:
    app = PortmonApp(ProcfsCollector(procfs=str(small_proc.root)), poll=False, process_reader=demo_process)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        good = _rows(screen)
        small_proc.garbage("   9: \x1b]0;owned\x07 [@click=app.quit]x[/] \u202e")
        await pilot.press("r")
        text = banner(screen)
        assert "scan failed: ValueError: unreadable /proc/net row" in text
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
        assert _rows(screen) == good
        assert screen.app.is_running
        small_proc.good()
        await pilot.press("r")
        assert banner(screen) == "" and _rows(screen) == good

    run(app, body)


class GatedCollector:
    """Plays a script, one scan per ``release()``, and counts scans that run at the same time."""

    name = "gated"

    def __init__(self, steps: list[Any]) -> None:
        self._script = ScriptedCollector(steps)
        self._gate = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.active = 0
        self.most_at_once = 0
        self.started = 0

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()

    def scan(self) -> Snapshot:
        with self._lock:
            self.active += 1
            self.started += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            self._gate.acquire()
            return self._script.scan()
        finally:
            with self._lock:
                self.active -= 1


@pytest.mark.parametrize(
    "fault, shown",
    [
        (RuntimeError("parse error at row 12"), "scan failed: RuntimeError: parse error at row 12"),
        (PermissionError(13, "Permission denied", "/proc/net/tcp"), "scan failed: PermissionError"),
        (psutil.AccessDenied(), "scan failed: AccessDenied"),
        (OSError(24, "Too many open files"), "scan failed: OSError: [Errno 24] Too many open files"),
    ],
    ids=["parse-error", "permission", "access-denied", "emfile"],
)
def test_the_poller_reports_each_fault_keeps_the_rows_and_recovers(fault: BaseException, shown: str) -> None:
    first = demo_snapshot()
    collector = GatedCollector([first, fault, fault, first._replace(taken_at=DEMO_TIME + 3)])
    app = PortmonApp(collector, interval=0.01, process_reader=demo_process, clock=lambda: DEMO_TIME)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        rows = len(first.sockets)

        def scanned(count: int) -> bool:
            return screen.scans >= count

        for scans, expect in ((1, ""), (2, shown), (3, shown), (4, "")):
            collector.release()
            await until(pilot, partial(scanned, scans), f"scan {scans}")
            assert expect in banner(screen) if expect else banner(screen) == ""
            assert len(screen.table.rows) == rows
        assert collector.most_at_once == 1
        collector.release(100)  # let the poller run freely until the app exits

    run(app, body)


# -- psutil refusing the system-wide call (macOS without root) -------------------------------------------------


Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "fd family type laddr raddr status")
"""Shaped like psutil's own named tuples (the collector reads them by attribute)."""


class _FakeProcess:
    def __init__(self, pid: int, conns: list[Any] | None = None, error: BaseException | None = None) -> None:
        self.pid = pid
        self._conns = conns or []
        self._error = error

    def net_connections(self, kind: str = "inet") -> list[Any]:
        if self._error is not None:
            raise self._error
        return self._conns


def test_access_denied_for_the_whole_call_falls_back_to_own_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    me = 999_997  # one of this user's processes (not the test's own: portmon's pid is never a holder)
    own = Conn(
        fd=3, family=socket.AF_INET, type=socket.SOCK_STREAM, laddr=Addr("127.0.0.1", 45678), raddr=(),
        status=psutil.CONN_LISTEN,
    )

    def refuse(kind: str = "inet") -> list[Any]:
        raise psutil.AccessDenied(msg="net_connections needs root here")

    procs = [
        _FakeProcess(me, [own]),
        _FakeProcess(1, error=psutil.AccessDenied(pid=1)),
        _FakeProcess(999_999, error=psutil.NoSuchProcess(pid=999_999)),
        _FakeProcess(999_998, error=psutil.ZombieProcess(pid=999_998)),
    ]
    monkeypatch.setattr(psutil, "net_connections", refuse)
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: iter(procs))
    collector = PsutilCollector(expand_holders=False)
    snap = collector.scan()
    assert snap.warning is not None and "only your own processes" in snap.warning
    assert [(s.local_port, s.pid) for s in snap.sockets] == [(45678, me)]

    app = PortmonApp(collector, poll=False, process_reader=demo_process)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        assert "access denied for the system-wide socket list" in banner(screen)
        assert [s.local_port for s in screen.table.rows] == [45678]

    run(app, body)


# -- owners that vanish or turn zombie ---------------------------------------------------------------------


_LISTEN = (
    "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


def _listener() -> tuple[subprocess.Popen[str], Socket]:
    proc = subprocess.Popen([sys.executable, "-c", _LISTEN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    p = psutil.Process(proc.pid)
    holder = Holder(pid=proc.pid, name=p.name(), user=p.username(), create_time=p.create_time())
    return proc, Socket("tcp", 4, "127.0.0.1", port, state="LISTEN", holders=(holder,), inode=1)


def _open_detail_and_kill(expect_detail: str) -> Callable[[Pilot, MonitorScreen], Awaitable[None]]:
    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("d")
        await until(pilot, lambda: expect_detail in screen.detail.text, f"{expect_detail!r} in the detail pane")
        # The kill key on the vanished owner: the dialog opens, refuses or notes, and cancels cleanly.
        await pilot.press("k")
        await until(pilot, lambda: screen.app.screen is not screen, "the kill dialog")
        await pilot.press("escape")
        await until(pilot, lambda: screen.app.screen is screen, "the dialog to close")
        assert screen.app.is_running

    return body


@linux_only
def test_an_owner_that_exits_between_the_scan_and_the_detail_read() -> None:
    proc, sock = _listener()
    snapshot = Snapshot(sockets=(sock,), taken_at=time.time(), collector="fake")
    proc.kill()
    proc.wait(10)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()
    proc.stdin.close()
    app = PortmonApp(ScriptedCollector([snapshot]), interval=3600, process_reader=read_process)
    run(app, _open_detail_and_kill(f"process {sock.pid} has exited"))


def test_a_pid_that_now_names_another_process_is_not_shown_as_the_owner() -> None:
    me = psutil.Process()
    impostor = Holder(pid=me.pid, name="server", user="alice", create_time=me.create_time() - 3600)
    sock = Socket("tcp", 4, "127.0.0.1", 8123, state="LISTEN", holders=(impostor,), inode=1)
    app = PortmonApp(
        ScriptedCollector([Snapshot(sockets=(sock,), taken_at=time.time())]), interval=3600, process_reader=read_process
    )

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await pilot.press("d")
        await until(pilot, lambda: "now belongs to a different process" in screen.detail.text, "the identity mismatch")
        assert "Command" not in screen.detail.text, "the other process's details are not shown"

    run(app, body)


@linux_only
def test_a_zombie_owner() -> None:
    proc, sock = _listener()
    snapshot = Snapshot(sockets=(sock,), taken_at=time.time(), collector="fake")
    try:
        assert proc.stdin is not None
        proc.stdin.close()  # the child exits; nobody reaps it yet, so it stays a zombie
        zombie = psutil.Process(proc.pid)
        deadline = time.monotonic() + 10
        while zombie.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child did not become a zombie"
            time.sleep(0.01)
        # The real collector scans fine with a zombie around, and does not call it a holder.
        real = default_collector().scan()
        assert not any(h.pid == proc.pid for s in real.sockets for h in s.holders)
        app = PortmonApp(ScriptedCollector([snapshot]), interval=3600, process_reader=read_process)
        run(app, _open_detail_and_kill("zombie"))
    finally:
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


# -- scans slower than the interval ----------------------------------------------------------------------


class SlowCollector:
    """Each scan takes ``seconds``; counts scans that overlap; the scan after ``block_after`` hangs."""

    name = "slow"

    def __init__(self, seconds: float, block_after: int) -> None:
        self.seconds = seconds
        self.block_after = block_after
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.active = 0
        self.most_at_once = 0
        self.finished = 0
        self.started = 0

    def scan(self) -> Snapshot:
        with self._lock:
            self.active += 1
            self.started += 1
            self.most_at_once = max(self.most_at_once, self.active)
            n = self.started
        try:
            if n > self.block_after:
                self.release.wait(60)
            else:
                time.sleep(self.seconds)
            return synthetic_snapshot(200, seed=n, taken_at=time.time())
        finally:
            with self._lock:
                self.active -= 1
                self.finished += 1


def test_scans_three_times_the_interval_never_overlap_and_q_does_not_wait_for_one() -> None:
    interval = 0.05
    collector = SlowCollector(seconds=3 * interval, block_after=6)
    app = PortmonApp(collector, interval=interval, process_reader=demo_process)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        # Everything that could start a scan, pressed while scans run: refresh, pause/resume, view changes.
        while collector.started <= collector.block_after:
            await pilot.press("r", "space", "r", "space", "l", "i", "r")
            await pilot.pause(0.02)
        await until(pilot, lambda: collector.active == 1, "the hanging scan")
        assert collector.most_at_once == 1, "two scans ran at once"
        assert "slowed from 0.05 s: slow scans" in status(screen)
        assert screen.scans >= 3 and screen.view is not None and screen.view.total == 200
        await pilot.press("q")

    try:
        run(app, body)
        # run_test returned: the app exited while the scan was still hanging.
        assert collector.active == 1 and not collector.release.is_set()
    finally:
        collector.release.set()


# -- input and output under load ------------------------------------------------------------------------------


def test_keys_typed_in_a_burst_after_slash_all_go_to_the_filter() -> None:
    # A paste, or fast typing on a busy machine: every key is queued before "/" is handled.
    app = PortmonApp(ScriptedCollector([demo_snapshot()]), poll=False, process_reader=demo_process)

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        for key, char in [("slash", "/"), *((c, c) for c in "proc:l"), ("slash", "/"), ("k", "k")]:
            app.post_message(events.Key(key, char))
        await until(pilot, lambda: screen.query_one("#filter").value == "proc:l/k", "the typed filter")  # type: ignore[attr-defined]
        assert not screen.spec.listening_only, "'l' toggled listening-only instead of being typed"
        assert app.screen is screen, "'k' opened the kill dialog instead of being typed"

    run(app, body)


def _churning(n: int, steps: int) -> list[Snapshot]:
    snaps = [synthetic_snapshot(n, seed=0)]
    for i in range(steps):
        snaps.append(synthetic_snapshot(n, seed=i + 1, churn=0.05, base=snaps[-1]))
    return snaps


_CHARACTERS = {"question_mark": "?", "slash": "/", "escape": "\x1b", "space": " ", "enter": "\r"}


async def press(pilot: Pilot, *keys: str) -> None:
    """Pilot.press, without its wait for an idle CPU after each key (never idle while refreshes keep coming)."""
    for key in keys:
        character = _CHARACTERS.get(key, key if len(key) == 1 else None)
        pilot.app.post_message(events.Key(key, character))
        await pilot.pause(0.01)


async def resize(pilot: Pilot, width: int, height: int) -> None:
    """Pilot.resize_terminal, without its wait for an idle CPU (never idle while refreshes keep coming)."""
    size = Size(width, height)
    driver = pilot.app._driver
    if isinstance(driver, HeadlessDriver):
        driver._size = size
    pilot.app.post_message(events.Resize(size, size))
    await pilot.pause(0.01)


def test_resize_storm_during_refreshes() -> None:
    collector = ScriptedCollector(_churning(500, 30), loop=True)
    app = PortmonApp(collector, interval=0.02, process_reader=demo_process)
    sizes = [(20, 5), (160, 45), (80, 24), (20, 5), (21, 6), (119, 30), (120, 30), (40, 10), (200, 60), (20, 5)]

    async def body(pilot: Pilot, screen: MonitorScreen) -> None:
        await until(pilot, lambda: screen.scans >= 2, "the first refreshes")
        await press(pilot, "d", "down", "down")
        if hasattr(screen, "action_toggle_events"):
            await press(pilot, "e")
        before = screen.scans
        for round_ in range(2):
            for width, height in sizes:
                await resize(pilot, width, height)
            # Also with the help screen, and with the filter focused, on top.
            await press(pilot, "question_mark" if round_ % 2 == 0 else "slash")
            await resize(pilot, 20, 5)
            await resize(pilot, 160, 45)
            await press(pilot, "escape")
        await until(pilot, lambda: screen.scans > before + 5, "refreshes during the storm")
        assert app.screen is screen and app.is_running
        table = screen.table
        assert table.rows and 0 <= table.cursor_row < len(table.rows)
        assert screen.size.width == 160 and screen.size.height == 45

    run(app, body, size=(160, 45))


@pytest.mark.skipif(not HAVE_PTY, reason="needs a POSIX pseudo-terminal")
@linux_only
def test_real_terminal_resized_repeatedly() -> None:
    # SIGWINCH from the kernel, handled by Textual's driver thread, while the real collector refreshes.
    term = Terminal(["--interval", "0.1"], portmon_env({"TERM": "xterm-256color"}))
    try:
        term.wait_for(lambda s: "sockets" in s.text, "the first frame")
        for i in range(30):
            width, height = ((20, 5), (160, 45), (33, 7), (100, 30))[i % 4]
            term.resize(width, height)
            time.sleep(0.02)
        term.resize(150, 40)
        term.send("?")
        term.wait_for(lambda s: "Quit portmon" in s.text, "the help screen at the final size")
        term.send("\x1b")
        term.wait_for(lambda s: "Quit portmon" not in s.text, "the help screen to close")
        term.send("q")
        assert term.proc.wait(30) == 0, term.tail()
    finally:
        term.close()


# -- many processes -------------------------------------------------------------------------------------------

_SPAWNER = (
    "import os, socket, sys\n"
    "r, w = os.pipe()\n"
    "for i in range(int(sys.argv[1])):\n"
    "    if os.fork() == 0:\n"
    "        os.close(w)\n"
    "        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "        s.bind(('127.0.0.1', 0))\n"
    "        os.read(r, 1)\n"
    "        os._exit(0)\n"
    "os.close(r)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@linux_only
def test_the_psutil_collector_reads_the_process_table_once_per_scan_not_once_per_listener(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 30 processes with a UDP socket each: every one is a listener whose family is searched for
    # other holders. psutil's children() reads every process per call; with 2,000 processes and
    # 500 listeners that made one scan take 18 s (bench/many_procs.py).
    spawner = subprocess.Popen(
        [sys.executable, "-c", _SPAWNER, "30"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert spawner.stdout is not None and spawner.stdout.readline().strip() == "ready"
        calls = {"pids": 0, "children": 0}
        real_pids, real_children = psutil.pids, psutil.Process.children

        def pids() -> list[int]:
            calls["pids"] += 1
            return real_pids()

        def children(self: psutil.Process, recursive: bool = False) -> list[psutil.Process]:
            calls["children"] += 1
            return real_children(self, recursive)

        monkeypatch.setattr(psutil, "pids", pids)
        monkeypatch.setattr(psutil.Process, "children", children)
        snap = PsutilCollector().scan()
        kids = {c.pid for c in psutil.Process(spawner.pid).children()}
        ours = [s for s in snap.sockets if s.proto == "udp" and s.pid in kids]
        assert len(ours) == 30 and all(len(s.holders) == 1 for s in ours)
        assert calls["pids"] <= 2 and calls["children"] <= 1, calls
    finally:
        assert spawner.stdin is not None
        spawner.stdin.close()
        spawner.wait(30)
        if spawner.stdout is not None:
            spawner.stdout.close()
