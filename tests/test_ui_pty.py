"""The live monitor in a real pseudo-terminal: the keys people press to leave it, and its first frames.

portmon runs as ``python -m portmon`` with the real collector, as the session leader of a new pty.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest

from tests.hostile import portmon_env
from tests.ptyterm import HAVE_PTY, Terminal

pytestmark = [
    pytest.mark.skipif(not HAVE_PTY, reason="needs a POSIX pseudo-terminal"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the real collector's pty runs are Linux-only"),
]


@pytest.fixture
def term() -> Iterator[Terminal]:
    terminal = Terminal(["--interval", "0.5"], portmon_env({"TERM": "xterm-256color"}), size=(80, 24))
    try:
        yield terminal
    finally:
        terminal.close()


def first_frame(term: Terminal) -> None:
    term.wait_for(lambda s: re.search(r"\d+/\d+ sockets", s.text) is not None, "the first scan")


def test_ctrl_c_quits(term: Terminal) -> None:
    first_frame(term)
    term.send("\x03")
    assert term.proc.wait(15) == 0


def test_ctrl_q_quits(term: Terminal) -> None:
    first_frame(term)
    term.send("\x11")
    assert term.proc.wait(15) == 0


def test_ctrl_z_without_job_control_says_so_and_keeps_running(term: Terminal) -> None:
    # The harness makes portmon a session leader: stopped, nobody would resume it.
    first_frame(term)
    term.send("\x1a")
    term.wait_for(lambda s: "cannot be suspended" in s.text, "the notice")
    assert term.proc.poll() is None
    term.send("q")
    assert term.proc.wait(15) == 0


def test_the_first_frame_says_scanning_never_zero_sockets(term: Terminal) -> None:
    first_frame(term)
    output = term.output()
    assert "scanning…" in output
    assert "0/0 sockets" not in output


def test_the_status_line_at_80_columns_keeps_its_units_whole(term: Terminal) -> None:
    screen = term.wait_for(lambda s: re.search(r"\d+/\d+ sockets", s.text) is not None, "the first scan")
    rows = screen.text.splitlines()
    status = next(i for i, row in enumerate(rows) if re.search(r"\d+/\d+ sockets", row))
    # The sparkline's 18 columns are beside the status line.
    first, second = rows[status][:62].rstrip(" ·"), rows[status + 1][:62].strip()
    # Neither "ESTAB" / "8", "every 1" / "s" nor "scan 12" / "ms" across the two lines.
    assert not re.search(r"(\b[A-Z][A-Z_0-9]{2,}|every [\d.]+|scan \d+)$", first), first
    assert not re.match(r"(\d|s\b|ms\b|sockets\b)", second), second
    term.send("q")
    assert term.proc.wait(15) == 0
