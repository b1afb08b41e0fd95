"""The diff's fast path (sockets matched by object identity) gives what the full key comparison gives."""

from __future__ import annotations

import pytest

from portmon.collect.fake import synthetic_snapshot
from portmon.model import CLOSE_WAIT, ESTABLISHED, TIME_WAIT, Holder, Snapshot, Socket
from portmon.query.diff import (
    CLOSE,
    OPEN,
    STATE,
    Event,
    IdentityTally,
    changes,
    diff_changed_objects,
    diff_snapshots,
)
from portmon.sameobjects import changed_objects, changed_objects_plain


def _full(snapshot: Snapshot) -> list[Socket]:
    # A list takes the full path: every key of both sides compared.
    return list(snapshot.sockets)


def _same_results(old: Snapshot, new: Snapshot) -> None:
    assert diff_snapshots(old, new) == diff_snapshots(_full(old), _full(new), time=new.taken_at)
    assert changes(old, new) == changes(_full(old), _full(new))


def test_a_chain_of_churning_snapshots_diffs_the_same_both_ways() -> None:
    snaps = [synthetic_snapshot(3000, seed=0)]
    for i in range(1, 8):
        snaps.append(synthetic_snapshot(3000, seed=i, churn=0.02, base=snaps[-1], taken_at=100.0 + i))
    kinds: set[str] = set()
    for old, new in zip(snaps, snaps[1:], strict=False):
        _same_results(old, new)
        kinds.update(e.kind for e in diff_snapshots(old, new))
    assert kinds == {OPEN, CLOSE, STATE}  # the chain exercises every kind of event


def test_rebuilt_objects_with_the_same_key_are_matched_by_key() -> None:
    base = synthetic_snapshot(200, seed=3)
    established = [i for i, s in enumerate(base.sockets) if s.state == ESTABLISHED]
    sockets = list(base.sockets)
    # New objects for unchanged sockets (equal values), for an owner change, and for a state change.
    sockets[0] = sockets[0]._replace()
    sockets[1] = sockets[1]._replace(holders=(Holder(pid=4242, name="other"),))
    sockets[established[0]] = sockets[established[0]]._replace(state=CLOSE_WAIT)
    # One closed, one opened, and the rest shuffled: order does not matter.
    closed = sockets.pop(5)
    # Another endpoint: a connection is known by its endpoints (diff.identity), so a new inode alone
    # on the same endpoints would be the same connection.
    opened = closed._replace(inode=closed.inode + 10_000_000, local_port=closed.local_port ^ 1)
    sockets.append(opened)
    sockets.reverse()
    new = Snapshot(sockets=tuple(sockets), taken_at=base.taken_at + 1)
    _same_results(base, new)
    events = diff_snapshots(base, new)
    assert [(e.kind, e.socket.inode) for e in events] == [
        (CLOSE, closed.inode),
        (STATE, base.sockets[established[0]].inode),
        (OPEN, opened.inode),
    ]


def test_identical_and_empty_sides() -> None:
    snap = synthetic_snapshot(50, seed=1)
    _same_results(snap, snap)
    assert diff_snapshots(snap, Snapshot(sockets=snap.sockets, taken_at=2.0)) == []
    empty = Snapshot(sockets=(), taken_at=3.0)
    _same_results(snap, empty)
    _same_results(empty, snap)
    assert len(changes(snap, empty).closed) == 50


def _plain_and_fast_chain(snaps: list[Snapshot]) -> list[list[Event]]:
    """Every step of the chain diffed both ways (asserted equal); the events of each step."""
    tally: IdentityTally | None = None
    steps = []
    for old, new in zip(snaps, snaps[1:], strict=False):
        fast, tally = diff_changed_objects(old.sockets, new.sockets, new.taken_at, tally)
        assert fast == diff_snapshots(_full(old), _full(new), time=new.taken_at)
        assert tally is not None and tally.sockets is new.sockets
        steps.append(fast)
    return steps


def test_diff_of_changed_objects_equals_the_plain_diff_along_a_chain() -> None:
    snaps = [synthetic_snapshot(3000, seed=0)]
    for i in range(1, 8):
        snaps.append(synthetic_snapshot(3000, seed=i, churn=0.02, base=snaps[-1], taken_at=100.0 + i))
    steps = _plain_and_fast_chain(snaps)
    assert {e.kind for step in steps for e in step} == {OPEN, CLOSE, STATE}


def test_diff_of_changed_objects_matches_connections_by_endpoints_and_handles_shared_identities() -> None:
    base = synthetic_snapshot(400, seed=5)
    conns = [i for i, s in enumerate(base.sockets) if s.state == ESTABLISHED and s.remote_port]
    snaps = [base]
    sockets = list(base.sockets)
    # The owner died while the connection closed: new inode, no holders, same endpoints (a STATE event).
    sockets[conns[0]] = sockets[conns[0]]._replace(inode=0, holders=(), state=TIME_WAIT)
    # An owner change alone: a new object, no event.
    sockets[conns[1]] = sockets[conns[1]]._replace(holders=(Holder(pid=4242, name="other"),))
    snaps.append(Snapshot(sockets=tuple(sockets), taken_at=101.0))
    # Two sockets with one identity (an unchanged one and a new twin in another state): the plain
    # diff's "later one wins" decides, so the fast path must step aside...
    twin = sockets[conns[2]]._replace(inode=sockets[conns[2]].inode + 10_000_000, state=CLOSE_WAIT)
    snaps.append(Snapshot(sockets=(*sockets, twin), taken_at=102.0))
    # ...while the twin stays, on both sides...
    snaps.append(Snapshot(sockets=(*sockets[1:], twin), taken_at=103.0))
    # ...and when it went, until the counts are single again.
    snaps.append(Snapshot(sockets=tuple(sockets[2:]), taken_at=104.0))
    snaps.append(Snapshot(sockets=tuple(sockets[3:]), taken_at=105.0))
    steps = _plain_and_fast_chain(snaps)
    assert [(e.kind, e.new_state) for e in steps[0]] == [(STATE, TIME_WAIT)]
    assert [(e.kind, e.new_state) for e in steps[1]] == [(STATE, CLOSE_WAIT)]  # the twin came later in order
    assert [e.kind for e in steps[2]] == [CLOSE]


def test_a_tally_of_another_tuple_is_counted_afresh() -> None:
    old = synthetic_snapshot(500, seed=1)
    new = synthetic_snapshot(500, seed=2, churn=0.05, base=old, taken_at=101.0)
    stale = IdentityTally(new.sockets)
    events, tally = diff_changed_objects(old.sockets, new.sockets, new.taken_at, stale)
    assert events == diff_snapshots(old, new)
    assert tally is not None and tally.sockets is new.sockets
    assert tally.counts == IdentityTally(new.sockets).counts


def test_sockets_built_anew_take_the_plain_diff() -> None:
    old = synthetic_snapshot(800, seed=8)
    churned = synthetic_snapshot(800, seed=9, churn=0.05, base=old, taken_at=101.0)
    rebuilt = tuple(s._replace() for s in churned.sockets)  # equal values, every object new (psutil)
    events, tally = diff_changed_objects(old.sockets, rebuilt, 101.0, IdentityTally(old.sockets))
    assert events == diff_snapshots(old, churned) and events
    assert tally is None


def test_changed_objects_split_like_the_plain_comparison_of_ids() -> None:
    snaps = [synthetic_snapshot(2000, seed=0)]
    for i in range(1, 6):
        snaps.append(synthetic_snapshot(2000, seed=i, churn=0.03, base=snaps[-1], taken_at=100.0 + i))
    # Shuffled, equal copies and the very same tuple: each side's order is kept, values do not count.
    shuffled = list(snaps[-1].sockets)
    shuffled.reverse()
    shuffled[0] = shuffled[0]._replace()
    snaps.append(Snapshot(sockets=tuple(shuffled), taken_at=200.0))
    snaps.append(Snapshot(sockets=snaps[-1].sockets, taken_at=201.0))
    snaps.append(Snapshot(sockets=(), taken_at=202.0))
    snaps.append(snaps[0])
    seen_changes = 0
    for old, new in zip(snaps, snaps[1:], strict=False):
        fast = changed_objects(old.sockets, new.sockets)
        assert fast == changed_objects_plain(old.sockets, new.sockets)
        assert changed_objects(old.sockets, new.sockets) == fast  # the answer kept for the pair
        seen_changes += len(fast[0]) + len(fast[1])
    assert seen_changes > 0
    assert changed_objects(snaps[0].sockets, snaps[0].sockets) == ([], [])


def test_identities_that_share_a_hash_send_the_diff_the_plain_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import portmon.query.diff as diff

    snaps = [synthetic_snapshot(500, seed=0)]
    for i in range(1, 4):
        snaps.append(synthetic_snapshot(500, seed=i, churn=0.05, base=snaps[-1], taken_at=100.0 + i))
    monkeypatch.setattr(diff, "hash", lambda key: 7, raising=False)  # every identity one hash
    tally = IdentityTally(snaps[0].sockets)
    assert tally.shared == 1 and tally.counts == {7: len(snaps[0].sockets)}
    steps = _plain_and_fast_chain(snaps)  # each step asserted equal to the plain diff
    assert any(steps)
