"""The live monitor with remote hosts: a Host column, the hosts' modes in the status line, and kill/why on a
remote row going to that host's portmon (never planned or signalled here). Sessions are fakes: no ssh."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from textual.pilot import Pilot

from portmon.actions.kill.confirmed import IDENTITIES_PREFIX
from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot
from portmon.model import LISTEN, Holder, Snapshot, Socket
from portmon.remote.actions import RemoteRun
from portmon.remote.collector import MultiHostCollector
from portmon.remote.session import HostState
from portmon.ui.app import PortmonApp
from portmon.ui.columns import layout_columns
from portmon.ui.remotemodal import RemoteActionModal
from portmon.ui.sockettable import SocketTable

HOST = "alice@db1:2222"


class FakeSession:
    """What MultiHostCollector and the monitor use of a HostSession, answering from memory."""

    def __init__(self, label: str, sockets: Sequence[Socket]) -> None:
        self.label = label
        self.snapshot = Snapshot(sockets=tuple(sockets), taken_at=DEMO_TIME, collector="agentless")
        self.calls: list[tuple[str, ...]] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def wait_ready(self, timeout: float) -> bool:
        return True

    def state(self) -> HostState:
        return HostState(self.label, "agentless", self.snapshot, None)

    def run_portmon(self, words: Sequence[str], timeout: float) -> RemoteRun:
        self.calls.append(tuple(words))
        # As a host's portmon answers a dry run: the holders, then their exact identities (kill --pids).
        lines = ("port 5432/tcp is held by 1 process:", "  pid 77  user postgres", f"{IDENTITIES_PREFIX}77:4242")
        return RemoteRun(self.label, 0, lines)


REMOTE = [
    Socket("tcp", 4, "0.0.0.0", 5432, state=LISTEN, holders=(Holder(77, "postgres", "postgres"),), inode=5, host=HOST),
]


def test_host_column_modes_and_a_remote_kill_that_asks_naming_the_host() -> None:
    session = FakeSession(HOST, REMOTE)
    collector = MultiHostCollector(ScriptedCollector([demo_snapshot()]), [session])  # type: ignore[list-item]
    app = PortmonApp(collector, poll=False, clock=lambda: DEMO_TIME, process_reader=demo_process)

    async def main() -> None:
        async with app.run_test(size=(180, 50)) as pilot:
            await pilot.pause()
            table: SocketTable = app.monitor.table
            header = "".join(s.text for s in table._header_strip())
            assert header.lstrip().startswith("Host")
            remote_row = next(i for i, s in enumerate(table.rows) if s.host == HOST)
            local_row = next(i for i, s in enumerate(table.rows) if s.host is None)
            assert "".join(s.text for s in table._row_strip(remote_row)).lstrip().startswith(HOST)
            assert "".join(s.text for s in table._row_strip(local_row)).lstrip().startswith("local")
            assert f"hosts: {HOST} agentless" in str(app.monitor.query_one("#status").content)
            table.move_cursor(remote_row)
            await pilot.press("k")
            modal = app.screen
            assert isinstance(modal, RemoteActionModal) and modal.host == HOST
            await _until(pilot, lambda: modal.state == "ready")
            assert HOST in modal.status_line and "pid 77" in modal.lines_text
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, RemoteActionModal)
            await pilot.press("w")  # why on the remote row: also asked of the host
            assert isinstance(app.screen, RemoteActionModal) and app.screen.kind == "why"

    asyncio.run(main())
    assert session.calls[0] == ("kill", "5432/tcp", "--dry-run") and not any("--yes" in c for c in session.calls)
    assert session.calls[-1] == ("why", "5432/tcp")


async def _until(pilot: Pilot, done: object) -> None:
    for _ in range(200):
        if done():  # type: ignore[operator]
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


def test_the_host_column_comes_only_with_remote_rows() -> None:
    widths = {"local_addr": 9, "remote_addr": 9, "process": 8, "user": 4, "host": 0}
    assert [c.name for c, _ in layout_columns(200, widths)][:2] == ["mark", "proto"]
    widths["host"] = len(HOST)
    layout = layout_columns(200, widths)
    assert layout[1][0].name == "host" and layout[1][1] == len(HOST)
    assert sum(w for _, w in layout_columns(80, widths)) + len(layout_columns(80, widths)) - 1 <= 80


def test_sorting_by_host_steps_back_into_the_column_cycle() -> None:
    from portmon.query.sorting import sort_sockets
    from portmon.ui.view import ViewSpec

    assert ViewSpec(column="host").with_column_step(1).column == "proto"
    assert ViewSpec(column="host").with_column_step(-1).column == "user"
    local = Socket("tcp", 4, "0.0.0.0", 1, state=LISTEN)
    ordered = sort_sockets([local, REMOTE[0]._replace(host="zeta"), REMOTE[0]], "host")
    assert [s.host for s in ordered] == [HOST, "zeta", None]  # this machine (no host) last
