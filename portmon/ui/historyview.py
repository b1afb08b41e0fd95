"""The history view: a port's recorded intervals and their holders, newest first, read from the history database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from portmon.history.lock import recorder_running
from portmon.history.queries import IntervalRecord, find_intervals
from portmon.history.report import interval_lines
from portmon.history.store import HistoryError, open_db
from portmon.model import Socket
from portmon.portspec import PortSpec
from portmon.query.filters import parse_filter

HISTORY_LIMIT = 200
"""How many intervals the view shows at most."""

Loader = Callable[[], list[IntervalRecord]]
"""Reads the intervals to show (raises HistoryError or sqlite3.Error when it cannot)."""


def port_loader(db: Path, spec: PortSpec, limit: int = HISTORY_LIMIT) -> Loader:
    """Reads the newest ``limit`` intervals on ``spec``'s local port and protocol from ``db``."""

    def load() -> list[IntervalRecord]:
        conn = open_db(db, create=False)
        try:
            flt = parse_filter(f"proto:{spec.proto}" if spec.proto else "")
            return find_intervals(conn, flt, port=spec.port, limit=limit, recording=recorder_running(db))
        finally:
            conn.close()

    return load


def history_text(records: list[IntervalRecord], now: float) -> Text:
    """The intervals as Text: each span line bold, its holders plain (every field already escaped)."""
    out = Text()
    for i, rec in enumerate(records):
        lines = interval_lines(rec, now)
        if i:
            out.append("\n")
        out.append(lines[0], "bold" if rec.closed is None else "")
        for line in lines[1:]:
            out.append("\n" + line, "dim" if rec.closed is not None else "")
    return out


class HistoryModal(ModalScreen[None]):
    """Who held a port before: its recorded intervals and their holders (command lines redacted).

    ``loader`` runs on a worker thread when ``background`` is true, else at once (tests).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("h", "close", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HistoryModal {
        align: center middle;
    }
    HistoryModal > #history-dialog {
        width: 90%;
        max-width: 140;
        height: auto;
        max-height: 90%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    HistoryModal #history-title {
        text-style: bold;
    }
    HistoryModal #history-scroll {
        height: auto;
        max-height: 40;
        margin-top: 1;
    }
    """

    def __init__(
        self,
        spec: PortSpec,
        loader: Loader,
        *,
        background: bool = True,
        clock: Callable[[], float] = time.time,
        note: str | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self._loader = loader
        self._background = background
        self._clock = clock
        self._note = note
        self.records: list[IntervalRecord] | None = None
        """What was loaded (None until then)."""
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="history-dialog"):
            yield Static(f"History of {self.spec} (newest first; escape closes)", id="history-title", markup=False)
            if self._note:
                yield Static(self._note, id="history-note", markup=False)
            with VerticalScroll(id="history-scroll"):
                yield Static("reading the history...", id="history-body", markup=False)

    def on_mount(self) -> None:
        if self._background:
            self._load_in_background()
        else:
            self._show(*self._load())

    def _load(self) -> tuple[list[IntervalRecord] | None, str | None]:
        try:
            return self._loader(), None
        except HistoryError as exc:
            return None, str(exc)
        except sqlite3.Error as exc:
            return None, f"cannot read the history: {exc}"

    @work(thread=True, exclusive=True)
    def _load_in_background(self) -> None:
        records, error = self._load()
        self.app.call_from_thread(self._show, records, error)

    def _show(self, records: list[IntervalRecord] | None, error: str | None) -> None:
        self.records, self.error = records, error
        body = self.query_one("#history-body", Static)
        if error is not None:
            body.update(Text(error, "red"))
        elif not records:
            body.update(Text(f"nothing recorded on {self.spec} yet"))
        else:
            body.update(history_text(records, self._clock()))

    def action_close(self) -> None:
        """Back to the table."""
        self.dismiss(None)


def show_port_history(screen: Screen[Any], sock: Socket | None, background: bool) -> None:
    """Open the history view of ``sock``'s port over ``screen`` (the monitor's ``h``), or say why not."""
    db = getattr(screen.app, "history_db", None)
    if sock is None or not sock.local_port:
        screen.notify("No socket selected.", severity="warning")
        return
    if db is None:
        screen.notify("No history database.", severity="warning")
        return
    spec = PortSpec(sock.local_port, sock.proto)
    note = getattr(screen.app, "history_note", None)
    screen.app.push_screen(HistoryModal(spec, port_loader(db, spec), background=background, note=note))
