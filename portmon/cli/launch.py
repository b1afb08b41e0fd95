"""The ``portmon`` command: starts the first scan's fd walk before anything else loads, then runs the CLI.

A first scan spends most of its time reading every process's fds (~35 ms at 10,000 sockets,
~300-550 ms at issue 18's 32,000), the rest reading the socket tables and importing portmon.
When the command line looks like one that starts with a scan (``list``, ``who``, ``why``, or no
command: the live monitor, or the list when output is not a terminal), a child process starts that
walk right away, while this process imports (Textual too, for the live monitor), parses its
arguments and reads the tables (portmon.collect.fdwalk). A wrong guess costs only a child that is
cancelled; the scan checks every process the child read against its own listing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portmon.collect.fdwalk import ColdWalk

_SCANS_ONCE = ("list", "who", "why")
_TAKES_VALUE = ("--registry", "--interval", "--collector")
"""The global options that take a value (given before or after the command)."""


def scans_first(argv: list[str]) -> bool:
    """A guess, before argparse, that this command line starts with a scan by the procfs collector:
    a one-shot command, or no command (the live monitor, or the list it prints without a terminal)."""
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
        # No command: the live monitor, whose first rows wait for the first scan, or the list.
        return sys.stdout is not None
    return command in _SCANS_ONCE


def start_cold_walk_early(argv: list[str]) -> ColdWalk | None:
    """Start the first scan's fd walk in a child before anything else loads, when ``argv`` scans first (speed trick).

    The walk then overlaps this process's imports, argument parsing and table reads, so it saves
    wall time, not CPU time, and only with a core to spare. Measured (``python bench/bench_tricks.py
    --no-load --only walk``, ``portmon list --json``, 21 runs each on a 2-core host under a load
    average of 6): at 10,000 sockets median 492 ms against 537 ms without (fastest runs 284 against
    280); at 20,000-51,000 sockets median 947 against 1030 (fastest 264 against 270). The medians
    favour it; the fastest runs cannot tell the two apart on so busy a host. The live monitor's first
    rows come sooner too: its import of Textual (~300-400 ms) overlaps the walk (see
    ``portmon.ui.poller.ScanAhead`` for the figures). The plain version
    starts no walk (None): the scan walks the fds itself. tests/test_launch.py checks that both
    answer the same.
    """
    if not scans_first(argv):
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
