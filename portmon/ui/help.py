"""The help screen: every key, read from the bindings themselves so it cannot drift, and the filter language."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

FILTER_HELP: tuple[tuple[str, str], ...] = (
    ("word", "matches anywhere: process, user, address, service, state"),
    (":8080  port:8000-8100", "local or remote port (lport:, rport: for one side)"),
    ("proto:tcp6  state:listen", "protocol (tcp, udp, tcp4 … udp6); TCP state"),
    ("proc:nginx  user:root  pid:42", "process name, user, pid"),
    ("service:http  range:dynamic", "registered service; port range (system, user, dynamic)"),
    ("addr:10.0.0.0/8", "local or remote address or network"),
    ("!term", "negates a term; all terms must match"),
)


def key_label(binding: Binding) -> str:
    """How a binding's key is written for people ("space", "<", "?", "ctrl+p")."""
    if binding.key_display:
        return binding.key_display
    names = {
        "slash": "/",
        "question_mark": "?",
        "less_than_sign": "<",
        "greater_than_sign": ">",
        "pageup": "page up",
        "pagedown": "page down",
    }
    return ", ".join(names.get(key, key) for key in binding.key.split(","))


def keys_table(groups: Sequence[tuple[str, Iterable[BindingType]]]) -> Group:
    """A table of (key, what it does) for each group of bindings, then the filter language."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
    table.add_column(style="bold", no_wrap=True, min_width=12)
    table.add_column()
    for title, bindings in groups:
        table.add_row(Text(title, "bold underline"), "")
        for binding in bindings:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            table.add_row(Text(key_label(binding)), Text(binding.tooltip or binding.description))
        table.add_row("", "")
    language = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
    language.add_column(style="bold", no_wrap=True)
    language.add_column()
    language.add_row(Text("Filter language", "bold underline"), "")
    for term, meaning in FILTER_HELP:
        language.add_row(Text(term), Text(meaning))
    return Group(table, language)


class HelpScreen(ModalScreen[None]):
    """Lists every key of the monitor; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close help", key_display="escape"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 92;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen Static { width: 100%; height: auto; }
    """

    def __init__(self, groups: Sequence[tuple[str, Iterable[BindingType]]]) -> None:
        super().__init__()
        self._groups = [(title, list(bindings)) for title, bindings in groups]

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        scroll.border_title = "portmon keys"
        scroll.border_subtitle = "escape closes"
        with scroll:
            yield Static(keys_table(self._groups), markup=False)

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)
