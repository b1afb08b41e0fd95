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
from portmon.ui.traffic import Traffic
from portmon.ui.traffictext import status_units
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


NOTICE_SECONDS = 8.0
"""How long a one-shot notice ("last kill: ...") stays bold in the status line."""
NOTICE_FADE_SECONDS = 20.0
"""When it leaves the status line (dimmed from NOTICE_SECONDS on)."""
STATUS_LINES = 2


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """Everything the status line shows, gathered by the screen."""

    shown: int
    total: int
    states: Mapping[str, int]
    """Count per state of the sockets shown (all of them when nothing is filtered)."""
    snapshot: Snapshot | None
    interval: float
    requested_interval: float
    paused: bool
    spec: ViewSpec
    resolving: bool = False
    outcome: str | None = None
    outcome_age: float = 0.0
    """Seconds since the outcome was reported: it fades, then goes."""
    traffic: Traffic | None = None
    """Machine TX/RX totals and listen overflows/drops since the last scan."""


@dataclass(frozen=True, slots=True)
class Part:
    """One unit of the status line: never split across lines; the highest ``priority`` number goes first."""

    text: Text
    priority: int
    separator: str = SEPARATOR


def _narrowed(spec: ViewSpec) -> bool:
    return not spec.filter.is_empty or spec.listening_only


def status_parts(info: StatusInfo) -> list[Part]:
    """The status line's units in display order, each with its priority (0: kept longest)."""
    parts: list[Part] = []
    if info.paused:
        parts.append(Part(Text(" PAUSED ", "reverse bold"), 0))
    if info.snapshot is None:
        parts.append(Part(Text("scanning…", "bold"), 0))
    else:
        count = f"{info.shown}/{info.total} sockets" + (" shown" if _narrowed(info.spec) else "")
        parts.append(Part(Text(count, "bold"), 0))
    states = [f"{_SHORT.get(state, state)} {info.states[state]}" for state in STATE_ORDER if info.states.get(state)]
    others = sorted(s for s in info.states if s not in STATE_ORDER and s != "UDP")
    states += [f"{visible(state)} {info.states[state]}" for state in others]
    if info.states.get("UDP"):
        states.append(f"UDP {info.states['UDP']}")
    for i, state in enumerate(states):
        parts.append(Part(Text(state), 1, SEPARATOR if i == 0 else "  "))
    if not info.spec.filter.is_empty:
        parts.append(Part(Text.assemble("filter: ", (visible(info.spec.filter.text), "bold")), 2))
    if info.spec.listening_only:
        parts.append(Part(Text("listening only", "bold"), 2))
    snapshot = info.snapshot
    if snapshot is not None:
        # Remote hosts (--host): how each one is read (portmon stream or agentless ss), or that it fails.
        hosts = [f"{visible(name[5:])} {visible(mode)}" for name, mode in snapshot.extra if name.startswith("host ")]
        if hosts:
            parts.append(Part(Text("hosts: " + ", ".join(hosts)), 2))
    if info.outcome and info.outcome_age < NOTICE_FADE_SECONDS:
        style = "bold" if info.outcome_age < NOTICE_SECONDS else "dim"
        label = ("last kill: ", "" if style == "bold" else "dim")
        parts.append(Part(Text.assemble(label, (visible(info.outcome), style)), 3))
    parts.extend(Part(text, priority) for text, priority in status_units(info.traffic))
    arrow = "▼" if info.spec.descending else "▲"
    parts.append(Part(Text(f"sort: {COLUMN_TITLES.get(info.spec.column, info.spec.column)} {arrow}"), 4))
    every = f"every {seconds_text(info.interval)} s"
    if info.interval > info.requested_interval + 1e-9:
        every += f" (slowed from {seconds_text(info.requested_interval)} s: slow scans)"
    parts.append(Part(Text(every), 5))
    snapshot = info.snapshot
    if snapshot is not None and snapshot.hidden_note:
        parts.append(Part(Text(snapshot.hidden_note, "italic"), 6))
    if snapshot is not None:
        parts.append(Part(Text(f"scan {snapshot.scan_ms:.0f} ms"), 7))
    if info.resolving:
        parts.append(Part(Text("host names on"), 8))
    return parts


def _pack(parts: list[Part], width: int) -> list[list[Part]]:
    """Parts laid out greedily on lines of ``width`` cells: each whole on one line."""
    lines: list[list[Part]] = []
    used = 0
    for part in parts:
        size = part.text.cell_len
        if lines and lines[-1] and used + len(part.separator) + size <= width:
            lines[-1].append(part)
            used += len(part.separator) + size
        else:
            lines.append([part])
            used = size
    return lines


def layout_status(parts: list[Part], width: int | None, lines: int = STATUS_LINES) -> Text:
    """``parts`` on at most ``lines`` lines of ``width`` cells, none split; what does not fit is dropped,
    the highest priority number first (the later part first among equals). ``width`` None: one line."""
    kept = list(parts)
    if width is None or width <= 0:
        packed = [kept]
    else:
        packed = _pack(kept, width)
        while len(packed) > lines and len(kept) > 1:
            drop = max(range(len(kept)), key=lambda i: (kept[i].priority, i))
            del kept[drop]
            packed = _pack(kept, width)
    out = Text(no_wrap=True, overflow="ellipsis")
    for n, line in enumerate(packed[:lines] if width else packed):
        if n:
            out.append("\n")
        for i, part in enumerate(line):
            if i:
                out.append(part.separator, "dim")
            out.append_text(part.text)
    return out


def status_text(info: StatusInfo, width: int | None = None) -> Text:
    """The status line as rich Text (untrusted parts, such as the filter, shown literally), laid out for
    ``width`` cells (None: every part on one line)."""
    return layout_status(status_parts(info), width)


class StatusLine(Static):
    """The status line: two lines of whole units (a number is never split from its unit), the least
    important dropped when they do not fit the width."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.info: StatusInfo | None = None

    def show(self, info: StatusInfo) -> None:
        """Show ``info`` laid out for the current width."""
        self.info = info
        width = self.content_region.width
        # Fixed size (two lines, the bar's width): no layout pass for a status change, which would
        # cost 6-8 ms at 160x50 with the detail pane open (python bench/bench_ui_tricks.py).
        self.update(status_text(info, width or None), layout=False)

    def on_resize(self) -> None:
        if self.info is not None:
            self.show(self.info)


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
