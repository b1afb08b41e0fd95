"""Pilot tests of traffic in the live monitor: rate columns, their sort and toggle, the status totals and
listen counters, the detail pane's traffic section, the full-backlog highlight and the close dialog."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button

from portmon.actions.close import CloseOutcome, close_connection
from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot
from portmon.collect.netstat import ListenCounters, parse_netstat
from portmon.model import ESTABLISHED, LISTEN, Snapshot, Socket
from portmon.ui.app import PortmonApp
from portmon.ui.closemodal import CloseModal, close_refusal
from portmon.ui.monitor import MonitorScreen
from portmon.ui.owners import DemoOwnership
from portmon.ui.sockettable import SocketTable
from portmon.ui.traffic import HISTORY_SCANS, RATE_COLUMNS, TrafficTracker, process_totals, rate_text, sort_by_rate

SIZE = (180, 50)
WEB = ("192.168.1.20", 443, "203.0.113.5", 61044)  # nginx worker 1291
DB = ("127.0.0.1", 41822, "127.0.0.1", 5432)  # python3 23001


class Clock:
    def __init__(self, now: float = DEMO_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def is_conn(sock: Socket, ends: tuple[str, int, str, int]) -> bool:
    return (sock.local_addr, sock.local_port, sock.remote_addr, sock.remote_port) == ends


def scan(at: float, web: tuple[int, int], db: tuple[int, int], queue: int = 129) -> Snapshot:
    """The demo laptop with counters: the web and db connections move bytes; :8000's listener is over its backlog."""
    out = []
    for sock in demo_snapshot().sockets:
        if is_conn(sock, WEB):
            sock = sock._replace(bytes_sent=web[0], bytes_received=web[1], cookie=101, rtt_ms=12.5, retransmits=3)
        elif is_conn(sock, DB):
            sock = sock._replace(bytes_sent=db[0], bytes_received=db[1], cookie=102, rtt_ms=0.1, retransmits=0)
        elif sock.state == LISTEN and sock.local_port == 8000:
            sock = sock._replace(accept_queue=queue, backlog=128, cookie=103)
        out.append(sock)
    return demo_snapshot(taken_at=at)._replace(sockets=tuple(out))


# Two seconds apart: web 10 kB/s out and 2 kB/s in, db 100 kB/s out and 1 kB/s in; then db slows to 50 kB/s.
SCANS = [
    scan(DEMO_TIME, (1_000, 500), (0, 0)),
    scan(DEMO_TIME + 2, (21_000, 4_500), (200_000, 2_000)),
    scan(DEMO_TIME + 4, (41_000, 8_500), (300_000, 4_000)),
]


def scripted_listen(*values: ListenCounters) -> Callable[[], ListenCounters | None]:
    it = iter(values)
    return lambda: next(it, values[-1])


def make_app(steps: list[Any] | None = None, **options: Any) -> PortmonApp:
    options.setdefault("poll", False)
    counters = (ListenCounters(10, 12), ListenCounters(13, 15), ListenCounters(13, 15))
    options.setdefault("listen", scripted_listen(*counters))
    options.setdefault("ownership", DemoOwnership())
    return PortmonApp(ScriptedCollector(steps or SCANS), clock=Clock(), process_reader=demo_process, **options)


Body = Callable[[Pilot, MonitorScreen, SocketTable], Awaitable[None]]


def run(app: PortmonApp, body: Body, size: tuple[int, int] = SIZE) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor, app.monitor.table)

    asyncio.run(main())


def row_text(table: SocketTable, row: int) -> str:
    return "".join(segment.text for segment in table._row_strip(row))


def row_of(table: SocketTable, predicate: Callable[[Socket], bool]) -> int:
    return next(i for i, s in enumerate(table.rows) if predicate(s))


def column_names(table: SocketTable) -> list[str]:
    return [c.name for c, _ in table.columns]


def status_of(screen: MonitorScreen) -> str:
    return str(screen.query_one("#status").content)  # type: ignore[attr-defined]


async def header_click(pilot: Pilot, table: SocketTable, column: str) -> None:
    x = next(sum(w + 1 for _, w in table.columns[:i]) for i, (c, _) in enumerate(table.columns) if c.name == column)
    await pilot.click(SocketTable, offset=(x + 1, 0))


# -- pure parts -------------------------------------------------------------------------------------


def test_netstat_parser_reads_listen_overflows_and_drops() -> None:
    text = (
        "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n"
        "TcpExt: 0 7 9 100\n"
        "IpExt: InNoRoutes\nIpExt: 0\n"
    )
    assert parse_netstat(text) == ListenCounters(7, 9)
    assert parse_netstat("IpExt: InNoRoutes\nIpExt: 0\n") is None
    assert parse_netstat("TcpExt: ListenOverflows ListenDrops\nTcpExt: 1\n") is None
    assert ListenCounters(13, 15).since(ListenCounters(10, 12)) == ListenCounters(3, 3)
    assert ListenCounters(1, 1).since(ListenCounters(5, 5)) == ListenCounters(0, 0)


def test_tracker_rates_totals_history_and_failed_scans() -> None:
    tracker = TrafficTracker(scripted_listen(ListenCounters(10, 12), ListenCounters(13, 15), ListenCounters(13, 16)))
    first = tracker.step(SCANS[0])
    assert first is not None and first.seconds == 0 and first.counters and not first.by_cookie
    assert first.listen is None  # nothing to compare with yet
    second = tracker.step(SCANS[1])
    assert second is not None and second.seconds == 2
    assert second.by_cookie[101] == (10_000, 2_000) and second.by_cookie[102] == (100_000, 1_000)
    assert (second.tx_bps, second.rx_bps) == (110_000, 3_000)
    assert second.processes[23001].tx_bps == 100_000
    assert process_totals(SCANS[1].sockets, 23001) == (200_000, 2_000)
    assert process_totals(SCANS[1].sockets, 4021) is None  # firefox: connections without counters
    assert second.listen == ListenCounters(3, 3)
    failed = tracker.step(SCANS[2]._replace(error="boom"))
    assert failed is second
    third = tracker.step(SCANS[2])
    assert third is not None and third.series(23001) == [101_000, 51_000]
    assert third.series(1291) == [12_000, 12_000] and third.series(4021) == [0.0, 0.0]
    assert third.listen == ListenCounters(0, 1)


def test_sort_by_rate_puts_sockets_without_a_rate_last_both_ways() -> None:
    tracker = TrafficTracker()
    tracker.step(SCANS[0])
    traffic = tracker.step(SCANS[1])
    rows = list(SCANS[1].sockets)
    up = sort_by_rate(rows, traffic, "tx_bps", False)
    assert [s.cookie for s in up[:2]] == [101, 102] and all(s.cookie not in (101, 102) for s in up[2:])
    down = sort_by_rate(rows, traffic, "tx_bps", True)
    assert [s.cookie for s in down[:2]] == [102, 101]
    by_rx = sort_by_rate(rows, traffic, "rx_bps", True)
    assert [s.cookie for s in by_rx[:2]] == [101, 102]


def test_rate_text_fits_the_column() -> None:
    assert [rate_text(x) for x in (None, 0.2, 512, 12_345, 1_234_567, 999_999_999_999)] == [
        "", "0", "512 B", "12.3 kB", "1.2 MB", "1000.0 GB"
    ]  # fmt: skip
    assert all(len(rate_text(x)) <= 8 for x in (999.9, 999_949, 1e9 - 1))


# -- the table ------------------------------------------------------------------------------------


def test_rate_columns_show_the_rates_sort_and_toggle() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert set(RATE_COLUMNS) <= set(column_names(table))  # counters: shown (empty until a second scan)
        assert "kB" not in row_text(table, row_of(table, lambda s: s.cookie == 102))
        await pilot.press("r")
        web = row_text(table, row_of(table, lambda s: s.cookie == 101))
        db = row_text(table, row_of(table, lambda s: s.cookie == 102))
        assert "10.0 kB" in web and "2.0 kB" in web
        assert "100.0 kB" in db and "1.0 kB" in db
        await header_click(pilot, table, "tx_bps")
        assert screen.spec.column == "tx_bps" and table.sort_column == "tx_bps"
        assert [s.cookie for s in table.rows[:2]] == [101, 102]
        await header_click(pilot, table, "tx_bps")
        assert screen.spec.descending and [s.cookie for s in table.rows[:2]] == [102, 101]
        assert "sort: TX/s ▼" in status_of(screen)
        await pilot.press("t")
        assert not set(RATE_COLUMNS) & set(column_names(table))
        await pilot.press("t")
        assert set(RATE_COLUMNS) <= set(column_names(table))
        # A refresh keeps the rate order: db slowed to 50 kB/s, still above web's 10 kB/s.
        await pilot.press("r")
        assert [s.cookie for s in table.rows[:2]] == [102, 101]
        assert "50.0 kB" in row_text(table, 0)

    run(make_app(), body)


def test_rate_columns_are_hidden_at_narrow_widths_and_without_counters() -> None:
    async def narrow(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("r")
        assert not set(RATE_COLUMNS) & set(column_names(table))
        assert "process" in column_names(table)

    run(make_app(), narrow, size=(80, 30))

    async def no_counters(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("r")
        assert screen.traffic is not None and not screen.traffic.counters
        assert not set(RATE_COLUMNS) & set(column_names(table))
        assert "TX " not in status_of(screen)

    run(make_app([demo_snapshot(), demo_snapshot(DEMO_TIME + 2)]), no_counters)


def test_a_full_backlog_listener_row_is_highlighted() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        full = row_of(table, lambda s: s.accept_queue_full)
        other = row_of(table, lambda s: s.state == LISTEN and not s.accept_queue_full and s.local_port == 5432)
        assert table.cursor_row not in (full, other)
        highlight = table._style("backlog-full").bgcolor
        assert highlight is not None
        assert highlight in {seg.style.bgcolor for seg in table._row_strip(full) if seg.style is not None}
        assert highlight not in {seg.style.bgcolor for seg in table._row_strip(other) if seg.style is not None}

    run(make_app(), body)


def test_a_connection_that_went_quiet_shows_a_zero_rate_not_the_last_one() -> None:
    quiet = scan(DEMO_TIME + 6, (41_000, 8_500), (400_000, 6_000))  # web moved nothing since the last scan

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("r", "r")
        web = row_of(table, lambda s: s.cookie == 101)
        assert "10.0 kB" in row_text(table, web)
        await pilot.press("r")
        web = row_of(table, lambda s: s.cookie == 101)
        assert table.rows[web] == SCANS[2].sockets[row_of_scan(SCANS[2], 101)]  # the same socket value
        text = row_text(table, web)
        assert "kB" not in text and " 0 " in text
        again = screen.traffic
        await pilot.press("r")  # the fake repeats its last scan: nothing new, the rates stay
        assert screen.traffic is again

    run(make_app([*SCANS, quiet]), body)


def row_of_scan(snapshot: Snapshot, cookie: int) -> int:
    return next(i for i, s in enumerate(snapshot.sockets) if s.cookie == cookie)


# -- status line and detail pane ------------------------------------------------------------------


def test_status_line_shows_machine_totals_and_listen_counters() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        assert "TX " not in status_of(screen)  # one scan: no rates yet
        await pilot.press("r")
        status = status_of(screen)
        assert "TX 110.0 kB/s RX 3.0 kB/s" in status
        assert "listen overflows 3 drops 3" in status
        await pilot.press("r")
        status = status_of(screen)
        assert "TX 60.0 kB/s RX 3.0 kB/s" in status and "listen overflows 0 drops 0" in status

    run(make_app(), body)


def test_detail_pane_shows_process_totals_rate_sparkline_and_listener_queue() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        await pilot.press("r", "r")
        table.move_cursor(row_of(table, lambda s: s.cookie == 102))
        await pilot.press("d")
        await pilot.pause()
        text = screen.detail.text
        assert "Connection sent 300.0 kB, received 4.0 kB; TX 50.0 kB/s RX 1.0 kB/s; rtt 0.1 ms" in text
        assert "Process 23001 sent 300.0 kB, received 4.0 kB; TX 50.0 kB/s RX 1.0 kB/s" in text
        series = screen.detail.rate_series
        assert len(series) == HISTORY_SCANS and series[-2:] == [101_000, 51_000] and not any(series[:-2])
        table.move_cursor(row_of(table, lambda s: s.cookie == 101))
        await pilot.pause()
        assert "3 retransmitted" in screen.detail.text
        assert screen.detail.rate_series[-3:] == [0.0, 12_000, 12_000]
        table.move_cursor(row_of(table, lambda s: s.cookie == 103))
        await pilot.pause()
        text = screen.detail.text
        assert "Accept queue 129/128 queued: full, the server is not accepting" in text
        assert "ListenOverflows +0, ListenDrops +0 since the last scan" in text

    run(make_app(), body)


# -- closing one connection -----------------------------------------------------------------------


def test_close_dialog_has_cancel_focused_and_cancel_closes_nothing() -> None:
    calls: list[Socket] = []

    def closer(target: Socket) -> CloseOutcome:
        calls.append(target)
        return CloseOutcome(True, None, None, None)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        table.move_cursor(row_of(table, lambda s: s.cookie == 101))
        await pilot.press("x")
        await pilot.pause()
        modal = screen.app.screen
        assert isinstance(modal, CloseModal)
        focused = modal.focused
        assert isinstance(focused, Button) and focused.id == "cancel"
        details = str(modal.query_one("#close-holders").content)  # type: ignore[attr-defined]
        assert "pid 1291 nginx (www-data)" in details
        assert "203.0.113.5:61044" in str(modal.query_one("#close-socket").content)  # type: ignore[attr-defined]
        await pilot.press("enter")  # on Cancel
        await pilot.pause()
        assert screen.app.screen is screen and calls == []

    run(make_app(closer=closer), body)


def test_close_is_not_offered_on_a_listening_row() -> None:
    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        table.move_cursor(row_of(table, lambda s: s.state == LISTEN))
        await pilot.press("x")
        await pilot.pause()
        assert screen.app.screen is screen
        assert any("never a listening socket" in str(n.message) for n in screen.app._notifications)

    run(make_app(), body)
    listener = next(s for s in SCANS[0].sockets if s.cookie == 103)
    assert close_refusal(listener) is not None and "listening" in (close_refusal(listener) or "")
    udp = next(s for s in SCANS[0].sockets if s.proto == "udp")
    assert close_refusal(udp) == "only a TCP connection can be closed (this is UDP)"
    no_cookie = next(s for s in SCANS[0].sockets if s.state == ESTABLISHED and s.cookie is None)
    assert "cookie" in (close_refusal(no_cookie) or "")


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (errno.EPERM, "not closed: not permitted: closing a connection needs root (CAP_NET_ADMIN)"),
        (errno.EOPNOTSUPP, "not closed: this kernel cannot close sockets from outside"),
    ],
)
def test_close_dialog_shows_the_refusal_explained(err: int, expected: str) -> None:
    targets: list[Socket] = []

    def refuse(target: Socket) -> None:
        targets.append(target)
        raise OSError(err, "refused")

    def closer(target: Socket) -> CloseOutcome:
        return close_connection(target, lambda: SCANS[0], destroyer=refuse)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        table.move_cursor(row_of(table, lambda s: s.cookie == 102))
        await pilot.press("x")
        await pilot.pause()
        modal = screen.app.screen
        assert isinstance(modal, CloseModal)
        await pilot.press("y")
        await screen.app.workers.wait_for_complete()
        await pilot.pause()
        assert [t.cookie for t in targets] == [102]
        assert modal.status_line.startswith(expected) and "\n" not in modal.status_line
        await pilot.press("escape")
        await pilot.pause()
        assert screen.app.screen is screen

    run(make_app(closer=closer), body)


def test_close_dialog_confirms_by_rescan() -> None:
    gone = SCANS[1]._replace(sockets=tuple(s for s in SCANS[1].sockets if s.cookie != 101))

    def closer(target: Socket) -> CloseOutcome:
        return close_connection(target, lambda: gone, destroyer=lambda s: None)

    async def body(pilot: Pilot, screen: MonitorScreen, table: SocketTable) -> None:
        table.move_cursor(row_of(table, lambda s: s.cookie == 101))
        await pilot.press("x", "y")
        await screen.app.workers.wait_for_complete()
        await pilot.pause()
        modal = screen.app.screen
        assert isinstance(modal, CloseModal)
        assert modal.status_line.startswith("closed tcp4 192.168.1.20:443")
        assert "gone from a new scan" in modal.status_line
        scans = screen.scans
        await pilot.press("escape")
        await pilot.pause()
        assert screen.app.screen is screen and screen.scans == scans + 1  # re-scanned after the close

    run(make_app(closer=closer), body)


# -- real sockets ---------------------------------------------------------------------------------


def test_rates_appear_for_a_paced_loopback_sender() -> None:
    from portmon.collect.choose import default_collector

    collector = default_collector()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    port = client.getsockname()[1]
    server_port = server.getsockname()[1]
    ours = [s for s in collector.scan().sockets if s.local_port == port and s.remote_port == server_port]
    if not any(s.cookie is not None and s.bytes_sent is not None for s in ours):
        for s in (client, peer, server):
            s.close()
        pytest.skip("this collector gives no byte counters (needs Linux sock_diag with tcp_info)")
    stop = threading.Event()

    def send() -> None:  # about 200 kB/s, paced (the load, not synchronisation)
        chunk = b"x" * 20_000
        while not stop.is_set():
            client.sendall(chunk)
            stop.wait(0.1)

    def drain() -> None:
        peer.settimeout(0.5)
        while not stop.is_set():
            try:
                if not peer.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    threads = [threading.Thread(target=send, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    app = PortmonApp(collector, interval=0.3, poll=True, filter_text=f":{port}", process_reader=demo_process,
                     listen=lambda: None)  # fmt: skip

    def is_sender(s: Socket) -> bool:
        # The ends, not the local port alone: Linux reuses an ephemeral port towards other destinations.
        return s.local_port == port and s.remote_port == server_port and s.local_addr == "127.0.0.1"

    def sender_rate(screen: MonitorScreen) -> float:
        traffic = screen.traffic
        if traffic is None:
            return 0.0
        return max(
            (rate[0] for s in screen.table.rows if is_sender(s) and (rate := traffic.rate(s)) is not None),
            default=0.0,
        )

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.monitor
            deadline = time.monotonic() + 30
            while sender_rate(screen) <= 0 and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert sender_rate(screen) > 0, "no TX rate for the sender within the deadline"
            row = row_of(screen.table, is_sender)
            assert set(RATE_COLUMNS) <= set(column_names(screen.table))
            text = row_text(screen.table, row)
            assert "kB" in text or "MB" in text
            assert "TX " in status_of(screen)

    try:
        asyncio.run(main())
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in (client, peer, server):
            s.close()


# -- layout ---------------------------------------------------------------------------------------


def test_traffic_layout_snapshot(snap_compare: Callable[..., bool], monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate columns sorted by TX/s, the full-backlog row, the status totals; then the detail pane of the listener."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        app = make_app(sort="local_port")

        async def prepare(pilot: Pilot) -> None:
            await pilot.pause()
            await pilot.press("r", "r")
            app.monitor.sort_by("tx_bps")
            app.monitor.sort_by("tx_bps")  # descending
            await pilot.pause()

        assert snap_compare(app, run_before=prepare, terminal_size=(180, 40))
    finally:
        monkeypatch.undo()
        time.tzset()


ROOT_ON_LINUX = sys.platform.startswith("linux") and os.geteuid() == 0


@pytest.mark.skipif(not ROOT_ON_LINUX, reason="SOCK_DESTROY needs root on Linux")
def test_the_close_key_ends_a_real_connection_and_its_holder_lives() -> None:
    from portmon.collect.choose import default_collector

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    port, server_port = client.getsockname()[1], server.getsockname()[1]
    app = PortmonApp(default_collector(), poll=False, filter_text=f":{port}", process_reader=demo_process)

    def is_client(s: Socket) -> bool:
        return s.local_port == port and s.remote_port == server_port and s.local_addr == "127.0.0.1"

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            table = app.monitor.table
            table.move_cursor(row_of(table, is_client))
            await pilot.press("x")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, CloseModal) and modal.socket.cookie is not None
            await pilot.press("y")
            await app.workers.wait_for_complete()
            await pilot.pause()
            if "CONFIG_INET_DIAG_DESTROY" in modal.status_line:
                pytest.skip("this kernel has no CONFIG_INET_DIAG_DESTROY")
            assert modal.status_line.startswith("closed tcp4 127.0.0.1:"), modal.status_line

    try:
        asyncio.run(main())
        client.settimeout(5)
        # Aborted under its holder (this process, alive): ECONNABORTED, not a timeout.
        with pytest.raises((ConnectionAbortedError, ConnectionResetError)):
            client.recv(1)
    finally:
        for s in (client, peer, server):
            s.close()
