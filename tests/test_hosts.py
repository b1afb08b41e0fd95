"""Sockets of remote hosts: the ``host`` field through keys, the ``host:`` filter, JSON, CSV and the table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from portmon.model import LISTEN, Holder, Socket
from portmon.output import RECORD_KEYS, socket_record, sockets_csv, sockets_json, sockets_table, to_json
from portmon.query.filters import parse_filter

ROOT = Path(__file__).resolve().parent.parent
SSHD = Holder(pid=10, name="sshd", user="root")


def sockets() -> list[Socket]:
    local = Socket("tcp", 4, "0.0.0.0", 22, state=LISTEN, holders=(SSHD,), inode=7, local_service="ssh")
    return [
        local,
        local._replace(host="db1.example"),
        local._replace(host='we"ird\x1b[31mhost'),
        Socket("udp", 6, "::", 53, holders=(SSHD,), inode=8, host="alice@db2:2222"),
    ]


def test_the_same_socket_on_two_hosts_has_two_keys() -> None:
    local, remote, *_ = sockets()
    assert local.key != remote.key
    assert remote.key == remote._replace(holders=()).key  # still stable across refreshes


def test_json_writer_matches_json_dumps_with_hosts() -> None:
    socks = sockets()
    assert sockets_json(socks) == to_json([socket_record(s) for s in socks])
    records = json.loads(sockets_json(socks))
    assert [r["host"] for r in records] == [None, "db1.example", 'we"ird\x1b[31mhost', "alice@db2:2222"]
    assert list(records[0]) == list(RECORD_KEYS) and RECORD_KEYS[-2:] == ("host", "netns")


def test_host_filter_matches_substrings_and_local_names_this_machine() -> None:
    socks = sockets()
    assert parse_filter("host:db").apply(socks) == [socks[1], socks[3]]
    assert parse_filter("host:local").apply(socks) == [socks[0]]
    assert parse_filter("host:local,db1").apply(socks) == socks[:2]
    assert parse_filter("!host:local").apply(socks) == socks[1:]


def test_table_gets_a_host_column_only_with_remote_rows() -> None:
    socks = sockets()
    assert not sockets_table(socks[:1]).startswith("HOST")
    lines = sockets_table(socks).splitlines()
    assert lines[0].split()[0] == "HOST"
    assert [line.split()[0] for line in lines[1:]] == ["local", "db1.example", 'we"ird\\x1b[31mhost', "alice@db2:2222"]
    assert "\x1b" not in sockets_table(socks) and "\x1b" not in sockets_csv(socks)


def test_a_watch_line_names_the_remote_host() -> None:
    from portmon.query.diff import OPEN, Event
    from portmon.query.events import event_line

    sock = sockets()[2]
    line = event_line(Event(OPEN, 0.0, sock, new_state=LISTEN))
    assert line.split()[2] == '[we"ird\\x1b[31mhost]' and "\x1b" not in line
    assert "[" not in event_line(Event(OPEN, 0.0, sockets()[0], new_state=LISTEN)).split()[2]


def _portmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "-oProxyCommand=touch /tmp/x"], "invalid host name in '-oProxyCommand=touch /tmp/x'"),
        (["--host", "db1:70000"], "invalid port in host 'db1:70000'"),
        (["--hosts-file", "/nonexistent/hosts"], "cannot read the hosts file"),
    ],
)
def test_bad_hosts_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    res = _portmon("list", *args)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.splitlines()) == 1


def test_hosts_file_errors_name_the_line(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# fleet\ndb1\nbad host\n")
    res = _portmon("list", "--hosts-file", str(hosts))
    assert res.returncode == 2 and f"{hosts}, line 3" in res.stderr


def test_who_with_a_silent_host_prints_this_machine_and_exits_1(tmp_path: Path) -> None:
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _portmon("who", str(port), "--host", "quiet.example", "--host-timeout", "0.5",
                       env={"PORTMON_SSH_COMMAND": str(hang)})  # fmt: skip
    assert res.returncode == 1
    assert "host quiet.example: no answer within 0.5 s" in res.stderr
    assert str(os.getpid()) in res.stdout  # this machine's holder is still printed


def test_a_host_that_answers_later_brings_its_baseline_not_a_burst_of_opens() -> None:
    from portmon.model import Snapshot
    from portmon.query.events import EventStream

    local, remote, *_ = sockets()
    stream = EventStream()
    assert stream.feed(Snapshot(sockets=(local,), taken_at=1.0)) == ()
    assert stream.feed(Snapshot(sockets=(local, remote), taken_at=2.0)) == ()  # db1's first answer
    later = remote._replace(local_port=8080, inode=99)
    events = stream.feed(Snapshot(sockets=(local, remote, later), taken_at=3.0))
    assert [(e.kind, e.socket.host, e.socket.local_port) for e in events] == [("open", "db1.example", 8080)]


def test_this_machine_is_in_the_baseline_even_when_the_first_scan_is_empty() -> None:
    from portmon.model import Snapshot
    from portmon.query.events import EventStream

    local = sockets()[0]
    stream = EventStream()
    assert stream.feed(Snapshot(sockets=(), taken_at=1.0)) == ()
    assert [e.kind for e in stream.feed(Snapshot(sockets=(local,), taken_at=2.0))] == ["open"]


def test_who_names_the_host_and_never_reads_a_remote_pid_here() -> None:
    from portmon.cli.who import _table

    read: list[int] = []

    def command_line(holder: Holder) -> list[str]:
        read.append(holder.pid)
        return ["sshd", "-D"]

    local, remote, *_ = sockets()
    lines = _table([local, remote], command_line, 200)
    assert lines[0].split()[:2] == ["HOST", "PID"]
    assert [line.split()[0] for line in lines[1:]] == ["local", "db1.example"]
    assert read == [SSHD.pid]  # only this machine's holder
