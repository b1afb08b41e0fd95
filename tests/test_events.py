"""Tests of the event stream, the bounded event log and the text/NDJSON event lines, with scripted snapshots."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest

from portmon.model import (
    CLOSE_WAIT,
    ESTABLISHED,
    LISTEN,
    OWNER_HIDDEN,
    OWNER_KERNEL,
    TIME_WAIT,
    Holder,
    Snapshot,
    Socket,
)
from portmon.output import RECORD_KEYS
from portmon.query.diff import CLOSE, OPEN, STATE, Event
from portmon.query.events import (
    EventLog,
    EventStream,
    event_in_scope,
    event_json,
    event_line,
    event_record,
    is_listening,
    iso_time,
)

T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def sock(
    lport: int,
    state: str | None = LISTEN,
    *,
    laddr: str = "0.0.0.0",
    remote: tuple[str, int] | None = None,
    proto: str = "tcp",
    family: int = 4,
    holders: tuple[Holder, ...] = (Holder(4121, "python3", "alice"),),
    note: str | None = None,
    inode: int = 0,
    service: str | None = None,
) -> Socket:
    return Socket(
        proto=proto,
        family=family,
        local_addr=laddr,
        local_port=lport,
        remote_addr=remote[0] if remote else None,
        remote_port=remote[1] if remote else None,
        state=state if proto == "tcp" else None,
        holders=holders,
        owner_note=note,
        inode=inode,
        local_service=service,
    )


def snap(*socks: Socket, at: float = T0, error: str | None = None) -> Snapshot:
    return Snapshot(sockets=tuple(socks), taken_at=at, error=error)


WEB = sock(8000, service="http-alt", inode=11)
DNS = sock(5353, proto="udp", inode=12, holders=(Holder(640, "avahi-daemon", "avahi"),))
CONN = sock(8000, ESTABLISHED, laddr="127.0.0.1", remote=("127.0.0.1", 52714), inode=13)
CLIENT = sock(52714, ESTABLISHED, laddr="127.0.0.1", remote=("127.0.0.1", 8000), inode=14)


# -- the stream -------------------------------------------------------------------------------


def test_first_snapshot_is_the_baseline_and_gives_no_events() -> None:
    stream = EventStream()
    assert not stream.started
    assert stream.feed(snap(WEB, DNS, at=T0)) == ()
    assert stream.started and stream.baseline_at == T0


def test_open_close_and_state_change_in_order() -> None:
    stream = EventStream()
    stream.feed(snap(WEB, at=T0))
    opened = stream.feed(snap(WEB, CONN, at=T0 + 1))
    assert opened == (Event(OPEN, T0 + 1, CONN, None, ESTABLISHED),)
    closing = sock(8000, CLOSE_WAIT, laddr="127.0.0.1", remote=("127.0.0.1", 52714), inode=13)
    changed = stream.feed(snap(WEB, closing, at=T0 + 2))
    assert changed == (Event(STATE, T0 + 2, closing, ESTABLISHED, CLOSE_WAIT),)
    closed = stream.feed(snap(closing, at=T0 + 3))
    assert closed == (Event(CLOSE, T0 + 3, WEB, LISTEN, None),)
    assert closed[0].socket.pid == 4121 and closed[0].socket.process == "python3"


def test_owner_change_of_the_same_socket_is_no_event_but_a_restart_is_close_then_open() -> None:
    stream = EventStream()
    stream.feed(snap(WEB, at=T0))
    # Same socket (same inode), now held by the child the server handed it to.
    inherited = sock(8000, service="http-alt", inode=11, holders=(Holder(4122, "python3", "alice"),))
    assert stream.feed(snap(inherited, at=T0 + 1)) == ()
    # The server restarted: a new socket (new inode) on the same address, with a new pid.
    restarted = sock(8000, service="http-alt", inode=99, holders=(Holder(5000, "python3", "alice"),))
    events = stream.feed(snap(restarted, at=T0 + 2))
    assert [(e.kind, e.socket.pid) for e in events] == [(CLOSE, 4122), (OPEN, 5000)]


def test_a_flapping_socket_gives_every_open_and_close() -> None:
    stream = EventStream()
    stream.feed(snap(DNS, at=T0))
    presence = [True, False, True, True, False, True, False]
    seen = []
    for i, present in enumerate(presence, start=1):
        for event in stream.feed(snap(DNS, *([WEB] if present else []), at=T0 + i)):
            seen.append((event.kind, event.time - T0, event.socket))
    assert seen == [(OPEN, 1, WEB), (CLOSE, 2, WEB), (OPEN, 3, WEB), (CLOSE, 5, WEB), (OPEN, 6, WEB), (CLOSE, 7, WEB)]


def test_failed_scans_give_no_events_and_keep_the_baseline() -> None:
    stream = EventStream()
    stream.feed(snap(WEB, at=T0))
    # guarded_scan repeats the last good sockets with the error attached; even an empty one is ignored.
    assert stream.feed(snap(at=T0 + 1, error="scan failed: boom")) == ()
    assert stream.feed(snap(WEB, at=T0 + 2, error="scan failed: boom")) == ()
    events = stream.feed(snap(WEB, DNS, at=T0 + 3))
    assert [(e.kind, e.socket) for e in events] == [(OPEN, DNS)]


def test_a_failed_first_scan_is_not_the_baseline() -> None:
    stream = EventStream()
    assert stream.feed(snap(at=T0, error="scan failed")) == ()
    assert not stream.started
    assert stream.feed(snap(WEB, at=T0 + 1)) == ()
    assert stream.baseline_at == T0 + 1


def test_listening_scope_ignores_connections() -> None:
    stream = EventStream(is_listening)
    stream.feed(snap(WEB, at=T0))
    assert stream.feed(snap(WEB, CONN, CLIENT, at=T0 + 1)) == ()
    connected_udp = sock(5353, proto="udp", remote=("192.168.1.1", 53), inode=15)
    events = stream.feed(snap(WEB, CONN, DNS, connected_udp, at=T0 + 2))
    assert [(e.kind, e.socket) for e in events] == [(OPEN, DNS)]
    events = stream.feed(snap(DNS, at=T0 + 3))
    assert [(e.kind, e.socket) for e in events] == [(CLOSE, WEB)]


def test_event_in_scope_counts_the_state_before_too() -> None:
    was_listening = Event(STATE, T0, sock(8000, "CLOSE", inode=11), LISTEN, "CLOSE")
    assert event_in_scope(was_listening, is_listening)
    assert not event_in_scope(Event(STATE, T0, CONN, ESTABLISHED, CLOSE_WAIT), is_listening)
    assert event_in_scope(Event(CLOSE, T0, WEB, LISTEN), is_listening)
    assert not event_in_scope(Event(OPEN, T0, CONN, None, ESTABLISHED), is_listening)


# -- the bounded log --------------------------------------------------------------------------


def _events(n: int, start: int = 0) -> list[Event]:
    return [Event(OPEN, T0 + i, sock(10000 + i, inode=i + 1), None, LISTEN) for i in range(start, start + n)]


def test_the_log_keeps_the_newest_events_up_to_its_limit() -> None:
    log = EventLog(limit=5)
    log.add(_events(3))
    assert len(log) == 3 and log.total == 3 and log.dropped == 0
    log.add(_events(4, start=3))
    assert len(log) == 5 and log.total == 7 and log.dropped == 2
    newest = log.newest_first()
    assert [item.seq for item in newest] == [6, 5, 4, 3, 2]
    assert [item.event.socket.local_port for item in newest] == [10006, 10005, 10004, 10003, 10002]
    assert log.oldest_seq == 2


def test_a_flood_larger_than_the_limit_keeps_only_its_tail() -> None:
    log = EventLog(limit=3)
    added = log.add(_events(10))
    assert len(added) == 10 and [a.seq for a in added] == list(range(10))
    assert [item.seq for item in log.newest_first()] == [9, 8, 7]
    assert log.dropped == 7


def test_the_log_filters_newest_first() -> None:
    log = EventLog(limit=100)
    log.add(_events(10))
    even = log.newest_first(lambda e: e.socket.local_port % 2 == 0)
    assert [item.event.socket.local_port for item in even] == [10008, 10006, 10004, 10002, 10000]


def test_the_log_needs_a_positive_limit_and_can_be_cleared() -> None:
    with pytest.raises(ValueError):
        EventLog(limit=0)
    log = EventLog(limit=2)
    log.add(_events(2))
    log.clear()
    assert len(log) == 0 and log.total == 2
    assert [item.seq for item in log.add(_events(1))] == [2]


# -- formatting -------------------------------------------------------------------------------


def test_text_line_matches_the_documented_shape() -> None:
    line = event_line(Event(OPEN, T0 + 63, WEB, None, LISTEN))
    assert line == "12:01:03 open  tcp4 0.0.0.0:8000 LISTEN python3 (4121) http-alt"
    assert event_line(Event(CLOSE, T0, WEB, LISTEN, None)).startswith("12:00:00 close tcp4 0.0.0.0:8000 LISTEN")


def test_text_line_of_a_state_change_a_connection_udp_ipv6_and_no_owner() -> None:
    closing = sock(8000, CLOSE_WAIT, laddr="127.0.0.1", remote=("127.0.0.1", 52714), inode=13)
    assert event_line(Event(STATE, T0, closing, ESTABLISHED, CLOSE_WAIT)) == (
        "12:00:00 state tcp4 127.0.0.1:8000 -> 127.0.0.1:52714 CLOSE_WAIT (was ESTABLISHED) python3 (4121)"
    )
    assert event_line(Event(OPEN, T0, DNS)) == "12:00:00 open  udp4 0.0.0.0:5353 avahi-daemon (640)"
    v6 = sock(3000, family=6, laddr="::", holders=(Holder(1, "a"), Holder(2, "b"), Holder(3, "c")))
    assert event_line(Event(OPEN, T0, v6, None, LISTEN)) == "12:00:00 open  tcp6 [::]:3000 LISTEN a (1) +2"
    tw = sock(443, TIME_WAIT, laddr="10.0.0.1", remote=("10.0.0.2", 5000), holders=(), note=OWNER_KERNEL)
    assert event_line(Event(OPEN, T0, tw, None, TIME_WAIT)).endswith("TIME_WAIT (kernel)")
    hidden = sock(631, holders=(), note=OWNER_HIDDEN)
    assert event_line(Event(OPEN, T0, hidden, None, LISTEN)).endswith("LISTEN (hidden owner)")


def test_text_line_escapes_hostile_names_and_services() -> None:
    evil = sock(9999, holders=(Holder(31338, "[/]\x1b[2Jevil\nnext", "mallory"),), service="svc\x07\u202e")
    line = event_line(Event(OPEN, T0, evil, None, LISTEN))
    assert "\x1b" not in line and "\n" not in line and "\x07" not in line and "\u202e" not in line
    assert "[/]\\x1b[2Jevil\\nnext (31338)" in line
    assert line.endswith("svc\\x07\\u202e")


def test_json_record_has_the_list_keys_and_the_event_fields() -> None:
    record = event_record(Event(OPEN, T0 + 1.5, WEB, None, LISTEN))
    for key in RECORD_KEYS:
        assert key in record
    assert record["event"] == "open"
    assert record["pid"] == 4121 and record["process"] == "python3" and record["user"] == "alice"
    assert record["local_port"] == 8000 and record["local_service"] == "http-alt"
    assert record["old_state"] is None and record["new_state"] == LISTEN
    assert record["holders"] == [{"pid": 4121, "process": "python3", "user": "alice"}]
    stamp = dt.datetime.fromisoformat(record["time"])
    assert stamp.tzinfo is not None and stamp.utcoffset() == dt.timedelta(0)
    assert stamp.timestamp() == T0 + 1.5


def test_json_of_a_state_event_and_hostile_text_is_one_ascii_line() -> None:
    evil = sock(8000, CLOSE_WAIT, laddr="127.0.0.1", remote=("127.0.0.1", 1), holders=(Holder(7, "x\n\x1b]0;t\x07ü"),))
    text = event_json(Event(STATE, T0, evil, ESTABLISHED, CLOSE_WAIT))
    assert "\n" not in text and "\x1b" not in text and text.isascii()
    record = json.loads(text)
    assert record["event"] == "state" and record["old_state"] == ESTABLISHED and record["new_state"] == CLOSE_WAIT
    assert record["process"] == "x\n\x1b]0;t\x07ü"  # exact once decoded: JSON escapes, it does not alter


def test_iso_time_carries_the_local_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    assert iso_time(T0) == "2026-01-01T17:30:00.000+05:30"
