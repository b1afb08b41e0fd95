"""The recorder and the queries in-process: scripted snapshots, an injected clock and process reader."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from portmon.history.lock import RecorderBusy, RecorderLock
from portmon.history.procfacts import ProcessFacts
from portmon.history.queries import find_intervals, recent_events
from portmon.history.recorder import Recorder
from portmon.history.retention import Retention, prune, used_bytes
from portmon.history.schema import BOOT, CLOSED, LOST, SCHEMA_VERSION, STOP, schema_version
from portmon.history.store import HistoryError, default_db_path, open_db
from portmon.model import ESTABLISHED, LISTEN, Holder, Snapshot, Socket
from portmon.query.events import is_listening
from portmon.query.filters import parse_filter

T0 = 1_767_268_800.0
BOOT_A = "boot-a"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def facts(h: Holder) -> ProcessFacts:
    return ProcessFacts(h.pid, h.create_time, h.name, h.user, (f"/usr/bin/{h.name}", "--port", str(h.pid)), None)


def listener(port: int, pid: int = 100, name: str = "web", start: float = T0 - 500, inode: int = 0) -> Socket:
    return Socket("tcp", 4, "127.0.0.1", port, state=LISTEN, holders=(Holder(pid, name, "alice", start),),
                  inode=inode or port)


def snap(*socks: Socket, at: float) -> Snapshot:
    return Snapshot(sockets=tuple(socks), taken_at=at, collector="fake")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "portmon" / "history.sqlite3"


@pytest.fixture
def conn(db: Path) -> Iterator[sqlite3.Connection]:
    c = open_db(db)
    yield c
    c.close()


def recorder(conn: sqlite3.Connection, clock: Clock, boot: str = BOOT_A, **kw: object) -> Recorder:
    rec = Recorder(conn, boot_id=boot, scope=is_listening, clock=clock, facts=facts, flush_every=0, **kw)  # type: ignore[arg-type]
    rec.begin()
    return rec


def test_database_is_private_in_wal_mode_and_at_the_latest_schema(db: Path, conn: sqlite3.Connection) -> None:
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_default_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_db_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "portmon" / "history.sqlite3"
    assert default_db_path({"XDG_STATE_HOME": "relative", "HOME": "/home/a"}) == Path(
        "/home/a/.local/state/portmon/history.sqlite3"
    )


def test_a_newer_schema_is_refused_with_one_line(db: Path, conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(HistoryError, match="newer than this portmon knows") as info:
        open_db(db)
    assert "\n" not in str(info.value)


def test_a_missing_database_is_not_created_for_readers(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no history database"):
        open_db(tmp_path / "none.sqlite3", create=False)
    assert not (tmp_path / "none.sqlite3").exists()


def test_intervals_open_and_close_with_holders_and_at_queries(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = recorder(conn, clock)
    a, b = listener(8000), listener(9000, pid=200, name="db")
    rec.feed(snap(a, at=T0))  # already there when recording began
    rec.feed(snap(a, b, at=T0 + 10))
    rec.feed(snap(b, at=T0 + 20))
    found = find_intervals(conn)
    assert [(r.local_port, r.opened, r.closed, r.opened_seen) for r in found] == [
        (9000, T0 + 10, None, True),
        (8000, T0, T0 + 20, False),
    ]
    web = found[1]
    assert web.end_reason == CLOSED
    assert [(h.pid, h.name, h.user, h.cmdline) for h in web.holders] == [
        (100, "web", "alice", ("/usr/bin/web", "--port", "100"))
    ]
    port8000 = parse_filter(":8000")
    assert [r.local_port for r in find_intervals(conn, port8000, at=T0 + 15)] == [8000]
    assert find_intervals(conn, port8000, at=T0 - 1) == []
    assert find_intervals(conn, port8000, at=T0 + 20) == []  # closed at the first scan without it
    assert [r.local_port for r in find_intervals(conn, parse_filter("proc:db"))] == [9000]
    assert [r.local_port for r in find_intervals(conn, since=T0 + 21)] == [9000]
    assert [r.local_port for r in find_intervals(conn, until=T0 + 5)] == [8000]


def test_connections_are_left_out_unless_recording_everything(conn: sqlite3.Connection) -> None:
    conn2 = Socket("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 5555, ESTABLISHED, (Holder(1, "x"),), inode=77)
    rec = recorder(conn, Clock())
    rec.feed(snap(listener(8000), conn2, at=T0))
    assert [r.state for r in find_intervals(conn)] == [LISTEN]
    everything = Recorder(conn, boot_id=BOOT_A, scope=None, facts=facts, flush_every=0)
    rec.stop()
    everything.begin()
    everything.feed(snap(listener(8000), conn2, at=T0 + 1))
    assert sorted(r.state or "" for r in find_intervals(conn, at=T0 + 1)) == [ESTABLISHED, LISTEN]


def test_a_change_of_holders_starts_a_new_interval(conn: sqlite3.Connection) -> None:
    rec = recorder(conn, Clock())
    one = listener(8000)
    two = one._replace(holders=(*one.holders, Holder(101, "web", "alice", T0 - 400)))
    rec.feed(snap(one, at=T0))
    rec.feed(snap(two, at=T0 + 5))
    now, before = find_intervals(conn)
    assert [h.pid for h in now.holders] == [100, 101] and now.closed is None
    assert [h.pid for h in before.holders] == [100] and before.closed == T0 + 5


def test_writes_are_batched(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = Recorder(conn, boot_id=BOOT_A, scope=is_listening, clock=clock, facts=facts, flush_every=5,
                   heartbeat_every=60)
    rec.begin()
    writes = rec.writes
    for i in range(4):
        clock.now = T0 + i
        rec.feed(snap(listener(8000 + i), at=T0 + i))
    assert rec.writes == writes and find_intervals(conn) == []
    clock.now = T0 + 5
    rec.feed(snap(listener(8004), at=T0 + 5))
    assert rec.writes == writes + 1
    assert [r.local_port for r in find_intervals(conn)] == [8004, 8003, 8002, 8001, 8000]
    assert [r.closed for r in find_intervals(conn)][1:] == [T0 + 5, T0 + 3, T0 + 2, T0 + 1]


def test_a_clean_stop_closes_and_a_restart_takes_over_what_is_still_there(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = recorder(conn, clock)
    rec.feed(snap(listener(8000), listener(9000), at=T0))
    clock.now = T0 + 10
    rec.stop()
    assert {(r.local_port, r.closed, r.end_reason) for r in find_intervals(conn)} == {
        (8000, T0 + 10, STOP), (9000, T0 + 10, STOP)
    }
    clock.now = T0 + 100
    again = recorder(conn, clock)
    again.feed(snap(listener(8000), at=T0 + 100))  # 9000 went away while nobody watched
    by_port = {r.local_port: r for r in find_intervals(conn)}
    assert (by_port[8000].opened, by_port[8000].closed, by_port[8000].end_reason) == (T0, None, None)
    assert (by_port[9000].closed, by_port[9000].end_reason) == (T0 + 10, STOP)
    assert len(find_intervals(conn)) == 2


def test_after_a_crash_open_intervals_are_closed_at_the_last_observation_or_taken_over(
    conn: sqlite3.Connection,
) -> None:
    clock = Clock()
    dead = recorder(conn, clock)
    dead.feed(snap(listener(8000), listener(9000, pid=200), at=T0))
    clock.now = T0 + 31
    # Nothing changed, but a heartbeat is due: the session's last observation moves to T0 + 31.
    dead.feed(snap(listener(8000), listener(9000, pid=200), at=T0 + 31))
    # ... killed here: no stop(). The next recorder of the same boot:
    clock.now = T0 + 60
    rec = recorder(conn, clock)
    # 8000 is still held by the same process (pid and start time); 9000's pid now names another process.
    rec.feed(snap(listener(8000), listener(9000, pid=200, start=T0 + 30), at=T0 + 60))
    rows = sorted((r.local_port, r.opened, r.closed, r.end_reason) for r in find_intervals(conn))
    assert rows == [(8000, T0, None, None), (9000, T0, T0 + 31, LOST), (9000, T0 + 60, None, None)]
    assert conn.execute("SELECT count(*) FROM sessions WHERE ended IS NULL").fetchone()[0] == 1


def test_intervals_of_an_earlier_boot_close_at_its_last_observation(conn: sqlite3.Connection) -> None:
    clock = Clock()
    dead = recorder(conn, clock, boot="boot-old")
    dead.feed(snap(listener(8000), at=T0))
    clock.now = T0 + 3600
    rec = recorder(conn, clock, boot="boot-new")
    rec.feed(snap(listener(8000), at=T0 + 3600))  # same pid and start time numbers, but another boot
    rows = sorted((r.opened, r.closed, r.end_reason) for r in find_intervals(conn))
    assert rows == [(T0, T0, BOOT), (T0 + 3600, None, None)]


def test_failed_scans_change_nothing(conn: sqlite3.Connection) -> None:
    rec = recorder(conn, Clock())
    rec.feed(snap(listener(8000), at=T0))
    rec.feed(Snapshot(sockets=(), taken_at=T0 + 1, error="scan failed: boom"))
    assert [r.closed for r in find_intervals(conn)] == [None]


def test_recent_events_come_from_the_store_oldest_first(conn: sqlite3.Connection) -> None:
    rec = recorder(conn, Clock())
    rec.feed(snap(listener(8000), at=T0))
    rec.feed(snap(listener(8000), listener(9000), at=T0 + 1))
    rec.feed(snap(listener(9000), at=T0 + 2))
    events = recent_events(conn, 10)
    assert [(e.kind, e.time, e.socket.local_port) for e in events] == [
        ("open", T0 + 1, 9000), ("close", T0 + 2, 8000)
    ]
    assert [e.kind for e in recent_events(conn, 1)] == ["close"]


def test_a_second_lock_is_refused_naming_the_holder(db: Path) -> None:
    first = RecorderLock(db)
    with pytest.raises(RecorderBusy, match=r"another recorder \(pid \d+\) is already recording"):
        RecorderLock(db)
    first.release()
    RecorderLock(db).release()


def test_retention_by_age_keeps_open_and_recent_intervals(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = recorder(conn, clock)
    rec.feed(snap(listener(7000), listener(8000), at=T0))
    rec.feed(snap(listener(7000), listener(9000), at=T0 + 86400))
    rec.feed(snap(listener(7000), at=T0 + 2 * 86400))
    removed = prune(conn, T0 + 3 * 86400, keep=1.5 * 86400)
    assert removed == 1
    assert sorted(r.local_port for r in find_intervals(conn)) == [7000, 9000]
    # the process rows of the forgotten interval went too
    assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == 1


def test_retention_by_size_drops_the_oldest_first(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = recorder(conn, clock)
    for i in range(3000):
        rec.feed(snap(listener(10000 + i % 5000, pid=1000 + i, inode=i + 1), at=T0 + i))
    limit = 128 * 1024
    assert used_bytes(conn) > limit
    retention = Retention(keep=365 * 86400, max_bytes=limit, every=3600)
    retention(conn, T0 + 3000)
    assert used_bytes(conn) <= limit
    kept = find_intervals(conn)
    assert kept and kept[0].opened == T0 + 2999 and kept[0].closed is None
    assert min(r.opened for r in kept) > T0 + 100
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    retention(conn, T0 + 3001)  # within the hour: not run again
    assert retention.removed == 3000 - len(kept)


def test_an_owner_going_out_of_sight_does_not_split_the_interval(conn: sqlite3.Connection) -> None:
    rec = recorder(conn, Clock())
    held = listener(8000)
    rec.feed(snap(held, at=T0))
    rec.feed(snap(held._replace(holders=(), owner_note="unseen"), at=T0 + 1))  # the process is exiting
    rec.feed(snap(at=T0 + 2))
    (only,) = find_intervals(conn)
    assert (only.opened, only.closed, [h.pid for h in only.holders]) == (T0, T0 + 2, [100])


def test_reused_socket_objects_and_equal_new_ones_keep_their_interval(conn: sqlite3.Connection) -> None:
    rec = recorder(conn, Clock())
    a, b = listener(8000), listener(9000)
    rec.feed(snap(a, b, at=T0))
    rec.feed(snap(a, b, at=T0 + 1))  # the same objects, as an incremental collector hands them back
    rec.feed(snap(a, at=T0 + 2))
    rec.feed(snap(a._replace(local_service="http-alt"), at=T0 + 3))  # a new object, the same interval
    rows = sorted((r.local_port, r.opened, r.closed) for r in find_intervals(conn))
    assert rows == [(8000, T0, None), (9000, T0, T0 + 2)]


def test_with_no_recorder_running_open_intervals_end_at_the_last_observation(conn: sqlite3.Connection) -> None:
    clock = Clock()
    rec = recorder(conn, clock)
    rec.feed(snap(listener(8000), at=T0))
    clock.now = T0 + 40
    rec.feed(snap(listener(8000), at=T0 + 40))  # a heartbeat: last observation T0 + 40; then it dies
    assert [(r.closed, r.end_reason) for r in find_intervals(conn)] == [(None, None)]
    (dead,) = find_intervals(conn, recording=False)
    assert (dead.closed, dead.end_reason) == (T0 + 40, LOST)
    assert find_intervals(conn, at=T0 + 41, recording=False) == []
    assert len(find_intervals(conn, at=T0 + 39, recording=False)) == 1
    assert find_intervals(conn, since=T0 + 41, recording=False) == []


def test_port_terms_narrow_in_sql_with_the_same_answer_as_the_filter(conn: sqlite3.Connection) -> None:
    client = Socket("tcp", 4, "127.0.0.1", 51000, "127.0.0.1", 8000, ESTABLISHED, (Holder(7, "curl"),), inode=5)
    rec = Recorder(conn, boot_id=BOOT_A, scope=None, facts=facts, flush_every=0)
    rec.begin()
    rec.feed(snap(listener(8000), listener(8500), listener(9000), client, at=T0))
    for terms, expected in (
        (":8000", [(8000, None), (51000, 8000)]),
        ("port:8000-8600", [(8000, None), (8500, None), (51000, 8000)]),
        ("lport:8000", [(8000, None)]),
        ("!port:8000", [(8500, None), (9000, None)]),
        (":8000 proc:curl", [(51000, 8000)]),
    ):
        got = sorted((r.local_port, r.remote_port) for r in find_intervals(conn, parse_filter(terms)))
        assert got == expected, terms


def test_a_later_schema_step_migrates_an_existing_database_once(
    db: Path, conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portmon.history import schema

    rec = recorder(conn, Clock())
    rec.feed(snap(listener(8000), at=T0))
    conn.close()

    def v2(c: sqlite3.Connection) -> None:
        c.execute("ALTER TABLE intervals ADD COLUMN note TEXT")

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, v2))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    again = open_db(db)
    assert schema_version(again) == SCHEMA_VERSION + 1
    assert [r.local_port for r in find_intervals(again)] == [8000]  # the data came along
    assert schema.migrate(again) == SCHEMA_VERSION + 1  # already there: nothing to do
    again.close()


def test_long_command_lines_are_cut_after_redaction() -> None:
    from portmon.history.recorder import CMDLINE_LIMIT, stored_cmdline

    argv = ("python3", "-c", "x" * 10_000, "--password=hunter2")
    stored = json.loads(stored_cmdline(argv))
    assert stored[:2] == ["python3", "-c"] and stored[2].endswith("…") and len(stored) == 3
    assert sum(len(a) for a in stored) <= CMDLINE_LIMIT + 1
    assert json.loads(stored_cmdline(("app", "--password=hunter2"))) == ["app", "--password=***"]


class _PlainRecorder(Recorder):
    """The recorder with every scan walked in full (the plain version of ``_moved_objects``)."""

    def _moved_objects(
        self, last: tuple[Socket, ...], sockets: tuple[Socket, ...]
    ) -> tuple[list[Socket], list[object]]:
        return self._split_objects(sockets)  # type: ignore[return-value]  # Identity | None, as the base's


def _churning_chain() -> list[Snapshot]:
    """Scans where listeners open, close, change holders, lose them from sight, are copied and shuffled."""
    from portmon.collect.fake import synthetic_snapshot

    snaps = [synthetic_snapshot(600, seed=7, taken_at=T0)]
    for i in range(1, 12):
        base = synthetic_snapshot(600, seed=7 + i, churn=0.05, base=snaps[-1], taken_at=T0 + i)
        socks = list(base.sockets)
        socks.append(listener(20000 + i, pid=300 + i, inode=900000 + i))  # one more listener each scan
        if i % 3 == 0:
            socks.reverse()
        for j in range(i, len(socks), 97):
            if socks[j].listening:
                if j % 2:
                    socks[j] = socks[j]._replace(holders=())  # the owner went out of sight
                else:
                    socks[j] = socks[j]._replace()  # an equal copy
        snaps.append(Snapshot(sockets=tuple(socks), taken_at=T0 + i, collector="fake"))
    return snaps


def _rows(c: sqlite3.Connection) -> list[list[tuple[object, ...]]]:
    return [
        c.execute("SELECT * FROM intervals ORDER BY id").fetchall(),
        c.execute("SELECT * FROM interval_holders ORDER BY interval, process").fetchall(),
        c.execute("SELECT id, pid, start_time, name, cmdline FROM processes ORDER BY id").fetchall(),
    ]


@pytest.mark.parametrize("scope", [is_listening, None])
@pytest.mark.parametrize("terms", ["", "port:1000-40000"])
def test_feeding_by_changed_objects_writes_the_rows_a_full_walk_writes(
    tmp_path: Path, scope: object, terms: str
) -> None:
    chain = _churning_chain()
    written = []
    for cls in (Recorder, _PlainRecorder):
        c = open_db(tmp_path / f"{cls.__name__}.sqlite3")
        clock = Clock()
        rec = cls(c, boot_id=BOOT_A, scope=scope, flt=parse_filter(terms), clock=clock,  # type: ignore[arg-type]
                  facts=facts, flush_every=0)
        rec.begin()
        for snapshot in chain:
            rec.feed(snapshot)
            clock.now = snapshot.taken_at
        rec.stop()
        written.append(_rows(c))
        c.close()
    assert written[0] == written[1]
    assert len(written[0][0]) > 20  # intervals opened and closed along the chain
    assert any(row[-1] == CLOSED for row in written[0][0])
