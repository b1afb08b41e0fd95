"""``--host`` and ``--hosts-file``: the options, and this machine's collector joined with the remote hosts'."""

from __future__ import annotations

import argparse
import atexit
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portmon.collect.base import Collector, ServiceLookup
    from portmon.remote.collector import MultiHostCollector
    from portmon.remote.hosts import HostSpec

DEFAULT_HOST_TIMEOUT = 15.0
"""How long a one-shot command waits for the hosts' first answers (ssh itself gives up connecting at 10 s)."""


def add_host_options(parser: argparse.ArgumentParser, sub: bool, seconds: Callable[[str], float]) -> None:
    """--host, --hosts-file and --host-timeout, accepted before and after the subcommand."""
    suffix = "_sub" if sub else ""
    parser.add_argument(
        "--host",
        dest="host" + suffix,
        action="append",
        metavar="[USER@]HOST[:PORT]",
        help="also show this host's sockets, over ssh (batch mode, your ssh config and agent); repeatable",
    )
    parser.add_argument(
        "--hosts-file",
        dest="hosts_file" + suffix,
        action="append",
        metavar="PATH",
        help="read more hosts from PATH, one [USER@]HOST[:PORT] a line ('#' comments)",
    )
    parser.add_argument(
        "--host-timeout",
        dest="host_timeout" + suffix,
        type=seconds,
        metavar="SECONDS",
        default=None,
        help=f"how long one-shot commands wait for the hosts (default {DEFAULT_HOST_TIMEOUT:g})",
    )


def _both(args: argparse.Namespace, name: str) -> list[Any]:
    return list(getattr(args, name, None) or []) + list(getattr(args, name + "_sub", None) or [])


def host_specs(args: argparse.Namespace) -> list[HostSpec]:
    """The hosts named by --host and --hosts-file, each once; HostSpecError or OSError for bad ones."""
    from portmon.remote.hosts import parse_host, parse_hosts_file, unique

    specs = [parse_host(text) for text in _both(args, "host")]
    for path in _both(args, "hosts_file"):
        with open(path, encoding="utf-8", errors="replace") as f:
            specs.extend(parse_hosts_file(f.read(), path))
    return unique(specs)


def host_timeout(args: argparse.Namespace) -> float:
    """--host-timeout, before or after the subcommand."""
    sub = getattr(args, "host_timeout_sub", None)
    value = sub if sub is not None else getattr(args, "host_timeout", None)
    return DEFAULT_HOST_TIMEOUT if value is None else float(value)


def with_hosts(
    local: Collector, specs: list[HostSpec], interval: float, services: ServiceLookup | None
) -> MultiHostCollector:
    """This machine's collector and a session per host, connecting now; closed at exit."""
    from portmon.remote.collector import MultiHostCollector
    from portmon.remote.session import HostSession
    from portmon.remote.ssh import Ssh

    ssh = Ssh()
    sessions = [HostSession(spec, ssh, interval=interval, services=services) for spec in specs]
    collector = MultiHostCollector(local, sessions, on_close=ssh.close)
    collector.start()
    atexit.register(collector.close)
    return collector


MODE_NOTES = {"portmon": "portmon runs there (streaming mode)", "agentless": "agentless (ss), nothing installed there"}


def report_hosts(
    collector: MultiHostCollector, say: Callable[[str], None], warn: Callable[[str], None], timeout: float
) -> bool:
    """Which mode each host answered in (``say``), one warning line per failing host; True when any failed."""
    failed = False
    for state in collector.host_states():
        if state.error is not None or state.snapshot is None:
            failed = True
            warn(f"host {state.label}: {state.error or f'no answer within {timeout:g} s'}")
        else:
            say(f"host {state.label}: {MODE_NOTES.get(state.mode, state.mode)}")
    return failed
