"""The kill confirmation modal: the captured holders of one socket, the chosen signal on confirm, SIGKILL on ``f``."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, RadioButton, RadioSet, Static
from textual.worker import Worker, WorkerState

from portmon.actions.kill.execute import execute
from portmon.actions.kill.model import STILL_HELD, KillOutcome, KillPlan, Target
from portmon.actions.kill.plan import confirmation_lines, plan_for_socket
from portmon.actions.kill.signals import DEFAULT_SETTLE, DEFAULT_TIMEOUT, SIGNALS, signal_name
from portmon.actions.kill.text import socket_label
from portmon.collect.base import Collector
from portmon.collect.choose import default_collector
from portmon.model import Snapshot, Socket
from portmon.textsafe import safe

_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)

SIGNAL_CHOICES: tuple[str, ...] = tuple(name for name in ("TERM", "INT", "HUP", "KILL") if name in SIGNALS)
"""The signals the dialog offers, as ``kill --signal`` names them (TERM first: the default)."""

_MAX_COMMAND = 500
"""Characters of a command line kept before the dialog's own ellipsis cuts it to the width."""

READY = "ready"
RUNNING = "running"
SURVIVED = "survived"
REFUSED = "refused"
DONE = "done"


def prefork_roles(targets: Sequence[Target]) -> dict[int, str]:
    """Pre-fork servers among ``targets``: the master (parent of other targets) and its workers, by pid."""
    pids = {t.pid for t in targets}
    workers: dict[int, list[int]] = {}
    for t in targets:
        if t.ppid is not None and t.ppid in pids and t.ppid != t.pid:
            workers.setdefault(t.ppid, []).append(t.pid)
    roles: dict[int, str] = {}
    for master, children in workers.items():
        roles[master] = f"pre-fork master of {len(children)} worker{'s' if len(children) != 1 else ''}"
        for child in children:
            roles[child] = f"worker of {master}"
    return roles


def other_sockets(snapshot: Snapshot | None, pid: int, killed: Sequence[Socket]) -> int:
    """How many sockets ``pid`` holds in ``snapshot`` besides ``killed`` (they close too when it dies)."""
    if snapshot is None:
        return 0
    keys = {s.key for s in killed}
    return sum(1 for s in snapshot.sockets if s.key not in keys and any(h.pid == pid for h in s.holders))


class KillModal(ModalScreen[str | None]):
    """Confirm and run a kill of the processes holding one socket.

    The socket (and so every holder's pid and start time) is captured when the modal is created; table
    refreshes behind it never change the target. Dismisses with the outcome line, or None when cancelled.
    """

    AUTO_FOCUS: ClassVar[str | None] = "#cancel"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm (the chosen signal)"),
        Binding("s", "next_signal", "Choose the signal (TERM, INT, HUP, KILL)"),
        Binding("f", "force", "Force (SIGKILL now)"),
        Binding("n", "cancel", "Cancel"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    KillModal {
        align: center middle;
    }
    KillModal > #kill-dialog {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    KillModal #kill-title {
        text-style: bold;
        margin-bottom: 1;
    }
    KillModal #kill-details {
        height: auto;
        max-height: 20;
    }
    KillModal #kill-details .kill-cut {
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    KillModal #kill-status {
        margin-top: 1;
    }
    KillModal #kill-signal {
        height: auto;
        margin-top: 1;
        border: none;
        padding: 0;
        layout: horizontal;
        background: $surface;
    }
    KillModal #kill-signal RadioButton {
        margin-right: 2;
    }
    KillModal.refused #kill-signal, KillModal.refused #confirm, KillModal.refused #force {
        display: none;
    }
    KillModal #kill-buttons {
        height: auto;
        margin-top: 1;
    }
    KillModal #kill-buttons Button {
        margin-right: 2;
    }
    """

    def __init__(
        self,
        socket: Socket,
        snapshot: Snapshot | None = None,
        *,
        collector: Collector | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        settle: float = DEFAULT_SETTLE,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """``socket`` is the row the user pressed ``k`` on; ``snapshot`` the one it came from.

        ``collector`` re-scans the port afterwards (default: a fresh :func:`default_collector`, so the
        app's poller is never scanned from two threads at once).
        """
        super().__init__(name=name, id=id, classes=classes)
        self.socket = socket
        self.plan: KillPlan = plan_for_socket(socket, snapshot)
        """The captured targets; fixed for the modal's lifetime."""
        self.outcome: KillOutcome | None = None
        """The latest kill's outcome, once there is one."""
        self.state = READY if self.plan.actionable else REFUSED
        self.signal: int = signal.SIGTERM
        """The signal confirm sends (chosen in the dialog; TERM by default)."""
        self._snapshot = snapshot
        self._collector = collector
        self._timeout = timeout
        self._settle = settle

    # -- rendering ------------------------------------------------------------------------------

    def _title(self) -> Text:
        text = Text(f"Kill the holders of port {self.plan.label}")
        text.append("\n")
        text.append(socket_label(self.socket), style="dim")
        return text

    def _status_text(self, message: str, style: str = "") -> Text:
        return Text(message, style=style)

    def _ready_status(self) -> Text:
        if self.state == REFUSED:
            # One explanation, once: the details do not repeat it, and the only button is Close.
            return self._status_text("cannot kill: " + self._refusal(), "bold red")
        lines = confirmation_lines(self.plan, self.signal)
        text = Text("\n".join(lines))
        name = signal_name(self.signal)
        text.append(f"\ny / enter on Send: {name}   s: another signal   f: SIGKILL now   n / escape: cancel", "dim")
        return text

    def _refusal(self) -> str:
        reasons = list(dict.fromkeys(self.plan.reasons()))
        return "; ".join(reasons) if reasons else "nothing to signal"

    def compose(self) -> ComposeResult:
        """The dialog: title, the captured holders, a status line and three buttons (Cancel focused)."""
        actionable = self.plan.actionable
        self.set_class(not actionable, "refused")
        with Vertical(id="kill-dialog"):
            yield Static(self._title(), id="kill-title", markup=False)
            lines = self._detail_lines()
            if lines:  # a refused row may have nothing to add to its one explanation
                with VerticalScroll(id="kill-details"):
                    for line, kind in lines:
                        yield Static(line, classes=kind, markup=False)
            with RadioSet(id="kill-signal", disabled=not actionable):
                for name in SIGNAL_CHOICES:
                    yield RadioButton(f"SIG{name}", value=SIGNALS[name] == self.signal, name=name)
            yield Static(self._ready_status(), id="kill-status", markup=False)
            with Horizontal(id="kill-buttons"):
                yield Button("Cancel" if actionable else "Close", id="cancel")
                yield Button(self._send_label(), id="confirm", variant="warning", disabled=not actionable)
                yield Button("Force: SIGKILL", id="force", variant="error", disabled=not actionable)

    def _send_label(self) -> str:
        return f"Send {signal_name(self.signal)}"

    def choose_signal(self, sig: int) -> None:
        """Make ``sig`` the signal confirm sends (only before anything was sent)."""
        if self.state != READY:
            return
        self.signal = sig
        self.query_one("#confirm", Button).label = self._send_label()
        for button in self.query(RadioButton).results(RadioButton):
            if button.name is not None and SIGNALS.get(button.name) == sig and not button.value:
                button.value = True
        self._set_status(self._ready_status())

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        """A signal was picked with the mouse or the arrows."""
        event.stop()
        name = event.pressed.name
        if name in SIGNALS:
            self.choose_signal(SIGNALS[name])

    def action_next_signal(self) -> None:
        """Offer the next signal (TERM, INT, HUP, KILL, TERM, ...)."""
        names = [SIGNALS[name] for name in SIGNAL_CHOICES]
        index = names.index(self.signal) if self.signal in names else -1
        self.choose_signal(names[(index + 1) % len(names)])

    def _detail_lines(self) -> list[tuple[Text, str]]:
        """The details, one (line, CSS class) each: paths and command lines are cut, reasons wrap."""
        lines: list[tuple[Text, str]] = []
        roles = prefork_roles(self.plan.targets)
        for t in self.plan.targets:
            head = Text()
            head.append(f"pid {t.pid}", style="bold")
            head.append(" ")
            head.append(safe(t.name or "?", 64), style="bold")
            if t.pid in roles:
                head.append(f"  ({roles[t.pid]})", style="italic")
            head.append("  user ")
            head.append(safe(t.user or "?"))
            head.append("  started ")
            head.append(t.started)
            lines.append((head, "kill-head"))
            lines.append((Text("  exe  ").append(safe(t.exe or "?")), "kill-cut"))
            lines.append((Text("  cmd  ").append(safe(t.command, _MAX_COMMAND)), "kill-cut"))
            others = other_sockets(self._snapshot, t.pid, self.plan.sockets)
            if others:
                also = f"  also holds {others} other socket{'s' if others != 1 else ''}: killing it closes them too"
                lines.append((Text(also, "yellow"), "kill-note"))
        said = set(self.plan.reasons()) if self.state == REFUSED else set()
        for r in self.plan.refusals:
            if r.reason not in said:
                lines.append((Text.assemble(("refused: ", "bold red"), r.reason), "kill-refusal"))
        for n in self.plan.notes:
            if n not in said:
                lines.append((Text.assemble(("note: ", "yellow"), n), "kill-note"))
        if not lines and self.state != REFUSED:
            lines.append((Text("nobody holds this socket"), "kill-note"))
        return lines

    @property
    def details_text(self) -> str:
        """Every detail line's plain text (for the tests)."""
        return "\n".join(str(w.content) for w in self.query("#kill-details Static").results(Static))

    @property
    def status_line(self) -> str:
        """The status line's plain text (for the app and the tests)."""
        return str(self.query_one("#kill-status", Static).content)

    def _set_status(self, text: Text) -> None:
        self.query_one("#kill-status", Static).update(text)

    def _set_buttons(self, confirm: bool, force: bool, cancel: bool = True) -> None:
        self.query_one("#confirm", Button).disabled = not confirm
        self.query_one("#force", Button).disabled = not force
        self.query_one("#cancel", Button).disabled = not cancel

    # -- actions --------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Route the buttons to the same actions as the keys."""
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        elif event.button.id == "force":
            self.action_force()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        """Send SIGTERM to every captured holder (only from the ready state)."""
        if self.state != READY:
            self.app.bell()
            return
        self._start(self.plan, self.signal)

    def action_force(self) -> None:
        """Send SIGKILL: to every holder when nothing was sent yet, else to the survivors."""
        if self.state == READY:
            self._start(self.plan, _SIGKILL)
        elif self.state == SURVIVED and self.outcome is not None:
            survivors = [t.pid for t in self.outcome.survivors]
            self._start(self.plan.narrowed(survivors), _SIGKILL)
        else:
            self.app.bell()

    def action_cancel(self) -> None:
        """Close: None when nothing was signalled, else the latest outcome line."""
        if self.state == RUNNING:
            # Signals are on their way; closing now would hide their outcome.
            self.app.bell()
            return
        self.dismiss(self.outcome.message if self.outcome is not None else None)

    # -- the kill itself, off the event loop ------------------------------------------------------

    def _start(self, plan: KillPlan, sig: int) -> None:
        self.state = RUNNING
        self._set_buttons(False, False, False)
        self.query_one("#kill-signal", RadioSet).disabled = True
        n = len(plan.targets)
        self._set_status(
            self._status_text(f"sending {signal_name(sig)} to {n} process{'es' if n != 1 else ''}…", "bold")
        )
        self.run_worker(lambda: self._kill(plan, sig), name="kill", group="kill", thread=True, exclusive=True)

    def _kill(self, plan: KillPlan, sig: int) -> KillOutcome:
        """Runs in a thread: signal, wait (bounded by the timeout), re-scan."""
        collector = self._collector if self._collector is not None else default_collector()
        return execute(plan, sig, self._timeout, rescan=collector.scan, settle=self._settle)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show the outcome: stay open offering SIGKILL when holders survived SIGTERM, else dismiss."""
        if event.worker.group != "kill":
            return
        if event.state == WorkerState.SUCCESS:
            outcome = event.worker.result
            assert isinstance(outcome, KillOutcome)
            self._finished(outcome)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            self.state = DONE
            self.dismiss(f"port {self.plan.label}: kill failed ({safe(type(error).__name__)}: {safe(error)})")

    def _finished(self, outcome: KillOutcome) -> None:
        self.outcome = outcome
        survivors = outcome.survivors
        if outcome.verdict.kind == STILL_HELD and survivors and outcome.signal != _SIGKILL:
            self.state = SURVIVED
            self._set_buttons(False, True)
            self.query_one("#force", Button).focus()
            self._set_status(self._status_text(f"{outcome.message} — press f to force", "bold yellow"))
            return
        self.state = DONE
        self.dismiss(outcome.message)
