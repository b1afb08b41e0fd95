"""The command line's streams: output that fails as one line instead of a traceback, and the terminal check.

Only the standard library: portmon.cli.launch uses ``can_run_live`` before anything else loads.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import IO, Any


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def can_run_live(stdin: IO[str] | None, stdout: IO[str] | None, stderr: IO[str] | None) -> bool:
    """True when the live monitor has a terminal to read keys from, to stand in for, and to draw on.

    Textual draws on stderr: with stderr redirected (``portmon 2>file``) the monitor would run
    unseen yet still take keys such as ``k`` and ``y``. Then, as when stdout is not a terminal,
    ``portmon`` prints the list instead.
    """
    return _is_terminal(stdin) and _is_terminal(stdout) and _is_terminal(stderr)


class GuardedOutput:
    """A text stream that never raises on write: a failed write is remembered and later writes dropped.

    A reader that went away (EPIPE) is not an error: the command ends with its own exit code, so
    ``portmon who 8080 | true`` still says 1 when nobody holds the port. Any other failure (a full
    disk, a closed descriptor, an encoding that cannot carry the text) is kept in ``failure`` and
    reported once by the caller. Either way the descriptor is pointed at /dev/null, so the
    interpreter's flush at exit cannot fail again with a traceback.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.broken = False
        """The reader went away (EPIPE)."""
        self.failure: str | None = None
        """Why output could not be written (other than EPIPE), as one line."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @property
    def dead(self) -> bool:
        return self.broken or self.failure is not None

    def write(self, text: str) -> int:
        if self.dead:
            return len(text)
        try:
            return self._stream.write(text)
        except (OSError, ValueError, UnicodeError) as exc:
            self._failed(exc)
            return len(text)

    def flush(self) -> None:
        if self.dead:
            return
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._failed(exc)

    def isatty(self) -> bool:
        return not self.dead and _is_terminal(self._stream)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            self.broken = True
        elif isinstance(exc, UnicodeError):
            self.failure = "the output encoding cannot carry the text (try PYTHONIOENCODING=utf-8)"
        elif isinstance(exc, OSError):
            self.failure = os.strerror(exc.errno) if exc.errno else str(exc)
        else:
            self.failure = "the stream is closed"
        _silence(self._stream)


def _silence(stream: IO[str]) -> None:
    """Point the stream's descriptor at /dev/null and drop what its buffer holds, so no later flush fails."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def tolerant_encoding(stream: IO[str] | None) -> None:
    """Let a real text stream write any character: what its encoding lacks comes out as ``\\u2026`` escapes.

    Untrusted names are already escaped to printable text, but printable is not ASCII: a process
    called ``café`` or the table's ``…`` would stop an ASCII or Latin-1 terminal with a traceback.
    """
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is None:
        return
    try:
        reconfigure(errors="backslashreplace")
    except (ValueError, OSError, TypeError):
        pass


def stdin_or_null() -> None:
    """Give the process a stdin when it was started with none (``<&-``): reading it gives end of file.

    Python sets ``sys.stdin`` to None then, and every "is stdin a terminal?" check would fail
    with an AttributeError; /dev/null answers "no terminal", as an empty pipe would.
    """
    if sys.stdin is None:
        try:
            sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process, as stdin does
        except OSError:
            pass
