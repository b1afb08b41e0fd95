"""Choosing a collector: procfs on Linux, psutil elsewhere; other network namespaces merged in (as root)."""

from __future__ import annotations

import sys

from portmon.collect.base import Collector, ServiceLookup
from portmon.collect.netns import Labeller, with_namespaces


def default_collector(
    services: ServiceLookup | None = None,
    prefer: str = "auto",
    counters: bool = True,
    netns: str = "all",
    labeller: Labeller | None = None,
) -> Collector:
    """The best collector for this platform: the incremental procfs one on Linux, psutil elsewhere.

    ``prefer`` is "auto", "procfs" or "psutil". ``counters``: read TCP traffic counters (tcp_info)
    where the collector can; a command that shows no traffic can save their cost. ``netns``: "all"
    adds, as root, the sockets of every other network namespace (``portmon.collect.netns``), labelled
    by ``labeller``; "host" keeps to portmon's own.
    """
    if prefer not in ("auto", "procfs", "psutil"):
        raise ValueError(f"unknown collector {prefer!r}: expected auto, procfs or psutil")
    return with_namespaces(_platform_collector(services, prefer, counters), netns, services, labeller)


def _platform_collector(services: ServiceLookup | None, prefer: str, counters: bool) -> Collector:
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
