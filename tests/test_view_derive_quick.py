"""derive_view's quick path (closed rows that expired left out of the last rows) equals a full derive."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from portmon.collect.fake import synthetic_snapshot
from portmon.model import Holder, NetnsRef, Snapshot, Socket
from portmon.query.filters import parse_filter
from portmon.query.sorting import port_order_key, sort_sockets
from portmon.ui import view as view_module
from portmon.ui.view import (
    CLOSED_SECONDS,
    LiveMeasures,
    Marks,
    Pipeline,
    View,
    ViewSpec,
    column_widths,
    column_widths_plain,
    derive_view,
    moved_rows,
    moved_rows_plain,
    moved_state_counts,
    state_counts,
)


def _chain() -> tuple[Snapshot, Marks]:
    """Three scans a second apart with churn: closed rows from t=1 and t=2 are in the marks."""
    pipeline = Pipeline()
    snap = synthetic_snapshot(2000, seed=0, taken_at=0.0)
    spec = ViewSpec()
    pipeline.step(snap, spec, 0.0, 1.0)
    for t in (1.0, 2.0):
        snap = synthetic_snapshot(2000, seed=int(t), churn=0.03, base=snap, taken_at=t)
        pipeline.step(snap, spec, t, 1.0)
    assert len({when for _, when in pipeline.marks.closed.values()}) == 2
    return snap, pipeline.marks


def _fresh(snapshot: Snapshot, marks: Marks, spec: ViewSpec, now: float) -> View:
    view_module._last_derived = None
    return derive_view(snapshot, marks, spec, now)


def _same(a: View, b: View) -> None:
    assert a.rows == b.rows
    assert dict(a.widths) == dict(b.widths)
    assert (a.total, a.shown, dict(a.states), a.spec) == (b.total, b.shown, dict(b.states), b.spec)
    assert [a.index.get(s.key) for s in a.rows[::97]] == list(range(0, len(a.rows), 97))


@pytest.fixture
def sorts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The columns sorted by derive_view (a full derive sorts; the quick path does not)."""
    calls: list[str] = []
    original = view_module.sort_sockets

    def counted(sockets, column, descending=False):  # type: ignore[no-untyped-def]
        calls.append(column)
        return original(sockets, column, descending)

    monkeypatch.setattr(view_module, "sort_sockets", counted)
    yield calls
    view_module._last_derived = None


@pytest.mark.parametrize(
    "spec",
    [
        ViewSpec(),
        ViewSpec(column="local_port", descending=True),
        ViewSpec(column="remote_port"),
        ViewSpec(filter=parse_filter("state:established,close_wait,listen"), column="remote_port", descending=True),
        ViewSpec(listening_only=True),
    ],
)
def test_expiring_closed_rows_give_the_rows_of_a_full_derive_without_sorting(spec: ViewSpec, sorts: list[str]) -> None:
    snap, marks = _chain()
    first = _fresh(snap, marks, spec, 2.5)  # every closed row still shown
    assert len(first.rows) >= first.shown
    for now in (2.6, 1.0 + CLOSED_SECONDS + 0.1, 2.0 + CLOSED_SECONDS + 0.1, 9.0):
        before = len(sorts)
        quick = derive_view(snap, marks, spec, now)
        assert len(sorts) == before  # the quick path
        _same(quick, _fresh(snap, marks, spec, now))
        derive_view(snap, marks, spec, now)  # prime again after the fresh derive
    assert len(first.rows) > len(quick.rows) or first.shown == len(first.rows)


@pytest.mark.parametrize("column", ["state", "remote_addr", "process", "proto"])
def test_other_columns_derive_in_full(column: str, sorts: list[str]) -> None:
    snap, marks = _chain()
    spec = ViewSpec(column=column)
    _fresh(snap, marks, spec, 2.5)
    before = len(sorts)
    later = derive_view(snap, marks, spec, 1.0 + CLOSED_SECONDS + 0.1)
    assert len(sorts) == before + 1
    _same(later, _fresh(snap, marks, spec, 1.0 + CLOSED_SECONDS + 0.1))


def test_a_new_spec_or_a_new_closed_row_derives_in_full(sorts: list[str]) -> None:
    snap, marks = _chain()
    _fresh(snap, marks, ViewSpec(), 2.5)
    n = len(sorts)
    derive_view(snap, marks, ViewSpec(descending=True), 2.5)
    assert len(sorts) == n + 1
    # Marks with a closed row the last view did not show: in full, and the same as a fresh derive.
    fewer = Marks(marks.opened, marks.changed, dict(list(marks.closed.items())[:5]))
    derive_view(snap, fewer, ViewSpec(), 2.5)
    n = len(sorts)
    quick = derive_view(snap, marks, ViewSpec(), 2.5)
    assert len(sorts) == n + 1
    _same(quick, _fresh(snap, marks, ViewSpec(), 2.5))


def _churning(n: int, steps: int, churn: float) -> list[tuple[Snapshot, Marks, float]]:
    """Scans a second apart, with the marks after each, as the poller's pipeline sees them."""
    pipeline = Pipeline()
    snap = synthetic_snapshot(n, seed=0, taken_at=0.0)
    pipeline.step(snap, ViewSpec(), 0.0, 1.0)
    out = []
    for step in range(1, steps + 1):
        t = float(step)
        snap = synthetic_snapshot(n, seed=step, churn=churn, base=snap, taken_at=t)
        if step % 3 == 0:  # an owner changes: a new object under the same key, no event
            sockets = list(snap.sockets)
            sockets[step] = sockets[step]._replace(holders=())
            snap = snap._replace(sockets=tuple(sockets))
        pipeline.step(snap, ViewSpec(), t, 1.0)
        out.append((snap, pipeline.marks, t))
    return out


@pytest.mark.parametrize(
    "spec",
    [
        ViewSpec(),
        ViewSpec(descending=True),
        ViewSpec(column="remote_port"),
        ViewSpec(column="remote_port", descending=True),
        ViewSpec(filter=parse_filter("state:established,close_wait"), column="local_port"),
        ViewSpec(listening_only=True, descending=True),
    ],
)
def test_each_refresh_inserts_and_removes_the_changed_rows_as_a_full_derive_would(
    spec: ViewSpec, sorts: list[str]
) -> None:
    chain = _churning(3000, 8, 0.01)
    _fresh(*chain[0][:2], spec, chain[0][2])
    for snap, marks, t in chain[1:]:
        before = len(sorts)
        quick = derive_view(snap, marks, spec, t + 0.4)
        assert len(sorts) == before  # inserted, not sorted
        _same(quick, _fresh(snap, marks, spec, t + 0.4))
        derive_view(snap, marks, spec, t + 0.4)  # the fresh derive became the last one: prime it again
        _same(derive_view(snap, marks, spec, t + 0.9), _fresh(snap, marks, spec, t + 0.9))


def test_a_big_change_or_another_column_sorts_in_full(sorts: list[str]) -> None:
    chain = _churning(2000, 2, 0.3)
    _fresh(*chain[0][:2], ViewSpec(), chain[0][2])
    n = len(sorts)
    snap, marks, t = chain[1]
    _same(derive_view(snap, marks, ViewSpec(), t), _fresh(snap, marks, ViewSpec(), t))
    assert len(sorts) == n + 2  # the churn was too big for inserting: sorted (and once more, fresh)
    small = _churning(2000, 2, 0.01)
    _fresh(*small[0][:2], ViewSpec(column="state"), small[0][2])
    n = len(sorts)
    derive_view(*small[1][:2], ViewSpec(column="state"), small[1][2])
    assert len(sorts) == n + 1


def _odd_sockets(base: Snapshot) -> list[Socket]:
    """Sockets whose texts are the longest of their columns: a shared one, another namespace, long names."""
    first = base.sockets[0]
    long_holder = Holder(pid=77, name="a-very-long-process-name-indeed", user="someone-with-a-long-name")
    return [
        first._replace(inode=90_000_001, local_port=61001, holders=(long_holder,)),
        first._replace(inode=90_000_002, local_port=61002, holders=(Holder(pid=78, name=None),) * 5),
        first._replace(inode=90_000_003, local_port=61003, netns=NetnsRef(4026532999, "container with a label")),
        first._replace(inode=90_000_004, local_port=61004, local_service="a-long-local-service-name"),
    ]


def test_live_measures_moved_on_give_the_column_widths_of_the_rows() -> None:
    base = synthetic_snapshot(1500, seed=4)
    odd = _odd_sockets(base)
    rows = [*base.sockets, *odd]
    measures = LiveMeasures(rows)
    assert measures.widths() == column_widths(rows) == column_widths_plain(rows)
    # Each odd socket goes in turn: the width its text held falls back to the rest's.
    for sock in odd:
        measures = measures.advanced((), [sock])
        rows.remove(sock)
        assert measures.widths() == column_widths(rows)
    more = synthetic_snapshot(1500, seed=5, churn=0.05, base=base)
    came = [s for s in more.sockets if s not in base.sockets]
    gone = [s for s in base.sockets if s not in more.sockets]
    assert came and gone
    assert measures.advanced(came, gone).widths() == column_widths(more.sockets)
    assert measures.widths() == column_widths(base.sockets)  # the value moved on is a new one


@pytest.mark.parametrize(
    "spec",
    [ViewSpec(), ViewSpec(filter=parse_filter("state:established,close_wait"), column="remote_port")],
)
def test_refreshes_in_a_row_keep_the_widths_of_a_full_derive(spec: ViewSpec, sorts: list[str]) -> None:
    chain = _churning(2000, 8, 0.01)
    odd = _odd_sockets(chain[0][0])
    # The long texts come in one refresh and go, one by one, in the next ones.
    steps = []
    for i, (snap, marks, t) in enumerate(chain):
        extra = odd[i - 1 :] if 1 <= i <= len(odd) else []
        steps.append((snap._replace(sockets=(*snap.sockets, *extra)), marks, t))
    _fresh(*steps[0][:2], spec, steps[0][2])
    n = len(sorts)
    for snap, marks, t in steps[1:]:
        quick = derive_view(snap, marks, spec, t + 0.4)
        kept = view_module._last_derived
        _same(quick, _fresh(snap, marks, spec, t + 0.4))
        view_module._last_derived = kept  # go on from the incremental derive
    assert len(sorts) == n + len(steps) - 1  # only the fresh derives sorted
    assert kept is not None and kept.measures is not None


def test_moved_state_counts_equal_a_fresh_count() -> None:
    old = synthetic_snapshot(2000, seed=6)
    new = synthetic_snapshot(2000, seed=7, churn=0.05, base=old)
    came = [s for s in new.sockets if s not in old.sockets]
    gone = [s for s in old.sockets if s not in new.sockets]
    assert came and gone and state_counts(old.sockets) != state_counts(new.sockets)
    assert moved_state_counts(state_counts(old.sockets), came, gone) == state_counts(new.sockets)
    # A state whose last socket went is left out, as a fresh count leaves it out.
    only = [s for s in old.sockets if s.state is None][:1]
    assert only and state_counts(only) == {"UDP": 1}
    assert moved_state_counts(state_counts(only), [], only) == {} == state_counts(())


@pytest.mark.parametrize("column,descending", [("local_port", False), ("local_port", True), ("remote_port", False)])
def test_moved_rows_equal_a_plain_filter_and_sort(column: str, descending: bool) -> None:
    rng = random.Random(11)
    key = port_order_key(column, descending)
    snap = synthetic_snapshot(3000, seed=9)
    outside = synthetic_snapshot(50, seed=10).sockets  # sockets that are not among the rows
    for step in range(12):
        rows = sort_sockets(snap.sockets, column, descending)
        keys = list(map(key, rows))
        remove = rng.sample(rows, rng.choice((0, 1, 40, 300))) + rng.sample(outside, rng.choice((0, 5)))
        # New sockets, and new objects with a removed row's key (a state change: same place).
        add = list(synthetic_snapshot(3000, seed=20 + step, churn=0.02, base=snap).sockets[-60:])
        add += [s._replace(state="CLOSE_WAIT") for s in remove[:10] if s not in outside]
        add = [s for s in add if all(s is not r for r in rows) or s in remove]
        fast = moved_rows(rows, keys, remove, add, key)
        assert fast == moved_rows_plain(rows, keys, remove, add, key)
        assert fast[1] == sorted(fast[1]) and len(fast[0]) == len(set(map(id, fast[0])))
    assert moved_rows([], [], [], [], key) == ([], [])


def test_a_closed_row_the_last_rows_did_not_show_is_inserted(sorts: list[str]) -> None:
    chain = _churning(2000, 2, 0.01)
    (snap1, marks1, t1), (snap2, marks2, t2) = chain
    _fresh(snap1, marks1, ViewSpec(), t1)
    # A socket closed that neither the last rows nor the last snapshot held (marks from another source).
    stranger = synthetic_snapshot(3, seed=99).sockets[0]._replace(inode=77_000_001, local_port=61_999)
    marks = Marks(marks2.opened, marks2.changed, {**marks2.closed, stranger.key: (stranger, t2)})
    n = len(sorts)
    quick = derive_view(snap2, marks, ViewSpec(), t2 + 0.1)
    assert len(sorts) == n  # inserted, not sorted
    assert any(row is stranger for row in quick.rows)
    _same(quick, _fresh(snap2, marks, ViewSpec(), t2 + 0.1))
