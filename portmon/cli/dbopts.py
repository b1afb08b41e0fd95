"""What the history commands share: ``--db``, opening the database with one-line errors, the live monitor's recorder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portmon.cli.context import CommandFailed, Context

if TYPE_CHECKING:
    import sqlite3

    from portmon.collect.base import Collector


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


@contextmanager
def live_history(ctx: Context, collector: Collector) -> Iterator[tuple[Collector, dict[str, Any]]]:
    """The live monitor's collector (recording into the history unless ``--no-history`` or ``history = false``
    in the config file) and the app's options.

    The options give the app the database for its history view and the past events for its event
    log. Recording stops (open intervals close) when the block ends.
    """
    from portmon.config import COMMAND_LINE
    from portmon.history.live import past_events, start_recording
    from portmon.history.store import default_db_path
    from portmon.query.events import DEFAULT_EVENT_LIMIT

    given = getattr(ctx.args, "live_db", None)
    db = Path(given).expanduser() if given else default_db_path()
    options: dict[str, Any] = {"history_db": db}
    events, problem = past_events(db, DEFAULT_EVENT_LIMIT)
    options["past_events"] = events
    recording = None
    settings = ctx.settings
    if getattr(ctx.args, "no_history", False):
        settings.override("history", False)
    if not settings["history"]:
        how = "--no-history" if settings.source("history") == COMMAND_LINE else settings.source("history")
        problem = problem or f"history recording is off ({how})"
    else:
        collector, recording, why_not = start_recording(collector, db)
        problem = problem or why_not
    options["history_note"] = problem
    try:
        yield collector, options
    finally:
        if recording is not None:
            recording.close()
