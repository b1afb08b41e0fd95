"""The "why is this port busy?" dialog: the selected row's port (or a typed one), test-bound and explained."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from portmon.actions.why import WhyReport, report_lines
from portmon.model import Socket
from portmon.portspec import PortSpec, PortSpecError, parse_port_spec
from portmon.textsafe import visible

WhyProbe = Callable[[PortSpec, Sequence[Socket]], WhyReport]
"""``probe(spec, sockets) -> report``: test-binds the port and explains it against ``sockets``."""


def report_text(report: WhyReport) -> Text:
    """The report as Text: the verdict line bold (green when free, red when not), the rest plain.

    The lines come from :func:`portmon.actions.why.report_lines`, which escapes every untrusted field;
    they are added as plain text, never parsed as markup.
    """
    lines = report_lines(report)
    out = Text()
    verdict_style = "bold green" if report.primary.free else "bold red"
    for i, line in enumerate(lines):
        if i:
            out.append("\n")
        if i == 0:
            out.append(line, verdict_style)
        elif line.startswith("to free it:"):
            out.append(line, "bold")
        elif line.startswith("test binds") or line.startswith("also checked"):
            out.append(line, "dim bold" if line.startswith("test binds") else "italic")
        else:
            out.append(line)
    return out


class PortInput(Input):
    """The port box: ports are typed here, but "k" (in no port's spelling) is left to the dialog: kill."""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return key != "k" and super().check_consume_key(key, character)


class WhyModal(ModalScreen[None]):
    """Answers whether a server could bind a port now: the row's port at first, any port typed in after.

    ``probe`` runs on a worker thread when ``background`` is true (binds and process reads stay off the
    event loop); ``sockets`` gives the socket table to explain against, read on the event loop at each check.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        # The port box has focus and leaves "k" alone (PortInput): no port spelling has a "k" in it.
        Binding("k", "kill", "Kill what holds the port", priority=True),
    ]

    DEFAULT_CSS = """
    WhyModal {
        align: center middle;
    }
    WhyModal > #why-dialog {
        width: 90%;
        max-width: 124;
        height: auto;
        max-height: 90%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    WhyModal #why-title {
        text-style: bold;
    }
    WhyModal #why-port {
        margin-top: 1;
        width: 40;
    }
    WhyModal #why-answer-box {
        height: auto;
        max-height: 32;
    }
    WhyModal #why-hint {
        color: $text-muted;
        margin-bottom: 1;
    }
    """

    class Answered(Message):
        """A check finished (posted from the worker thread)."""

        def __init__(self, request: int, spec: PortSpec, report: WhyReport | None, error: str | None) -> None:
            super().__init__()
            self.request = request
            self.spec = spec
            self.report = report
            self.error = error

    def __init__(
        self,
        spec: PortSpec | None,
        probe: WhyProbe,
        sockets: Callable[[], Sequence[Socket]],
        *,
        background: bool = True,
        kill: Callable[[PortSpec], bool] | None = None,
    ) -> None:
        """``kill(spec)`` closes the dialog and asks to kill what holds the port; False: nothing does."""
        super().__init__()
        self._kill = kill
        self.spec = spec
        """The port asked about last."""
        self.report: WhyReport | None = None
        """The latest answer (None while checking or before the first check)."""
        self._probe = probe
        self._sockets = sockets
        self._background = background
        self._request = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="why-dialog"):
            yield Static("Why is this port busy?", id="why-title", markup=False)
            yield PortInput(
                value=str(self.spec) if self.spec is not None else "",
                placeholder="a port: 8080, 8080/tcp or 53/udp",
                id="why-port",
                compact=True,
                select_on_focus=False,
            )
            # The hint sits above the answer so a long answer, which scrolls, never pushes it off screen.
            yield Static(
                "enter: check the port typed above (no /tcp or /udp: both) · k: kill what holds it · escape: close",
                id="why-hint",
                markup=False,
            )
            with VerticalScroll(id="why-answer-box"):
                yield Static("", id="why-answer", markup=False)

    def on_mount(self) -> None:
        port_input = self.query_one("#why-port", Input)
        port_input.cursor_blink = self._background
        port_input.focus()
        if self.spec is not None:
            self.check(self.spec)
        else:
            self._show(Text("Type a port and press enter.", "italic"))

    @property
    def answer_text(self) -> str:
        """The answer shown, as plain text (for tests)."""
        return str(self.query_one("#why-answer", Static).content)

    def _show(self, content: Text) -> None:
        self.query_one("#why-answer", Static).update(content)

    def check(self, spec: PortSpec) -> None:
        """Test-bind and explain ``spec`` (in the background when the app polls)."""
        self.spec = spec
        self.report = None
        self._request += 1
        request = self._request
        self.query_one("#why-title", Static).update(Text(f"Why is port {spec} busy?"))
        sockets = tuple(self._sockets())
        if not self._background:
            self._answer(request, spec, sockets)
            return
        self._show(Text(f"checking {spec}: test binds and the socket table…", "italic"))
        self.run_worker(lambda: self._answer(request, spec, sockets), thread=True, group="why", exit_on_error=False)

    def _answer(self, request: int, spec: PortSpec, sockets: Sequence[Socket]) -> None:
        try:
            report: WhyReport | None = self._probe(spec, sockets)
            error = None
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, never fatal
            report, error = None, f"{type(exc).__name__}: {exc}"
        message = self.Answered(request, spec, report, error)
        if self._background:
            self.post_message(message)
        else:
            self.on_why_modal_answered(message)

    def on_why_modal_answered(self, message: Answered) -> None:
        if message.request != self._request:
            return  # an older check, overtaken by a newer one
        if message.report is None:
            self._show(Text(f"could not check {message.spec}: {visible(message.error or '?')}", "bold red"))
            return
        self.report = message.report
        self._show(report_text(message.report))

    @on(Input.Submitted, "#why-port")
    def _port_submitted(self, event: Input.Submitted) -> None:
        try:
            spec = parse_port_spec(event.value)
        except PortSpecError as exc:
            self._show(Text(visible(str(exc)), "bold red"))
            return
        if spec.port == 0:
            self._show(Text("port 0 means 'any free port': give a real port number", "bold red"))
            return
        self.check(spec)

    def action_kill(self) -> None:
        """Ask to kill what holds the port checked last (the kill dialog confirms, as from the table)."""
        if self._kill is None or self.spec is None:
            self.app.bell()
            return
        spec = self.spec
        if self._kill(spec):
            self.dismiss(None)
        else:
            self.notify(f"No process holds port {spec}: nothing to kill.", severity="warning", markup=False)

    def action_close(self) -> None:
        """Close the dialog."""
        self.dismiss(None)
