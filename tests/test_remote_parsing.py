"""The remote side's pieces without a network: host specs, the ssh command, ss parsing, the JSON stream."""

from __future__ import annotations

import json

import pytest

from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Holder, Snapshot, Socket
from portmon.remote.agentless import MARK, AgentlessParser, split_endpoint
from portmon.remote.hosts import HostSpec, HostSpecError, parse_host, parse_hosts_file, unique
from portmon.remote.ssh import SSH_COMMAND_ENV, Ssh, SshError, base_command
from portmon.remote.stream import StreamDecoder, StreamError, hello_line, parse_hello, snapshot_line


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("db1", HostSpec("db1", "db1")),
        ("alice@db1.example:2222", HostSpec("alice@db1.example:2222", "db1.example", "alice", 2222)),
        ("10.0.0.7", HostSpec("10.0.0.7", "10.0.0.7")),
        ("[::1]:22", HostSpec("[::1]:22", "::1", None, 22)),
        ("root@fe80::1%eth0", HostSpec("root@fe80::1%eth0", "fe80::1%eth0", "root")),
    ],
)
def test_host_specs(text: str, spec: HostSpec) -> None:
    assert parse_host(text) == spec


@pytest.mark.parametrize(
    "text", ["", "db1:0", "db1:99999", "db1:ssh", "-oProxyCommand=x", "a b", "@db1", "[::1", "x;y"]
)
def test_bad_host_specs_are_refused(text: str) -> None:
    with pytest.raises(HostSpecError):
        parse_host(text)


def test_hosts_file_skips_comments_and_names_the_bad_line() -> None:
    assert parse_hosts_file("# fleet\ndb1\n\n  alice@db2:2222  # the replica\ndb1\n") == [
        HostSpec("db1", "db1"),
        HostSpec("alice@db2:2222", "db2", "alice", 2222),
        HostSpec("db1", "db1"),
    ]
    assert len(unique(parse_hosts_file("db1\ndb1\n"))) == 1
    with pytest.raises(HostSpecError, match="hosts, line 2"):
        parse_hosts_file("db1\n-oops\n", "hosts")


def test_ssh_command_is_batch_mode_with_a_master_and_honours_the_override() -> None:
    ssh = Ssh(env={SSH_COMMAND_ENV: "/opt/my ssh -F '/etc/my config'"})
    try:
        argv = ssh.argv(parse_host("alice@db1:2222"), ["sh", "-s"])
        assert argv[:3] == ["/opt/my", "ssh", "-F"] and argv[3] == "/etc/my config"
        assert "BatchMode=yes" in argv and "ControlMaster=auto" in argv
        assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "alice"
        assert argv[-3:] == ["db1", "sh", "-s"]
    finally:
        ssh.close()
    with pytest.raises(SshError):
        base_command({SSH_COMMAND_ENV: "ssh 'unterminated"})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("0.0.0.0:22", ("0.0.0.0", 22, 4)),
        ("127.0.0.53%lo:53", ("127.0.0.53", 53, 4)),
        ("[::]:22", ("::", 22, 6)),
        ("[::ffff:127.0.0.1]:80", ("::ffff:127.0.0.1", 80, 6)),
        ("*:22", ("::", 22, 6)),
        ("0.0.0.0:*", ("0.0.0.0", None, 4)),
        ("[fe80::1%eth0]:546", ("fe80::1%eth0", 546, 6)),
        ("nonsense", None),
        ("1.2.3.4:70000", None),
    ],
)
def test_ss_endpoints(text: str, parsed: tuple[str, int | None, int] | None) -> None:
    assert split_endpoint(text) == parsed


SS_OUTPUT = [
    f"{MARK} agentless 0",
    f"{MARK} users",
    "root:0",
    "www-data:33",
    f"{MARK} services",
    "ssh\t\t22/tcp\t\t\t# SSH Remote Login Protocol",
    "http\t\t80/tcp\t\twww",
    f"{MARK} ss",
    'tcp   LISTEN 0      4096   0.0.0.0:80   0.0.0.0:*  users:(("nginx",pid=1291,fd=6),("nginx",pid=1290,fd=6),'
    '("nginx",pid=1290,fd=7)) ino:100 sk:1 cgroup:/ <->',
    'tcp   LISTEN 0      128    [::]:22      [::]:*     users:(("sshd",pid=812,fd=4)) ino:101 sk:2 v6only:1 <->',
    'tcp   ESTAB  0      0      10.0.0.5:22  10.0.0.9:51000 users:(("sshd",pid=900,fd=4)) timer:(keepalive,1min,0) '
    "uid:33 ino:102 sk:3 <->",
    "tcp   TIME-WAIT 0   0      10.0.0.5:80  10.0.0.9:51001 timer:(timewait,30sec,0)",
    "tcp   TIME-WAIT 0   0      10.0.0.5:80  10.0.0.9:51001 timer:(timewait,30sec,0)",
    "udp   UNCONN 0      0      127.0.0.1:323 0.0.0.0:*  ino:103 sk:4 <->",
    'udp   UNCONN 0      0      0.0.0.0:68   0.0.0.0:*  users:(("\x1b[31mevil\\"name",pid=5,fd=3)) ino:104 <->',
    "garbage line",
    f"{MARK} end",
]


def test_agentless_parser_reads_a_whole_ss_table() -> None:
    parser = AgentlessParser(
        "db1", services=lambda port, proto: "local-name" if port == 68 else None, clock=lambda: 5.0
    )
    snaps = [s for s in map(parser.feed, SS_OUTPUT) if s is not None]
    assert len(snaps) == 1 and parser.skipped == 1
    snap = snaps[0]
    assert snap.taken_at == 5.0 and snap.collector == "agentless"
    by_port = {(s.local_port, s.remote_port, s.seq): s for s in snap.sockets}
    assert all(s.host == "db1" for s in snap.sockets)
    http = by_port[(80, None, 0)]
    assert http.state == LISTEN and http.local_service == "http" and http.inode == 100
    assert [h.pid for h in http.holders] == [1291, 1290]  # each process once, in ss's order
    assert http.holders[0] == Holder(1291, "nginx", "root")  # no uid: printed only when not 0
    ssh = by_port[(22, None, 0)]
    assert ssh.family == 6 and ssh.local_addr == "::" and ssh.local_service == "ssh"
    conn = by_port[(22, 51000, 0)]
    assert conn.state == ESTABLISHED and conn.remote_addr == "10.0.0.9" and conn.user == "www-data"
    waits = [s for s in snap.sockets if s.state == TIME_WAIT]
    assert len(waits) == 2 and {s.seq for s in waits} == {1, 2} and len({s.key for s in waits}) == 2
    assert all(s.owner_note == "kernel" for s in waits)
    chrony = by_port[(323, None, 0)]
    assert chrony.state is None and not chrony.holders and chrony.owner_note == "unseen"  # root sees all
    evil = by_port[(68, None, 0)]
    assert evil.process == '\x1b[31mevil"name' and evil.local_service == "local-name"  # kept raw; escaped on output


def test_agentless_as_another_user_calls_ownerless_sockets_hidden() -> None:
    parser = AgentlessParser("db1")
    lines = [f"{MARK} agentless 1000", f"{MARK} ss", "tcp LISTEN 0 128 0.0.0.0:5432 0.0.0.0:* ino:9 <->", f"{MARK} end"]
    snap = [s for s in map(parser.feed, lines) if s is not None][0]
    assert snap.hidden_owners == 1 and snap.sockets[0].owner_note == "hidden" and snap.warning


def sample() -> Snapshot:
    shared = (Holder(10, "nginx", "root", 100.5), Holder(11, "nginx", "www-data", 101.0))
    return Snapshot(
        sockets=(
            Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, holders=shared, inode=5, local_service="http"),
            Socket("tcp", 6, "::1", 80, "::1", 40000, ESTABLISHED, shared, inode=6),
            Socket("tcp", 4, "127.0.0.1", 81, "127.0.0.1", 40001, TIME_WAIT, (), "kernel", 0, None, None, 2),
            Socket("udp", 4, "0.0.0.0", 53, holders=(Holder(7, "\x1b]evil", None),), inode=8),
        ),
        taken_at=1.0,
        scan_ms=12.5,
        hidden_owners=3,
        warning="partial",
    )


def test_stream_round_trip_carries_every_field_and_the_host() -> None:
    snap = sample()
    assert parse_hello(hello_line("procfs", "0.1.0")) == ("procfs", "0.1.0")
    decoder = StreamDecoder("db1")
    got = decoder.feed(snapshot_line(snap), taken_at=9.0)
    assert got.sockets == tuple(s._replace(host="db1") for s in snap.sockets)
    assert got.sockets[0].holders is got.sockets[1].holders or got.sockets[0].holders == got.sockets[1].holders
    assert got.sockets[0].holders[0] is got.sockets[1].holders[0]  # one Holder object per process
    assert (got.taken_at, got.scan_ms, got.hidden_owners, got.warning) == (9.0, 12.5, 3, "partial")
    again = decoder.feed(snapshot_line(snap, same=True), taken_at=10.0)
    assert again.sockets is got.sockets and again.taken_at == 10.0


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        "[]",
        json.dumps({"sockets": {}}),
        json.dumps({"sockets": [["tcp", 4, "1.2.3.4", 80]]}),
        json.dumps({"sockets": [["sctp", 4, "a", 1, None, None, None, [], None, 0, None, None, 0]]}),
        json.dumps({"sockets": [["tcp", 4, "a", "80", None, None, None, [], None, 0, None, None, 0]]}),
        json.dumps({"sockets": [["tcp", 4, "a", 80, None, None, None, [[1, [], None, None]], None, 0, None, None, 0]]}),
        json.dumps({"sockets": [["tcp", 4, "a", 80, None, None, None, [[True, "", None, 0]], None, 0, None, None, 0]]}),
        json.dumps({"sockets": [], "scan_ms": "slow"}),
    ],
)
def test_stream_refuses_what_portmon_never_sends(line: str) -> None:
    with pytest.raises(StreamError):
        StreamDecoder("db1").feed(line, taken_at=0.0)
    with pytest.raises(StreamError):
        parse_hello(line)


def test_layers_remote_and_export_never_import_the_cli_or_the_ui() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nimport portmon.remote.session, portmon.export.server, portmon.remote.collector\n"
        "print(' '.join(sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "portmon.remote.session" in loaded and "portmon.export.metrics" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich")}
    assert not {m for m in loaded if m.startswith(("portmon.cli", "portmon.ui"))}


def test_the_stream_command_is_spelled_alike_on_both_sides() -> None:
    from portmon.cli import stream
    from portmon.remote import agentless

    assert stream.STREAM_COMMAND == agentless.STREAM_COMMAND
    assert f"portmon {stream.STREAM_COMMAND} --probe" in agentless.SCRIPT
