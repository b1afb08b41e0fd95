"""The one-shot subcommands; each module has ``add_parser(subparsers) -> (name, runner)``."""

from __future__ import annotations

from portmon.commands import killcmd, listcmd, watchcmd, whocmd, whycmd

MODULES = (listcmd, whocmd, killcmd, watchcmd, whycmd)
