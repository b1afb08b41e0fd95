"""The manager's stop command as a second action: ``portmon kill --stop-manager`` and ``actions.managerstop``.

Real processes the tests start: a bash restart loop holding a loopback port. For a systemd unit, a
``systemctl`` stub on PATH answers ``show`` from recorded output and, on ``stop``, ends the test's own
process group (what systemd does to a unit's cgroup): stopping really stops the restart loop.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from ownership_procs import Tree, restart_loop, wait_for

from portmon.actions.kill.model import FREED, STILL_HELD
from portmon.actions.kill.plan import plan_kill
from portmon.actions.managerstop import StopResult, run_argv, stop_argv, stop_manager
from portmon.collect.choose import default_collector
from portmon.ownership.cgroup import parse_cgroup
from portmon.ownership.enrich import Enricher
from portmon.ownership.manager import RESTART_YES, SYSTEMD_UNIT
from portmon.ownership.preflight import Preflight, predict
from portmon.portspec import PortSpec, sockets_on_port

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

# Recorded on a Debian 12 host (systemd 252): `systemctl show --property=... -- UNIT` of a Restart=always unit.
SHOW_LOOP = "Restart=always\nMainPID=4242\nNRestarts=0\nActiveState=active\nSubState=running\n"

STUB = """#!{bash}
echo "$*" >> "{log}"
for last; do :; done
case "$*" in
  *show*) cat "{show}" ;;
  *stop*) kill -TERM -- -$(cat "{group}") ;;
  *) exit 1 ;;
esac
"""


def portmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "portmon", *args], capture_output=True, text=True, cwd=ROOT,
                          env=full, timeout=90, stdin=subprocess.DEVNULL)


def stub_systemctl(tmp_path: Path, group: int) -> tuple[Path, Path]:
    """A ``systemctl`` whose ``stop`` ends process group ``group`` (the test's own loop); (bin dir, call log)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (tmp_path / "show").write_text(SHOW_LOOP)
    (tmp_path / "group").write_text(str(group))
    log = tmp_path / "calls.log"
    stub = bindir / "systemctl"
    stub.write_text(STUB.format(bash=BASH, log=log, show=tmp_path / "show", group=tmp_path / "group"))
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bindir, log


def unit_preflight(pids: list[int]) -> Preflight:
    """The preflight of a holder whose cgroup is ``loop.service``, enriched through ``systemctl show``."""
    managers = Enricher().enrich(parse_cgroup("0::/system.slice/loop.service\n"), None)
    return predict(managers, set(pids))


def test_cli_stop_manager_stops_the_loop_then_kills_the_listener(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees)
    shell = tree.proc.pid

    dry = portmon("kill", f"{port}/tcp", "--dry-run", "--stop-manager")
    assert f"dry run: would first run the manager's stop command `kill {shell}`" in dry.stdout

    res = portmon("kill", f"{port}/tcp", "--yes", "--json", "--stop-manager", "--grace", "30")
    doc = json.loads(res.stdout)
    stop = doc["manager_stop"]
    # The loop's stop command ends the loop, not the listener it started: that one the kill then signals.
    assert stop["argv"] == ["kill", str(shell)] and stop["exit_code"] == 0
    assert stop["verdict"] == STILL_HELD and stop["message"] == f"port {port}/tcp still held by {pid}"
    assert f"manager stop: ran `kill {shell}` (exit 0): port {port}/tcp still held by {pid}" in res.stderr
    assert doc["verdict"] == FREED, doc["message"]
    assert doc["message"] == f"port {port}/tcp freed" and res.returncode == 0
    assert doc["results"][0]["pid"] == pid and doc["results"][0]["result"] == "exited"
    wait_for(lambda: tree.proc.poll() is not None, what="the loop to be gone")


def test_cli_without_stop_manager_has_a_null_record(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    _, port, _ = restart_loop(tmp_path, child_script, trees)
    res = portmon("kill", f"{port}/tcp", "--dry-run", "--json")
    doc = json.loads(res.stdout)
    assert doc["manager_stop"] is None and doc["verdict"] == "dry-run"


def test_a_unit_stop_command_frees_the_port(
    tmp_path: Path, child_script: Path, trees: list[Tree], monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees)
    bindir, log = stub_systemctl(tmp_path, tree.proc.pid)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    spec = PortSpec(port, "tcp")
    collector = default_collector()
    plan = plan_kill(sockets_on_port(collector.scan().sockets, spec), spec)
    pre = unit_preflight([pid])
    assert pre.restart == RESTART_YES and pre.manager is not None and pre.manager.kind == SYSTEMD_UNIT
    assert pre.message == (
        "systemd will restart loop.service (Restart=always): stop the unit instead: `systemctl stop loop.service`"
    )
    assert stop_argv(pre) == ("systemctl", "stop", "loop.service")

    result = stop_manager(plan, pre, collector.scan)
    assert isinstance(result, StopResult)
    assert (result.exit_code, result.verdict.kind) == (0, FREED), result.message
    assert result.message == f"ran `systemctl stop loop.service` (exit 0): port {port}/tcp freed"
    assert "stop loop.service" in log.read_text()
    wait_for(lambda: tree.proc.poll() is not None, what="the loop to be gone")


def test_a_failing_stop_command_is_reported_and_judged(
    tmp_path: Path, child_script: Path, trees: list[Tree]
) -> None:
    _, port, pid = restart_loop(tmp_path, child_script, trees)
    spec = PortSpec(port, "tcp")
    collector = default_collector()
    plan = plan_kill(sockets_on_port(collector.scan().sockets, spec), spec)
    missing = str(tmp_path / "no-such-program")
    pre = Preflight(unit_preflight([pid]).managers[:0], "yes", "m", None)
    with pytest.raises(ValueError, match="no stop command"):
        stop_manager(plan, pre, collector.scan)
    from portmon.ownership.manager import Manager

    broken = Manager(SYSTEMD_UNIT, "x.service", "cgroup", stop=f"{missing} stop x.service")
    result = stop_manager(plan, predict((broken,), {pid}), collector.scan, wait=0.1)
    assert result.exit_code is None and result.verdict.kind == STILL_HELD
    assert result.message.startswith(f"ran `{missing} stop x.service` (not run: ")
    assert result.message.endswith(f"port {port}/tcp still held by {pid}")


def test_run_argv_uses_no_shell(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    code, out = run_argv(["echo", f"a; touch {marker}"], 5.0)
    assert code == 0 and out == f"a; touch {marker}" and not marker.exists()
    with pytest.raises(TimeoutError):
        run_argv(["sleep", "5"], 0.2)
