"""What every subcommand shares: the usage and failure errors, argument types, the parser class and ``Context``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from portmon.collect.base import Collector
from portmon.collect.choose import default_collector
from portmon.config import Config, ConfigError, load_config
from portmon.model import Snapshot, Socket
from portmon.query.filters import FilterError, SocketFilter, parse_filter
from portmon.registry import Registry, load_registry
from portmon.textsafe import echo, one_line

if TYPE_CHECKING:
    from portmon.collect.fdwalk import ColdWalk

PROG = "portmon"


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit 2."""


class CommandFailed(Exception):
    """The command could not do its job: one line on stderr, exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's help formatter, sized to the terminal without importing shutil (speed trick).

    argparse builds a formatter for every ``add_argument``, and its default one imports shutil for
    the width: measured (``python bench/bench_tricks.py``, ``-X importtime``, median of 21 on a busy
    2-core host) 5.2 ms of every command (2.3 ms at best). Same rule as shutil.get_terminal_size:
    $COLUMNS, else the width of the terminal on stdout, else 80. The plain version is
    ``argparse.HelpFormatter``; tests/test_cli_tricks.py checks both choose the same width.
    """
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            # sys.__stdout__ may be None (no stdout at all): the AttributeError below covers it.
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return argparse.HelpFormatter(prog, width=columns - 2)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2, never the usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", help_formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # argparse quotes the user's arguments raw: escaped and cut here, on one line.
        raise UsageError(f"{one_line(message, 300)} (see '{self.prog} --help')")


SECONDS_MAX = 86400.0
"""The longest wait any option takes (a day): a bigger number is surely a typo, and sleep() overflows near 1e9."""

INTERVAL_MIN = 0.1
"""The shortest refresh interval: shorter would only busy-loop a core re-reading /proc."""
INTERVAL_MAX = 3600.0
"""The longest refresh interval (an hour)."""


def seconds_between(text: str, low: float, high: float, low_inclusive: bool = True) -> float:
    """``text`` as a number of seconds in [low, high] (or (low, high]); ArgumentTypeError naming the range."""
    bounds = f"{'from' if low_inclusive else 'greater than'} {low:g} {'to' if low_inclusive else 'up to'} {high:g}"
    problem = f"expected a number of seconds {bounds}, got {echo(text)}"
    if len(text) > 64:  # float() of a megabyte of digits is slow, and no sane number is that long
        raise argparse.ArgumentTypeError(problem)
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(problem) from None
    too_low = value < low if low_inclusive else value <= low
    if value != value or too_low or value > high:  # NaN fails every comparison: refused here
        raise argparse.ArgumentTypeError(problem)
    return value


def positive_float(text: str) -> float:
    """An argparse type for timeouts: seconds greater than 0, at most a day (SECONDS_MAX)."""
    return seconds_between(text, 0.0, SECONDS_MAX, low_inclusive=False)


def interval_seconds(text: str) -> float:
    """An argparse type for refresh intervals: INTERVAL_MIN to INTERVAL_MAX seconds."""
    return seconds_between(text, INTERVAL_MIN, INTERVAL_MAX)


class Context:
    """What a subcommand needs: its parsed arguments, the output streams, and lazily built core objects."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> None:
        self.args = args
        self.stdout = stdout
        self.stderr = stderr
        self._registry: Registry | None = None
        self._settings: Config | None = None
        self.cold_walk: ColdWalk | None = None
        """A cold fd walk the ``portmon`` command started before loading anything (see
        portmon.cli.launch): the first scan takes it when its collector can (ProcfsCollector)."""
        self.hosts_failed = False
        """Set by scan() when a remote host (--host) gave no answer: one-shot commands then exit 1."""
        self.hosts_given = False
        """Set by collector() when --host or --hosts-file named remote hosts (tables then show a HOST column)."""

    def output_lost(self) -> bool:
        """True once stdout could not be written (its reader went away, or it failed): stop producing."""
        return bool(getattr(self.stdout, "dead", False))

    def warn(self, message: str) -> None:
        """Print a one-line warning on stderr (escaped: it may repeat user input or a file's text)."""
        print(f"{PROG}: warning: {one_line(message)}", file=self.stderr)

    def note(self, message: str) -> None:
        """Print a one-line note on stderr (not a warning: how something was done)."""
        print(f"{PROG}: {message}", file=self.stderr)

    @property
    def registry_paths(self) -> list[str]:
        """--registry files, those given before the subcommand first."""
        return list(getattr(self.args, "registry", None) or []) + list(getattr(self.args, "registry_sub", None) or [])

    @property
    def settings(self) -> Config:
        """The effective settings: command-line flags over the config file over the defaults.

        Loaded once; a config file that cannot be used is CommandFailed (exit 2, one line naming the
        file and the line); an unknown key is a warning.
        """
        if self._settings is None:
            try:
                config = load_config()
            except ConfigError as exc:
                raise CommandFailed(str(exc), 2) from None
            for warning in config.warnings:
                self.warn(warning)
            sub = getattr(self.args, "interval_sub", None)
            config.override("interval", sub if sub is not None else getattr(self.args, "interval", None))
            self._settings = config
        return self._settings

    @property
    def interval(self) -> float:
        """--interval, given before or after the subcommand, else the config file's, else 1 s."""
        return float(self.settings["interval"])

    def ignore_filters(self) -> list[SocketFilter]:
        """The config file's ``ignore`` expressions, parsed: a socket matching any of them is left out."""
        filters = []
        for text in self.settings["ignore"]:
            try:
                filters.append(parse_filter(text))
            except FilterError as exc:
                raise CommandFailed(f"{self.settings.source('ignore')}: ignore: {exc}", 2) from None
        return filters

    def without_ignored(self, sockets: list[Socket]) -> list[Socket]:
        """``sockets`` less those the config file's ``ignore`` expressions match."""
        filters = self.ignore_filters()
        if not filters:
            return sockets
        return [s for s in sockets if not any(f.matches(s) for f in filters)]

    @property
    def collector_name(self) -> str:
        """--collector, given before or after the subcommand (default auto)."""
        sub = getattr(self.args, "collector_sub", None)
        value = sub if sub is not None else self.args.collector
        return str(value)

    @property
    def netns(self) -> str:
        """--netns, given before or after the subcommand; else $PORTMON_NETNS; else all."""
        sub = getattr(self.args, "netns_sub", None)
        value = sub if sub is not None else getattr(self.args, "netns", None)
        if value is not None:
            return str(value)
        env = os.environ.get("PORTMON_NETNS", "").strip()
        if env not in ("", "all", "host"):
            raise UsageError(f"PORTMON_NETNS must be 'all' or 'host', not {echo(env)}")
        return env or "all"

    def registry(self) -> Registry:
        """The service registry (loaded once; warnings about missing files go to stderr)."""
        if self._registry is None:
            reg = load_registry(self.registry_paths)
            for w in reg.warnings:
                self.warn(w)
            self._registry = reg
        return self._registry

    def collector(self, counters: bool = True, netns: str | None = None) -> Collector:
        """The collector for this platform (procfs on Linux), naming services from the registry.

        ``counters``: read TCP traffic counters (tcp_info); a command that shows none saves their cost.
        ``netns`` overrides --netns.
        """
        try:
            local = default_collector(
                services=self.registry(),
                prefer=self.collector_name,
                counters=counters,
                netns=netns or self.netns,
                labeller=_netns_label,
            )
        except (ValueError, ImportError) as exc:
            raise CommandFailed(str(exc), 2) from None
        # Remote hosts (--host, --hosts-file): the local collector merged with one ssh session per host.
        from portmon.cli.hosts import host_specs, with_hosts

        try:
            specs = host_specs(self.args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot read the hosts file: {exc.strerror or exc}") from None
        if not specs:
            return local
        self.hosts_given = True
        try:
            return with_hosts(local, specs, self.interval, self.registry())
        except Exception as exc:  # noqa: BLE001 - SshError and the like, one line
            raise CommandFailed(str(exc), 2) from None

    def scan(self) -> Snapshot:
        """One snapshot, or CommandFailed with the reason; notes about hidden owners go to stderr."""
        collector = self.collector()
        walk, self.cold_walk = self.cold_walk, None
        if walk is not None:
            start_cold_walk = getattr(collector, "start_cold_walk", None)
            if start_cold_walk is None:
                walk.cancel()
            else:
                start_cold_walk(walk)
        multi = None
        if self.hosts_given:  # remote hosts: their first answers, within --host-timeout
            from portmon.cli.hosts import host_timeout, report_hosts
            from portmon.remote.collector import MultiHostCollector

            if isinstance(collector, MultiHostCollector):
                multi = collector
                timeout = host_timeout(self.args)
                multi.wait_ready(timeout)
        try:
            snap: Snapshot = collector.scan()
        except Exception as exc:  # noqa: BLE001 - reported as one line
            raise CommandFailed(f"cannot read the socket table: {type(exc).__name__}: {exc}") from None
        if multi is not None:
            self.hosts_failed = report_hosts(multi, self.note, self.warn, timeout)
            snap = snap._replace(warning=multi.quiet_warning)  # the failing hosts are told above
            if snap.error is not None:  # this machine failed: the hosts' rows still come, exit 1
                self.warn(snap.error)
                self.hosts_failed = True
            multi.close()
        if snap.warning:
            self.warn(snap.warning)
        if snap.hidden_note:
            self.warn(snap.hidden_note)
        note = getattr(collector, "netns_note", None)
        if note:
            self.note(note)
        return snap


def _netns_label(inode: int, pids: tuple[int, ...]) -> str | None:
    """What another network namespace belongs to (its container or unit); the ownership layer is loaded only when
    such a namespace exists."""
    from portmon.ownership.netns import namespace_label

    return namespace_label(inode, pids)


Runner = Callable[[Context], int]
