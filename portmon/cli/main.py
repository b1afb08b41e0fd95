"""The ``portmon`` command line: global options, the subcommands' parsers, and the live monitor's launcher."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from portmon import __version__
from portmon.cli import baseline, close, history, kill, record, serve, top, watch, who, why
from portmon.cli import config as config_command
from portmon.cli import list as list_command
from portmon.cli import stream as stream_command
from portmon.cli.context import (
    INTERVAL_MAX,
    INTERVAL_MIN,
    PROG,
    CommandFailed,
    Context,
    Runner,
    UsageError,
    _Parser,
    interval_seconds,
    positive_float,
)
from portmon.cli.hosts import add_host_options
from portmon.cli.streams import GuardedOutput, can_run_live, stdin_or_null, tolerant_encoding
from portmon.gctune import pace_for_long_runs
from portmon.query.sorting import parse_sort
from portmon.textsafe import echo, one_line

if TYPE_CHECKING:
    from portmon.collect.fdwalk import ColdWalk


def _global_options(parser: argparse.ArgumentParser, sub: bool, live: bool = True) -> None:
    """The options accepted both before and after the subcommand; ``--interval`` only where it is used (``live``)."""
    suffix = "_sub" if sub else ""
    parser.add_argument(
        "--registry",
        dest="registry" + suffix,
        action="append",
        metavar="PATH",
        help="extra services file (services(5) or IANA CSV); repeatable, earlier files win",
    )
    if live:
        parser.add_argument(
            "--interval",
            dest="interval" + suffix,
            type=interval_seconds,
            metavar="SECONDS",
            default=None,
            help=f"refresh interval, {INTERVAL_MIN:g} to {INTERVAL_MAX:g} seconds (default 1)",
        )
    parser.add_argument(
        "--collector",
        dest="collector" + suffix,
        choices=("auto", "procfs", "psutil"),
        default=None if sub else "auto",
        help="how sockets are read: auto (procfs on Linux), procfs, or psutil",
    )
    parser.add_argument(
        "--netns",
        dest="netns" + suffix,
        choices=("all", "host"),
        default=None,
        help="network namespaces: all (as root, every namespace on the host: containers, 'ip netns', "
        "'unshare -n') or host (portmon's own only); default $PORTMON_NETNS, else all",
    )
    add_host_options(parser, sub, positive_float)  # remote hosts over ssh: portmon.cli.hosts


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Runner]]:
    """The argument parser and the runner of each subcommand."""
    parser = _Parser(
        prog=PROG,
        description="Live TCP/UDP port monitor. With no command, opens the live table in a terminal "
        "(or prints 'portmon list' when output is not a terminal).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--no-history", action="store_true", help="live monitor: record no history")
    parser.add_argument("--db", dest="live_db", metavar="PATH", help="live monitor: the history database")
    _global_options(parser, sub=False)
    # With ``prog`` given, argparse needs no help formatter (and its shutil import, ~4 ms) to build them.
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, prog=PROG)
    runners: dict[str, Runner] = {}
    for module in (
        list_command, who, kill, watch, why, top, close, config_command, record, history, baseline, serve,
        stream_command,
    ):
        name, runner = module.add_parser(subs)
        runners[name] = runner
    for name, sp in subs.choices.items():
        _global_options(sp, sub=True, live=name in LIVE)
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
    options = live_options(ctx)
    from portmon.cli.dbopts import live_history
    from portmon.ownership.ordered import FamilyOrdered
    from portmon.ui.poller import ScanAhead

    big_blocks_to_the_os()
    pace_for_long_runs()
    collector = ctx.collector()
    hand_cold_walk(ctx, collector)
    # Main holder first in every shared socket, as who, kill and why list them (ordered on the scanning
    # thread). The first scan starts now, while the history opens and the UI loads (ScanAhead).
    with live_history(ctx, ScanAhead(FamilyOrdered(collector))) as (collector, history):
        from portmon.ui.app import run_app

        return run_app(collector, **options, **history)


M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter for the size from which malloc maps a block of its own (malloc.h)."""
BIG_BLOCK = 128 * 1024
"""glibc's default mmap threshold: a block this big or bigger is mapped on its own and unmapped when freed."""


def big_blocks_to_the_os() -> bool:
    """Have glibc map each block of BIG_BLOCK bytes or more on its own, so freeing it frees the memory (memory trick).

    By default glibc raises that threshold each time such a block is freed (up to 32 MB), so the
    live monitor's big lists, sets and dicts (one entry per socket, made and dropped every refresh)
    land in the heap, whose freed space the process keeps. Fixing the threshold keeps them out of
    it. Measured on issue 18's load (31,000 sockets, ``python -m portmon --interval 1`` in a 160x45
    pty, resident size after 8 refreshes, three runs each): 121-124 MB against 141-144 MB; CPU per
    second 25-27 % against 26-28 % (the same within the noise). True when glibc took it; elsewhere
    (musl, macOS) nothing changes. The plain version leaves malloc as it is: both run the same code,
    only where the memory comes from differs (tests/test_launch.py runs the monitor's scan with it).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, BIG_BLOCK))
    except (OSError, AttributeError):  # no libc to load, or one without mallopt
        return False


def hand_cold_walk(ctx: Context, collector: object) -> None:
    """Give the cold fd walk the command started (``portmon.cli.launch``) to the collector's first scan, or
    cancel it when the collector takes none (psutil, remote hosts only). Call it before any thread starts
    scanning."""
    walk, ctx.cold_walk = ctx.cold_walk, None
    if walk is None:
        return
    start_cold_walk = getattr(collector, "start_cold_walk", None)
    if start_cold_walk is None:
        walk.cancel()
    else:
        start_cold_walk(walk)


def live_options(ctx: Context) -> dict[str, Any]:
    """The live monitor's options from the settings (command-line flags over the config file).

    Interval, sort and direction, listening only, theme, visible columns, reverse DNS, the ``ignore``
    filters, and the config file, where the theme and sort chosen in the TUI are remembered.
    """
    settings = ctx.settings
    try:
        column, descending = parse_sort(settings["sort"])
    except ValueError as exc:
        raise CommandFailed(f"{settings.source('sort')}: sort: {exc}", 2) from None
    return {
        "interval": ctx.interval,
        "sort": column,
        "descending": descending,
        "listening_only": bool(settings["listening"]),
        "theme": settings["theme"],
        "columns": tuple(settings["columns"]),
        "reverse_dns": bool(settings["reverse_dns"]),
        "kill_grace": float(settings["grace"]),
        "ignore": tuple(ctx.ignore_filters()),
        "settings_path": settings.path,
    }


LIVE = frozenset({"watch", "top", "record", "serve", "_stream"})
"""Subcommands that refresh, and so take ``--interval`` (the live monitor, with no command, takes it too)."""

ONE_SHOT = frozenset({"list", "who", "why"})
"""Commands that scan once, print and end: ``main(exit_hard=True)`` ends the process right after them."""


def _hosts_exit(ctx: Context, code: int) -> int:
    """A command that printed its rows but lost a remote host (--host) ends with 1 rather than 0."""
    return 1 if code == 0 and ctx.hosts_failed else code


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
    """Run the command line; return the exit code (never raises for bad input or unusable streams).

    ``exit_hard``: run a one-shot command (ONE_SHOT) with the garbage collector off
    (``run_without_gc``) and end the process right after it (``exit_skipping_teardown``) rather
    than return. The ``portmon`` command sets it. ``cold_walk``: a cold fd walk already started for
    this command's first scan; it is cancelled if the command does not take it.

    Output that cannot be written (stdout closed, a full disk) ends in one line on stderr and exit 2;
    a reader that goes away (a broken pipe) leaves the command's own exit code.
    """
    stdin_or_null()
    raw_err = stderr or sys.stderr
    if raw_err is None:  # started with stderr closed: there is nowhere to say anything
        raw_err = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    raw_out = stdout or sys.stdout
    if stdout is None and stderr is None:
        tolerant_encoding(raw_out)
        tolerant_encoding(raw_err)
    err = GuardedOutput(raw_err)
    out: GuardedOutput | None = None
    ctx: Context | None = None
    command: str | None = None
    try:
        if raw_out is None:
            raise CommandFailed("standard output is closed: there is nowhere to write the answer", 2)
        out = GuardedOutput(raw_out)
        parser, runners = build_parser()
        args = parse_arguments(parser, argv)
        command = args.command
        ctx = Context(args=args, stdout=out, stderr=err)  # type: ignore[arg-type]  # a TextIO in all but name
        ctx.cold_walk, cold_walk = cold_walk, None
        ctx.settings  # noqa: B018 - a broken config file stops every command before it acts
        if command is None:
            if can_run_live(sys.stdin, raw_out, sys.stderr if stderr is None else raw_err):
                return run_live(ctx)
            list_command.as_default(args)
            runner: Runner = list_command.run
        else:
            runner = runners[command]
        if not (exit_hard and (command is None or command in ONE_SHOT)):
            return _hosts_exit(ctx, _finish(runner(ctx), out, err))
        code = _hosts_exit(ctx, _finish(run_without_gc(runner, ctx), out, err))
        if ctx.cold_walk is not None:
            ctx.cold_walk.cancel()
        exit_skipping_teardown(code, out, err)  # type: ignore[arg-type]  # a TextIO in all but name
    except UsageError as exc:
        err.write(f"{PROG}: {one_line(str(exc))}{_help_pointer(exc, command)}\n")
        return 2
    except CommandFailed as exc:
        err.write(f"{PROG}: {one_line(str(exc))}\n")
        return exc.code
    except SystemExit as exc:  # --help and --version
        code = exc.code if isinstance(exc.code, int) else 0
        return _finish(code, out, err) if out is not None else code
    except KeyboardInterrupt:
        return 130
    finally:
        err.flush()
        # A walk nobody took (bad arguments, --help, another collector): stop and reap its child.
        for walk in (cold_walk, ctx.cold_walk if ctx is not None else None):
            if walk is not None:
                walk.cancel()


def _finish(code: int, out: GuardedOutput, err: GuardedOutput) -> int:
    """Flush the output; the command's exit code, or 2 with one line when its output could not be written."""
    out.flush()
    if out.failure is not None:
        err.write(f"{PROG}: cannot write the output: {one_line(out.failure)}\n")
        return 2
    return code


def _help_pointer(exc: UsageError, command: str | None) -> str:
    """`` (see 'portmon who --help')`` after an error a subcommand raised, unless the message has one."""
    if "--help" in str(exc):
        return ""
    return f" (see '{PROG} {command} --help')" if command else f" (see '{PROG} --help')"


VALUE_MAY_START_WITH_DASH = ("--sort",)
"""Options whose value may begin with '-' (``--sort -pid``): argparse would take that value for an option."""


def _attach_negative_values(argv: list[str]) -> list[str]:
    """``--sort -pid`` as ``--sort=-pid``, so argparse does not read ``-pid`` as an unknown option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in VALUE_MAY_START_WITH_DASH and value.startswith("-") and value != "--":
            out.append(f"{arg}={value}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; an argument nobody takes is an error pointing at the subcommand's help."""
    args, extra = parser.parse_known_args(_attach_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if extra:
        where = f"{PROG} {args.command}" if args.command else PROG
        shown = " ".join(echo(e, 40) for e in extra[:3]) + (" ..." if len(extra) > 3 else "")
        raise UsageError(f"unrecognized arguments: {shown} (see '{where} --help')")
    return args
