"""What the history commands share: the ``--db`` option and opening the database with one-line errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from portmon.cli.context import CommandFailed, Context


def add_db_option(p: Any) -> None:
    """``--db PATH``: the history database (default $XDG_STATE_HOME/portmon/history.sqlite3)."""
    p.add_argument(
        "--db",
        metavar="PATH",
        help="history database (default $XDG_STATE_HOME/portmon/history.sqlite3, ~/.local/state/... without it)",
    )


def db_path(ctx: Context) -> Path:
    """The database the user chose, or the default one."""
    from portmon.history.store import default_db_path

    given = getattr(ctx.args, "db", None)
    return Path(given).expanduser() if given else default_db_path()


def open_history(ctx: Context, *, create: bool) -> sqlite3.Connection:
    """The history database, or CommandFailed (exit 1) with one line naming the file and the reason."""
    from portmon.history.store import HistoryError, open_db

    try:
        return open_db(db_path(ctx), create=create)
    except HistoryError as exc:
        raise CommandFailed(str(exc), 1) from None
