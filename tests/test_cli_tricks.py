"""The command line's speed tricks give what their plain versions give (bench/bench_tricks.py: what they save)."""

from __future__ import annotations

import argparse
import gc
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portmon.cli import context as context_module
from portmon.cli.context import Context, help_formatter
from portmon.cli.main import build_parser, run_without_gc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener() -> Iterator[int]:
    """A port this test process listens on (loopback), with one connection to it."""
    with socket.socket() as srv, socket.socket() as client:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        client.connect(("127.0.0.1", port))
        conn, _ = srv.accept()
        with conn:
            yield port


def _ctx(argv: list[str]) -> Context:
    parser, _ = build_parser()
    return Context(parser.parse_args(argv), io.StringIO(), io.StringIO())


def test_without_gc_prints_what_the_plain_run_prints(listener: int) -> None:
    from portmon.cli import who

    plain, fast = _ctx(["who", str(listener)]), _ctx(["who", str(listener)])
    assert who.run(plain) == 0
    assert gc.isenabled()
    assert run_without_gc(who.run, fast) == 0
    assert fast.stdout.getvalue() == plain.stdout.getvalue()  # type: ignore[attr-defined]
    assert str(listener) in fast.stdout.getvalue()  # type: ignore[attr-defined]


def test_without_gc_turns_the_collector_back_on_even_after_an_error() -> None:
    def boom(ctx: Context) -> int:
        assert not gc.isenabled()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_without_gc(boom, _ctx(["list"]))
    assert gc.isenabled()


def _portmon(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


HARD = "import sys; from portmon.cli.launch import main; sys.argv[0] = 'portmon'; main()"
"""The ``portmon`` command: exit_skipping_teardown (and the other start-up tricks) on."""
PLAIN = "import sys; from portmon.cli.main import main; sys.exit(main(sys.argv[1:]))"
"""The same command line, run plainly: the function returns and the interpreter exits normally."""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads this process's sockets from /proc")
@pytest.mark.parametrize("args", [["who", "{port}"], ["list", "--json", ":{port}"], ["who", "{port}", "--json"]])
def test_skipping_teardown_prints_and_exits_as_the_plain_exit(listener: int, args: list[str]) -> None:
    argv = [a.format(port=listener) for a in args]
    hard, plain = _portmon(HARD, *argv), _portmon(PLAIN, *argv)
    assert (hard.returncode, hard.stdout) == (plain.returncode, plain.stdout) == (0, plain.stdout)
    assert str(listener) in hard.stdout


def test_skipping_teardown_keeps_the_exit_code_of_nothing_found() -> None:
    # A port just freed by this test: whichever way, "nobody holds it" is exit 1.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hard, plain = _portmon(HARD, "who", str(port)), _portmon(PLAIN, "who", str(port))
    if "nobody holds" not in plain.stdout:
        pytest.skip(f"port {port} was taken between the probe and the scan")
    assert (hard.returncode, hard.stdout) == (plain.returncode, plain.stdout)
    assert hard.returncode == 1


def test_skipping_teardown_flushes_a_long_output_through_a_pipe() -> None:
    # Output bigger than a pipe buffer and the stdio buffer: all of it arrives before the hard exit.
    code = (
        "import io, sys\n"
        "from portmon.cli.main import exit_skipping_teardown\n"
        "sys.stdout.write('x' * 300000)\n"
        "exit_skipping_teardown(3, sys.stdout, sys.stderr)\n"
    )
    res = _portmon(code)
    assert res.returncode == 3 and res.stdout == "x" * 300000


@pytest.mark.parametrize("columns", [None, "100", "33", "0", "-5", "wide", "1"])
def test_help_formatter_chooses_the_width_argparse_would(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = help_formatter("portmon")
    theirs = argparse.HelpFormatter("portmon")
    assert ours._width == theirs._width
    assert ours._max_help_position == theirs._max_help_position


def test_help_text_is_the_same_with_the_plain_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "90")
    parser, _ = build_parser()
    fast = parser.format_help()
    monkeypatch.setattr(context_module, "help_formatter", argparse.HelpFormatter)
    plain_parser, _ = build_parser()
    assert plain_parser.format_help() == fast
    assert "list" in fast and "who" in fast
