"""Choosing a collector: the incremental procfs one on Linux, psutil elsewhere."""

from __future__ import annotations

import sys

from portmon.collect.base import Collector, ServiceLookup


def default_collector(services: ServiceLookup | None = None, prefer: str = "auto", counters: bool = True) -> Collector:
    """The best collector for this platform: the incremental procfs one on Linux, psutil elsewhere.

    ``prefer`` is "auto", "procfs" or "psutil". ``counters``: read TCP traffic counters (tcp_info)
    where the collector can; a command that shows no traffic can save their cost.
    """
    if prefer not in ("auto", "procfs", "psutil"):
        raise ValueError(f"unknown collector {prefer!r}: expected auto, procfs or psutil")
    if prefer != "psutil" and sys.platform.startswith("linux"):
        try:
            from portmon.collect.procfs import ProcfsCollector
        except ImportError:
            if prefer == "procfs":
                raise
        else:
            if ProcfsCollector.available():
                return ProcfsCollector(services=services, counters=counters)
    if prefer == "procfs":
        raise ValueError("the procfs collector needs Linux with /proc/net")
    from portmon.collect.psutil_collector import PsutilCollector

    return PsutilCollector(services=services)
