"""A child process with a hostile command line and name, for the hostile-text tests (pty and CLI).

The child listens on a loopback TCP port. Its command line carries terminal escape sequences,
Rich/Textual markup, bidi and zero-width characters, a byte that is not UTF-8 (psutil decodes
it as a lone surrogate) and about 1 MiB of argument text; on Linux its process name
(/proc/self/comm) carries escapes too. Each piece has a marker word, so a test can look for
the raw sequence next to its marker in what portmon wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

LINUX = sys.platform.startswith("linux")

OSC_TITLE = "\x1b]0;PMTITLE\x07"
OSC_TITLE2 = "\x1b]2;PMTITLE2\x1b\\"
OSC_LINK = "\x1b]8;;http://evil.example/\x1b\\PMLINK\x1b]8;;\x1b\\"
OSC_CLIP = "\x1b]52;c;UE1DTElQ\x07"
CSI_CLEAR = "\x1b[2JPMCLEAR"
C1_CSI = "\x9b2JPMCSI"
MARKUP_CLOSE = "[/]"
MARKUP_BOLD = "[bold]PMBOLD"
MARKUP_CLICK = "[@click=app.quit]PMCLICK[/]"
MARKUP_LINK = "[link=http://x]PMY[/link]"
BIDI = "PMBIDI\u202eKCATTA"
ZERO_WIDTH = "PMZW\u200b\u200d\ufeffX"
SURROGATE = "PMSUR\udcffX"
"""Passed to exec as the byte 0xff (surrogateescape); psutil reads it back as U+DCFF."""

HOSTILE_ARGS: tuple[str, ...] = (
    OSC_TITLE,
    OSC_TITLE2,
    OSC_LINK,
    OSC_CLIP,
    CSI_CLEAR,
    C1_CSI,
    MARKUP_CLOSE,
    MARKUP_BOLD,
    MARKUP_CLICK,
    MARKUP_LINK,
    BIDI,
    ZERO_WIDTH,
    SURROGATE,
)

COMM = "\x1b]0;T\x07\u202e\x9b[b]"
"""The process name: 14 bytes in UTF-8, under the kernel's 15-byte limit."""

RAW_SEQUENCES: tuple[str, ...] = (
    "\x1b]0;PMTITLE",
    "\x1b]2;PMTITLE2",
    "\x1b]8;;http://evil",
    "\x1b]52;c;",
    "\x1b[2JPMCLEAR",
    "\x1b]0;T",
)
"""Sequences that must never reach a terminal raw (each is unique to the hostile input)."""

RAW_CHARACTERS: tuple[str, ...] = ("\x9b", "\u202e", "\u200b", "\u200d", "\ufeff", "\udcff")
"""Characters that must never reach a terminal at all (in the decoded output)."""

VISIBLE_FORMS: tuple[str, ...] = (
    "\\x1b]0;PMTITLE\\x07",
    "\\x1b]2;PMTITLE2\\x1b\\",
    "\\x1b]8;;http://evil.example/\\x1b\\PMLINK",
    "\\x1b]52;c;UE1DTElQ\\x07",
    "\\x1b[2JPMCLEAR",
    "\\x9b2JPMCSI",
    "[bold]PMBOLD",
    "[@click=app.quit]PMCLICK[/]",
    "[link=http://x]PMY[/link]",
    "PMBIDI\\u202eKCATTA",
    "PMZW\\u200b\\u200d\\ufeffX",
    "PMSUR\\udcffX",
)
"""How each hostile argument must appear instead: escaped, markup shown literally."""

COMM_VISIBLE = "\\x1b]0;T\\x07\\u202e\\x9b[b]"

BIG_CHUNK = 128 * 1024 - 1
"""Linux caps one exec argument at 128 KiB (MAX_ARG_STRLEN) including its NUL."""
BIG_TOTAL = 1024 * 1024
"""About this much argument text in all (one argument when the child may rewrite its command line)."""

_CHILD = textwrap.dedent(
    """
    import ctypes, mmap, os, socket, sys

    args = [a.encode("utf-8", "surrogateescape") for a in sys.argv[1:]]
    comm = args.pop(0)
    nhostile = int(args.pop(0))
    big_total = int(args.pop(0))
    if comm and sys.platform.startswith("linux"):
        with open("/proc/self/comm", "wb") as f:
            f.write(comm[:15])
    mode = "args"
    keep = None
    if sys.platform.startswith("linux"):
        # Replace the command line with the hostile words and ONE argument of big_total bytes, as
        # setproctitle does (needs CAP_SYS_RESOURCE); otherwise the exec-time arguments stay.
        new = b"\\0".join([b"hostile-child"] + args[:nhostile] + [b"B" * big_total]) + b"\\0"
        buf = mmap.mmap(-1, len(new))
        buf.write(new)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        PR_SET_MM, ARG_START, ARG_END = 35, 8, 9
        end = addr + len(new)
        if prctl(PR_SET_MM, ARG_START, addr, 0, 0) == 0 and prctl(PR_SET_MM, ARG_END, end, 0, 0) == 0:
            mode = "one"
        elif prctl(PR_SET_MM, ARG_END, end, 0, 0) == 0 and prctl(PR_SET_MM, ARG_START, addr, 0, 0) == 0:
            mode = "one"
        keep = buf
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    print(tcp.getsockname()[1], mode, flush=True)
    sys.stdin.read()
    """
)


class HostileChild:
    """The child process: ``port`` is its loopback listener; ``one_big_argument`` says how the 1 MiB came."""

    def __init__(self, workdir: Path, comm: str = COMM) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / "hostile_child.py"
        script.write_text(_CHILD)
        big = [chr(ord("a") + i % 26) * BIG_CHUNK for i in range(max(1, BIG_TOTAL // BIG_CHUNK))]
        argv = [sys.executable, str(script), comm, str(len(HOSTILE_ARGS)), str(BIG_TOTAL), *HOSTILE_ARGS, *big]
        # os.fsencode turns the lone surrogate back into the byte 0xff for exec.
        self.proc = subprocess.Popen(
            [os.fsencode(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2:
            self.close()
            raise RuntimeError(f"hostile child did not start: {line!r}")
        self.port = int(line[0])
        self.one_big_argument = line[1] == "one"
        self.cmdline: list[str] = psutil.Process(self.proc.pid).cmdline()
        """The command line as psutil reads it (what portmon shows)."""

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    def close(self) -> None:
        """Let the child exit (it waits on stdin), killing it if it does not."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def portmon_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for running ``python -m portmon`` from the repository root."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=root)
    env.update(extra or {})
    return env
