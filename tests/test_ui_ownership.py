"""Ownership in the TUI with real processes the tests start: the kill dialog's preflight, grace and verdict,
the manager's stop command as a second action, the Managed by column and the detail pane's manager and family.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from ownership_procs import Tree, ready_pids, restart_loop, start_prefork, wait_for
from test_managerstop import stub_systemctl, unit_preflight
from textual.app import App, ComposeResult
from textual.widgets import Button, Static

from portmon.collect.choose import default_collector
from portmon.collect.fake import demo_process, demo_snapshot
from portmon.model import Holder, Snapshot, Socket
from portmon.ownership.ordered import FamilyOrdered
from portmon.ownership.view import Ownership, managed_by_text
from portmon.portspec import PortSpec, sockets_on_port
from portmon.ui.app import PortmonApp
from portmon.ui.killmodal import READY, STOP_ASK, KillModal
from portmon.ui.owners import ManagerNames
from portmon.ui.sockettable import SocketTable
from portmon.ui.view import NO_MARKS

BASH = shutil.which("bash")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="ownership reads Linux /proc"),
    pytest.mark.skipif(BASH is None, reason="bash is not installed"),
]


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body with asyncio."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Host(App[None]):
    """The kill dialog pushed over an empty screen; its results kept."""

    def __init__(self, modal: KillModal) -> None:
        super().__init__()
        self.modal = modal
        self.results: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Static(id="table")

    def on_mount(self) -> None:
        self.push_screen(self.modal, self.results.append)


def listener(port: int) -> tuple[Socket, Snapshot]:
    """The listening socket on ``port`` as the real collector sees it now, and its snapshot."""
    snap = default_collector().scan()
    socks = [s for s in sockets_on_port(snap.sockets, PortSpec(port, "tcp")) if s.listening and s.holders]
    assert socks, f"nobody listens on {port}"
    return socks[0], snap


async def settle(pilot: Any, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Let the app run until ``condition()`` holds (AssertionError naming ``what`` past the deadline)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


# -- the kill dialog -----------------------------------------------------------------------------------


@sync
async def test_the_kill_dialog_predicts_a_restart_loop_and_names_the_new_pid(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees, delay="1")
    shell = tree.proc.pid
    sock, snap = listener(port)
    modal = KillModal(sock, snap, timeout=30, settle=0, grace=30)
    app = Host(modal)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot, lambda: modal.preflight is not None, "the preflight")
        # Whatever runs the tests may add "; inside ..." (a CI script is a shell too).
        assert modal.manager_line.startswith(
            f"manager: supervised by bash loop (pid {shell}): it will probably restart; stop the loop first: "
            f"`kill {shell}`"
        )
        assert modal.has_class("with-stop") and "m: stop the manager" in modal.status_line
        await pilot.press("y")
        await settle(pilot, lambda: bool(app.results), "the verdict", timeout=60)
    (again,) = ready_pids(tree.proc)
    (verdict,) = app.results
    assert verdict is not None and again != pid
    # The CLI's judge and words: the 1 s restart is waited for (grace), the new pid and its parent named.
    assert verdict.startswith(f"port {port}/tcp re-bound by new pid {again} (")
    assert f"child of {shell} (bash)" in verdict


@sync
async def test_stop_manager_on_a_shell_loop_then_the_kill_frees_the_port(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees)
    shell = tree.proc.pid
    sock, snap = listener(port)
    modal = KillModal(sock, snap, timeout=30, settle=0, grace=30)
    app = Host(modal)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot, lambda: modal.preflight is not None, "the preflight")
        await pilot.press("m")
        await pilot.pause()
        # Its own confirmation first: nothing is run on the first press.
        assert modal.state == STOP_ASK and tree.proc.poll() is None
        assert f"run `kill {shell}`?" in modal.status_line
        assert str(modal.query_one("#stop-manager", Button).label) == f"Run: kill {shell}"
        await pilot.press("y")
        await settle(pilot, lambda: modal.stopped is not None and modal.state == READY, "the stop's verdict")
        assert modal.stopped is not None
        assert modal.stopped.message == f"ran `kill {shell}` (exit 0): port {port}/tcp still held by {pid}"
        assert modal.status_line.startswith(modal.stopped.message)
        wait_for(lambda: tree.proc.poll() is not None, what="the loop to be gone")
        # The loop is gone: the preflight is worked out again and expects nothing to start the listener.
        await settle(pilot, lambda: "checking" not in modal.manager_line, "the new preflight")
        assert modal.manager_line == "manager: no manager found: nothing should start it again"
        assert not modal.has_class("with-stop")
        await pilot.press("y")
        await settle(pilot, lambda: bool(app.results), "the kill's verdict")
    assert app.results == [f"port {port}/tcp freed"]


@sync
async def test_stop_manager_runs_the_units_stop_command_and_judges_freed(
    tmp_path: Path, child_script: Path, trees: list[Tree], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees)
    bindir, log = stub_systemctl(tmp_path, tree.proc.pid)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    sock, snap = listener(port)
    # The holder's cgroup says loop.service (as on a systemd host); systemctl (the stub) is asked the rest.
    modal = KillModal(sock, snap, timeout=30, settle=0, grace=30, preflight_of=lambda plan: unit_preflight([pid]))
    app = Host(modal)
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot, lambda: modal.preflight is not None, "the preflight")
        assert modal.manager_line == (
            "manager: systemd will restart loop.service (Restart=always): stop the unit instead: "
            "`systemctl stop loop.service`"
        )
        await pilot.click("#stop-manager")
        await pilot.pause()
        assert modal.state == STOP_ASK and "stop loop.service" not in log.read_text()
        await pilot.press("escape")  # back: nothing run
        await pilot.pause()
        assert modal.state == READY and "stop loop.service" not in log.read_text()
        await pilot.press("m")
        await pilot.pause()
        await pilot.click("#stop-manager")
        await settle(pilot, lambda: bool(app.results), "the stop's verdict")
    assert app.results == [f"ran `systemctl stop loop.service` (exit 0): port {port}/tcp freed"]
    assert "stop loop.service" in log.read_text()
    wait_for(lambda: tree.proc.poll() is not None, what="the loop to be gone")


# -- the Managed by column and the detail pane, on the real machine ------------------------------------------



def live_app(port: int) -> PortmonApp:
    """The monitor on this machine, the listener on ``port`` only, no poll timer (reads happen at once)."""
    return PortmonApp(default_collector(), poll=False, filter_text=f"lport:{port} state:listen")


def row_text(table: SocketTable, row: int = 0) -> str:
    return table.render_line(row + 1).text


def column_names(table: SocketTable) -> list[str]:
    return [c.name for c, _ in table.columns]


@sync
async def test_the_managed_by_column_names_a_restart_loop_and_toggles(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    tree, port, _ = restart_loop(tmp_path, child_script, trees)
    shell = tree.proc.pid
    app = live_app(port)
    async with app.run_test(size=(220, 30)) as pilot:
        await pilot.pause()
        table = app.monitor.table
        assert len(table.rows) == 1
        # Wide enough: the column is there by itself, with the text `who` prints after "managed by".
        assert "managed_by" in column_names(table) and "Managed by" in table.render_line(0).text
        expected = managed_by_text(Ownership().socket_managers(table.rows[0]))
        assert expected.startswith(f"bash loop (pid {shell})")
        assert expected in row_text(table)  # room enough for all of it
        await pilot.press("m")
        await pilot.pause()
        assert "managed_by" not in column_names(table) and f"(pid {shell})" not in row_text(table)
        await pilot.press("m")
        await pilot.pause()
        assert "managed_by" in column_names(table)
    narrow = live_app(port)
    async with narrow.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        table = narrow.monitor.table
        assert "managed_by" not in column_names(table)  # too narrow: left out unless asked for
        await pilot.press("m")
        await pilot.pause()
        assert "managed_by" in column_names(table)


@sync
async def test_the_detail_pane_names_the_loop_and_marks_it_in_the_parent_chain(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees)
    shell = tree.proc.pid
    app = live_app(port)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        text = app.monitor.detail.text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "Managed by" in lines
    assert f"managed by bash loop (pid {shell})" in lines
    assert any(line.startswith("command bash ") and line.endswith("serve.sh") for line in lines), lines
    assert f"stop with kill {shell}" in lines
    (parents,) = [line for line in lines if line.startswith("parents ")]
    # The chain from the listener's parent up, the loop marked as its manager.
    assert parents.startswith(f"parents {shell} bash ◂ manager ← ")
    assert f"PID {pid}" in " ".join(lines)


@sync
async def test_the_detail_pane_lists_a_prefork_family_in_the_order_who_does(
    tmp_path: Path, trees: list[Tree]
) -> None:
    port, master, workers = start_prefork(tmp_path, trees)
    app = live_app(port)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        text = app.monitor.detail.text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "Held by 4 processes (+3 workers; all must exit to free it)" in lines
    start = lines.index("Held by 4 processes (+3 workers; all must exit to free it)") + 1
    family = [line.split()[0] for line in lines[start : start + 4]]
    assert [line.split()[-1] for line in lines[start : start + 4]] == ["main", *[str(master)] * 3]
    who = subprocess.run([sys.executable, "-m", "portmon", "who", f"{port}/tcp"], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60, check=False)
    who_pids = [line.split()[0] for line in who.stdout.splitlines()[2:6]]
    assert family == who_pids == [str(p) for p in (master, *sorted(workers))]
    assert f"PID {master}" in " ".join(lines)  # the Process section is the master's


class WorkerFirst:
    """The machine's collector, with every shared socket's holders reversed (a collector that names a worker first)."""

    name = "worker-first"

    def __init__(self) -> None:
        self.inner = default_collector()

    def scan(self) -> Snapshot:
        snap = self.inner.scan()
        return snap._replace(sockets=tuple(s._replace(holders=s.holders[::-1]) for s in snap.sockets))


@sync
async def test_the_live_monitors_row_is_the_prefork_master_with_its_workers_marked(
    tmp_path: Path, trees: list[Tree]
) -> None:
    port, master, _ = start_prefork(tmp_path, trees)
    raw = WorkerFirst()
    (listener,) = [s for s in raw.scan().sockets if s.local_port == port and s.state == "LISTEN"]
    assert listener.holders[0].pid != master  # what the table would show without the ordering
    app = PortmonApp(FamilyOrdered(raw), poll=False, filter_text=f"lport:{port} state:listen")
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.pause()
        table = app.monitor.table
        assert [s.holders[0].pid for s in table.rows] == [master]
        assert f"{master} python" in row_text(table) and "+3 workers" in row_text(table)


@sync
async def test_the_monitors_kill_dialog_takes_the_configured_grace(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    _, port, _ = restart_loop(tmp_path, child_script, trees)
    app = PortmonApp(default_collector(), poll=False, filter_text=f"lport:{port} state:listen", kill_grace=7.5)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, KillModal) and modal.grace == 7.5
        await pilot.press("escape")


def test_managed_by_texts_are_worked_out_off_the_calling_thread() -> None:
    gate = threading.Event()
    threads: list[str] = []
    resolved = threading.Event()

    class Slow:
        def managed_by(self, sock: Socket) -> str:
            threads.append(threading.current_thread().name)
            gate.wait(10)
            return f"unit of {sock.holders[0].pid}"

    sock = Socket("tcp", 4, "127.0.0.1", 1, state="LISTEN", holders=(Holder(pid=7, name="x", create_time=1.0),))
    names = ManagerNames(Slow(), resolved.set, background=True)  # type: ignore[arg-type]
    try:
        assert names.get(sock) is None and names.get(sock) is None  # asked once, answered later
        gate.set()
        assert resolved.wait(10)
        assert names.get(sock) == "unit of 7"
        assert threads == ["portmon-managers-0"]
    finally:
        names.shutdown()


def test_the_detail_pane_reads_a_rows_managers_again_only_after_their_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from portmon.ui import detailfeed
    from portmon.ui.owners import DemoOwnership, OwnershipDetail

    calls: list[int] = []

    class Counting(DemoOwnership):
        def detail(self, holder: Holder, port: int | None) -> OwnershipDetail:
            calls.append(holder.pid)
            return super().detail(holder, port)

    class Pane:
        def show_head(self, content: object, layout: bool = True) -> None:
            self.head = content

        def show_held(self, lines: object) -> None:
            self.held = lines

    now = [1000.0]
    monkeypatch.setattr(detailfeed.time, "monotonic", lambda: now[0])
    sock = next(s for s in demo_snapshot().sockets if s.holders and s.holders[0].pid == 1290)
    feed = detailfeed.DetailFeed(demo_process, lambda m: None, background=False, ownership=Counting())
    pane = Pane()
    feed.show(pane, sock, None, NO_MARKS, 0.0, reread=True)  # type: ignore[arg-type]
    feed.show(pane, sock, None, NO_MARKS, 0.0, reread=True)  # type: ignore[arg-type]
    assert calls == [1290]
    now[0] += detailfeed.OWNER_TTL + 1
    feed.show(pane, sock, None, NO_MARKS, 0.0, reread=False)  # type: ignore[arg-type]
    assert calls == [1290]  # a redraw alone reads nothing
    feed.show(pane, sock, None, NO_MARKS, 0.0, reread=True)  # type: ignore[arg-type]
    assert calls == [1290, 1290]
