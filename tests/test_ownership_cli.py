"""Ownership in the one-shot commands: families and managers in list/who/why, the managed: filter, SO_REUSEPORT."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ownership_procs import Tree, read_line, ready_pids, restart_loop, start_prefork

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash")


REUSEPORT = r"""
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("READY", s.getsockname()[1], os.getpid(), flush=True)
time.sleep(60)
"""


def portmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "portmon", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_list_json_and_csv_name_the_family_master_first(tmp_path: Path, trees: list[Tree]) -> None:
    port, master, workers = start_prefork(tmp_path, trees)
    res = portmon("list", f"lport:{port}", "state:listen", "--json")
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["pid"] == master
    assert row["holders"][0] == {"pid": master, "process": row["process"], "user": row["user"], "role": "main"}
    assert [(h["pid"], h["role"]) for h in row["holders"][1:]] == [(w, "worker") for w in sorted(workers)]
    assert "manager" in row
    res = portmon("list", f"lport:{port}", "state:listen", "--csv")
    header, line = res.stdout.strip().splitlines()
    cells = dict(zip(header.split(","), line.split(","), strict=True))
    assert cells["pid"] == str(master)
    assert cells["pids"] == " ".join(map(str, [master, *sorted(workers)]))
    res = portmon("who", str(port), "--json")
    assert [h["pid"] for h in json.loads(res.stdout)["holders"]] == [master, *sorted(workers)]
    (line,) = portmon("list", f"lport:{port}", "state:listen").stdout.splitlines()[1:]
    assert f" {master}  {row['process']} +3 workers " in f"{line} "
    # who marks each holder's place in the family: the master "main", each worker "worker of MASTER".
    who = portmon("who", f"{port}/tcp").stdout.splitlines()
    notes = {int(line.split()[0]): line for line in who if line.split() and line.split()[0].isdigit()}
    assert list(notes) == [master, *sorted(workers)]
    assert " main " in notes[master] and all(f" worker of {master} " in notes[w] for w in workers)


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_who_and_the_managed_filter_name_a_restart_loop(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees, delay="1")
    shell = tree.proc.pid

    who = portmon("who", f"{port}/tcp")
    assert who.returncode == 0, who.stderr
    assert f"managed by bash loop (pid {shell})" in who.stdout
    doc = json.loads(portmon("who", f"{port}/tcp", "--json").stdout)
    assert (doc["manager"]["kind"], doc["manager"]["pid"]) == ("shell", shell)

    listed = json.loads(portmon("list", f"lport:{port}", "managed:loop", "--json").stdout)
    assert [r["pid"] for r in listed] == [pid]
    assert listed[0]["manager"]["name"] == "bash loop"
    assert json.loads(portmon("list", f"lport:{port}", "managed:none", "--json").stdout) == []
    bad = portmon("list", "managed:")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_why_names_a_restart_loop(tmp_path: Path, child_script: Path, trees: list[Tree]) -> None:
    tree, port, pid = restart_loop(tmp_path, child_script, trees, delay="1")
    shell = tree.proc.pid

    why = portmon("why", f"{port}/tcp")
    assert f"supervised by bash loop (pid {shell}): it will probably restart; stop the loop first: `kill {shell}`" in (
        why.stdout)
    doc = json.loads(portmon("why", f"{port}/tcp", "--json").stdout)
    assert (doc["manager"]["kind"], doc["manager"]["pid"]) == ("shell", shell)
    assert doc["preflight"]["restart"] == "likely" and doc["preflight"]["stop_command"] == f"kill {shell}"
    assert [h["pid"] for h in doc["holders"]] == [pid]


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")
def test_why_says_a_reuseport_server_could_join(tmp_path: Path, trees: list[Tree]) -> None:
    script = tmp_path / "reuseport.py"
    script.write_text(REUSEPORT)
    first = Tree([sys.executable, str(script), "0"])
    trees.append(first)
    words = read_line(first.proc).split()
    port = int(words[1])
    second = Tree([sys.executable, str(script), str(port)])
    trees.append(second)
    ready_pids(second.proc)
    why = portmon("why", f"{port}/tcp")
    assert "2 sockets listen on 127.0.0.1:" in why.stdout and "together (SO_REUSEPORT)" in why.stdout
    assert "a new server that sets SO_REUSEPORT would start on 127.0.0.1:" in why.stdout
    doc = json.loads(portmon("why", f"{port}/tcp", "--json").stdout)
    assert doc["reuseport"]["joinable"] is True and len(doc["reuseport"]["groups"][0]) == 2




def test_why_lists_the_prefork_master_first(tmp_path: Path, trees: list[Tree]) -> None:
    port, master, workers = start_prefork(tmp_path, trees)
    doc = json.loads(portmon("why", f"{port}/tcp", "--json").stdout)
    assert [h["pid"] for h in doc["holders"]] == [master, *sorted(workers)]
    comm = Path(f"/proc/{master}/comm").read_text().strip()
    assert doc["message"].split(" by ", 1)[1].startswith(f"{comm} ({master}), {comm} ({min(workers)})")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@pytest.mark.parametrize("delay", ["0.05", "1"])
def test_kill_under_a_restart_loop_says_rebound_by_the_new_pid(
    tmp_path: Path, child_script: Path, trees: list[Tree], delay: str
) -> None:
    # The loop restarts the listener on the port the first one got.
    tree, port, pid = restart_loop(tmp_path, child_script, trees, delay)
    shell = tree.proc.pid

    dry = portmon("kill", f"{port}/tcp", "--dry-run")
    assert f"manager: supervised by bash loop (pid {shell}): it will probably restart" in dry.stdout

    res = portmon("kill", f"{port}/tcp", "--yes", "--json", "--grace", "30")
    doc = json.loads(res.stdout)
    assert doc["preflight"]["restart"] == "likely" and doc["manager"]["pid"] == shell
    (again,) = ready_pids(tree.proc)  # the loop's next listener, as it announced itself
    assert doc["verdict"] == "rebound", doc["message"]
    assert res.returncode == 1
    (new,) = doc["rebound_by"]
    assert (new["pid"], new["parent_pid"]) == (again, shell) and again != pid
    assert f"re-bound by new pid {again}" in doc["message"]
