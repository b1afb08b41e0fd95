"""Live processes moved into cgroups named like each manager's, where the machine allows it (root, a writable
``name=systemd`` v1 hierarchy or cgroup v2, and no running systemd whose tree we would disturb)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest
from ownership_procs import Tree, ready_pids

from portmon.ownership import manager as mk
from portmon.ownership.cgroup import parse_cgroup, read_cgroup
from portmon.ownership.resolve import managers_of


def _mounts() -> dict[str, str]:
    """"v1" -> the name=systemd hierarchy's mount point, "v2" -> the cgroup2 mount point, where mounted."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        if parts[2] == "cgroup" and "name=systemd" in parts[3].split(","):
            found["v1"] = parts[1]
        elif parts[2] == "cgroup2":
            found["v2"] = parts[1]
    return found


def _why_not(root: str | None) -> str | None:
    if os.geteuid() != 0:
        return "moving a process between cgroups needs root"
    if Path("/run/systemd/system").exists():
        return "systemd runs this host: the test keeps out of its cgroup tree"
    if root is None:
        return "this hierarchy is not mounted here"
    if not os.access(root, os.W_OK):
        return f"{root} is not writable"
    return None


CID = secrets.token_hex(32)
POD = "8e1c7f0a-2b3d-4c5e-9f60-" + secrets.token_hex(6)
TAG = secrets.token_hex(4)
CASES = [
    (f"system.slice/portmon-{TAG}.service", [(mk.SYSTEMD_UNIT, f"portmon-{TAG}.service")]),
    (f"user.slice/user-1000.slice/user@1000.service/app.slice/dev-{TAG}.service",
     [(mk.SYSTEMD_USER_UNIT, f"dev-{TAG}.service")]),
    (f"user.slice/user-1000.slice/session-{TAG}.scope", [(mk.SESSION, f"session-{TAG}.scope")]),
    (f"system.slice/docker-{CID}.scope", [(mk.DOCKER, CID[:12])]),
    (f"docker/{CID}", [(mk.DOCKER, CID[:12])]),
    (f"machine.slice/libpod-{CID}.scope/container", [(mk.PODMAN, CID[:12])]),
    (f"kubepods/burstable/pod{POD}/{CID}", [(mk.CONTAINER, CID[:12]), (mk.KUBERNETES, POD)]),
    (f"lxc.payload.portmon-{TAG}", [(mk.LXC, f"portmon-{TAG}")]),
    (f"machine.slice/systemd-nspawn@portmon-{TAG}.service/payload", [(mk.NSPAWN, f"portmon-{TAG}")]),
]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize(("path", "expected"), CASES, ids=[c[0].split("/")[-1][:24] for c in CASES])
def test_a_process_moved_into_the_cgroup_is_named(version: str, path: str, expected: list[tuple[str, str]],
                                                  child_script: Path) -> None:
    root = _mounts().get(version)
    why = _why_not(root)
    if why:
        pytest.skip(why)
    assert root is not None
    made: list[Path] = []
    target = Path(root)
    for part in path.split("/"):
        target = target / part
        if not target.exists():
            target.mkdir()
            made.append(target)
    tree = Tree([sys.executable, str(child_script)])
    try:
        (pid,) = ready_pids(tree.proc)
        try:
            (target / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            pytest.skip(f"cannot move a process into {target}: {exc}")
        text = read_cgroup(pid)
        assert text is not None and f":/{path}\n" in text
        assert [(m.kind, m.name) for m in parse_cgroup(text)] == expected
        found = [(m.kind, m.name) for m in managers_of(pid) if m.source == "cgroup"]
        assert found == expected
    finally:
        tree.stop()
        for made_dir in reversed(made):
            try:
                made_dir.rmdir()
            except OSError:
                pass
