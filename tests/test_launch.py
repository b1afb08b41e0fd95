"""The ``portmon`` command's entry point: when it starts a cold fd walk early, and that the walk changes no answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portmon.cli import launch
from portmon.cli.main import main
from portmon.collect import owners
from portmon.registry import Registry, ServiceEntry

ROOT = Path(__file__).resolve().parent.parent
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cold walk reads /proc (Linux)")


@linux_only
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list"], True),
        (["list", "--json", ":8080"], True),
        (["who", "8080"], True),
        (["why", "8080/tcp"], True),
        (["--registry", "list", "list"], True),  # "list" after --registry is the option's value
        (["--interval", "2", "list"], True),
        (["list", "--collector", "procfs"], True),
        (["list", "--collector", "psutil"], False),
        (["--collector=psutil", "list"], False),
        (["list", "--help"], False),
        (["-h"], False),
        (["--version"], False),
        (["kill", "8080"], False),
        (["watch"], False),
        (["--registry", "who"], True),  # "who" is the option's value: no command, the live monitor
        ([], True),  # the live monitor: its first rows wait for the first scan
        (["--interval", "2"], True),
        (["--collector", "psutil"], False),
    ],
)
def test_which_command_lines_start_a_cold_walk(
    argv: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no command, the answer depends on the terminal: make every stream look like one here.
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        monkeypatch.setattr(stream, "isatty", lambda: True)
    assert launch.scans_first(argv) is expected


@linux_only
def test_no_command_walks_with_or_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a terminal the list is printed, with one the live monitor starts: both begin with a scan.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert launch.scans_first([]) is True
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        monkeypatch.setattr(stream, "isatty", lambda: True)
    assert launch.scans_first([]) is True
    monkeypatch.setattr(sys, "stdout", None)  # nowhere to write: the command fails before it scans
    assert launch.scans_first([]) is False


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@linux_only
def test_the_command_with_its_cold_walk_answers_as_a_scan_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test process holds the sockets: the scan in it must name it as a holder, as the command does
    # (portmon's own pid is never a holder: tests/test_self_holder.py).
    monkeypatch.setattr(owners, "own_pids", frozenset)
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client.connect(("127.0.0.1", port))
        server, _ = listener.accept()
        with server:
            res = _run("list", "--json", f":{port}")
            assert res.returncode == 0, res.stderr
            assert main(["list", "--json", f":{port}"]) == 0
            here = json.loads(capsys.readouterr().out)
    rows = json.loads(res.stdout)
    assert rows == here
    assert len(rows) == 3 and {r["pid"] for r in rows} == {os.getpid()}


@linux_only
def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", "list", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"["
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "Exception ignored" not in err


def test_port_names_is_lookup_for_every_port() -> None:
    reg = Registry(
        [
            ServiceEntry("alpha", 7001, "tcp"),
            ServiceEntry("beta", 7001, "udp"),
            ServiceEntry("first", 7002, "tcp"),
            ServiceEntry("second", 7002, "tcp"),  # earlier entries win
        ]
    )
    assert reg.port_names("tcp") == {7001: "alpha", 7002: "first"}
    assert reg.port_names("udp") == {7001: "beta"}
    assert reg.port_names("sctp") == {}
    for proto in ("tcp", "udp"):
        for port, name in reg.port_names(proto).items():
            assert reg.lookup(port, proto) == name


@linux_only
def test_a_full_name_memo_names_sockets_as_lookups_do() -> None:
    from portmon.collect.procfs import ProcfsCollector

    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client.connect(("127.0.0.1", port))
        reg = Registry([ServiceEntry("portmon-test", port, "tcp")])
        with_memo = ProcfsCollector(services=reg).scan().sockets
        with_lookups = ProcfsCollector(services=reg.lookup).scan().sockets
        memo_first = {s.key: (s.local_service, s.remote_service) for s in with_memo}
        lookups = {s.key: (s.local_service, s.remote_service) for s in with_lookups}
    ours = {k: v for k, v in memo_first.items() if port in (k[3], k[5])}
    assert ours and {k: lookups[k] for k in ours} == ours
    assert ("portmon-test", None) in ours.values() and (None, "portmon-test") in ours.values()


@linux_only
def test_the_live_monitor_hands_its_cold_walk_to_the_first_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    from portmon.cli.context import Context
    from portmon.cli.main import build_parser, hand_cold_walk, parse_arguments
    from portmon.collect.fake import ScriptedCollector, demo_snapshot
    from portmon.collect.fdwalk import ColdWalk
    from portmon.ui.poller import ScanAhead

    monkeypatch.setattr(owners, "own_pids", frozenset)
    parser, _ = build_parser()
    ctx = Context(args=parse_arguments(parser, ["--netns", "host"]), stdout=sys.stdout, stderr=sys.stderr)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ctx.cold_walk = walk = ColdWalk()
        collector = ctx.collector()
        hand_cold_walk(ctx, collector)
        assert ctx.cold_walk is None and walk.pid  # taken by the collector, not cancelled
        snap = ScanAhead(collector).scan()
        assert walk.pid == 0  # its answer was read
    mine = [s for s in snap.sockets if s.local_port == port and s.state == "LISTEN"]
    assert [h.pid for s in mine for h in s.holders] == [os.getpid()]
    # A collector that takes no cold walk (a remote or a fake one): the child is stopped and reaped.
    ctx.cold_walk = walk = ColdWalk()
    hand_cold_walk(ctx, ScriptedCollector([demo_snapshot()]))
    assert walk.pid == 0 and ctx.cold_walk is None


_BIG_BLOCKS = """
import sys
from portmon.cli.main import big_blocks_to_the_os
applied = big_blocks_to_the_os()
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024
big = bytearray(16 << 20)  # freed: glibc's own rule would now keep blocks under 16 MB in the heap
del big
base = rss()
blocks = [bytes(300_000) for _ in range(100)]  # 30 MB in blocks of 300 KB, each one used
del blocks
print(applied, rss() - base)
"""


@linux_only
def test_the_live_monitors_big_blocks_go_back_to_the_os_when_freed() -> None:
    res = subprocess.run(
        [sys.executable, "-c", _BIG_BLOCKS], capture_output=True, text=True, cwd=ROOT, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert res.returncode == 0, res.stderr
    applied, kept = res.stdout.split()
    if applied != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    assert int(kept) <= 4  # MB still resident of the 30 freed
