"""The close-connection modal: one captured TCP connection and its holders, Cancel focused, then the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static
from textual.worker import Worker, WorkerState

from portmon.actions.close import CloseOutcome, Endpoint, close_connection, plan_close
from portmon.collect.choose import default_collector
from portmon.model import Socket
from portmon.textsafe import safe
from portmon.ui.detail import MAX_NAME_CHARS, socket_line

Closer = Callable[[Socket], CloseOutcome]
"""Closes one connection and confirms by a re-scan (``portmon.actions.close.close_connection``; a fake in tests)."""

READY = "ready"
RUNNING = "running"
REFUSED = "refused"
DONE = "done"


def default_closer(target: Socket) -> CloseOutcome:
    """SOCK_DESTROY ``target``, confirmed by a scan of a fresh collector (never the poller's, which is busy)."""
    return close_connection(target, default_collector().scan)


def close_refusal(sock: Socket) -> str | None:
    """Why ``sock`` cannot be closed as one connection, or None when it can (a live TCP connection with a cookie)."""
    if sock.proto != "tcp":
        return "only a TCP connection can be closed (this is UDP)"
    if sock.listening:
        return "this is a listening socket: close never stops a server (k kills its holders)"
    if sock.remote_addr is None or sock.remote_port is None:
        return "this socket has no remote end"
    local = Endpoint(sock.local_addr, sock.local_port, sock.family)
    remote = Endpoint(sock.remote_addr, sock.remote_port, sock.family)
    # Planned against the captured socket alone: the close then names exactly this one, by its cookie.
    return plan_close([sock], local, remote).problem


def outcome_line(sock: Socket, outcome: CloseOutcome) -> str:
    """The result in one line: closed, or why not (EPERM and EOPNOTSUPP explained by actions.close)."""
    label = socket_line(sock).plain
    if outcome.closed:
        return f"closed {label}: gone from a new scan"
    return f"not closed: {outcome.error or 'unknown reason'}"


class CloseModal(ModalScreen[str | None]):
    """Confirm and close one TCP connection (SOCK_DESTROY), captured when the key was pressed.

    Dismisses with the result line, or None when cancelled before anything was tried.
    """

    AUTO_FOCUS: ClassVar[str | None] = "#cancel"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm: close this connection"),
        Binding("n", "cancel", "Cancel"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    CloseModal { align: center middle; }
    CloseModal > #close-dialog {
        width: 90%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    CloseModal #close-title { text-style: bold; margin-bottom: 1; }
    CloseModal #close-status { margin-top: 1; }
    CloseModal #close-buttons { height: auto; margin-top: 1; }
    CloseModal #close-buttons Button { margin-right: 2; }
    CloseModal.refused #confirm { display: none; }
    """

    def __init__(self, socket: Socket, closer: Closer = default_closer) -> None:
        super().__init__()
        self.socket = socket
        """The connection to close: fixed for the modal's lifetime, whatever the table shows meanwhile."""
        self.refusal = close_refusal(socket)
        self.state = REFUSED if self.refusal is not None else READY
        self.outcome: CloseOutcome | None = None
        self.result: str | None = None
        """The result line once the close ran."""
        self._closer = closer

    def compose(self) -> ComposeResult:
        """Title, the socket and its holders, a status line, Cancel (focused) and Close."""
        self.set_class(self.state == REFUSED, "refused")
        with Vertical(id="close-dialog"):
            yield Static(Text("Close one TCP connection"), id="close-title", markup=False)
            yield Static(socket_line(self.socket), id="close-socket", markup=False)
            yield Static(self._holders(), id="close-holders", markup=False)
            yield Static(self._ready_status(), id="close-status", markup=False)
            with Horizontal(id="close-buttons"):
                yield Button("Cancel" if self.state == READY else "Close", id="cancel")
                yield Button("Close connection", id="confirm", variant="error", disabled=self.state != READY)

    def _holders(self) -> Text:
        if not self.socket.holders:
            return Text("no process holds it", "italic")
        text = Text("held by ")
        for i, h in enumerate(self.socket.holders):
            if i:
                text.append(", ")
            text.append(f"pid {h.pid} ", "bold")
            text.append(safe(h.name or "?", MAX_NAME_CHARS), "bold")
            if h.user:
                text.append(" (")
                text.append(safe(h.user, MAX_NAME_CHARS))
                text.append(")")
        text.append("\nThe process keeps running: the peer gets a reset and the holder's next call on it fails.",
                    "dim")  # fmt: skip
        return text

    def _ready_status(self) -> Text:
        if self.refusal is not None:
            return Text(f"cannot close: {self.refusal}", "bold red")
        return Text("y / enter on Close connection: close it   n / escape: cancel", "dim")

    @property
    def status_line(self) -> str:
        """The status line's plain text (for the tests)."""
        return str(self.query_one("#close-status", Static).content)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Route the buttons to the same actions as the keys."""
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        """Close the captured connection (only from the ready state), on a worker thread."""
        if self.state != READY:
            self.app.bell()
            return
        self.state = RUNNING
        self.query_one("#confirm", Button).disabled = True
        self.query_one("#cancel", Button).disabled = True
        self.query_one("#close-status", Static).update(Text("closing…", "bold"))
        target, closer = self.socket, self._closer
        self.run_worker(lambda: closer(target), name="close", group="close", thread=True, exclusive=True)

    def action_cancel(self) -> None:
        """Close the dialog: None when nothing was tried, else the result line."""
        if self.state == RUNNING:
            self.app.bell()
            return
        self.dismiss(self.result)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show the result and offer only Close."""
        if event.worker.group != "close":
            return
        if event.state == WorkerState.SUCCESS:
            outcome = event.worker.result
            assert isinstance(outcome, CloseOutcome)
            self.outcome = outcome
            self.result = outcome_line(self.socket, outcome)
            style = "bold green" if outcome.closed else "bold red"
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            self.result = f"not closed: {safe(type(error).__name__)}: {safe(error)}"
            style = "bold red"
        else:
            return
        self.state = DONE
        self.query_one("#close-status", Static).update(Text(self.result, style))
        cancel = self.query_one("#cancel", Button)
        cancel.label = "Close"
        cancel.disabled = False
        cancel.focus()
