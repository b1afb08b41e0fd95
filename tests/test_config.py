"""The config file: defaults, the file over them, flags over the file, one-line errors, ``portmon config``."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from portmon.cli import main as cli
from portmon.collect.fake import ScriptedCollector
from portmon.config import COMMAND_LINE, DEFAULT, ConfigError, config_path, load_config
from portmon.model import LISTEN, Holder, Snapshot, Socket


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $XDG_CONFIG_HOME; returns where the config file goes."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "portmon").mkdir()
    return tmp_path / "portmon" / "config.toml"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_the_path_follows_xdg_config_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == "/x/cfg/portmon/config.toml"
    assert config_path({"HOME": "/h"}) == "/h/.config/portmon/config.toml"
    assert config_path({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}) == "/h/.config/portmon/config.toml"


def test_no_file_means_the_defaults(home: Path) -> None:
    config = load_config()
    assert not config.found and config.path == str(home)
    assert config["interval"] == 1.0 and config.source("interval") == DEFAULT
    assert config["sort"] == "local_port" and config["ignore"] == ()


def test_the_file_sets_values_and_an_unknown_key_is_a_warning(home: Path) -> None:
    home.write_text('interval = 2\nsort = "-pid"\nlistening = true\nignore = "port:5353"\n\ncolour = "red"\n')
    config = load_config()
    assert config.found
    values = (config["interval"], config["sort"], config["listening"], config["ignore"])
    assert values == (2.0, "-pid", True, ("port:5353",))
    assert config.source("interval") == f"config file '{home}'"
    assert config.warnings == [f"config file '{home}', line 6: unknown setting 'colour' ignored ("
                               "interval, sort, listening, ignore, theme, columns, reverse_dns, history, "
                               "grace)"]  # fmt: skip
    config.override("interval", 5.0)
    config.override("sort", None)
    assert config.settings["interval"] == (5.0, COMMAND_LINE) and config.source("sort") != COMMAND_LINE


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("interval = 2\nsort = \n", 2, "Invalid value"),
        ("interval = 2\n[broken\n", 2, ""),
        (
            'listening = true\ninterval = "fast"\n',
            2,
            "interval: expected a number of seconds from 0.1 to 3600, got 'fast'",
        ),
        ("interval = 1e9\n", 1, "from 0.1 to 3600"),
        ("listening = 1\n", 1, "listening: expected true or false"),
        ('ignore = [1, 2]\n', 1, "ignore: expected a string or a list of strings"),
    ],
)
def test_a_broken_file_is_one_line_naming_the_file_and_line_and_exit_2(
    home: Path, text: str, line: int, reason: str
) -> None:
    home.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert message.startswith(f"config file '{home}', line {line}: ") and reason in message
    code, out, err = run("list")
    assert code == 2 and out == ""
    assert err == f"portmon: {message}\n"


def test_a_directory_or_fifo_is_refused_without_blocking(home: Path) -> None:
    os.mkfifo(home)
    code, _, err = run("list")
    assert code == 2 and err == f"portmon: config file '{home}': not a regular file\n"


SOCKETS = (
    Socket("tcp", 4, "0.0.0.0", 8080, state=LISTEN, holders=(Holder(20, "web"),), inode=1),
    Socket("udp", 4, "0.0.0.0", 5353, holders=(Holder(30, "avahi-daemon"),), inode=2),
    Socket("tcp", 4, "127.0.0.1", 8080, "127.0.0.1", 40000, "ESTABLISHED", (Holder(10, "client"),), inode=3),
)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    collector = ScriptedCollector([Snapshot(sockets=SOCKETS, taken_at=1.0, collector="fake")])
    monkeypatch.setattr(cli.Context, "collector", lambda self: collector)


def test_list_takes_sort_listening_and_ignore_from_the_file_and_flags_win(home: Path, fake: None) -> None:
    home.write_text('sort = "-pid"\nignore = ["port:5353"]\n')
    code, out, err = run("list", "--json")
    assert code == 0, err
    assert [r["pid"] for r in json.loads(out)] == [20, 10]  # avahi's mDNS left out; by pid, descending
    code, out, _ = run("list", "--json", "--sort", "pid")
    assert [r["pid"] for r in json.loads(out)] == [10, 20]
    home.write_text("listening = true\n")
    code, out, _ = run("list", "--json")
    assert [r["pid"] for r in json.loads(out)] == [30, 20]  # listeners only, by local port
    code, out, _ = run("list", "--json", "--all")
    assert [r["pid"] for r in json.loads(out)] == [30, 20, 10]  # the flag wins


def test_a_bad_sort_or_ignore_in_the_file_names_the_file(home: Path, fake: None) -> None:
    home.write_text('sort = "nosuch"\n')
    code, _, err = run("list")
    assert code == 2 and err.startswith(f"portmon: config file '{home}': sort: unknown sort column 'nosuch'")
    home.write_text('ignore = "state:bogus"\n')
    code, _, err = run("list")
    assert code == 2 and err.startswith(f"portmon: config file '{home}': ignore: invalid filter term 'state:bogus'")


def test_portmon_config_prints_each_setting_and_its_source(home: Path) -> None:
    home.write_text('sort = "PID"\nignore = "port:5353"\n')
    code, out, err = run("--interval", "2.5", "config")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"# config file '{home}' (read)"
    settings = {line.split(" = ")[0]: line for line in lines[1:]}
    assert settings["interval"].startswith("interval = 2.5") and "# command line:" in settings["interval"]
    assert settings["sort"].startswith('sort = "PID"') and f"# config file '{home}':" in settings["sort"]
    assert settings["theme"].startswith('theme = "textual-dark"') and "# default:" in settings["theme"]
    code, out, _ = run("config", "--json")
    doc = json.loads(out)
    assert doc["found"] is True
    assert doc["settings"]["ignore"] == {"value": ["port:5353"], "source": f"config file '{home}'"}
    assert doc["settings"]["interval"] == {"value": 1.0, "source": "default"}


def test_watch_and_the_interval_use_the_file(home: Path) -> None:
    home.write_text("interval = 0.5\n")
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args(["watch"]), io.StringIO(), io.StringIO())
    assert ctx.interval == 0.5
    ctx = cli.Context(parser.parse_args(["watch", "--interval", "3"]), io.StringIO(), io.StringIO())
    assert ctx.interval == 3.0


def test_the_live_monitor_opens_with_the_files_sort_and_listening(home: Path) -> None:
    home.write_text('sort = "-PID"\nlistening = true\ninterval = 2\n')
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args([]), io.StringIO(), io.StringIO())
    options = cli.live_options(ctx)
    assert {k: options[k] for k in ("interval", "sort", "descending", "listening_only")} == {
        "interval": 2.0, "sort": "pid", "descending": True, "listening_only": True
    }
    ctx = cli.Context(parser.parse_args(["--interval", "0.5"]), io.StringIO(), io.StringIO())
    assert cli.live_options(ctx)["interval"] == 0.5


def test_the_live_monitor_takes_theme_columns_names_and_ignore_from_the_file(home: Path) -> None:
    home.write_text(
        'theme = "nord"\ncolumns = ["proto", "local_port", "process"]\nreverse_dns = true\nignore = [":5353"]\n'
    )
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args([]), io.StringIO(), io.StringIO())
    options = cli.live_options(ctx)
    assert options["theme"] == "nord"
    assert options["columns"] == ("proto", "local_port", "process")
    assert options["reverse_dns"] is True
    assert [f.text for f in options["ignore"]] == [":5353"]
    assert options["settings_path"] == str(home)


def test_the_grace_setting_reaches_kill_and_the_live_monitors_kill_dialog(home: Path) -> None:
    home.write_text("grace = 7\n")
    parser, _ = cli.build_parser()
    ctx = cli.Context(parser.parse_args([]), io.StringIO(), io.StringIO())
    assert cli.live_options(ctx)["kill_grace"] == 7.0
    from portmon.cli.kill import _grace

    kill_ctx = cli.Context(parser.parse_args(["kill", "80"]), io.StringIO(), io.StringIO())
    assert _grace(kill_ctx) == 7.0
    kill_ctx = cli.Context(parser.parse_args(["kill", "80", "--grace", "0.5"]), io.StringIO(), io.StringIO())
    assert _grace(kill_ctx) == 0.5


def test_remember_updates_lines_in_place_and_adds_missing_keys_above_the_first_table(tmp_path: Path) -> None:
    from portmon.config import remember

    path = tmp_path / "config.toml"
    path.write_text('# top\n  theme = \'nord\'  # my theme\ninterval = 2\n\n[extra]\nsort = "keep-me"\n')
    assert remember(str(path), {"theme": "gruvbox", "sort": "-pid"})
    assert path.read_text() == (
        '# top\n  theme = "gruvbox"  # my theme\ninterval = 2\n\nsort = "-pid"\n[extra]\nsort = "keep-me"\n'
    )
    assert not remember(str(path), {"theme": "gruvbox"})  # nothing to change: not written


def test_remember_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    from portmon.config import remember

    path = tmp_path / "new" / "portmon" / "config.toml"
    assert remember(str(path), {"sort": 'we"ird\\'})
    assert load_config(str(path))["sort"] == 'we"ird\\'


def test_remember_follows_a_symlink_and_keeps_the_mode(tmp_path: Path) -> None:
    from portmon.config import remember

    real = tmp_path / "dotfiles" / "portmon.toml"
    real.parent.mkdir()
    real.write_text("interval = 3\n")
    real.chmod(0o640)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    assert remember(str(link), {"theme": "nord"})
    assert link.is_symlink() and real.read_text() == 'interval = 3\ntheme = "nord"\n'
    assert real.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in real.parent.iterdir()] == ["portmon.toml"]  # no temporary file left


def test_remember_refuses_to_write_what_would_not_be_toml(tmp_path: Path) -> None:
    from portmon.config import remember

    path = tmp_path / "config.toml"
    original = 'theme = """multi\nline"""\n'
    path.write_text(original)
    with pytest.raises(ConfigError) as excinfo:
        remember(str(path), {"theme": "nord"})
    assert "not updated" in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert path.read_text() == original
