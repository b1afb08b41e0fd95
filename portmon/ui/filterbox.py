"""The filter box above the table: typing filters live, enter goes back to the table, escape clears."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """The filter box: typing filters live, enter goes back to the table, escape clears."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear the filter", show=False),
    ]

    class Cleared(Message):
        """Escape: the filter was emptied."""

    def action_clear_filter(self) -> None:
        """Empty the filter and go back to the table."""
        self.value = ""
        self.post_message(self.Cleared())
