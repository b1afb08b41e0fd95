"""Pilot tests of the kill modal: captured identity, a target that never moves, cancel, confirm and force."""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from textual.app import App, ComposeResult
from textual.widgets import Button, Static

from portmon.actions.kill.text import format_start
from portmon.collect.fake import ScriptedCollector
from portmon.collect.psutil_collector import PsutilCollector
from portmon.model import LISTEN, OWNER_KERNEL, TIME_WAIT, Holder, Snapshot, Socket
from portmon.ui.killmodal import READY, SURVIVED, KillModal

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="these tests use POSIX signals")


def sync(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test body with asyncio (pytest itself runs only plain functions here)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def snap(*sockets: Socket) -> Snapshot:
    return Snapshot(sockets=tuple(sockets), taken_at=time.time(), collector="fake")


EMPTY = snap()


class Host(App[None]):
    """A stand-in for the monitor: a 'table' that keeps refreshing, and the modal pushed over it."""

    def __init__(self, modal: KillModal, shown: Snapshot) -> None:
        super().__init__()
        self.modal = modal
        self.shown = shown
        self.results: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Static(id="table")

    def on_mount(self) -> None:
        self.show(self.shown)
        self.push_screen(self.modal, self.results.append)

    def show(self, snapshot: Snapshot) -> None:
        """What a refresh does: new rows, new order; the first row is 'under the cursor'."""
        self.shown = snapshot
        rows = sorted(snapshot.sockets, key=lambda s: -s.local_port)
        self.query_one("#table", Static).update("\n".join(f"{s.local_port} {s.pid}" for s in rows))


def text_of(modal: KillModal, selector: str) -> str:
    return str(modal.query_one(selector, Static).content)


# -- what it shows ----------------------------------------------------------------------------------


@sync
async def test_it_shows_the_captured_identity_with_cancel_focused(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    modal = KillModal(child.holders(), snap(child.holders()), collector=ScriptedCollector([EMPTY]), timeout=1, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.screen is modal and modal.state == READY
        assert app.focused is not None and app.focused.id == "cancel"
        assert f"port {child.port}/tcp" in text_of(modal, "#kill-title")
        details = modal.details_text
        assert f"pid {child.pid}" in details
        assert f"user {child.ps.username()}" in details
        assert f"started {format_start(child.ps.create_time())}" in details
        assert f"exe  {child.ps.exe()}" in details
        assert f"cmd  {sys.executable} {child.script}" in details
        assert f"send SIGTERM to 1 process holding port {child.port}/tcp?" in text_of(modal, "#kill-status")
        assert not modal.query_one("#confirm", Button).disabled


@sync
async def test_untrusted_text_is_shown_literally_never_as_markup(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("[@click=app.quit]x", "[/]\x1b[2Jevil", "[b]bold[/b]")
    modal = KillModal(child.holders(), snap(child.holders()), collector=ScriptedCollector([EMPTY]), timeout=1, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        details = modal.details_text
        assert "[@click=app.quit]x [/]\\x1b[2Jevil [b]bold[/b]" in details
        await pilot.click("#kill-details")
        await pilot.pause()
        assert app.is_running and app.screen is modal
    assert child.alive()


# -- cancel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["escape", "n", "enter"])
@sync
async def test_cancel_signals_nothing(spawn, record_file, key: str) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    collector = ScriptedCollector([EMPTY])
    modal = KillModal(child.holders(), snap(child.holders()), collector=collector, timeout=1, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press(key)  # enter lands on the focused Cancel button
        await pilot.pause()
        assert app.results == [None]
        assert app.screen is not modal
    assert collector.calls == 0
    assert child.alive() and record_file.read_text() == ""


# -- confirm -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["y", "enter-on-confirm"])
@sync
async def test_confirm_sends_sigterm_and_dismisses_with_freed(spawn, record_file, how: str) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    modal = KillModal(child.holders(), snap(child.holders()), collector=ScriptedCollector([EMPTY]), timeout=2, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        if how == "y":
            await pilot.press("y")
        else:
            modal.query_one("#confirm", Button).focus()
            await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.results == [f"port {child.port}/tcp freed"]
    assert record_file.read_text() == "SIGTERM\n"
    assert not child.alive()


@sync
async def test_target_stays_put_when_the_table_refreshes_and_resorts(spawn, record_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = spawn(f"record={record_file}")
    other_record = tmp_path / "other"
    other_record.write_text("")
    other = spawn(f"record={other_record}")
    first = snap(target.holders(), other.holders())
    rescan = ScriptedCollector([snap(other.holders())])
    modal = KillModal(target.holders(), first, collector=rescan, timeout=2, settle=0)
    app = Host(modal, first)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # Refreshes behind the modal: the order changes, then the target's row vanishes altogether.
        app.show(snap(other.holders(), target.holders()))
        await pilot.pause()
        app.show(snap(other.holders()))
        await pilot.pause()
        assert [t.pid for t in modal.plan.targets] == [target.pid]
        assert f"pid {target.pid}" in modal.details_text
        assert f"pid {other.pid}" not in modal.details_text
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.results == [f"port {target.port}/tcp freed"]
    assert record_file.read_text() == "SIGTERM\n" and not target.alive()
    assert other.alive() and other_record.read_text() == ""


@sync
async def test_survivor_keeps_the_modal_open_and_f_forces(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    # The re-scans are real: the port stays held until SIGKILL.
    collector = ScriptedCollector([lambda: PsutilCollector().scan()])
    modal = KillModal(child.holders(), snap(child.holders()), collector=collector, timeout=1, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is modal and modal.state == SURVIVED and app.results == []
        status = text_of(modal, "#kill-status")
        assert status == f"port {child.port}/tcp still held by {child.pid} (ignores SIGTERM) — press f to force"
        assert child.alive()
        assert modal.query_one("#confirm", Button).disabled and not modal.query_one("#force", Button).disabled
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.results == [f"port {child.port}/tcp freed"]
        assert modal.outcome is not None and modal.outcome.results[0].signals == ("SIGKILL",)
    assert not child.alive()


@sync
async def test_f_sends_sigkill_directly(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    modal = KillModal(child.holders(), snap(child.holders()), collector=ScriptedCollector([EMPTY]), timeout=2, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.results == [f"port {child.port}/tcp freed"]
        assert modal.outcome is not None and modal.outcome.results[0].signals == ("SIGKILL",)
    assert not child.alive()


@sync
async def test_escape_after_survivors_returns_the_outcome_line(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("ignore-term")
    modal = KillModal(
        child.holders(),
        snap(child.holders()),
        collector=ScriptedCollector([snap(child.holders())]),
        timeout=1,
        settle=0,
    )
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [f"port {child.port}/tcp still held by {child.pid} (ignores SIGTERM)"]
    assert child.alive()


# -- refusals ----------------------------------------------------------------------------------------


@sync
async def test_time_wait_row_is_refused_once_with_one_button_and_no_key_signals() -> None:
    tw = Socket("tcp", 4, "127.0.0.1", 8080, "127.0.0.1", 50000, TIME_WAIT, owner_note=OWNER_KERNEL)
    collector = ScriptedCollector([EMPTY])
    modal = KillModal(tw, snap(tw), collector=collector, timeout=1, settle=0)
    app = Host(modal, snap(tw))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert modal.query_one("#confirm", Button).disabled and modal.query_one("#force", Button).disabled
        # One explanation and one button: no dimmed Confirm and Force, no refusal repeated above it.
        shown = [b for b in modal.query(Button).results(Button) if b.display]
        assert [str(b.label) for b in shown] == ["Close"]
        assert not modal.query_one("#kill-signal").display
        status = text_of(modal, "#kill-status")
        assert status.startswith("cannot kill: tcp4 127.0.0.1:8080 -> 127.0.0.1:50000 TIME_WAIT: kernel-owned")
        assert "60 s" in status
        whole = modal.details_text + "\n" + status
        assert whole.count("kernel-owned") == 1
        await pilot.press("y")
        await pilot.press("f")
        await pilot.pause()
        assert app.screen is modal and modal.outcome is None
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]
    assert collector.calls == 0


@sync
async def test_own_process_row_is_refused() -> None:
    me = psutil.Process()
    holder = Holder(me.pid, "python", create_time=me.create_time())
    sock = Socket("tcp", 4, "127.0.0.1", 9, state=LISTEN, holders=(holder,))
    modal = KillModal(sock, snap(sock), collector=ScriptedCollector([EMPTY]), timeout=1, settle=0)
    app = Host(modal, snap(sock))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        # portmon's own copy of a socket is inherited: no holder to signal, so nothing to confirm.
        shown = modal.details_text + modal.status_line
        assert f"portmon itself (pid {me.pid}) holds an inherited copy" in shown, shown
        assert "cannot kill: no process to signal on port 9/tcp" in shown, shown
        await pilot.press("y")
        await pilot.press("f")
        await pilot.pause()
        assert app.screen is modal and modal.outcome is None


# -- a supervisor restarts the listener ----------------------------------------------------------------


@sync
async def test_a_restarted_listener_gives_the_same_verdict_as_the_command_line() -> None:
    # The same verdict path as `portmon kill` (tests/test_killcmd.py): re-bound by the new pid, its parent named.
    from handoff_supervisor import Handoff

    sup = Handoff()
    try:
        first = psutil.Process(sup.first)
        sock = Socket(
            "tcp", 4, "127.0.0.1", sup.port, state=LISTEN,
            holders=(Holder(sup.first, first.name(), create_time=first.create_time()),),
        )
        collector = ScriptedCollector([lambda: PsutilCollector().scan()])
        modal = KillModal(sock, snap(sock), collector=collector, timeout=5, settle=0)
        app = Host(modal, snap(sock))
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert modal.outcome is not None
            verdict = modal.outcome.verdict
            assert verdict.kind == "rebound", verdict.message
            (new,) = verdict.rebound_by
            assert new.pid != sup.first and new.parent_pid == sup.proc.pid
            assert app.results == [verdict.message]
            assert verdict.message.startswith(f"port {sup.port}/tcp re-bound by new pid {new.pid} (")
            assert f"child of {sup.proc.pid} (" in verdict.message
    finally:
        sup.close()


# -- the signal, the processes named, what else they hold -------------------------------------------


async def _until(pilot: Any, condition: Callable[[], bool], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.05)


@sync
async def test_the_signal_chosen_in_the_dialog_is_the_one_sent(spawn, record_file) -> None:  # type: ignore[no-untyped-def]
    child = spawn(f"record={record_file}")
    modal = KillModal(child.holders(), snap(child.holders()), collector=ScriptedCollector([EMPTY]), timeout=5, settle=0)
    app = Host(modal, snap(child.holders()))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert str(modal.query_one("#confirm", Button).label) == "Send SIGTERM"
        await pilot.press("s")  # TERM -> INT
        await pilot.pause()
        assert str(modal.query_one("#confirm", Button).label) == "Send SIGINT"
        assert "send SIGINT to 1 process" in modal.status_line
        await pilot.press("s", "s", "s")  # HUP, KILL, back to TERM
        await pilot.press("s", "s")  # HUP
        await pilot.pause()
        assert "send SIGHUP" in modal.status_line
        await pilot.press("y")
        await _until(pilot, lambda: bool(app.results))
    assert record_file.read_text() == "SIGHUP\n"


@sync
async def test_a_pre_fork_master_and_its_workers_are_named_and_marked(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn("fork=2")
    sock = child.holders()
    modal = KillModal(sock, snap(sock), collector=ScriptedCollector([EMPTY]), timeout=1, settle=0)
    app = Host(modal, snap(sock))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        details = modal.details_text
        master = child.pid
        assert "pre-fork master of 2 workers" in details
        for worker in child.pids[1:]:
            assert f"pid {worker} " in details and f"worker of {master}" in details
        name = child.ps.name()
        assert f"pid {master} {name}" in details


@sync
async def test_a_client_that_holds_other_connections_says_they_close_too(spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn()
    sock = child.holders()
    holder = sock.holders[0]
    others = [
        Socket("tcp", 4, "127.0.0.1", 40000 + i, "127.0.0.1", 443, "ESTABLISHED", holders=(holder,)) for i in range(3)
    ]
    unrelated = Socket("tcp", 4, "127.0.0.1", 45000, "127.0.0.1", 443, "ESTABLISHED",
                       holders=(Holder(1, "init", create_time=0.0),))
    shown = snap(sock, *others, unrelated)
    modal = KillModal(others[0], shown, collector=ScriptedCollector([EMPTY]), timeout=1, settle=0)
    app = Host(modal, shown)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert "also holds 3 other sockets: killing it closes them too" in modal.details_text
