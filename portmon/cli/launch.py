"""The ``portmon`` command: starts a one-shot command's fd walk before anything else loads, then runs the CLI.

A first scan spends most of its time reading every process's fds (~35 ms at 10,000 sockets),
the rest reading the socket tables and importing portmon. When the command line looks like a
one-shot command that scans (``list``, ``who``, ``why``, or no command with output that is not a
terminal), a child process starts that walk right away, while this process imports, parses its
arguments and reads the tables (portmon.collect.fdwalk). A wrong guess costs only a child that is
cancelled; the scan checks every process the child read against its own listing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from portmon.cli.streams import can_run_live

if TYPE_CHECKING:
    from portmon.collect.fdwalk import ColdWalk

_SCANS_ONCE = ("list", "who", "why")
_TAKES_VALUE = ("--registry", "--interval", "--collector")
"""The global options that take a value (given before or after the command)."""


def scans_once(argv: list[str]) -> bool:
    """A guess, before argparse, that this command line runs a one-shot scan with the procfs collector."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    command = None
    value_of = None
    for arg in argv:
        if value_of is not None:
            if value_of == "--collector" and arg == "psutil":
                return False
            value_of = None
        elif arg in ("-h", "--help", "--version") or arg.startswith("--collector=psutil"):
            return False
        elif arg in _TAKES_VALUE:
            value_of = arg
        elif arg == "--":
            break
        elif command is None and not arg.startswith("-"):
            command = arg
    if command is None:
        # No command prints the list unless the live monitor can run: the same check as portmon.cli.main.
        return sys.stdout is not None and not can_run_live(sys.stdin, sys.stdout, sys.stderr)
    return command in _SCANS_ONCE


def start_cold_walk_early(argv: list[str]) -> ColdWalk | None:
    """Start the first scan's fd walk in a child before anything else loads, when ``argv`` scans once (speed trick).

    The walk then overlaps this process's imports, argument parsing and table reads, so it saves
    wall time, not CPU time, and only with a core to spare. Measured (``python bench/bench_tricks.py
    --no-load --only walk``, ``portmon list --json``, 21 runs each on a 2-core host under a load
    average of 6): at 10,000 sockets median 492 ms against 537 ms without (fastest runs 284 against
    280); at 20,000-51,000 sockets median 947 against 1030 (fastest 264 against 270). The medians
    favour it; the fastest runs cannot tell the two apart on so busy a host. The plain version
    starts no walk (None): the scan walks the fds itself. tests/test_launch.py checks that both
    answer the same.
    """
    if not scans_once(argv):
        return None
    from portmon.collect.fdwalk import ColdWalk

    return ColdWalk()


def main() -> None:
    """The console script's entry point."""
    walk = start_cold_walk_early(sys.argv[1:])
    from portmon.cli.main import main as run

    sys.exit(run(exit_hard=True, cold_walk=walk))


if __name__ == "__main__":
    main()
