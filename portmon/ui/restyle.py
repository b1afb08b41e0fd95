"""Toggling a screen's CSS class without restyling every widget on it: only those its rules reach."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.screen import Screen
from textual.widget import Widget


def set_screen_class(screen: Screen[Any], on: bool, name: str, affected: Iterable[Widget]) -> None:
    """Add (``on``) or remove the class ``name`` on ``screen``, restyling only ``affected`` and their children.

    ``screen.set_class`` restyles the whole screen: every widget down to each key of the footer,
    and each of the socket table's 14 component styles, which is most of what the detail pane's
    key costs. When the style sheet names the class only in rules for ``affected`` (the monitor's
    panes), restyling those gives the same styles: the class toggle of ``d`` and the repaint after
    it cost 14.5-14.9 ms of CPU instead of 24.6-25.1 ms at 10,000 sockets and 160x50
    (``python bench/bench_ui_tricks.py``);
    tests/test_ui_tricks.py checks every widget's styles equal those after a full restyle.
    """
    if screen.has_class(name) == on:
        return
    screen.set_class(on, name, update=False)
    app = screen.app
    for widget in affected:
        app.update_styles(widget)
