"""Kill and why on a remote host's row: the host's own portmon plans and answers, the question is asked here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from portmon.actions.kill.confirmed import identities_from_lines
from portmon.remote.actions import RemoteRun

RemoteRunner = Callable[[Sequence[str]], RemoteRun]
"""Runs ``portmon WORDS`` on the host (blocking: called on a worker thread)."""

KILL = "kill"
WHY = "why"


class RemoteActionModal(ModalScreen[str | None]):
    """``kill`` or ``why`` for one port on one remote host, naming the host in every question.

    For a kill, the remote portmon's dry run lists who would be signalled, each by pid and start
    time in clock ticks; only after the user confirms does the remote portmon send SIGTERM, to
    exactly those processes (``kill --pids``: a pid reused since is refused, a new holder left
    alone), and judge the outcome. Dismisses with the outcome line, or None when cancelled or only
    explained.
    """

    AUTO_FOCUS: ClassVar[str | None] = "#cancel"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm (SIGTERM, on the host)"),
        Binding("n", "cancel", "Cancel"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    RemoteActionModal {
        align: center middle;
    }
    RemoteActionModal > #remote-dialog {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    RemoteActionModal #remote-title {
        text-style: bold;
        margin-bottom: 1;
    }
    RemoteActionModal #remote-lines {
        height: auto;
        max-height: 24;
    }
    RemoteActionModal #remote-status {
        margin-top: 1;
    }
    RemoteActionModal #remote-buttons {
        height: auto;
        margin-top: 1;
    }
    RemoteActionModal #remote-buttons Button {
        margin-right: 2;
    }
    """

    def __init__(self, kind: str, host: str, port: str, run: RemoteRunner) -> None:
        """``port`` is ``PORT/PROTO``; ``host`` the host's label, as its rows show it."""
        super().__init__()
        self.kind = kind
        self.host = host
        self.port = port
        self._run = run
        self.state = "planning"
        self.result: RemoteRun | None = None
        self.identities: str | None = None
        """The dry run's targets as ``PID:TICKS,...``: what a confirmation signals, and nothing else."""

    def compose(self) -> ComposeResult:
        """Title naming the host, the remote output, a status line, Cancel and (for kill) Confirm."""
        if self.kind == KILL:
            title = Text(f"Kill the holders of port {self.port} on host ")
        else:
            title = Text(f"Why is port {self.port} busy on host ")
        title.append(self.host, style="bold")  # a Text: the label is never markup
        title.append(" ?" if self.kind == WHY else "")
        with Vertical(id="remote-dialog"):
            yield Static(title, id="remote-title", markup=False)
            yield VerticalScroll(id="remote-lines")
            yield Static(Text(f"asking {self.host}…", style="dim"), id="remote-status", markup=False)
            with Horizontal(id="remote-buttons"):
                yield Button("Close" if self.kind == WHY else "Cancel", id="cancel")
                if self.kind == KILL:
                    label = Text(f"Confirm: SIGTERM on {self.host}")  # a Text: the host label is never markup
                    yield Button(label, id="confirm", variant="warning", disabled=True)

    def on_mount(self) -> None:
        words = ["kill", self.port, "--dry-run"] if self.kind == KILL else ["why", self.port]
        self.run_worker(lambda: self._run(words), name="plan", group="remote", thread=True, exclusive=True)

    @property
    def lines_text(self) -> str:
        """The remote output shown, as plain text (for the tests)."""
        return "\n".join(str(w.content) for w in self.query("#remote-lines Static").results(Static))

    @property
    def status_line(self) -> str:
        """The status line's plain text."""
        return str(self.query_one("#remote-status", Static).content)

    def _show(self, result: RemoteRun) -> None:
        box = self.query_one("#remote-lines", VerticalScroll)
        box.remove_children()
        box.mount_all([Static(Text(line), markup=False) for line in result.lines])

    def _status(self, text: str, style: str = "") -> None:
        self.query_one("#remote-status", Static).update(Text(text, style=style))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        """Ask the host's portmon to kill (only after its dry run listed the holders)."""
        if self.kind != KILL or self.state != "ready":
            self.app.bell()
            return
        self.state = "running"
        self.query_one("#confirm", Button).disabled = True
        self.query_one("#cancel", Button).disabled = True
        self._status(f"sending SIGTERM on {self.host}…", "bold")
        words = ["kill", self.port, "--yes", "--pids", self.identities or ""]
        self.run_worker(lambda: self._run(words), name="kill", group="remote", thread=True, exclusive=True)

    def action_cancel(self) -> None:
        """Close (not while the remote kill runs: its outcome would be lost)."""
        if self.state == "running":
            self.app.bell()
            return
        self.dismiss(self._outcome if self.state == "done" else None)

    @property
    def _outcome(self) -> str | None:
        result = self.result
        if result is None:
            return None
        last = result.lines[-1] if result.lines else f"exit status {result.code}"
        return f"host {self.host}: {last}"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "remote" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        result = event.worker.result if event.state == WorkerState.SUCCESS else None
        if not isinstance(result, RemoteRun):
            result = RemoteRun(self.host, None, (), f"failed: {event.worker.error}")
        if event.worker.name == "plan" and self.kind == KILL:
            self.identities, lines = identities_from_lines(result.lines)
            result = result._replace(lines=tuple(lines))
        self.result = result
        self._show(result)
        if result.code is None:
            self.state = "failed"
            self._status(f"host {self.host}: {result.error}", "bold red")
            self.query_one("#cancel", Button).disabled = False
            return
        if event.worker.name == "kill":
            self.state = "done"
            self.dismiss(self._outcome)
            return
        if self.kind == KILL and result.code == 0 and self.identities is None:
            self.state = "explained"
            self._status(
                f"host {self.host}: its portmon named no exact process identities to confirm "
                "(an older portmon, or no start times in clock ticks there): cannot kill from here",
                "bold red",
            )
        elif self.kind == KILL and result.code == 0:
            self.state = "ready"
            self.query_one("#confirm", Button).disabled = False
            self._status(f"y / Confirm: SIGTERM to the processes above, on host {self.host}   n / escape: cancel")
        else:
            self.state = "explained"
            self._status("nothing to kill there" if self.kind == KILL else "", "bold" if self.kind == KILL else "")
