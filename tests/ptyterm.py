"""A pseudo-terminal harness for running ``python -m portmon`` as a user would, and reading its screen.

``Terminal`` starts portmon on a pty of a fixed size (as the session leader, with the pty as its
controlling terminal), reads everything it writes on a thread, and sends keys and xterm SGR mouse
reports. ``Screen`` replays the output onto a grid, enough to find where text is painted.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.cells import get_character_cell_size

try:
    import fcntl
    import pty
    import struct
    import termios
except ImportError:  # pragma: no cover - not POSIX
    pty = None  # type: ignore[assignment]

HAVE_PTY = pty is not None
ROOT = Path(__file__).resolve().parent.parent
COLUMNS, ROWS = 160, 45
TIMEOUT = 30.0
"""Longest wait for any one thing to appear on screen (generous for a loaded CI machine)."""


class Screen:
    """Just enough of a terminal to know what is where: cursor addressing and printed text.

    Textual addresses each line it paints with CUP (ESC [ row ; col H) and then prints text with
    SGR colours; other control sequences are skipped. Wide characters take two cells.
    """

    _CSI = re.compile(r"\x1b\[([0-9;?<=>$ ]*)([@-~])")
    _OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")

    def __init__(self, columns: int, rows: int) -> None:
        self.columns = columns
        self.rows = rows
        self.cells = [[" "] * columns for _ in range(rows)]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        """Apply a chunk of (decoded) terminal output."""
        i = 0
        n = len(text)
        while i < n:
            ch = text[i]
            if ch == "\x1b":
                m = self._CSI.match(text, i)
                if m:
                    self._csi(m.group(1), m.group(2))
                    i = m.end()
                    continue
                m = self._OSC.match(text, i)
                if m:
                    i = m.end()
                    continue
                i += 2  # ESC and one character (charset, keypad mode, ...)
                continue
            i += 1
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row = min(self.rows - 1, self.row + 1)
            elif ch == "\x08":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                width = get_character_cell_size(ch)
                if 0 <= self.row < self.rows and 0 <= self.col < self.columns:
                    self.cells[self.row][self.col] = ch
                    if width == 2 and self.col + 1 < self.columns:
                        self.cells[self.row][self.col + 1] = ""
                self.col += max(1, width)

    def _csi(self, params: str, final: str) -> None:
        if final in "Hf" and not params.startswith("?"):
            parts = params.split(";")
            row = int(parts[0]) if parts and parts[0].isdigit() else 1
            col = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
            self.row, self.col = row - 1, col - 1
        elif final == "J" and params in ("2", "3"):
            self.cells = [[" "] * self.columns for _ in range(self.rows)]
        elif final == "C":
            self.col += int(params or "1")
        elif final == "G":
            self.col = int(params or "1") - 1

    def line(self, row: int) -> str:
        """The text of one row."""
        return "".join(self.cells[row])

    @property
    def text(self) -> str:
        """Every row, joined by newlines."""
        return "\n".join(self.line(r) for r in range(self.rows))

    def find(self, needle: str) -> tuple[int, int] | None:
        """(row, column), 0-based, of the first place ``needle`` is shown, or None."""
        for r in range(self.rows):
            c = self.line(r).find(needle)
            if c >= 0:
                # The second cell of a wide character holds "": map the string index back to a cell.
                seen = 0
                for cell_no, cell in enumerate(self.cells[r]):
                    if seen == c and cell:
                        return r, cell_no
                    seen += len(cell)
        return None


class Terminal:
    """portmon on a pseudo-terminal, with a thread reading everything it writes."""

    def __init__(self, args: list[str], env: dict[str, str], size: tuple[int, int] = (COLUMNS, ROWS)) -> None:
        """Start ``python -m portmon ARGS`` from the repository root on a new pty of ``size`` (columns, rows)."""
        columns, rows = size
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.master = master

        def controlling_terminal() -> None:
            # A session leader (start_new_session) takes the pty as its terminal, as in a real login.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        os.close(slave)
        self.raw = bytearray()
        self._lock = threading.Lock()
        self._screen = Screen(columns, rows)
        self._decoded_upto = 0
        self._decoder_tail = b""
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
            except (OSError, ValueError):
                break
            if not ready:
                if self.proc.poll() is not None and not self._pending():
                    break
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                break  # EIO: the child closed its side
            if not data:
                break
            with self._lock:
                self.raw += data
        self._closed.set()

    def _pending(self) -> bool:
        try:
            ready, _, _ = select.select([self.master], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(ready)

    def send(self, data: str | bytes) -> None:
        """Type (or report a mouse event) on the terminal."""
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def screen(self) -> Screen:
        """The screen as painted so far."""
        with self._lock:
            chunk = bytes(self.raw[self._decoded_upto :])
            self._decoded_upto = len(self.raw)
        data = self._decoder_tail + chunk
        # Keep an incomplete UTF-8 sequence at the end for the next call.
        cut = len(data)
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte & 0xC0 == 0xC0:
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if back < need:
                    cut = len(data) - back
                break
            if byte < 0x80:
                break
        self._decoder_tail = data[cut:]
        self._screen.feed(data[:cut].decode("utf-8", "replace"))
        return self._screen

    def poll(self, what: Callable[[Screen], bool], timeout: float) -> Screen | None:
        """The screen once ``what`` holds for it, or None after ``timeout`` seconds (or when portmon exited)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if what(screen):
                return screen
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def wait_for(self, what: Callable[[Screen], bool], description: str, timeout: float = TIMEOUT) -> Screen:
        """Wait until ``what`` holds for the screen; fail with the screen shown when it never does."""
        screen = self.poll(what, timeout)
        if screen is not None:
            return screen
        if self.proc.poll() is not None:
            pytest.fail(f"portmon exited ({self.proc.returncode}) while waiting for {description}:\n{self.tail()}")
        pytest.fail(f"timed out waiting for {description}; the screen:\n{self.screen().text}")

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal's size; the kernel tells portmon with SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        with self._lock:
            # What was painted at the old size is stale: start a fresh grid for what comes next.
            self._decoded_upto = len(self.raw)
            self._decoder_tail = b""
            self._screen = Screen(columns, rows)

    def click(self, row: int, col: int) -> None:
        """A left click at a 0-based cell, as an xterm SGR mouse report (press, then release)."""
        self.send(f"\x1b[<0;{col + 1};{row + 1}M\x1b[<0;{col + 1};{row + 1}m")

    def tail(self) -> str:
        """The last of the output, for failure messages."""
        with self._lock:
            return bytes(self.raw[-3000:]).decode("utf-8", "replace")

    def output(self) -> str:
        """Everything written so far, decoded (undecodable bytes become U+FFFD)."""
        with self._lock:
            return bytes(self.raw).decode("utf-8", "replace")

    def close(self) -> None:
        """Kill portmon if it is still running and close the terminal."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._closed.wait(5)
        os.close(self.master)
