"""Pilot tests of kill and why on a remote row: the host's portmon answers, the question here names the host."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Button, Static

from portmon.actions.kill.confirmed import IDENTITIES_PREFIX
from portmon.remote.actions import RemoteRun
from portmon.ui.remotemodal import KILL, WHY, RemoteActionModal

HOST = "[@click=app.quit]db1"
"""A host label that would run an action if anything took it for markup."""


def sync(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class FakeHost:
    """Answers ``portmon WORDS`` as a host would, recording every call (from the worker thread)."""

    def __init__(self, answers: dict[str, RemoteRun]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, words: Sequence[str]) -> RemoteRun:
        with self.lock:
            self.calls.append(tuple(words))
        key = "dry" if "--dry-run" in words else words[0]
        return self.answers[key]


class Host(App[None]):
    def __init__(self, modal: RemoteActionModal) -> None:
        super().__init__()
        self.modal = modal
        self.results: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Static("table")

    def on_mount(self) -> None:
        self.push_screen(self.modal, self.results.append)


DRY = RemoteRun(
    HOST,
    0,
    (
        "port 8080/tcp is held by 1 process:",
        "  pid 42  user www",
        f"{IDENTITIES_PREFIX}42:123456",
        "dry run: would send SIGTERM",
    ),
)
OLD_DRY = RemoteRun(
    HOST, 0, ("port 8080/tcp is held by 1 process:", "  pid 42  user www", "dry run: would send SIGTERM")
)
"""A dry run by a portmon that names no exact identities (before --pids existed)."""
KILLED = RemoteRun(HOST, 0, ("pid 42 exited after SIGTERM", "port 8080/tcp freed"))


async def _settle(pilot: Any, modal: RemoteActionModal, state: str) -> None:
    for _ in range(200):
        if modal.state == state:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"modal stayed {modal.state}, wanted {state}")


@sync
async def test_kill_shows_the_remote_plan_then_asks_naming_the_host_and_kills_there() -> None:
    fake = FakeHost({"dry": DRY, "kill": KILLED})
    modal = RemoteActionModal(KILL, HOST, "8080/tcp", fake)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "ready")
        assert app.screen is modal and app.is_running  # the markup-like host name ran nothing
        assert HOST in str(modal.query_one("#remote-title", Static).content)
        assert "pid 42" in modal.lines_text and HOST in modal.status_line
        assert HOST in str(modal.query_one("#confirm", Button).label)
        assert fake.calls == [("kill", "8080/tcp", "--dry-run")]  # nothing signalled before the question
        await pilot.press("y")
        for _ in range(200):
            if app.results:
                break
            await pilot.pause(0.02)
    # The kill signals exactly the process the dry run named, by pid and start ticks (not a new plan's holders).
    assert fake.calls[-1] == ("kill", "8080/tcp", "--yes", "--pids", "42:123456")
    assert app.results == [f"host {HOST}: port 8080/tcp freed"]


@sync
async def test_the_identities_line_is_not_shown_and_a_host_without_it_cannot_be_confirmed() -> None:
    fake = FakeHost({"dry": DRY, "kill": KILLED})
    modal = RemoteActionModal(KILL, HOST, "8080/tcp", fake)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "ready")
        assert "pid 42" in modal.lines_text and IDENTITIES_PREFIX not in modal.lines_text
    old = FakeHost({"dry": OLD_DRY, "kill": KILLED})
    modal = RemoteActionModal(KILL, HOST, "8080/tcp", old)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "explained")
        assert "no exact process identities" in modal.status_line and HOST in modal.status_line
        assert modal.query_one("#confirm", Button).disabled
        await pilot.press("y")
        await pilot.pause()
    assert old.calls == [("kill", "8080/tcp", "--dry-run")]  # nothing signalled


@sync
async def test_cancel_signals_nothing() -> None:
    fake = FakeHost({"dry": DRY, "kill": KILLED})
    modal = RemoteActionModal(KILL, HOST, "8080/tcp", fake)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "ready")
        await pilot.press("n")
        await pilot.pause()
    assert app.results == [None] and fake.calls == [("kill", "8080/tcp", "--dry-run")]


@sync
async def test_an_agentless_host_says_why_it_cannot_and_confirm_stays_off() -> None:
    fake = FakeHost({"dry": RemoteRun(HOST, None, (), "portmon is not installed there (agentless host)")})
    modal = RemoteActionModal(KILL, HOST, "8080/tcp", fake)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "failed")
        assert "agentless" in modal.status_line and HOST in modal.status_line
        assert modal.query_one("#confirm", Button).disabled
        await pilot.press("y")
        await pilot.pause()
    assert fake.calls == [("kill", "8080/tcp", "--dry-run")]


@sync
async def test_why_shows_the_remote_answer_with_control_characters_escaped() -> None:
    answer = RemoteRun(HOST, 1, ("port 8080/tcp is taken by evil\\x1b[2J (42)",))
    fake = FakeHost({"why": answer})
    modal = RemoteActionModal(WHY, HOST, "8080/tcp", fake)
    app = Host(modal)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(pilot, modal, "explained")
        assert "taken by evil\\x1b[2J" in modal.lines_text
        assert not modal.query("#confirm")
        await pilot.press("escape")
        await pilot.pause()
    assert app.results == [None]
