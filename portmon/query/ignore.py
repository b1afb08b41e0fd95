"""The config file's ``ignore`` filters applied to every scan: ``IgnoringCollector`` wraps a collector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portmon.collect.base import Collector
from portmon.model import Snapshot
from portmon.query.filters import SocketFilter


def without_ignored(snapshot: Snapshot, ignore: Sequence[SocketFilter]) -> Snapshot:
    """``snapshot`` less the sockets any of ``ignore`` matches (the same snapshot when none does)."""
    if not ignore:
        return snapshot
    kept = tuple(s for s in snapshot.sockets if not any(f.matches(s) for f in ignore))
    return snapshot if len(kept) == len(snapshot.sockets) else snapshot._replace(sockets=kept)


class IgnoringCollector:
    """A collector whose scans leave out the sockets any of ``ignore`` matches.

    Everything else (its name, a remote collector's sessions) is the wrapped collector's.
    """

    def __init__(self, collector: Collector, ignore: Sequence[SocketFilter]) -> None:
        self.wrapped = collector
        self.ignore = tuple(ignore)
        self.name = collector.name

    def scan(self) -> Snapshot:
        """The wrapped collector's scan, less the ignored sockets."""
        return without_ignored(self.wrapped.scan(), self.ignore)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks (e.g. session_for): the wrapped collector's.
        return getattr(self.wrapped, name)
