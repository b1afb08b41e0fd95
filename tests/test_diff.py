"""Tests for snapshot diffing: opens, closes, state changes, owner changes, flapping, first snapshot."""

from __future__ import annotations

import pytest

from portmon.model import CLOSE_WAIT, ESTABLISHED, LISTEN, SYN_SENT, TIME_WAIT, Holder, Snapshot, Socket
from portmon.query.diff import CLOSE, OPEN, STATE, Changes, Event, changes, diff_snapshots


def sock(
    lport: int,
    state: str | None = ESTABLISHED,
    remote: str | None = "127.0.0.1",
    rport: int | None = 40000,
    proto: str = "tcp",
    holders: tuple[Holder, ...] = (),
    inode: int = 0,
) -> Socket:
    """A loopback socket; a listener when remote is None."""
    return Socket(
        proto=proto,
        family=4,
        local_addr="127.0.0.1",
        local_port=lport,
        remote_addr=remote,
        remote_port=rport if remote is not None else None,
        state=state,
        holders=holders,
        inode=inode,
    )


def snap(*socks: Socket, at: float = 100.0) -> Snapshot:
    return Snapshot(sockets=tuple(socks), taken_at=at)


WEB = sock(8080, LISTEN, remote=None, holders=(Holder(10, "web"),))
CONN = sock(8080, ESTABLISHED, rport=50000, holders=(Holder(10, "web"),))
DNS = sock(53, None, remote=None, proto="udp")
SSH = sock(22, ESTABLISHED, rport=51000)


def test_identical_snapshots_have_no_events() -> None:
    old = snap(WEB, CONN, DNS)
    assert diff_snapshots(old, snap(WEB, CONN, DNS, at=101.0)) == []
    assert changes(old, snap(WEB, CONN, DNS)) == Changes(frozenset(), (), frozenset())
    assert changes(old, old).is_empty


def test_equal_but_distinct_objects_have_no_events() -> None:
    copy = sock(8080, ESTABLISHED, rport=50000, holders=(Holder(10, "web"),))
    assert copy is not CONN
    assert diff_snapshots(snap(CONN), snap(copy)) == []


def test_open() -> None:
    events = diff_snapshots(snap(WEB), snap(WEB, CONN, at=200.0))
    assert events == [Event(OPEN, 200.0, CONN, old_state=None, new_state=ESTABLISHED)]
    result = changes(snap(WEB), snap(WEB, CONN))
    assert result.opened == frozenset({CONN.key})
    assert result.closed == ()
    assert result.state_changed == frozenset()
    assert not result.is_empty


def test_close_reports_the_socket_as_last_seen() -> None:
    events = diff_snapshots(snap(WEB, CONN), snap(WEB, at=300.0))
    assert events == [Event(CLOSE, 300.0, CONN, old_state=ESTABLISHED, new_state=None)]
    assert events[0].socket is CONN
    result = changes(snap(WEB, CONN), snap(WEB))
    assert result.closed == (CONN,)
    assert result.opened == frozenset()


def test_state_change() -> None:
    closing = sock(8080, CLOSE_WAIT, rport=50000, holders=(Holder(10, "web"),))
    assert closing.key == CONN.key
    events = diff_snapshots(snap(CONN), snap(closing, at=5.0))
    assert events == [Event(STATE, 5.0, closing, old_state=ESTABLISHED, new_state=CLOSE_WAIT)]
    assert events[0].socket is closing
    result = changes(snap(CONN), snap(closing))
    assert result.state_changed == frozenset({CONN.key})
    assert result.opened == frozenset() and result.closed == ()


def test_owner_change_is_no_event() -> None:
    # Same key, different holders (the process handed the socket on, or its name changed).
    handed_over = sock(8080, LISTEN, remote=None, holders=(Holder(11, "web-new"),))
    gone_to_kernel = sock(8080, LISTEN, remote=None)
    assert handed_over.key == gone_to_kernel.key == WEB.key
    assert diff_snapshots(snap(WEB), snap(handed_over)) == []
    assert diff_snapshots(snap(handed_over), snap(gone_to_kernel)) == []
    assert changes(snap(WEB), snap(handed_over)).is_empty


def test_flapping_socket_closes_then_reopens() -> None:
    first, second, third = snap(WEB, SSH, at=1.0), snap(WEB, at=2.0), snap(WEB, SSH, at=3.0)
    assert diff_snapshots(first, second) == [Event(CLOSE, 2.0, SSH, old_state=ESTABLISHED)]
    assert diff_snapshots(second, third) == [Event(OPEN, 3.0, SSH, new_state=ESTABLISHED)]
    assert diff_snapshots(first, third) == []  # seen only at both ends: nothing changed


def test_none_old_makes_everything_open() -> None:
    new = snap(SSH, WEB, DNS, at=9.0)
    events = diff_snapshots(None, new)
    assert [e.kind for e in events] == [OPEN, OPEN, OPEN]
    assert [e.socket for e in events] == sorted([SSH, WEB, DNS], key=lambda s: s.key)
    assert all(e.time == 9.0 and e.old_state is None for e in events)
    assert [e.new_state for e in events] == [s.state for s in sorted([SSH, WEB, DNS], key=lambda s: s.key)]
    result = changes(None, new)
    assert result.opened == frozenset({SSH.key, WEB.key, DNS.key})
    assert result.closed == () and result.state_changed == frozenset()


def test_empty_new_closes_everything() -> None:
    events = diff_snapshots(snap(SSH, DNS), snap(at=4.0))
    assert [(e.kind, e.socket) for e in events] == [(CLOSE, s) for s in sorted([SSH, DNS], key=lambda s: s.key)]


def test_event_order_closes_then_states_then_opens_each_by_key() -> None:
    a_old = sock(1000, SYN_SENT, rport=1)
    a_new = sock(1000, ESTABLISHED, rport=1)
    b_old = sock(900, ESTABLISHED, rport=1)
    b_new = sock(900, TIME_WAIT, rport=1)
    gone1, gone2 = sock(7000, rport=2), sock(6000, rport=2)
    new1, new2 = sock(5000, rport=3), sock(4000, rport=3)
    old = snap(gone1, a_old, gone2, b_old)
    new = snap(new1, a_new, b_new, new2)
    events = diff_snapshots(old, new)
    assert [(e.kind, e.socket.local_port) for e in events] == [
        (CLOSE, 6000),
        (CLOSE, 7000),
        (STATE, 900),
        (STATE, 1000),
        (OPEN, 4000),
        (OPEN, 5000),
    ]
    assert [(e.old_state, e.new_state) for e in events if e.kind == STATE] == [
        (ESTABLISHED, TIME_WAIT),
        (SYN_SENT, ESTABLISHED),
    ]
    # The order does not depend on the order of sockets inside the snapshots.
    assert diff_snapshots(snap(*reversed(old.sockets)), snap(*reversed(new.sockets))) == events
    result = changes(old, new)
    assert result.closed == (gone2, gone1)
    assert result.opened == frozenset({new1.key, new2.key})
    assert result.state_changed == frozenset({a_new.key, b_new.key})


def test_time_defaults_and_override() -> None:
    assert diff_snapshots(None, snap(SSH, at=42.5))[0].time == 42.5
    assert diff_snapshots(None, snap(SSH, at=42.5), time=7.0)[0].time == 7.0


def test_plain_sequences(monkeypatch: pytest.MonkeyPatch) -> None:
    import portmon.query.diff as diff_module

    monkeypatch.setattr(diff_module._time, "time", lambda: 1234.0)
    events = diff_snapshots([WEB], [WEB, SSH])
    assert events == [Event(OPEN, 1234.0, SSH, new_state=ESTABLISHED)]
    assert diff_snapshots((WEB,), snap(WEB, SSH, at=5.0))[0].time == 5.0  # a mixed pair works too
    assert changes([WEB, SSH], (WEB,)).closed == (SSH,)


def test_same_endpoints_different_inode_are_different_sockets() -> None:
    one = sock(8080, LISTEN, remote=None, inode=111)
    other = sock(8080, LISTEN, remote=None, inode=222)
    events = diff_snapshots(snap(one), snap(other))
    assert [(e.kind, e.socket) for e in events] == [(CLOSE, one), (OPEN, other)]


def test_cached_key_maps_do_not_leak_between_snapshots() -> None:
    # A chain, as the live table diffs it: each new snapshot is the next call's old one.
    s1, s2, s3 = snap(WEB, at=1.0), snap(WEB, SSH, at=2.0), snap(SSH, at=3.0)
    assert [e.kind for e in diff_snapshots(s1, s2)] == [OPEN]
    assert [e.kind for e in diff_snapshots(s2, s3)] == [CLOSE]
    assert [e.kind for e in diff_snapshots(s1, s3)] == [CLOSE, OPEN]
    # A list is not cached by identity: changing it between calls is seen.
    live = [WEB]
    assert diff_snapshots(live, [WEB]) == []
    live.append(SSH)
    assert [e.kind for e in diff_snapshots(live, [WEB])] == [CLOSE]


def test_events_are_frozen_values() -> None:
    event = Event(OPEN, 1.0, SSH, new_state=ESTABLISHED)
    with pytest.raises(AttributeError):
        event.kind = CLOSE  # type: ignore[misc]
    assert event == Event(OPEN, 1.0, SSH, None, ESTABLISHED)


def test_a_connection_is_matched_by_its_endpoints_not_its_inode() -> None:
    from portmon.model import ESTABLISHED, TIME_WAIT, Holder, Socket
    from portmon.query.diff import STATE, diff_snapshots, identity

    conn = Socket("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52714, ESTABLISHED, (Holder(5, "srv"),), inode=77)
    orphan = conn._replace(state=TIME_WAIT, holders=(), owner_note="kernel", inode=0)
    events = diff_snapshots([conn], [orphan], time=1.0)
    assert [(e.kind, e.old_state, e.new_state) for e in events] == [(STATE, ESTABLISHED, TIME_WAIT)]
    assert identity(conn) == identity(orphan) and conn.key != orphan.key
    # Listeners sharing a port (SO_REUSEPORT) stay apart: they keep their inode in the key.
    a = Socket("tcp", 4, "0.0.0.0", 80, state="LISTEN", inode=1)
    b = a._replace(inode=2)
    assert identity(a) != identity(b)
    assert [e.kind for e in diff_snapshots([a, b], [a], time=1.0)] == ["close"]
