"""The copy dialog: the selected socket's pid, command line or addresses, one key each, to the clipboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from portmon.model import Socket
from portmon.textsafe import visible
from portmon.ui.detail import endpoint

COPY_CHOICES: tuple[tuple[str, str, str], ...] = (
    ("p", "pid", "pid"),
    ("c", "command", "command line"),
    ("a", "local", "local address"),
    ("r", "remote", "remote address"),
)
"""(key, what, label) for each thing the dialog copies."""


def copy_values(sock: Socket, cmdline: Sequence[str] | None) -> dict[str, str]:
    """What can be copied from ``sock`` (``cmdline``: its holder's, when known), by ``what``.

    Text from other processes is copied with its control characters made visible, as shown: a
    command line pasted into a shell must not carry a hidden newline or escape sequence.
    """
    values: dict[str, str] = {}
    if sock.pid is not None:
        values["pid"] = str(sock.pid)
    if cmdline:
        values["command"] = visible(" ".join(cmdline))
    values["local"] = endpoint(sock.local_addr, sock.local_port, sock.family)
    if sock.remote_addr is not None:
        values["remote"] = endpoint(sock.remote_addr, sock.remote_port, sock.family)
    return values


class CopyModal(ModalScreen[tuple[str, str] | None]):
    """Offers the values of :func:`copy_values`; dismisses with (label, text) for the key pressed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"pick('{what}')", f"Copy the {label}") for key, what, label in COPY_CHOICES),
        Binding("escape,q", "pick('')", "Close", key_display="escape"),
    ]

    DEFAULT_CSS = """
    CopyModal { align: center middle; }
    CopyModal > Vertical {
        width: auto;
        max-width: 90%;
        height: auto;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    CopyModal Static { width: auto; }
    """

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "Copy to the clipboard"
        box.border_subtitle = "escape closes"
        with box:
            for key, what, label in COPY_CHOICES:
                line = Text()
                line.append(f" {key} ", "bold reverse")
                line.append(f" {label}: ")
                value = self.values.get(what)
                if value is None:
                    line.append("not known", "dim italic")
                else:
                    line.append(value[:200] + ("…" if len(value) > 200 else ""), "bold")
                yield Static(line, markup=False)

    def action_pick(self, what: str) -> None:
        """Dismiss with the chosen value (nothing for escape or a value not known)."""
        if not what:
            self.dismiss(None)
            return
        value = self.values.get(what)
        if value is None:
            self.app.bell()
            return
        label = next(label for _, w, label in COPY_CHOICES if w == what)
        self.dismiss((label, value))
