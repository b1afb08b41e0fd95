"""The host's listen-queue counters from /proc/net/netstat: ListenOverflows and ListenDrops (Linux)."""

from __future__ import annotations

from typing import NamedTuple

NETSTAT_PATH = "/proc/net/netstat"


class ListenCounters(NamedTuple):
    """Host-wide totals since boot (TcpExt): connections a full accept queue turned away, and drops in all."""

    overflows: int
    """ListenOverflows: a handshake completed but the listener's accept queue was full."""
    drops: int
    """ListenDrops: connections dropped at a listener for any reason (overflows included)."""

    def since(self, before: ListenCounters) -> ListenCounters:
        """How much each counter grew since ``before`` (0 where it went down: a namespace change)."""
        return ListenCounters(max(0, self.overflows - before.overflows), max(0, self.drops - before.drops))


def parse_netstat(text: str) -> ListenCounters | None:
    """ListenOverflows and ListenDrops from the text of /proc/net/netstat; None when they are not in it.

    The file pairs a header line ("TcpExt: Name Name ...") with a value line ("TcpExt: 1 2 ...").
    """
    lines = text.splitlines()
    for header, values in zip(lines, lines[1:], strict=False):
        if not header.startswith("TcpExt:") or not values.startswith("TcpExt:"):
            continue
        names = header.split()[1:]
        numbers = values.split()[1:]
        if len(names) != len(numbers):
            return None
        table = dict(zip(names, numbers, strict=True))
        try:
            return ListenCounters(int(table["ListenOverflows"]), int(table["ListenDrops"]))
        except (KeyError, ValueError):
            return None
    return None


def read_listen_counters(path: str = NETSTAT_PATH) -> ListenCounters | None:
    """The host's counters now, or None where there is no such file (not Linux, no /proc)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return parse_netstat(f.read())
    except OSError:
        return None
