"""The live monitor showing a process whose name and command line are hostile, in a real pseudo-terminal
and (for what needs exact control of the data) through Pilot.

portmon runs as ``python -m portmon`` on a pty (TERM=xterm-256color, 160x45) with the real collector.
A child process this test starts listens on loopback with a command line full of terminal escapes,
markup, bidi and zero-width characters, a lone surrogate and ~1 MiB of argument text. The test types
a filter for the child's port, opens the detail pane, clicks on the hostile text with xterm mouse
reports, asks "why is this port busy?", watches a second hostile child appear in the event log, and
checks the raw bytes portmon wrote to the terminal at each step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile import (
    COMM_VISIBLE,
    LINUX,
    MARKUP_CLICK,
    RAW_CHARACTERS,
    RAW_SEQUENCES,
    VISIBLE_FORMS,
    HostileChild,
    portmon_env,
)
from ptyterm import HAVE_PTY, TIMEOUT, Screen, Terminal
from textual.app import App

from portmon.collect.fake import DEMO_TIME, ScriptedCollector
from portmon.model import Holder, Snapshot, Socket
from portmon.procinfo import ProcessDetail
from portmon.ui.app import PortmonApp

needs_pty = pytest.mark.skipif(not HAVE_PTY, reason="needs a POSIX pseudo-terminal (pty, termios)")
linux_only = pytest.mark.skipif(not LINUX, reason="names the hostile child through /proc/self/comm (Linux)")


def assert_nothing_raw(term: Terminal) -> None:
    """None of the hostile sequences or characters is in what portmon wrote to the terminal."""
    out = term.output()
    raw = bytes(term.raw)
    for seq in RAW_SEQUENCES:
        assert seq.encode() not in raw, f"raw {seq!r} reached the terminal"
    for ch in RAW_CHARACTERS:
        assert ch not in out, f"raw {ch!r} reached the terminal"
    assert "\ufffd" not in out, "portmon wrote bytes that are not UTF-8"
    # No window title, hyperlink or clipboard write at all (portmon itself sets none).
    for osc in ("\x1b]0;", "\x1b]2;", "\x1b]8;", "\x1b]52;"):
        assert osc not in out, f"{osc!r} reached the terminal"


@pytest.fixture
def child(tmp_path: Path) -> Iterator[HostileChild]:
    c = HostileChild(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    started: list[Terminal] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Terminal:
        term = Terminal(list(args), env or portmon_env({"TERM": "xterm-256color", "COLORTERM": "truecolor"}))
        started.append(term)
        return term

    try:
        yield start
    finally:
        for term in started:
            term.close()


@needs_pty
@linux_only
def test_hostile_process_text_never_reaches_the_terminal_raw(
    child: HostileChild, terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    # Our namespace only: another one's churn (a container on the test host) would flood the event log below.
    term = terminal("--interval", "0.5", "--netns", "host")
    term.wait_for(lambda s: "sockets" in s.text and "Quit" in s.text, "the first frame")

    # Filter to the child's port (typed at once: "/" moves the focus before the next key is read).
    term.send(f"/:{child.port}")
    term.wait_for(lambda s: f"filter: :{child.port}" in s.text and COMM_VISIBLE[:12] in s.text, "the filtered row")
    # Enter goes back to the table, enter there opens the detail pane; an early second enter only
    # submits the filter again, so press until the pane shows the command line.
    def detail_shown(s: Screen) -> bool:
        return MARKUP_CLICK in s.text and "Command" in s.text

    for _ in range(10):
        term.send("\r")
        if term.poll(detail_shown, 1.5) is not None:
            break
    screen = term.wait_for(detail_shown, "the command line in the detail pane")

    assert_nothing_raw(term)

    # The 1 MiB command line is cut for display: its end (End in the focused pane) says how long it was.
    assert len(" ".join(child.cmdline)) > 1_000_000
    # End scrolls to the end as laid out now; a refresh landing mid-scroll can re-lay the pane out
    # (CPU and memory change), so press again as a user would until the end shows.
    def at_end(s: Screen) -> bool:
        # "… (N characters in all)" may wrap anywhere between its words, depending on path lengths.
        return "in all)" in s.text

    for _ in range(10):
        term.send("\x1b[F")
        if term.poll(at_end, 2.0) is not None:
            break
    screen = term.wait_for(at_end, "the end of the cut command line")
    assert f"{len(' '.join(child.cmdline)):,}" in screen.text
    term.send("\x1b[H")
    # The command line shows in every scroll position; the process name only once back at the top.
    screen = term.wait_for(
        lambda s: MARKUP_CLICK in s.text and s.text.count(COMM_VISIBLE) >= 1 and "Socket" in s.text,
        "the top of the detail pane again",
    )

    # Click on the markup that would quit the app if it were ever parsed, and on the process name.
    where = screen.find(MARKUP_CLICK)
    assert where is not None
    row, col = where
    for offset in range(0, len(MARKUP_CLICK), 3):
        term.click(row, col + offset)
    name_at = screen.find(COMM_VISIBLE[:12])
    assert name_at is not None
    term.click(*name_at)
    # A key with a visible effect, so the clicks are known to have been handled before we look.
    term.send(" ")
    screen = term.wait_for(lambda s: "PAUSED" in s.text, "the pause marker after the clicks")
    assert term.proc.poll() is None, "a click on hostile text ended the app"

    assert_nothing_raw(term)

    shown = screen.text
    for form in VISIBLE_FORMS:
        assert form in shown, f"{form!r} is not shown escaped:\n{shown}"
    assert COMM_VISIBLE in shown

    # "Why is this port busy?" on the child's row: its answer names the child and shows its command.
    term.send(" ")
    term.wait_for(lambda s: "PAUSED" not in s.text, "the resumed refreshes")
    term.send("w")
    term.wait_for(lambda s: "taken" in s.text and COMM_VISIBLE in s.text, "the why dialog's answer")
    assert_nothing_raw(term)
    term.send("\x1b")
    term.wait_for(lambda s: "taken" not in s.text, "the why dialog to close")

    # The event log, with a second hostile child opening its port while portmon watches.
    term.send("/")
    term.send("\x1b")  # escape in the filter box clears it
    term.wait_for(lambda s: f"filter: :{child.port}" not in s.text, "the cleared filter")
    term.send("e")
    second = HostileChild(tmp_path / "second")
    try:
        term.wait_for(lambda s: f"127.0.0.1:{second.port}" in s.text, "the second child in the event log")
    finally:
        second.close()
    assert_nothing_raw(term)

    term.send("q")
    assert term.proc.wait(TIMEOUT) == 0


# -- long fields, through Pilot -----------------------------------------------------------------------------

MEGABYTE = "x" * (1 << 20)


def _huge_process(pid: int, create_time: float | None = None) -> ProcessDetail:
    return ProcessDetail(
        pid=pid,
        name="big",
        exe="/opt/" + "d/" * 3000 + "server",
        cmdline=("server", "--token=\x1b]52;c;AA\x07", MEGABYTE),
        cwd="/srv/" + "p" * 5000,
        user="u" * 64,
        create_time=create_time,
        status="sleeping",
    )


def test_a_megabyte_argument_is_cut_in_the_detail_pane_and_the_table() -> None:
    long_name = "n" * 100_000 + "\x1b[2J"
    holder = Holder(pid=4321, name=long_name, user="w" * 1000, create_time=DEMO_TIME - 60)
    sock = Socket("tcp", 4, "127.0.0.1", 7000, state="LISTEN", holders=(holder,), inode=1, local_service="s" * 10_000)
    snapshot = Snapshot(sockets=(sock,), taken_at=DEMO_TIME)
    app = PortmonApp(ScriptedCollector([snapshot]), poll=False, process_reader=_huge_process, clock=lambda: DEMO_TIME)

    async def main() -> None:
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            screen = app.monitor
            table = screen.table
            row = "".join(segment.text for segment in table._row_strip(0))
            # Every column keeps its width; the cut cells end with an ellipsis.
            assert len(row) <= table.size.width + 1 and row.count("…") >= 3
            assert "\x1b" not in row
            await pilot.press("d")
            text = screen.detail.text
            assert "\\x1b]52;c;AA\\x07" in text and "\x1b" not in text
            assert f"{len(' '.join(_huge_process(1).cmdline or ())):,} characters in all)" in text
            assert text.count("characters in all)") == 3, "command line, exe and cwd are all cut"
            # What the pane lays out stays small: a count, standing in for "rendering stays fast".
            lines = screen.detail.virtual_size.height
            assert lines < 200, f"the detail pane lays out {lines} lines"

    asyncio.run(main())


@linux_only
def test_the_kill_dialog_shows_the_hostile_child_escaped_and_cut(child: HostileChild) -> None:
    from portmon.collect.choose import default_collector
    from portmon.ui.killmodal import KillModal

    snapshot = default_collector().scan()
    sock = next(s for s in snapshot.sockets if s.local_port == child.port and s.holders)
    modal = KillModal(sock, snapshot)

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(modal)

    async def main() -> str:
        async with Host().run_test(size=(140, 45)) as pilot:
            await pilot.pause()
            details = modal.details_text + "\n" + modal.status_line
            await pilot.press("escape")
            return details

    details = asyncio.run(main())
    for seq in RAW_SEQUENCES:
        assert seq not in details
    for ch in RAW_CHARACTERS:
        assert ch not in details
    (cmd,) = [line for line in details.splitlines() if line.lstrip().startswith("cmd")]
    assert VISIBLE_FORMS[0] in cmd and cmd.endswith("…") and len(cmd) < 600
    assert child.proc.poll() is None
