"""Network namespaces without root: a fake /proc tree, the NetnsCollector's merge and cadence, the note,
the ``netns`` JSON/CSV fields, the ``netns:`` filter key, port specs that keep to portmon's own namespace,
and the NetNS column of the live table (a scripted collector in a Pilot test)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot
from portmon.collect.netns import (
    HOST_ONLY_NOTE,
    NamespaceOwners,
    NetnsCollector,
    list_namespaces,
    named_namespaces,
    ns_inode,
)
from portmon.model import LISTEN, Holder, NetnsRef, Snapshot, Socket
from portmon.output import netns_notes, socket_record, sockets_csv, sockets_json, sockets_table, to_json
from portmon.portspec import PortSpec, sockets_on_port, spec_of
from portmon.query.filters import FilterError, parse_filter
from portmon.ui.columns import layout_columns
from portmon.ui.view import column_widths, column_widths_plain

pytestmark = pytest.mark.all_namespaces

OWN, OTHER, THIRD = 4026531840, 4026532283, 4026532999

# A LISTEN row on 127.0.0.1:8080 (inode 555) and a UDP row, as /proc/PID/net/{tcp,udp} print them.
TCP_TEXT = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 "
    "0000000000000000 100 0 0 10 0\n"
)
UDP_TEXT = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer"
    " drops\n"
    "  7: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 556 2 "
    "0000000000000000 0\n"
)


def _stat(pid: int, name: str, start: int) -> str:
    # Field 22 (start time in ticks) is the 20th after the closing parenthesis.
    rest = ["S", "1"] + ["0"] * 17 + [str(start)] + ["0"] * 10
    return f"{pid} ({name}) {' '.join(rest)}\n"


def fake_proc(root: Path, spaces: dict[int, int], own: int = OWN) -> Path:
    """A /proc tree: each pid in ``spaces`` is in that namespace; ``self`` is in ``own``."""
    proc = root / "proc"
    (proc / "self" / "ns").mkdir(parents=True)
    os.symlink(f"net:[{own}]", proc / "self" / "ns" / "net")
    (proc / "stat").write_text("cpu 0 0 0 0\nbtime 1700000000\n")
    for pid, ino in spaces.items():
        (proc / str(pid) / "ns").mkdir(parents=True)
        (proc / str(pid) / "fd").mkdir()
        (proc / str(pid) / "net").mkdir()
        os.symlink(f"net:[{ino}]", proc / str(pid) / "ns" / "net")
        (proc / str(pid) / "stat").write_text(_stat(pid, f"p{pid}", 1234))
    (proc / "not-a-pid").mkdir()
    return proc


def give_tables(proc: Path, pid: int, holder_fds: dict[int, int]) -> None:
    """``pid``'s namespace has TCP_TEXT and UDP_TEXT (no IPv6); ``holder_fds`` maps fd -> socket inode."""
    (proc / str(pid) / "net" / "tcp").write_text(TCP_TEXT)
    (proc / str(pid) / "net" / "udp").write_text(UDP_TEXT)
    for fd, ino in holder_fds.items():
        os.symlink(f"socket:[{ino}]", proc / str(pid) / "fd" / str(fd))


HOST_SOCKET = Socket("tcp", 4, "127.0.0.1", 8080, state=LISTEN, holders=(Holder(10, "nginx", "root"),), inode=42)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _collector(proc: Path, clock: Clock, privileged: bool = True, **kw: Any) -> NetnsCollector:
    inner = ScriptedCollector([Snapshot((HOST_SOCKET,), taken_at=DEMO_TIME, collector="fake")])
    return NetnsCollector(
        inner, procfs=str(proc), clock=clock, privileged=lambda: privileged, run_dir=str(proc / "no-run"), **kw
    )


def test_namespace_links_and_listing(tmp_path: Path) -> None:
    assert ns_inode("net:[4026531840]") == OWN
    assert ns_inode("mnt:[4026531840]") is None and ns_inode("net:[x]") is None
    proc = fake_proc(tmp_path, {7: OTHER, 1: OWN, 3: OTHER, 9: THIRD})
    spaces = list_namespaces(str(proc))
    assert [(ns.inode, ns.pids, ns.own) for ns in spaces] == [
        (OWN, (1,), True),
        (OTHER, (3, 7), False),
        (THIRD, (9,), False),
    ]
    assert list_namespaces(str(tmp_path / "missing")) == []


def test_ip_netns_names_by_inode(tmp_path: Path) -> None:
    run = tmp_path / "netns"
    run.mkdir()
    (run / "blue").write_text("")
    names = named_namespaces(str(run))
    assert names == {os.stat(run / "blue").st_ino: "blue"}
    assert named_namespaces(str(tmp_path / "none")) == {}


def test_foreign_sockets_are_merged_labelled_with_their_holders(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER, 4: OTHER})
    give_tables(proc, 3, {5: 555})
    os.symlink("socket:[555]", proc / "4" / "fd" / "9")  # a forked worker shares the listener
    os.symlink("/dev/null", proc / "4" / "fd" / "0")
    assert NamespaceOwners(str(proc)).update((3, 4), {555}) == {555: [3, 4]}
    labels: list[tuple[int, tuple[int, ...]]] = []

    def label(inode: int, pids: tuple[int, ...]) -> str | None:
        labels.append((inode, pids))
        return "container web"

    collector = _collector(proc, Clock(), labeller=label)
    snap = collector.scan()
    assert labels == [(OTHER, (3, 4))]
    host, tcp, udp = snap.sockets
    assert host is HOST_SOCKET and host.netns is None
    ref = NetnsRef(OTHER, "container web")
    assert str(ref) == f"net:[{OTHER}] container web"
    assert (tcp.proto, tcp.local_addr, tcp.local_port, tcp.state, tcp.inode, tcp.netns) == (
        "tcp", "127.0.0.1", 8080, LISTEN, 555, ref,
    )
    assert [(h.pid, h.name) for h in tcp.holders] == [(3, "p3"), (4, "p4")]
    assert tcp.holders[0].create_time == 1234 / os.sysconf("SC_CLK_TCK")
    assert (udp.proto, udp.local_port, udp.holders, udp.owner_note, udp.netns) == ("udp", 53, (), "unseen", ref)
    assert ("netns", "2") in snap.extra and snap.warning is None


def test_namespaces_are_listed_again_only_at_the_cadence_or_when_stale(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER})
    give_tables(proc, 3, {5: 555, 6: 556})
    clock = Clock()
    collector = _collector(proc, clock, every=5.0)
    collector.scan()
    collector.scan()
    assert collector.listings == 1
    clock.now = 4.9
    collector.scan()
    assert collector.listings == 1
    clock.now = 5.0
    collector.scan()
    assert collector.listings == 2
    # A new socket whose holder the listing does not know (pid 8 joined the namespace since): listed again.
    (proc / "8" / "ns").mkdir(parents=True)
    (proc / "8" / "fd").mkdir()
    os.symlink(f"net:[{OTHER}]", proc / "8" / "ns" / "net")
    (proc / "8" / "stat").write_text(_stat(8, "late", 99))
    os.symlink("socket:[557]", proc / "8" / "fd" / "3")
    (proc / "3" / "net" / "tcp").write_text(TCP_TEXT + TCP_TEXT.splitlines(True)[1].replace(" 555 ", " 557 "))
    orphan = [s for s in collector.scan().sockets if s.inode == 557]
    assert orphan[0].holders == () and orphan[0].owner_note == "unseen" and collector.listings == 2
    found = [s for s in collector.scan().sockets if s.inode == 557]
    assert collector.listings == 3 and [h.pid for h in found[0].holders] == [8]


def test_holders_follow_fds_between_full_walks(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {3: OTHER, 4: OTHER})
    for pid, fd, ino in ((3, 5, 555), (3, 6, 556), (4, 7, 556)):
        os.symlink(f"socket:[{ino}]", proc / str(pid) / "fd" / str(fd))
    owners = NamespaceOwners(str(proc))
    assert owners.update((3, 4), {555, 556}) == {555: [3], 556: [3, 4]}
    walked = owners.readlinks
    assert owners.update((3, 4), {555, 556}) == {555: [3], 556: [3, 4]}
    assert owners.readlinks == walked  # nothing changed: no fd read again
    # 555 closed and a new socket took its fd: only that fd is read again.
    os.remove(proc / "3" / "fd" / "5")
    os.symlink("socket:[558]", proc / "3" / "fd" / "5")
    assert owners.update((3, 4), {556, 558}) == {556: [3, 4], 558: [3]}
    assert owners.readlinks == walked + 1
    # pid 4 is gone: its sockets lose it.
    assert owners.update((3,), {556, 558}) == {556: [3], 558: [3]}


def test_with_no_other_namespace_the_inner_snapshot_passes_untouched(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 2: OWN})
    collector = _collector(proc, Clock())
    inner = collector._inner  # noqa: SLF001 - the very snapshot object the inner collector gave
    first = collector.scan()
    assert first.sockets == (HOST_SOCKET,) and first.extra == ()
    assert isinstance(inner, ScriptedCollector)
    assert collector.scan() == inner.scan() and collector.listings == 1


def test_host_only_reads_no_namespace(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER})
    give_tables(proc, 3, {5: 555})
    collector = _collector(proc, Clock(), netns="host")
    assert collector.scan().sockets == (HOST_SOCKET,)
    assert collector.listings == 0 and collector.netns_note is None


def test_a_namespace_that_cannot_be_read_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER})  # no net/tcp under pid 3
    snap = _collector(proc, Clock()).scan()
    assert snap.sockets == (HOST_SOCKET,)
    assert snap.warning is not None and f"net:[{OTHER}]" in snap.warning and "pid 3" in snap.warning


def test_without_root_own_namespace_only_and_a_note_when_another_shows(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER})
    give_tables(proc, 3, {5: 555})
    collector = _collector(proc, Clock(), privileged=False)
    assert collector.scan().sockets == (HOST_SOCKET,) and collector.listings == 0
    assert collector.netns_note == HOST_ONLY_NOTE
    quiet = _collector(fake_proc(tmp_path / "b", {1: OWN, 2: OWN}), Clock(), privileged=False)
    assert quiet.scan().sockets == (HOST_SOCKET,) and quiet.netns_note is None


def test_unknown_netns_choice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected all or host"):
        _collector(fake_proc(tmp_path, {1: OWN}), Clock(), netns="container")


REF = NetnsRef(OTHER, 'we"ird\x1b[31m web')
FOREIGN = Socket("tcp", 4, "127.0.0.1", 8080, state=LISTEN, holders=(Holder(33, "app", "root"),), inode=555, netns=REF)
BARE = FOREIGN._replace(inode=556, netns=NetnsRef(THIRD), holders=())


def test_json_and_csv_carry_the_namespace() -> None:
    socks = [HOST_SOCKET, FOREIGN, BARE]
    assert sockets_json(socks) == to_json([socket_record(s) for s in socks])
    records = json.loads(sockets_json(socks))
    assert [r["netns"] for r in records] == [
        None,
        {"inode": OTHER, "label": 'we"ird\x1b[31m web'},
        {"inode": THIRD, "label": None},
    ]
    rows = list(csv.DictReader(io.StringIO(sockets_csv(socks))))
    assert [r["netns"] for r in rows] == ["", f"net:[{OTHER}] we\"ird\\x1b[31m web", f"net:[{THIRD}]"]
    table = sockets_table(socks).splitlines()
    assert table[0].endswith("NETNS") and table[1].endswith("-") and "\x1b" not in "".join(table)
    assert "NETNS" not in sockets_table([HOST_SOCKET])


def test_filter_key_matches_inode_label_or_host() -> None:
    socks = [HOST_SOCKET, FOREIGN, BARE]

    def ports(text: str) -> list[int | None]:
        return [s.inode for s in parse_filter(text).apply(socks)]

    assert ports(f"netns:{OTHER}") == [555]
    assert ports(f"netns:net:[{THIRD}]") == [556]
    assert ports("netns:WEB") == [555]
    assert ports("netns:host") == [42]
    assert ports("!netns:host") == [555, 556]
    assert ports(f"netns:host,{THIRD}") == [42, 556]
    assert ports("netns:nothing") == []
    with pytest.raises(FilterError, match="netns: needs"):
        parse_filter("netns:net:[]")


def test_a_port_spec_keeps_to_its_namespace() -> None:
    socks = [HOST_SOCKET, FOREIGN, BARE]
    spec = PortSpec(8080)
    assert sockets_on_port(socks, spec) == [HOST_SOCKET]
    assert sockets_on_port(socks, spec, every_netns=True) == socks
    assert spec_of(FOREIGN) == PortSpec(8080, "tcp", OTHER) and str(spec_of(FOREIGN)) == f"8080/tcp in net:[{OTHER}]"
    assert sockets_on_port(socks, spec_of(FOREIGN)) == [FOREIGN]
    assert spec_of(HOST_SOCKET) == PortSpec(8080, "tcp")
    notes = netns_notes(socks)
    assert len(notes) == 2 and "pid 33" in notes[0] and "no visible process" in notes[1]
    assert all("\x1b" not in n for n in notes)


def test_live_table_widths_and_layout_show_the_column_only_with_another_namespace() -> None:
    assert column_widths([HOST_SOCKET])["netns"] == 0
    widths = column_widths([HOST_SOCKET, FOREIGN])
    assert widths == column_widths_plain([HOST_SOCKET, FOREIGN]) and widths["netns"] == len(str(REF))
    assert "netns" not in [c.name for c, _ in layout_columns(200, column_widths([HOST_SOCKET]))]
    assert [c.name for c, _ in layout_columns(200, widths)][-1] == "netns"


def test_netns_column_in_the_live_monitor() -> None:
    from portmon.ui.app import PortmonApp
    from portmon.ui.sockettable import SocketTable

    base = demo_snapshot()
    foreign = FOREIGN._replace(netns=NetnsRef(OTHER, "container web"))
    snap = base._replace(sockets=(*base.sockets, foreign))
    app = PortmonApp(ScriptedCollector([snap]), poll=False, clock=lambda: DEMO_TIME, process_reader=demo_process)
    plain = PortmonApp(ScriptedCollector([base]), poll=False, clock=lambda: DEMO_TIME, process_reader=demo_process)

    async def main() -> tuple[str, str, str, str]:
        async with app.run_test(size=(220, 50)) as pilot:
            await pilot.pause()
            table: SocketTable = app.monitor.table
            header = "".join(s.text for s in table._header_strip())
            row = next(i for i, s in enumerate(table.rows) if s.netns is not None)
            host_row = next(i for i, s in enumerate(table.rows) if s.netns is None)
            cells = "".join(s.text for s in table._row_strip(row))
            host_cells = "".join(s.text for s in table._row_strip(host_row))
        async with plain.run_test(size=(220, 50)) as pilot:
            await pilot.pause()
            plain_header = "".join(s.text for s in plain.monitor.table._header_strip())
        return header, cells, host_cells, plain_header

    header, cells, host_cells, plain_header = asyncio.run(main())
    at = header.index("NetNS")  # after the process's columns (a Managed by column may follow it)
    assert header.index("User") < at
    assert cells[at:].startswith(f"net:[{OTHER}] container web")
    assert host_cells[at : at + 2] == "- "
    assert "NetNS" not in plain_header


def test_keys_tell_namespaces_apart() -> None:
    from portmon.query.diff import identity

    wait = Socket("tcp", 4, "127.0.0.1", 40000, "127.0.0.1", 8080, "TIME_WAIT")
    theirs = wait._replace(netns=NetnsRef(OTHER))
    assert wait.key != theirs.key and identity(wait) != identity(theirs)
    assert theirs.key == theirs._replace(netns=NetnsRef(OTHER, "container web")).key  # the label may change
    assert wait.key == Socket("tcp", 4, "127.0.0.1", 40000, "127.0.0.1", 8080, "TIME_WAIT").key


def test_list_without_root_says_once_that_other_namespaces_are_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portmon.cli import context
    from portmon.cli.main import main

    proc = fake_proc(tmp_path, {1: OWN, 3: OTHER})
    made: list[NetnsCollector] = []

    def fake_default(**kw: Any) -> NetnsCollector:
        made.append(_collector(proc, Clock(), privileged=False, netns=kw["netns"]))
        return made[-1]

    monkeypatch.setattr(context, "default_collector", fake_default)
    out, err = io.StringIO(), io.StringIO()
    assert main(["list", "--json"], stdout=out, stderr=err) == 0
    assert [r["local_port"] for r in json.loads(out.getvalue())] == [8080]
    assert err.getvalue().count(HOST_ONLY_NOTE) == 1
    err = io.StringIO()
    assert main(["list", "--netns", "host"], stdout=io.StringIO(), stderr=err) == 0
    assert HOST_ONLY_NOTE not in err.getvalue() and made[-1].netns == "host"


def test_portmon_netns_sets_the_default_the_flag_wins_and_a_bad_value_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portmon.cli import context
    from portmon.cli.main import main

    asked: list[str] = []

    def fake_default(**kw: Any) -> ScriptedCollector:
        asked.append(kw["netns"])
        return ScriptedCollector([demo_snapshot()])

    monkeypatch.setattr(context, "default_collector", fake_default)
    for env, argv, expected in (("host", [], "host"), ("all", [], "all"), ("", [], "all"),
                                ("host", ["--netns", "all"], "all"), ("all", ["--netns", "host"], "host")):
        monkeypatch.setenv("PORTMON_NETNS", env)
        assert main(["list", *argv], stdout=io.StringIO(), stderr=io.StringIO()) == 0
        assert asked[-1] == expected, (env, argv)
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setenv("PORTMON_NETNS", "containers")
    assert main(["list"], stdout=out, stderr=err) == 2
    assert err.getvalue().startswith("portmon: PORTMON_NETNS must be 'all' or 'host', not 'containers'")
    assert err.getvalue().count("\n") == 1 and out.getvalue() == ""
