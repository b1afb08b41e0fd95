"""The live monitor and the history: it records while it runs, shows a port's history on ``h``, and its event
log starts with the events the store already holds."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest
from textual.widgets import Static

from portmon.cli import dbopts
from portmon.cli.context import Context
from portmon.cli.main import build_parser
from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot
from portmon.history.live import RecordingCollector, past_events, start_recording
from portmon.history.lock import RecorderLock
from portmon.history.procfacts import ProcessFacts
from portmon.history.queries import find_intervals
from portmon.history.recorder import Recorder
from portmon.history.store import open_db
from portmon.model import Holder, Snapshot
from portmon.query.events import is_listening
from portmon.ui.app import PortmonApp
from portmon.ui.historyview import HistoryModal


def facts(h: Holder) -> ProcessFacts:
    return ProcessFacts(h.pid, h.create_time, h.name, h.user, (str(h.name), "--serve", "--token=s3cr3t"), None)


def fill(db: Path) -> int:
    """Record a demo listener opening, living and closing; returns its port."""
    snap = demo_snapshot()
    listener = next(s for s in snap.sockets if s.listening and s.proto == "tcp" and s.holders)
    conn = open_db(db)
    rec = Recorder(conn, boot_id="b", scope=is_listening, facts=facts, flush_every=0)
    rec.begin()
    rec.feed(Snapshot((), taken_at=DEMO_TIME - 300))
    rec.feed(Snapshot((listener,), taken_at=DEMO_TIME - 200))
    rec.feed(Snapshot((), taken_at=DEMO_TIME - 100))
    rec.stop()
    conn.close()
    return listener.local_port


def test_h_shows_the_selected_ports_history_and_escape_closes_it(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    port = fill(db)
    events, problem = past_events(db, 100)
    assert problem is None and [e.kind for e in events] == ["open", "close"]
    app = PortmonApp(ScriptedCollector([demo_snapshot()]), poll=False, clock=lambda: DEMO_TIME,
                     process_reader=demo_process, history_db=db, past_events=events)

    async def main() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause()
            monitor = app.monitor
            assert [e.event.kind for e in monitor.events] == ["open", "close"]  # from before this session
            table = monitor.table
            while table.cursor_socket is None or table.cursor_socket.local_port != port:
                await pilot.press("down")
            await pilot.press("h")
            await pilot.pause()
            modal = app.screen
            assert isinstance(modal, HistoryModal)
            assert modal.records is not None and [r.local_port for r in modal.records] == [port]
            body = modal.query_one("#history-body", Static).render()
            text = body.plain  # type: ignore[union-attr]  # Content or Text: both have .plain
            assert "pid 812" in text and "--serve" in text
            assert "--token=***" in text and "s3cr3t" not in text  # redacted when stored, whatever read it
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is monitor

    asyncio.run(main())


def test_the_recording_collector_records_scans_and_lets_go_on_close(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    snap = demo_snapshot()
    collector, recording, note = start_recording(ScriptedCollector([snap], loop=True), db, clock=lambda: DEMO_TIME)
    assert note is None and isinstance(recording, RecordingCollector) and collector is recording
    assert collector.scan() is snap and recording.recording
    assert collector.name == "fake" or collector.name
    recording.close()
    conn = open_db(db)
    listening = {(s.proto, s.local_port) for s in snap.sockets if s.listening}
    rows = find_intervals(conn)
    assert {(r.proto, r.local_port) for r in rows} == listening
    assert {r.end_reason for r in rows} == {"stop"}
    conn.close()
    RecorderLock(db).release()  # released: another recorder may take it


def test_the_monitor_does_not_record_while_a_recorder_holds_the_database(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite3"
    lock = RecorderLock(db)
    try:
        inner = ScriptedCollector([demo_snapshot()])
        collector, recording, note = start_recording(inner, db)
        assert collector is inner and recording is None
        assert note is not None and "another recorder" in note and "does not record" in note
    finally:
        lock.release()


@pytest.mark.parametrize("flag", [[], ["--no-history"]])
def test_live_history_options_follow_no_history(
    tmp_path: Path, flag: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))  # the defaults, whatever this host has
    db = tmp_path / "h.sqlite3"
    fill(db)
    parser, _ = build_parser()
    ctx = Context(parser.parse_args([*flag, "--db", str(db)]), io.StringIO(), io.StringIO())
    inner = ScriptedCollector([demo_snapshot()])
    with dbopts.live_history(ctx, inner) as (collector, options):
        assert options["history_db"] == db and len(options["past_events"]) == 2
        if flag:
            assert collector is inner and "--no-history" in options["history_note"]
        else:
            assert isinstance(collector, RecordingCollector) and options["history_note"] is None
            collector.scan()
    sessions = sqlite3.connect(db).execute("SELECT count(*), count(ended) FROM sessions").fetchone()
    assert sessions == ((1, 1) if flag else (2, 2))


def test_history_false_in_the_config_file_turns_recording_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config" / "portmon" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("history = false\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    db = tmp_path / "h.sqlite3"
    parser, _ = build_parser()
    ctx = Context(parser.parse_args(["--db", str(db)]), io.StringIO(), io.StringIO())
    inner = ScriptedCollector([demo_snapshot()])
    with dbopts.live_history(ctx, inner) as (collector, options):
        assert collector is inner
        assert "history recording is off (config file" in options["history_note"]
    assert not db.exists()
