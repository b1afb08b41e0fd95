"""The ``portmon`` command line: global options, the subcommands' parsers, and the live monitor's launcher."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO

from portmon import __version__
from portmon.cli import kill, watch, who, why
from portmon.cli import list as list_command
from portmon.cli.context import PROG, CommandFailed, Context, Runner, UsageError, _Parser, positive_float

if TYPE_CHECKING:
    from portmon.collect.fdwalk import ColdWalk


def _global_options(parser: argparse.ArgumentParser, sub: bool) -> None:
    """The options accepted both before and after the subcommand."""
    suffix = "_sub" if sub else ""
    parser.add_argument(
        "--registry",
        dest="registry" + suffix,
        action="append",
        metavar="PATH",
        help="extra services file (services(5) or IANA CSV); repeatable, earlier files win",
    )
    parser.add_argument(
        "--interval",
        dest="interval" + suffix,
        type=positive_float,
        metavar="SECONDS",
        default=None if sub else 1.0,
        help="refresh interval of the live commands (default 1)",
    )
    parser.add_argument(
        "--collector",
        dest="collector" + suffix,
        choices=("auto", "procfs", "psutil"),
        default=None if sub else "auto",
        help="how sockets are read: auto (procfs on Linux), procfs, or psutil",
    )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Runner]]:
    """The argument parser and the runner of each subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Live TCP/UDP port monitor. With no command, opens the live table in a terminal "
        "(or prints 'portmon list' when output is not a terminal).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_options(parser, sub=False)
    # With ``prog`` given, argparse needs no help formatter (and its shutil import, ~4 ms) to build them.
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog=PROG)
    runners: dict[str, Runner] = {}
    for module in (list_command, who, kill, watch, why):
        name, runner = module.add_parser(subs)
        runners[name] = runner
    for sp in subs.choices.values():
        _global_options(sp, sub=True)
    return parser, runners


def _scrub_environment_for_root() -> None:
    """As root, drop Textual's environment switches so ``sudo -E portmon`` cannot be driven by them."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None or geteuid() != 0:
        return
    for name in [n for n in os.environ if n.startswith("TEXTUAL")]:
        del os.environ[name]


def run_live(ctx: Context) -> int:
    """Open the live monitor; the UI package is imported only here (deferred import).

    Importing portmon.ui.app (Textual and Rich) takes 270-870 ms on a busy 2-core host (``python -X
    importtime``, five runs): every one-shot command would pay it if this import were at the top.
    """
    _scrub_environment_for_root()
    from portmon.ui.app import run_app

    return run_app(ctx.collector(), interval=ctx.interval)


ONE_SHOT = frozenset({"list", "who", "why"})
"""Commands that scan once, print and end: ``main(exit_hard=True)`` ends the process right after them."""


def run_without_gc(runner: Runner, ctx: Context) -> int:
    """Run a one-shot command with the cyclic garbage collector off (speed trick).

    A one-shot command's memory is one scan's, freed when the process ends; the collector's passes
    over the 10,000 new sockets' objects find nothing to free. Measured at 10,000 sockets (``python
    bench/bench_tricks.py``, ``list --json`` of synthetic_snapshot(10_000) in process, CPU time,
    median of 21 on a busy 2-core host): 91 ms against 110 ms with the collector on. The plain
    version is ``runner(ctx)``; tests/test_cli_tricks.py checks that both print the same.
    """
    import gc

    gc.disable()
    try:
        return runner(ctx)
    finally:
        gc.enable()


def exit_skipping_teardown(code: int, out: TextIO, err: TextIO) -> NoReturn:
    """End the process at once, output flushed, skipping the interpreter's teardown (speed trick).

    Freeing 10,000 sockets' objects and every module at exit is work nothing needs after a one-shot
    command: no threads hold work, no atexit hook is ours. Measured at 10,000 sockets (``python
    bench/bench_tricks.py``, a process that sorts and renders synthetic_snapshot(10_000), CPU time,
    median of 21 on a busy 2-core host): 214 ms against 257 ms with the normal exit. The plain
    version returns ``code`` and lets the interpreter exit; tests/test_cli_tricks.py checks that
    both print the same and exit with the same code.
    """
    for stream in (out, err):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away: nothing left to tell it
    os._exit(code)


def main(
    argv: Sequence[str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    exit_hard: bool = False,
    cold_walk: ColdWalk | None = None,
) -> int:
    """Run the command line; return the exit code (never raises for bad input).

    ``exit_hard``: run a one-shot command (ONE_SHOT) with the garbage collector off
    (``run_without_gc``) and end the process right after it (``exit_skipping_teardown``) rather
    than return. The ``portmon`` command sets it. ``cold_walk``: a cold fd walk already started for
    this command's first scan; it is cancelled if the command does not take it.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    ctx: Context | None = None
    try:
        parser, runners = build_parser()
        args = parser.parse_args(argv)
        ctx = Context(args=args, stdout=out, stderr=err)
        ctx.cold_walk, cold_walk = cold_walk, None
        if args.command is None:
            if out.isatty() and sys.stdin.isatty():
                return run_live(ctx)
            args.terms, args.listening, args.json, args.csv = [], False, False, False
            runner: Runner = list_command.run
        else:
            runner = runners[args.command]
        if not (exit_hard and (args.command is None or args.command in ONE_SHOT)):
            return runner(ctx)
        code = run_without_gc(runner, ctx)
        if ctx.cold_walk is not None:
            ctx.cold_walk.cancel()
        exit_skipping_teardown(code, out, err)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 2
    except CommandFailed as exc:
        print(f"{PROG}: {exc}", file=err)
        return exc.code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``portmon list | head``): not an error worth a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    finally:
        # A walk nobody took (bad arguments, --help, another collector): stop and reap its child.
        for walk in (cold_walk, ctx.cold_walk if ctx is not None else None):
            if walk is not None:
                walk.cancel()

