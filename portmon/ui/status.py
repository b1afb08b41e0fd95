"""The status line, the scan-error banner text and the history of socket counts behind the sparkline."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from portmon.model import Snapshot
from portmon.query.sorting import STATE_ORDER
from portmon.textsafe import visible
from portmon.ui.view import COLUMN_TITLES, ViewSpec

HISTORY_SECONDS = 300.0
"""How far back the sparkline reaches."""

SEPARATOR = " · "


def seconds_text(seconds: float) -> str:
    """An interval for the status line: two significant digits at most ("3.9", "0.25", "1"), whole seconds from 10."""
    if seconds >= 10:
        return f"{seconds:.0f}"
    return f"{seconds:.2g}"
_SHORT = {"ESTABLISHED": "ESTAB"}
"""Shorter state names for the crowded status line (ss spells ESTABLISHED this way too)."""


class CountHistory:
    """Socket counts per refresh over the last few minutes, for the sparkline."""

    def __init__(self, seconds: float = HISTORY_SECONDS, limit: int = 600) -> None:
        self._seconds = seconds
        self._samples: deque[tuple[float, int]] = deque(maxlen=limit)

    def add(self, when: float, count: int) -> None:
        """Record one refresh's socket count."""
        self._samples.append((when, count))
        while self._samples and when - self._samples[0][0] > self._seconds:
            self._samples.popleft()

    @property
    def counts(self) -> list[float]:
        """The counts, oldest first."""
        return [float(count) for _, count in self._samples]

    def __len__(self) -> int:
        return len(self._samples)


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """Everything the status line shows, gathered by the screen."""

    shown: int
    total: int
    states: Mapping[str, int]
    snapshot: Snapshot | None
    interval: float
    requested_interval: float
    paused: bool
    spec: ViewSpec
    resolving: bool = False
    outcome: str | None = None


def status_text(info: StatusInfo) -> Text:
    """The status line as rich Text (untrusted parts, such as the filter, shown literally)."""
    out = Text(no_wrap=False, overflow="ellipsis")
    parts: list[Text] = []
    if info.paused:
        parts.append(Text(" PAUSED ", "reverse bold"))
    parts.append(Text(f"{info.shown}/{info.total} sockets", "bold"))
    states = [f"{_SHORT.get(state, state)} {info.states[state]}" for state in STATE_ORDER if info.states.get(state)]
    others = sorted(s for s in info.states if s not in STATE_ORDER and s != "UDP")
    states += [f"{visible(state)} {info.states[state]}" for state in others]
    if info.states.get("UDP"):
        states.append(f"UDP {info.states['UDP']}")
    if states:
        parts.append(Text("  ".join(states)))
    snapshot = info.snapshot
    if snapshot is not None and snapshot.hidden_note:
        parts.append(Text(snapshot.hidden_note, "italic"))
    if snapshot is not None:
        parts.append(Text(f"scan {snapshot.scan_ms:.0f} ms"))
    every = f"every {seconds_text(info.interval)} s"
    if info.interval > info.requested_interval + 1e-9:
        every += f" (slowed from {seconds_text(info.requested_interval)} s: slow scans)"
    parts.append(Text(every))
    arrow = "▼" if info.spec.descending else "▲"
    parts.append(Text(f"sort: {COLUMN_TITLES.get(info.spec.column, info.spec.column)} {arrow}"))
    if not info.spec.filter.is_empty:
        parts.append(Text.assemble("filter: ", (visible(info.spec.filter.text), "bold")))
    if info.spec.listening_only:
        parts.append(Text("listening only", "bold"))
    if info.resolving:
        parts.append(Text("host names on"))
    if info.outcome:
        parts.append(Text.assemble("last kill: ", (visible(info.outcome), "bold")))
    for i, part in enumerate(parts):
        if i:
            out.append(SEPARATOR, "dim")
        out.append_text(part)
    return out


def banner_text(snapshot: Snapshot | None, interval: float) -> Text | None:
    """The banner above the table: a scan error (with what is shown instead) or a partial-result warning."""
    if snapshot is None:
        return None
    if snapshot.error:
        out = Text()
        out.append(" ⚠ ", "bold")
        out.append(visible(snapshot.error), "bold")
        if snapshot.sockets:
            taken = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
            out.append(f" — showing the last good scan, from {taken}")
        out.append(f"; retrying every {seconds_text(interval)} s")
        return out
    if snapshot.warning:
        return Text.assemble((" ⓘ ", "bold"), visible(snapshot.warning))
    return None


class Banner(Static):
    """The banner above the table: a scan error or a partial-result warning, hidden when there is neither."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._shown: tuple[str | None, bool] | None = None

    def show(self, snapshot: Snapshot | None, interval: float) -> None:
        """Show what :func:`banner_text` says about ``snapshot``; nothing is redrawn when that did not change.

        Usually there is no banner at all: updating it anyway would cost a layout pass on every refresh,
        6-8 ms at 160x50 with the detail pane open (``python bench/bench_ui_tricks.py``).
        """
        text = banner_text(snapshot, interval)
        error = snapshot is not None and snapshot.error is not None
        shown = (text.plain if text is not None else None, error)
        if shown == self._shown:
            return
        self._shown = shown
        self.set_class(text is not None, "shown")
        self.set_class(error, "error")
        self.update(text if text is not None else "")
