"""What a network namespace belongs to: its ``ip netns`` name, or the container or unit its processes run in.

The namespaces themselves are found and read in ``portmon.collect.netns`` (the collect layer may not
import this one); :func:`namespace_labeller` is handed to it by the command line, so the cgroup
parsing here is only loaded when another namespace exists.
"""

from __future__ import annotations

from portmon.collect.netns import Labeller, named_namespaces
from portmon.ownership.cgroup import parse_cgroup, read_cgroup


def namespace_label(
    inode: int, pids: tuple[int, ...], procfs: str = "/proc", run_dir: str = "/run/netns"
) -> str | None:
    """``netns NAME`` for a namespace ``ip netns`` named, else the innermost manager of one of its first
    three processes (``container 3f2a…``, ``unit nginx.service``), else None. Untrusted text."""
    name = named_namespaces(run_dir).get(inode)
    if name is not None:
        return f"netns {name}"
    for pid in pids[:3]:
        text = read_cgroup(pid, procfs)
        managers = parse_cgroup(text) if text else ()
        if managers:
            return managers[0].label
    return None


def namespace_labeller(procfs: str = "/proc", run_dir: str = "/run/netns") -> Labeller:
    """:func:`namespace_label` for ``procfs`` and ``run_dir``, as ``portmon.collect.netns`` takes it."""

    def label(inode: int, pids: tuple[int, ...]) -> str | None:
        return namespace_label(inode, pids, procfs, run_dir)

    return label
