"""Pilot tests of the config file's settings in the live monitor, and of remembering the theme and sort."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from portmon.cli import main as cli
from portmon.collect.fake import DEMO_TIME, ScriptedCollector, demo_process, demo_snapshot
from portmon.config import load_config
from portmon.ui.app import PortmonApp
from portmon.ui.sockettable import SocketTable

SIZE = (160, 50)
Body = Callable[[Pilot, PortmonApp, SocketTable], Awaitable[None]]


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary $XDG_CONFIG_HOME; returns where portmon's config file goes (not created)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path / "portmon" / "config.toml"


def live_app(**extra: Any) -> PortmonApp:
    """The app as ``portmon`` (no command) builds it from the config file, with a fake collector."""
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args([]), io.StringIO(), io.StringIO())
    options = cli.live_options(ctx) | extra
    return PortmonApp(
        ScriptedCollector([demo_snapshot()]),
        poll=False,
        clock=lambda: DEMO_TIME,
        process_reader=demo_process,
        resolve=lambda addr: f"host-{addr.replace('.', '-')}",
        **options,
    )


def run(app: PortmonApp, body: Body) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await body(pilot, app, app.monitor.table)

    asyncio.run(main())


def header(table: SocketTable) -> str:
    return "".join(segment.text for segment in table._header_strip())


def test_theme_columns_reverse_dns_and_ignore_come_from_the_file(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text(
        'theme = "nord"\ncolumns = ["proto", "local_port", "state", "process", "remote_addr"]\n'
        'reverse_dns = true\nignore = [":5353", "proc:cupsd"]\n'
    )

    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        assert app.theme == "nord"
        assert [c.name for c, _ in table.columns] == ["mark", "proto", "local_port", "remote_addr", "state", "process"]
        assert "PID" not in header(table) and "User" not in header(table)
        assert app.monitor.resolving
        await pilot.pause()
        rows = [table._row_strip(i) for i in range(len(table.rows))]
        assert any("host-203-0-113-5" in "".join(s.text for s in strip) for strip in rows)
        ports = {s.local_port for s in table.rows}
        names = {h.name for s in table.rows for h in s.holders}
        assert 5353 not in ports and "cupsd" not in names
        assert 5353 in {s.local_port for s in demo_snapshot().sockets}
        note = str(app.monitor.query_one("#ignored", Static).render())
        assert note == "ignoring: :5353 proc:cupsd"
        assert app.monitor.view is not None and app.monitor.view.total == len(table.rows)

    run(live_app(), body)


def test_without_settings_everything_is_shown_and_nothing_is_written(config_file: Path) -> None:
    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        assert app.theme == "textual-dark"
        assert "PID" in header(table) and "User" in header(table)
        assert not app.monitor.resolving
        assert not app.monitor.query("#ignored")
        assert 5353 in {s.local_port for s in table.rows}

    run(live_app(), body)
    assert not config_file.exists()


def test_an_unknown_theme_or_column_is_a_one_line_warning(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text('theme = "no-such-theme"\ncolumns = ["pid", "bogus"]\n')

    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        assert app.theme == "textual-dark"
        messages = [n.message for n in app._notifications]
        assert any("unknown theme 'no-such-theme'" in m or 'unknown theme "no-such-theme"' in m for m in messages)
        assert any("unknown column" in m and "bogus" in m for m in messages)
        assert all("\n" not in m for m in messages)
        assert [c.name for c, _ in table.columns] == ["mark", "pid"]

    run(live_app(), body)


def test_command_line_flags_win_over_the_file(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text("interval = 5\n")
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args(["--interval", "0.5"]), io.StringIO(), io.StringIO())
    assert cli.live_options(ctx)["interval"] == 0.5


def test_the_sort_and_theme_chosen_are_written_back_keeping_the_rest(config_file: Path) -> None:
    config_file.parent.mkdir()
    original = (
        "# my portmon settings\n"
        'sort = "pid"   # by pid\n'
        "interval = 2\n"
        'ignore = [":5353"]  # mDNS noise\n'
        "\n"
        "# the end\n"
    )
    config_file.write_text(original)

    chosen: list[str] = []

    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        assert app.monitor.spec.column == "pid"
        await pilot.press(">")
        chosen.append(app.monitor.spec.column)
        app.theme = "nord"
        await pilot.pause()
        assert config_file.read_text() == original  # written when the app ends, not on every key

    run(live_app(), body)
    column = chosen[0]
    assert column != "pid"
    text = config_file.read_text()
    assert text == original.replace('sort = "pid"   # by pid', f'sort = "{column}"   # by pid').replace(
        "# the end\n", '# the end\ntheme = "nord"\n'
    )
    config = load_config(str(config_file))
    assert config["theme"] == "nord" and config["sort"] == column and config["interval"] == 2.0


def test_a_descending_sort_is_remembered_with_a_minus_and_the_file_is_created(config_file: Path) -> None:
    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        await pilot.press("i")

    run(live_app(), body)
    assert config_file.read_text() == 'sort = "-local_port"\n'
    app = live_app()
    assert app.monitor.spec.column == "local_port" and app.monitor.spec.descending


def test_no_change_leaves_the_file_untouched(config_file: Path) -> None:
    config_file.parent.mkdir()
    config_file.write_text('theme = "nord"\n')
    before = config_file.stat().st_mtime_ns

    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        await pilot.press("i", "i")

    run(live_app(), body)
    assert config_file.stat().st_mtime_ns == before


def test_an_unwritable_config_is_reported_not_raised(config_file: Path) -> None:
    config_file.mkdir(parents=True)  # a directory where the file should be

    async def body(pilot: Pilot, app: PortmonApp, table: SocketTable) -> None:
        await pilot.press("i")

    app = PortmonApp(
        ScriptedCollector([demo_snapshot()]), poll=False, clock=lambda: DEMO_TIME, process_reader=demo_process,
        settings_path=str(config_file),
    )
    run(app, body)
    assert app.remember_error is not None and "not a regular file" in app.remember_error
    assert "\n" not in app.remember_error
