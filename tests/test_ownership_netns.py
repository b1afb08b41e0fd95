"""Network namespaces for real: a listener in an ``unshare -n`` namespace on the same port as one in ours (root
only), seen by the collector, ``list``, ``who``, ``why`` and ``kill``; and the labels of ``ownership.netns``."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from listener_child import ListenerChild
from ownership_procs import Tree, ready_pids

from portmon.cli.main import main
from portmon.collect.choose import default_collector
from portmon.collect.netns import NamespaceReader, NetnsCollector, list_namespaces
from portmon.model import LISTEN, NetnsRef
from portmon.ownership.netns import namespace_label, namespace_labeller

pytestmark = pytest.mark.all_namespaces

UNSHARE = shutil.which("unshare")

# Bring lo up inside the new namespace (SIOCGIFFLAGS / SIOCSIFFLAGS), then become the listener.
LO_UP = r"""
import fcntl, os, socket, struct, sys
s = socket.socket()
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
s.close()
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if UNSHARE is None:
        return "unshare is not installed"
    done = subprocess.run([UNSHARE, "-n", "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"unshare -n is not allowed here: {done.stderr.strip()}"
    return None


class Pair(NamedTuple):
    """A listener in our namespace and one on the same port in a new one."""

    host: ListenerChild
    pid: int
    """The other namespace's listener."""
    inode: int
    """Its namespace."""

    @property
    def port(self) -> int:
        return self.host.port


@pytest.fixture
def pair(tmp_path: Path, child_script: Path, spawn: Callable[..., ListenerChild]) -> Iterator[Pair]:
    why = _can_unshare()
    if why:
        pytest.skip(why)
    host = spawn()
    lo_up = tmp_path / "lo_up.py"
    lo_up.write_text(LO_UP)
    tree = Tree([UNSHARE or "unshare", "-n", sys.executable, str(lo_up), str(child_script), f"port={host.port}"])
    try:
        (pid,) = ready_pids(tree.proc)
        inode = int(os.readlink(f"/proc/{pid}/ns/net")[5:-1])
        yield Pair(host, pid, inode)
    finally:
        tree.stop()


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_collector_shows_the_other_namespace_and_host_only_hides_it(pair: Pair) -> None:
    snap = default_collector(labeller=namespace_labeller()).scan()
    on_port = [s for s in snap.sockets if s.local_port == pair.port and s.state == LISTEN]
    comm = Path(f"/proc/{pair.pid}/comm").read_text().strip()
    assert sorted((s.pid, s.process, s.netns is None) for s in on_port) == sorted(
        [(pair.host.pid, comm, True), (pair.pid, comm, False)]
    )
    theirs = next(s for s in on_port if s.netns is not None)
    assert theirs.netns is not None and theirs.netns.inode == pair.inode
    assert theirs.holders[0].create_time is not None
    host_only = default_collector(netns="host").scan()
    assert [s.pid for s in host_only.sockets if s.local_port == pair.port and s.state == LISTEN] == [pair.host.pid]
    spaces = list_namespaces()
    assert spaces[0].own and pair.host.pid in spaces[0].pids and pair.pid not in spaces[0].pids


def test_list_json_csv_and_the_filter_key(pair: Pair) -> None:
    code, out, err = _run("list", "--json", f"lport:{pair.port}", "state:listen")
    assert code == 0, err
    records = json.loads(out)
    by_pid = {r["pid"]: r["netns"] for r in records}
    assert by_pid[pair.host.pid] is None
    assert by_pid[pair.pid]["inode"] == pair.inode and set(by_pid[pair.pid]) == {"inode", "label"}
    code, out, _ = _run("list", "--json", "--netns", "host", f"lport:{pair.port}", "state:listen")
    assert [r["pid"] for r in json.loads(out)] == [pair.host.pid]
    code, out, _ = _run("list", "--json", f"netns:{pair.inode}", f"lport:{pair.port}")
    assert [r["pid"] for r in json.loads(out)] == [pair.pid]
    code, out, _ = _run("list", "--json", "netns:host", f"lport:{pair.port}", "state:listen")
    assert [r["pid"] for r in json.loads(out)] == [pair.host.pid]
    code, out, _ = _run("list", "--csv", f"lport:{pair.port}", "state:listen")
    header, *rows = out.splitlines()
    assert "netns" in header.split(",") and any(f"net:[{pair.inode}]" in row for row in rows)


def test_who_names_the_namespace_why_and_kill_keep_to_ours(pair: Pair) -> None:
    code, out, err = _run("who", str(pair.port))
    assert code == 0, err
    assert "NETNS" in out and f"net:[{pair.inode}]" in out and str(pair.pid) in out
    assert f"also bound in network namespace net:[{pair.inode}]" in out
    code, out, _ = _run("why", "--json", f"{pair.port}/tcp")
    doc = json.loads(out)
    assert [r["pid"] for r in doc["other_netns"]] == [pair.pid]
    # The test bind is in our namespace: only our listener makes the port busy here.
    assert doc["free"] is False and [h["pid"] for h in doc["holders"]] == [pair.host.pid]
    assert pair.pid not in {s["pid"] for s in doc["sockets"]}
    code, out, _ = _run("kill", "--dry-run", "--yes", f"{pair.port}/tcp")
    assert code == 0
    assert f"would send SIGTERM to {pair.host.pid} on port" in out
    assert f"also bound in network namespace net:[{pair.inode}] (pid {pair.pid})" in out
    assert f"{pair.pid}" not in out.split("also bound")[0]


def test_kill_by_port_never_signals_another_namespace(pair: Pair) -> None:
    pair.host.stop()
    code, out, _ = _run("kill", "--yes", "--json", f"{pair.port}/tcp")
    doc = json.loads(out)
    assert code != 0 and doc["verdict"] == "nobody"
    assert [r["pid"] for r in doc["other_netns"]] == [pair.pid]
    os.kill(pair.pid, 0)  # still running: nothing was signalled across namespaces


def test_the_collector_reads_a_namespace_through_any_of_its_processes(pair: Pair) -> None:
    collector = default_collector()
    assert isinstance(collector, NetnsCollector)
    first = collector.scan()
    assert any(s.pid == pair.pid for s in first.sockets)
    second = collector.scan()
    assert collector.listings == 1 and any(s.pid == pair.pid for s in second.sockets)


def test_labels_from_ip_netns_names_and_cgroups(tmp_path: Path) -> None:
    run = tmp_path / "netns"
    run.mkdir()
    (run / "blue").write_text("")
    blue = os.stat(run / "blue").st_ino
    proc = tmp_path / "proc"
    (proc / "5").mkdir(parents=True)
    (proc / "5" / "cgroup").write_text("0::/system.slice/docker-" + "ab" * 32 + ".scope\n")
    (proc / "6").mkdir()
    (proc / "6" / "cgroup").write_text("0::/\n")
    assert namespace_label(blue, (5,), str(proc), str(run)) == "netns blue"
    assert namespace_label(1, (6, 5), str(proc), str(run)) == "docker container " + "ab" * 6
    assert namespace_label(1, (6,), str(proc), str(run)) is None
    assert namespace_labeller(str(proc), str(run))(blue, ()) == "netns blue"


def test_netlink_in_the_namespace_and_its_proc_net_agree(pair: Pair) -> None:
    ns = next(n for n in list_namespaces() if pair.pid in n.pids)
    reader = NamespaceReader()
    ref = NetnsRef(ns.inode)
    through_netlink = reader.read(ns, ref)
    assert through_netlink.error is None and ns.inode not in reader._procnet  # noqa: SLF001 - netlink was used
    rows, error = reader._read_procnet(ns, ref)  # noqa: SLF001 - the fallback, for comparison
    assert error is None and rows is not None
    listeners = {(s.local_addr, s.local_port, s.inode) for s in through_netlink.sockets if s.state == LISTEN}
    from_text = {(d[0], d[1], d[6]) for table, decoded in rows if table.proto == "tcp" for d in decoded if d[4] == 0x0A}
    assert listeners == from_text and (("127.0.0.1", pair.port) in {(a, p) for a, p, _ in listeners})
    # The host's listener on the same port is not in that namespace's tables.
    assert all(s.pid != pair.host.pid for s in through_netlink.sockets)
