"""The live table's model without an app: marks, derived rows, neighbours, column layout, fake data."""

from __future__ import annotations

from portmon.collect.fake import DEMO_TIME, HOSTILE_NAME, demo_snapshot, synthetic_snapshot
from portmon.model import CLOSE_WAIT, ESTABLISHED, LISTEN, OWNER_HIDDEN, OWNER_KERNEL, Snapshot, Socket
from portmon.query.filters import parse_filter
from portmon.ui.columns import TABLE_COLUMNS, TRAFFIC_COLUMNS, fit, layout_columns
from portmon.ui.detail import held_lines, held_sockets
from portmon.ui.status import CountHistory, StatusInfo, banner_text, seconds_text, status_text
from portmon.ui.view import (
    CLOSED_SECONDS,
    MARK_CHANGED,
    MARK_CLOSED,
    MARK_NEW,
    MARK_NONE,
    NEW_SECONDS,
    NO_MARKS,
    Pipeline,
    ViewSpec,
    advance_marks,
    derive_view,
    neighbour,
)


def _socket(lport: int, rport: int | None = None, state: str | None = ESTABLISHED) -> Socket:
    return Socket("tcp", 4, "127.0.0.1", lport, "127.0.0.1" if rport else None, rport, state)


def _snap(*sockets: Socket) -> Snapshot:
    return Snapshot(sockets=tuple(sockets), taken_at=DEMO_TIME)


def test_first_snapshot_marks_nothing() -> None:
    marks = advance_marks(NO_MARKS, None, demo_snapshot(), DEMO_TIME)
    assert not marks
    assert marks.mark(demo_snapshot().sockets[0].key, DEMO_TIME) == MARK_NONE


def test_marks_new_closed_and_changed_rows_then_expire() -> None:
    a, b, c = _socket(1000, 5000), _socket(1001, 5001), _socket(1002, 5002)
    old = _snap(a, b, c)
    new = _snap(a, b._replace(state=CLOSE_WAIT), _socket(1003, 5003))
    marks = advance_marks(NO_MARKS, old, new, DEMO_TIME)
    assert marks.mark(_socket(1003, 5003).key, DEMO_TIME) == MARK_NEW
    assert marks.mark(b.key, DEMO_TIME) == MARK_CHANGED
    assert marks.mark(c.key, DEMO_TIME) == MARK_CLOSED
    assert marks.mark(a.key, DEMO_TIME) == MARK_NONE
    assert marks.ghosts(DEMO_TIME) == [c]
    later = DEMO_TIME + max(NEW_SECONDS, CLOSED_SECONDS) + 0.1
    assert marks.mark(c.key, later) == MARK_NONE
    assert marks.ghosts(later) == []
    assert advance_marks(marks, new, new, later) is NO_MARKS


def test_a_failed_scan_marks_nothing() -> None:
    a = _socket(1000, 5000)
    broken = _snap()._replace(error="scan failed: boom")
    assert not advance_marks(NO_MARKS, _snap(a), broken, DEMO_TIME)


def test_reopened_socket_is_no_longer_a_ghost() -> None:
    a = _socket(1000, 5000)
    marks = advance_marks(NO_MARKS, _snap(a), _snap(), DEMO_TIME)
    assert marks.mark(a.key, DEMO_TIME) == MARK_CLOSED
    marks = advance_marks(marks, _snap(), _snap(a), DEMO_TIME + 1)
    assert marks.mark(a.key, DEMO_TIME + 1) == MARK_NEW
    assert marks.ghosts(DEMO_TIME + 1) == []


def test_derive_view_filters_sorts_and_keeps_matching_ghosts() -> None:
    a, b, c = _socket(3000, 5000), _socket(1000, 5001), _socket(2000, 5002)
    pipeline = Pipeline()
    pipeline.step(_snap(a, b, c), ViewSpec(), DEMO_TIME, 1.0)
    update = pipeline.step(_snap(a, b), ViewSpec(), DEMO_TIME, 1.0)
    assert [s.local_port for s in update.view.rows] == [1000, 2000, 3000]
    assert update.view.shown == 2 and update.view.total == 2
    assert update.view.index[c.key] == 1
    spec = ViewSpec(filter=parse_filter("lport:1000-2500"), column="local_port", descending=True)
    view = derive_view(update.snapshot, update.marks, spec, DEMO_TIME)
    assert [s.local_port for s in view.rows] == [2000, 1000]
    view = derive_view(update.snapshot, update.marks, spec, DEMO_TIME + CLOSED_SECONDS + 1)
    assert [s.local_port for s in view.rows] == [1000]


def test_listening_only_view() -> None:
    view = derive_view(demo_snapshot(), NO_MARKS, ViewSpec(listening_only=True), DEMO_TIME)
    assert view.rows and all(s.listening for s in view.rows)
    assert view.shown < view.total
    assert view.states[LISTEN] == sum(1 for s in demo_snapshot().sockets if s.state == LISTEN)


def test_sort_column_steps_wrap_around() -> None:
    spec = ViewSpec(column="proto")
    assert spec.with_column_step(-1).column == "user"
    assert spec.with_column_step(1).column == "local_addr"


def test_neighbour_prefers_the_row_that_followed() -> None:
    rows = [_socket(p, 1) for p in (1, 2, 3, 4)]
    survivors = {rows[0].key: 0, rows[2].key: 1, rows[3].key: 2}
    assert neighbour(rows, 1, survivors) == 1
    only_before = {rows[0].key: 0}
    assert neighbour(rows, 3, only_before) == 0
    assert neighbour(rows, 2, {}) is None


def test_layout_keeps_every_column_when_wide() -> None:
    view = derive_view(demo_snapshot(), NO_MARKS, ViewSpec(), DEMO_TIME)
    layout = layout_columns(200, view.widths)
    assert [c.name for c, _ in layout] == [c.name for c in TABLE_COLUMNS if c.name not in TRAFFIC_COLUMNS]
    with_rates = layout_columns(240, view.widths, hidden=())
    assert [c.name for c, _ in with_rates] == [c.name for c in TABLE_COLUMNS]
    widths = {c.name: w for c, w in layout}
    assert widths["process"] >= len(HOSTILE_NAME)
    assert widths["local_addr"] >= len("192.168.1.20")


def test_layout_at_80_columns_drops_services_and_fits() -> None:
    view = derive_view(demo_snapshot(), NO_MARKS, ViewSpec(), DEMO_TIME)
    layout = layout_columns(78, view.widths)
    names = [c.name for c, _ in layout]
    assert "local_service" not in names and "remote_service" not in names
    for essential in ("proto", "local_addr", "local_port", "remote_addr", "state", "pid", "process"):
        assert essential in names
    assert sum(w for _, w in layout) + len(layout) - 1 <= 78
    widths = {c.name: w for c, w in layout}
    assert widths["local_addr"] >= len("192.168.1.20")


def test_layout_on_a_tiny_terminal_still_returns_columns() -> None:
    layout = layout_columns(20, {"local_addr": 39, "remote_addr": 39, "process": 30})
    assert layout
    assert all(w >= c.hard for c, w in layout)


def test_fit_pads_cuts_and_counts_wide_characters() -> None:
    assert fit("abc", 5) == "abc  "
    assert fit("abc", 5, right=True) == "  abc"
    assert fit("abcdef", 4) == "abc…"
    assert fit("数据库服务", 5) == "数据…"
    assert fit("数据", 5) == "数据 "
    assert fit("anything", 0) == ""


def test_status_line_shows_counts_pause_sort_filter_and_hidden_owners() -> None:
    snapshot = demo_snapshot()
    view = derive_view(snapshot, NO_MARKS, ViewSpec(filter=parse_filter("[/]")), DEMO_TIME)
    info = StatusInfo(
        shown=view.shown, total=view.total, states=view.states, snapshot=snapshot, interval=3.0,
        requested_interval=1.0, paused=True, spec=view.spec,
    )
    text = status_text(info).plain
    assert "PAUSED" in text
    assert f"{view.shown}/{view.total} sockets" in text
    assert "LISTEN 12" in text and "TIME_WAIT 2" in text and "CLOSE_WAIT 2" in text and "UDP 4" in text
    assert "1 socket with unknown owner; run as root to see them" in text
    assert "scan 12 ms" in text
    assert "every 3 s (slowed from 1 s: slow scans)" in text
    assert "sort: local port ▲" in text
    assert "filter: [/]" in text


def test_status_line_rounds_a_grown_interval() -> None:
    snapshot = demo_snapshot()
    view = derive_view(snapshot, NO_MARKS, ViewSpec(), DEMO_TIME)
    info = StatusInfo(
        shown=view.shown, total=view.total, states=view.states, snapshot=snapshot, interval=3.91415,
        requested_interval=0.25, paused=False, spec=view.spec,
    )
    assert "every 3.9 s (slowed from 0.25 s: slow scans)" in status_text(info).plain
    assert [seconds_text(s) for s in (0.05, 0.25, 1.0, 2.0, 3.91415, 9.96, 12.6, 1234.5)] == [
        "0.05", "0.25", "1", "2", "3.9", "10", "13", "1234"
    ]


def test_banner_for_errors_and_warnings() -> None:
    good = demo_snapshot()
    assert banner_text(good, 1.0) is None
    broken = good._replace(error="scan failed: RuntimeError: boom")
    text = banner_text(broken, 2.0)
    assert text is not None and "scan failed: RuntimeError: boom" in text.plain
    assert "last good scan" in text.plain and "retrying every 2 s" in text.plain
    warned = good._replace(warning="only your own processes' sockets are shown")
    text = banner_text(warned, 1.0)
    assert text is not None and "only your own" in text.plain


def test_count_history_forgets_old_samples() -> None:
    history = CountHistory(seconds=10)
    for t in range(30):
        history.add(float(t), t)
    assert history.counts[0] == 19.0 and history.counts[-1] == 29.0


def test_demo_snapshot_is_deterministic_and_realistic() -> None:
    snap = demo_snapshot()
    assert snap == demo_snapshot()
    keys = [s.key for s in snap.sockets]
    assert len(keys) == len(set(keys))
    names = {s.process for s in snap.sockets}
    assert {"sshd", "nginx", "postgres", "python3", "node", "firefox", HOSTILE_NAME} <= names
    assert any(len(s.holders) == 3 and s.local_port == 80 for s in snap.sockets)
    assert any(s.owner_note == OWNER_HIDDEN for s in snap.sockets) and snap.hidden_owners == 1
    assert any(s.owner_note == OWNER_KERNEL for s in snap.sockets)
    assert any(s.family == 6 for s in snap.sockets) and any(s.proto == "udp" for s in snap.sockets)


def test_synthetic_snapshot_is_reproducible_and_churns() -> None:
    base = synthetic_snapshot(2000, seed=1)
    assert base == synthetic_snapshot(2000, seed=1)
    assert len(base.sockets) == 2000
    assert len({s.key for s in base.sockets}) == 2000
    after = synthetic_snapshot(2000, seed=2, churn=0.01, base=base)
    assert len(after.sockets) == 2000
    old_keys = {s.key for s in base.sockets}
    new_keys = {s.key for s in after.sockets}
    assert len(new_keys - old_keys) == 20


def test_held_sockets_lists_the_first_and_counts_all() -> None:
    sockets = synthetic_snapshot(3000, seed=4).sockets
    pid = next(s.holders[0].pid for s in sockets if s.holders)
    expected = [s for s in sockets if any(h.pid == pid for h in s.holders)]
    assert len(expected) > 5
    listed, total = held_sockets(sockets, pid, limit=5)
    assert total == len(expected) and list(listed) == expected[:5]
    assert held_sockets(sockets, -1) == ((), 0)
    lines = held_lines(listed, total)
    assert len(lines) == 6 and lines[-1].plain == f"  … and {total - 5} more"
    short = held_lines(expected[:2])
    assert [line.plain[:7] for line in short] == [f"  {s.proto_label:<5}" for s in expected[:2]]
