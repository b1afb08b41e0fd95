"""The kill confirmation modal: the captured holders of one socket, what manages them (the preflight), the chosen
signal on confirm, SIGKILL on ``f``, and the manager's own stop command as a second action on ``m``."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
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
from portmon.actions.managerstop import STOP_TIMEOUT, StopResult, plan_preflight, stop_manager
from portmon.collect.base import Collector
from portmon.collect.choose import default_collector
from portmon.model import Snapshot, Socket
from portmon.ownership.enrich import Enricher
from portmon.ownership.preflight import GRACE, Preflight, rebind_rescan
from portmon.ownership.view import PortOwnership
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
STOP_ASK = "stop-ask"
"""The manager's stop command was asked for: waiting for its own confirmation."""
STOPPING = "stopping"

CHECKING = "manager: checking what manages it…"
"""The preflight line while it is worked out (systemd and the engines are asked within about 2 s)."""


def preflight_line(pre: Preflight) -> str:
    """The preflight as ``portmon kill`` and ``kill --dry-run`` print it: ``manager: ...``."""
    return f"manager: {pre.message}"


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
        Binding("m", "stop_manager", "Stop the manager instead (its own stop command; asks first)"),
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
    KillModal #kill-manager {
        margin-top: 1;
        color: $warning;
    }
    KillModal #kill-manager.quiet {
        color: $text-muted;
    }
    KillModal #kill-status {
        margin-top: 1;
    }
    KillModal #stop-manager {
        display: none;
    }
    KillModal.with-stop #stop-manager {
        display: block;
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
    KillModal.refused #kill-signal, KillModal.refused #confirm, KillModal.refused #force,
    KillModal.refused #kill-manager {
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
        preflight_of: Callable[[KillPlan], Preflight] | None = None,
        grace: float = GRACE,
        stop_timeout: float = STOP_TIMEOUT,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """``socket`` is the row the user pressed ``k`` on; ``snapshot`` the one it came from.

        ``collector`` re-scans the port afterwards (default: a fresh :func:`default_collector`, so the
        app's poller is never scanned from two threads at once). ``preflight_of`` works out the preflight
        (default: /proc, systemd and the engines, time-boxed); when it expects a restart, the verdict
        waits up to ``grace`` seconds for a re-bind, as ``portmon kill --grace`` does.
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
        self._preflight_of = preflight_of
        self.grace = grace
        """Seconds the verdict waits for a re-bind when the preflight predicts a restart."""
        self._stop_timeout = stop_timeout
        self.preflight: Preflight | None = None
        """What manages the holders and what a kill should lead to (None until worked out, off the event loop)."""
        self.stopped: StopResult | None = None
        """What the manager's stop command did, once it ran."""

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
        if self.stopped is not None:
            text = Text(self.stopped.message + "\n").append_text(text)
        keys = f"\ny / enter on Send: {name}   s: another signal   f: SIGKILL now"
        if self.has_class("with-stop"):
            keys += "   m: stop the manager"
        text.append(keys + "   n / escape: cancel", "dim")
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
            yield Static(Text(CHECKING), id="kill-manager", classes="quiet", markup=False)
            yield Static(self._ready_status(), id="kill-status", markup=False)
            with Horizontal(id="kill-buttons"):
                yield Button("Cancel" if actionable else "Close", id="cancel")
                yield Button(self._send_label(), id="confirm", variant="warning", disabled=not actionable)
                yield Button("Force: SIGKILL", id="force", variant="error", disabled=not actionable)
                yield Button("Stop the manager", id="stop-manager", variant="primary")

    def on_mount(self) -> None:
        """Work out the preflight in a thread (it may ask systemd or a container engine, up to about 2 s)."""
        if self.plan.actionable:
            self._check_manager()

    def _check_manager(self) -> None:
        self.run_worker(self._preflight, name="preflight", group="preflight", thread=True, exclusive=True)

    def _preflight(self) -> Preflight:
        """Runs in a thread: the same preflight as ``portmon kill``."""
        if self._preflight_of is not None:
            return self._preflight_of(self.plan)
        return plan_preflight(self.plan, PortOwnership(enricher=Enricher()))

    def _show_preflight(self, pre: Preflight) -> None:
        self.preflight = pre
        line = self.query_one("#kill-manager", Static)
        line.update(Text(preflight_line(pre)))
        line.set_class(not pre.restart_expected and pre.stop_command is None, "quiet")
        if self.state != READY:  # a kill already on its way worked the preflight out itself
            return
        offer = pre.stop_command is not None and self.stopped is None
        self.set_class(offer, "with-stop")
        if offer:
            self._set_stop_label()
        self._set_status(self._ready_status())

    def _set_stop_label(self) -> None:
        pre = self.preflight
        command = pre.stop_command if pre is not None else None
        label = f"Run: {command}" if self.state == STOP_ASK else "Stop the manager"
        self.query_one("#stop-manager", Button).label = Text(safe(label, 60))

    @property
    def manager_line(self) -> str:
        """The preflight line's plain text (for the tests)."""
        return str(self.query_one("#kill-manager", Static).content)

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
        elif event.button.id == "stop-manager":
            self.action_stop_manager()
        elif event.button.id == "force":
            self.action_force()
        else:
            self.action_cancel()

    def action_confirm(self) -> None:
        """Send the chosen signal to every captured holder (only from the ready state); after ``m``, run the stop."""
        if self.state == STOP_ASK:
            self._start_stop()
            return
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

    def action_stop_manager(self) -> None:
        """The manager's own stop command: the first press asks, the second (or ``y``) runs it."""
        pre = self.preflight
        if self.state == STOP_ASK:
            self._start_stop()
            return
        if self.state != READY or pre is None or pre.stop_command is None or self.stopped is not None:
            self.app.bell()
            return
        self.state = STOP_ASK
        self._set_stop_label()
        self._set_buttons(False, False)
        self.query_one("#kill-signal", RadioSet).disabled = True
        self.query_one("#stop-manager", Button).focus()
        ask = Text(f"run `{pre.stop_command}`? It stops the manager, not only the process; the port is checked again.")
        ask.append("\ny / enter on Run: run it   n / escape: back", "dim")
        self._set_status(ask)

    def action_cancel(self) -> None:
        """Close: None when nothing was signalled, else the latest outcome line."""
        if self.state == STOP_ASK:
            # Back to the kill: the stop command was not run.
            self.state = READY
            self._set_stop_label()
            self._set_buttons(True, True)
            self.query_one("#kill-signal", RadioSet).disabled = False
            self.query_one("#cancel", Button).focus()
            self._set_status(self._ready_status())
            return
        if self.state in (RUNNING, STOPPING):
            # Signals are on their way; closing now would hide their outcome.
            self.app.bell()
            return
        if self.outcome is not None:
            self.dismiss(self.outcome.message)
        else:
            self.dismiss(self.stopped.message if self.stopped is not None else None)

    # -- the kill itself, off the event loop ------------------------------------------------------

    def _start(self, plan: KillPlan, sig: int) -> None:
        self.state = RUNNING
        self._set_buttons(False, False, False)
        self.query_one("#kill-signal", RadioSet).disabled = True
        n = len(plan.targets)
        sending = f"sending {signal_name(sig)} to {n} process{'es' if n != 1 else ''}…"
        if self._restart_expected():
            sending += f" a restart is expected: waiting up to {self.grace:g} s for a re-bind before judging"
        self._set_status(self._status_text(sending, "bold"))
        self.run_worker(lambda: self._kill(plan, sig), name="kill", group="kill", thread=True, exclusive=True)

    def _restart_expected(self) -> bool:
        """Whether the verdict waits the grace period: a restart predicted, and the manager not stopped since."""
        pre = self.preflight
        return pre is not None and pre.restart_expected and (self.stopped is None or not self.stopped.ran)

    def _kill(self, plan: KillPlan, sig: int) -> KillOutcome:
        """Runs in a thread: the preflight (when not worked out yet), signal, wait, re-scan (with the grace)."""
        if self.preflight is None:
            self.preflight = self._preflight()
        collector = self._collector if self._collector is not None else default_collector()
        scan = collector.scan
        rescan = rebind_rescan(scan, plan.spec, self.grace) if self._restart_expected() else scan
        return execute(plan, sig, self._timeout, rescan=rescan, settle=self._settle)

    def _start_stop(self) -> None:
        pre = self.preflight
        if pre is None:
            return
        self.state = STOPPING
        self._set_buttons(False, False, False)
        self.query_one("#stop-manager", Button).disabled = True
        self._set_status(self._status_text(f"running `{pre.stop_command}`…", "bold"))
        self.run_worker(lambda: self._stop(pre), name="stop", group="stop", thread=True, exclusive=True)

    def _stop(self, pre: Preflight) -> StopResult:
        """Runs in a thread: the stop command (no shell, time-boxed), then the re-scan and the kill's judge."""
        collector = self._collector if self._collector is not None else default_collector()
        return stop_manager(self.plan, pre, collector.scan, timeout=self._stop_timeout, wait=self._timeout)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show the outcome: stay open offering SIGKILL when holders survived SIGTERM, else dismiss."""
        group = event.worker.group
        if group == "preflight":
            if event.state == WorkerState.SUCCESS and self.state in (READY, RUNNING):
                result = event.worker.result
                assert isinstance(result, Preflight)
                self._show_preflight(result)
            elif event.state == WorkerState.ERROR:
                error = event.worker.error
                self.query_one("#kill-manager", Static).update(
                    Text(f"manager: could not be worked out ({safe(type(error).__name__)}: {safe(error)})")
                )
            return
        if group == "stop":
            if event.state == WorkerState.SUCCESS:
                result = event.worker.result
                assert isinstance(result, StopResult)
                self._stopped(result)
            elif event.state == WorkerState.ERROR:
                error = event.worker.error
                self.state = DONE
                self.dismiss(f"port {self.plan.label}: the manager's stop failed ({safe(type(error).__name__)}: "
                             f"{safe(error)})")
            return
        if group != "kill":
            return
        if event.state == WorkerState.SUCCESS:
            outcome = event.worker.result
            assert isinstance(outcome, KillOutcome)
            self._finished(outcome)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            self.state = DONE
            self.dismiss(f"port {self.plan.label}: kill failed ({safe(type(error).__name__)}: {safe(error)})")

    def _stopped(self, result: StopResult) -> None:
        """The manager's stop ran: freed closes the dialog; else the kill is offered again, preflight redone."""
        self.stopped = result
        if result.verdict.freed:
            self.state = DONE
            self.dismiss(result.message)
            return
        self.state = READY
        self.set_class(False, "with-stop")
        self._set_buttons(True, True)
        self.query_one("#kill-signal", RadioSet).disabled = False
        self.query_one("#confirm", Button).focus()
        self.query_one("#kill-manager", Static).update(Text(CHECKING))
        self._set_status(self._ready_status())
        self._check_manager()

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
