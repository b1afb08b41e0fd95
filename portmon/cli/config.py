"""``portmon config``: the effective settings, and where each came from (default, config file, command line)."""

from __future__ import annotations

from typing import Any

from portmon.cli.context import CommandFailed, Context
from portmon.config import SETTINGS
from portmon.output import to_json
from portmon.query.sorting import parse_sort
from portmon.textsafe import echo


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``config`` and return its runner."""
    p = subs.add_parser(
        "config",
        help="show the effective settings and where each came from",
        description="Print every setting as TOML with its source: the default, the config file "
        "($XDG_CONFIG_HOME/portmon/config.toml, by default ~/.config/portmon/config.toml) or the command line "
        "(flags win over the file). Exit 2 when the config file cannot be used.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object: path, found, settings with value and source")
    return "config", run


def run(ctx: Context) -> int:
    """Print the settings; check the values only a higher layer understands (sort column, ignore filters)."""
    config = ctx.settings
    try:
        parse_sort(config["sort"])
    except ValueError as exc:
        raise CommandFailed(f"{config.source('sort')}: sort: {exc}", 2) from None
    ctx.ignore_filters()
    if ctx.args.json:
        doc = {
            "path": config.path,
            "found": config.found,
            "settings": {name: {"value": _plain(s.value), "source": s.source} for name, s in config.settings.items()},
        }
        ctx.stdout.write(to_json(doc) + "\n")
        return 0
    state = "read" if config.found else "not found: defaults apply"
    lines = [f"# config file {echo(config.path)} ({state})"]
    width = max(len(f"{name} = {to_json(_plain(s.value))}") for name, s in config.settings.items())
    for name, setting in config.settings.items():
        line = f"{name} = {to_json(_plain(setting.value))}"
        lines.append(f"{line:<{width}}  # {setting.source}: {SETTINGS[name][2]}")
    ctx.stdout.write("\n".join(lines) + "\n")
    return 0


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
