"""The filter box above the table: typing filters live (after a pause on huge tables), enter applies, escape clears."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from textual import on
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input

from portmon.query.filters import FilterError, SocketFilter, parse_filter

DEBOUNCE_SECONDS = 0.3
"""With ``debounce`` true, how long typing must pause before the filter is applied."""


class FilterInput(Input):
    """The filter box: posts :class:`Applied` with each valid filter typed, :class:`Invalid` naming a bad term.

    ``debounce()`` says whether to wait for a pause in typing first (the screen: when the table is huge).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "submit", "Apply", tooltip="Apply the filter and go back to the table (the filter stays)"),
        Binding("escape", "clear_filter", "Clear", tooltip="Clear the filter and go back to the table"),
    ]

    class Applied(Message):
        """A valid filter was typed: the screen shows what it lets through."""

        def __init__(self, parsed: SocketFilter) -> None:
            super().__init__()
            self.filter = parsed

    class Invalid(Message):
        """The text does not parse: the last valid filter stays in effect; ``error`` names the bad term."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    class Cleared(Message):
        """Escape: the filter was emptied."""

    def __init__(self, *args: Any, debounce: Callable[[], bool] = lambda: False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._debounce = debounce
        self._pending: Timer | None = None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self._cancel()
        if self._debounce():
            value = event.value
            self._pending = self.set_timer(DEBOUNCE_SECONDS, lambda: self._apply(value))
        else:
            self._apply(event.value)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        # Enter does not wait out the pause; the event goes on to the screen (back to the table).
        if self._pending is not None:
            self._cancel()
            self._apply(event.value)

    def _cancel(self) -> None:
        if self._pending is not None:
            self._pending.stop()
            self._pending = None

    def _apply(self, text: str) -> None:
        try:
            parsed = parse_filter(text)
        except FilterError as exc:
            self.post_message(self.Invalid(str(exc)))
            return
        self.post_message(self.Applied(parsed))

    def action_clear_filter(self) -> None:
        """Empty the filter and go back to the table."""
        self.value = ""
        self.post_message(self.Cleared())
