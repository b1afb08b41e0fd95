"""Sockets of remote hosts: the ``host`` field through keys, the ``host:`` filter, JSON, CSV and the table."""

from __future__ import annotations

import json

from portmon.model import LISTEN, Holder, Socket
from portmon.output import RECORD_KEYS, socket_record, sockets_csv, sockets_json, sockets_table, to_json
from portmon.query.filters import parse_filter

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
    assert list(records[0]) == list(RECORD_KEYS) and RECORD_KEYS[-1] == "host"


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
