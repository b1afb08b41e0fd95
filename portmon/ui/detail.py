"""The detail pane: who holds the selected socket, what that process is, and every socket it holds."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import ClassVar

from rich.console import Console, Group, RenderableType
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from portmon.model import (
    OWNER_HIDDEN,
    OWNER_NOTES,
    TIME_WAIT,
    Socket,
)
from portmon.ownership.families import Member, role_text, workers_label
from portmon.ownership.view import manager_facts
from portmon.procinfo import ProcessDetail, uptime_text
from portmon.textsafe import safe, visible
from portmon.ui.owners import OwnershipDetail

LABEL_WIDTH = 10
MAX_SOCKETS_LISTED = 200
"""Sockets of the holder listed in the pane; the rest are counted ("… and N more")."""
MAX_FIELD_CHARS = 2000
"""Characters of a command line or path shown; a process may have a megabyte of arguments."""
MAX_NAME_CHARS = 100
"""Characters of a process, user or service name shown (names come from other processes and files)."""


def endpoint(addr: str | None, port: int | None, family: int) -> str:
    """``addr:port`` with IPv6 addresses in brackets; "*" for a missing address."""
    if addr is None:
        return "*"
    text = visible(addr)
    if family == 6:
        text = f"[{text}]"
    return text if port is None else f"{text}:{port}"


def socket_line(sock: Socket) -> Text:
    """One socket as a line of text: protocol, endpoints, state and service names."""
    line = Text(no_wrap=False)
    line.append(f"{sock.proto_label:<5}", "bold")
    line.append(endpoint(sock.local_addr, sock.local_port, sock.family))
    if sock.local_service:
        line.append(f" ({safe(sock.local_service, MAX_NAME_CHARS)})", "dim")
    if sock.remote_addr is not None:
        line.append(" → ")
        line.append(endpoint(sock.remote_addr, sock.remote_port, sock.family))
        if sock.remote_service:
            line.append(f" ({safe(sock.remote_service, MAX_NAME_CHARS)})", "dim")
    if sock.state:
        line.append(f"  {visible(sock.state)}", "italic")
    return line


def clipped(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``visible(text)`` cut to ``limit`` characters, saying how long the whole text was when cut.

    Only the head is escaped, so a huge argument costs no more to show than a short one.
    """
    if len(text) <= limit:
        shown = visible(text)
        if len(shown) <= limit:
            return shown
    return f"{visible(text[:limit])[:limit]}… ({len(text):,} characters in all)"


def size(n: int) -> str:
    """Bytes as "512 KiB", "84.0 MiB", ..."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class _Fields:
    """Label/value rows laid out as a grid, so long values wrap under themselves, not under the label."""

    def __init__(self) -> None:
        self.table = Table.grid(padding=(0, 1))
        self.table.add_column(style="bold", no_wrap=True, min_width=LABEL_WIDTH - 1)
        self.table.add_column(overflow="fold")

    def add(self, label: str, value: str | None, *, denied: bool = False, style: str = "") -> None:
        if value is None:
            cell = Text("not permitted (run as root)" if denied else "unknown", "dim italic")
        else:
            cell = Text(value, style, overflow="fold")
        self.table.add_row(Text(label), cell)


def _owner_explanation(sock: Socket) -> str:
    if sock.owner_note == OWNER_HIDDEN:
        return (
            "A process holds this socket, but it belongs to another user and portmon may not see which. "
            "Run portmon as root (sudo portmon) to see the owner."
        )
    if sock.state == TIME_WAIT:
        return (
            "TIME_WAIT: the connection is closed. The kernel keeps it for up to a minute (2×MSL) so late "
            "packets are not mistaken for a new connection; no process holds it and it clears by itself. "
            "A server can bind the port again meanwhile with SO_REUSEADDR."
        )
    return OWNER_NOTES.get(sock.owner_note or "", "no process holds this socket") + "."


def _heading(text: str, note: str = "") -> Text:
    out = Text()
    out.append(text, "bold underline")
    if note:
        out.append(f" {note}", "dim")
    return out


def held_sockets(
    sockets: Sequence[Socket], pid: int, limit: int = MAX_SOCKETS_LISTED
) -> tuple[tuple[Socket, ...], int]:
    """The first ``limit`` sockets that ``pid`` holds, in snapshot order, and how many it holds in all."""
    # Plain loops, no generator per socket: this runs over every socket of the snapshot.
    found: list[Socket] = []
    count = 0
    for sock in sockets:
        for holder in sock.holders:
            if holder.pid == pid:
                count += 1
                if count <= limit:
                    found.append(sock)
                break
    return tuple(found), count


def held_lines(held: Sequence[Socket], total: int | None = None) -> list[Text]:
    """The lines listing ``held`` (at most :data:`MAX_SOCKETS_LISTED`), then "… and N more" when ``total`` is larger."""
    total = len(held) if total is None else total
    lines: list[Text] = []
    for other in held[:MAX_SOCKETS_LISTED]:
        line = Text("  ")
        line.append_text(socket_line(other))
        lines.append(line)
    listed = min(len(held), MAX_SOCKETS_LISTED)
    if total > listed:
        lines.append(Text(f"  … and {total - listed} more", "dim"))
    return lines


def describe(
    sock: Socket | None,
    held: Sequence[Socket],
    process: ProcessDetail | None,
    now: float,
    closed: bool = False,
    *,
    held_total: int | None = None,
    list_held: bool = True,
    members: Sequence[Member] = (),
    owner: OwnershipDetail | str | None = None,
) -> Group:
    """The detail pane's content for ``sock``: ``held`` are the sockets of its primary holder, ``process``
    what was read about that holder (None while the read is in flight); ``closed`` says the socket
    has just gone away and is only still shown.

    ``held_total`` is how many sockets the holder has when ``held`` is only the first of them. With
    ``list_held`` False the list itself is left out (the pane shows it with :class:`HeldList`).
    ``members`` are the holders in family order with their roles (the main holder first, as ``who``
    lists them); ``owner`` what manages the main holder (a note while it is read; None: no section).
    Everything that comes from other processes is added as plain text, never parsed as markup.
    """
    parts: list[RenderableType] = []
    if sock is None:
        parts.append(Text("No socket selected.", "dim italic"))
        return Group(*parts)
    parts.append(_heading("Socket"))
    parts.append(socket_line(sock))
    if closed:
        gone = "Closed: this socket has just gone away; its row leaves the table in a few seconds."
        parts.append(Text(gone, "bold red"))
    if not sock.holders:
        parts.append(Text())
        parts.append(_heading("No owner"))
        parts.append(Text(_owner_explanation(sock)))
        return Group(*parts)
    if len(sock.holders) > 1:
        parts.append(Text())
        family = workers_label(members) if members else ""
        note = f"({family}; all must exit to free it)" if family else "(all must exit to free it)"
        parts.append(_heading(f"Held by {len(sock.holders)} processes", note))
        holders = Table.grid(padding=(0, 2))
        holders.add_column(justify="right", style="bold", no_wrap=True)
        holders.add_column(overflow="fold")
        holders.add_column(style="dim", overflow="fold")
        holders.add_column(style="italic", overflow="fold")
        roles = {m.holder.pid: role_text(m) for m in members}
        for holder in [m.holder for m in members] if members else sock.holders:
            holders.add_row(
                Text(str(holder.pid)),
                Text(safe(holder.name, MAX_NAME_CHARS) if holder.name is not None else "?"),
                Text(safe(holder.user, MAX_NAME_CHARS) if holder.user else ""),
                Text(roles.get(holder.pid, "")),
            )
        parts.append(holders)
    holder = members[0].holder if members else sock.holders[0]
    parts.append(Text())
    parts.append(_heading("Process"))
    fields = _Fields()
    if process is None or process.error is not None:
        fields.add("PID", str(holder.pid))
        fields.add("Name", safe(holder.name, MAX_NAME_CHARS) if holder.name is not None else None)
        parts.append(fields.table)
        if process is None:
            parts.append(Text("reading process details…", "dim italic"))
        else:
            parts.append(Text(visible(process.error or ""), "italic red"))
    else:
        _process_fields(fields, process, now)
        parts.append(fields.table)
    if owner is not None:
        parts.append(Text())
        parts.append(_heading("Managed by"))
        parts.extend(_owner_parts(owner))
    total = len(held) if held_total is None else held_total
    parts.append(Text())
    parts.append(_heading(f"Sockets held by pid {holder.pid}", f"({total})"))
    if list_held:
        parts.append(Text("\n").join(held_lines(held, total)))
    return Group(*parts)


def _owner_parts(owner: OwnershipDetail | str) -> list[RenderableType]:
    """The managers' facts (unit, restart policy, container, stop command) and the parent chain, supervisors marked."""
    if isinstance(owner, str):
        return [Text(owner, "dim italic")]
    parts: list[RenderableType] = []
    if not owner.managers:
        parts.append(Text("nothing found that starts it again (no unit, container or supervisor)", "dim italic"))
    fields = _Fields()
    for label, value in manager_facts(owner.managers):
        fields.add(label, safe(value, MAX_FIELD_CHARS))
    if owner.chain:
        chain = Text()
        for i, (pid, name, supervisor) in enumerate(owner.chain):
            if i:
                chain.append("  ←  ")
            chain.append(f"{pid} {safe(name, MAX_NAME_CHARS)}", "bold" if supervisor else "")
            if supervisor:
                chain.append(" ◂ manager", "italic")
        fields.table.add_row(Text("parents"), chain)
    parts.append(fields.table)
    return parts


def _process_fields(fields: _Fields, process: ProcessDetail, now: float) -> None:
    denied = set(process.denied)
    pid_line = str(process.pid)
    if process.status:
        pid_line += f"  ({visible(process.status)})"
    fields.add("PID", pid_line)
    name = safe(process.name, MAX_NAME_CHARS) if process.name is not None else None
    fields.add("Name", name, denied="name" in denied, style="bold")
    if process.ancestors:
        chain = "  ←  ".join(
            f"{pid} {safe(parent, MAX_NAME_CHARS) if parent is not None else '?'}" for pid, parent in process.ancestors
        )
        fields.add("Parents", chain)
    else:
        fields.add("Parents", str(process.ppid) if process.ppid is not None else None, denied="ppid" in denied)
    fields.add("Exe", clipped(process.exe) if process.exe is not None else None, denied="exe" in denied)
    if process.cmdline is None:
        fields.add("Command", None, denied="cmdline" in denied)
    else:
        fields.add("Command", clipped(" ".join(process.cmdline)) if process.cmdline else "(none)")
    fields.add("Cwd", clipped(process.cwd) if process.cwd is not None else None, denied="cwd" in denied)
    user = safe(process.user, MAX_NAME_CHARS) if process.user is not None else None
    fields.add("User", user, denied="user" in denied)
    if process.create_time is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(process.create_time))
        fields.add("Started", f"{started}  (up {uptime_text(now - process.create_time)})")
    else:
        fields.add("Started", None)
    if process.cpu_percent is None:
        cpu = None if "cpu" in denied else "measuring…"
    else:
        cpu = f"{process.cpu_percent:.1f} %"
    fields.add("CPU", cpu, denied="cpu" in denied)
    fields.add("Memory", size(process.rss) if process.rss is not None else None, denied="memory" in denied)
    fields.add("Threads", str(process.threads) if process.threads is not None else None, denied="threads" in denied)


def plain_text(renderable: RenderableType, width: int = 100) -> str:
    """A renderable as plain text (what the pane shows, without colours), for tests and debugging."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.export_text()


class HeldList(Widget):
    """The holder's sockets, one line each, rendered line by line: only the lines on screen are drawn.

    As one ``Static`` this list cost a full text layout of up to 200 wrapped lines on every refresh;
    here a refresh redraws the visible lines only, and lines too long for the pane end with "…".
    """

    DEFAULT_CSS = """
    HeldList { height: auto; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.lines: list[Text] = []
        """The lines shown (for tests and ``DetailPane.text``)."""
        self._strips: dict[tuple[int, int], Strip] = {}

    def set_lines(self, lines: list[Text]) -> None:
        """Show ``lines``; the layout is redone only when their number changed."""
        relayout = len(lines) != len(self.lines)
        self.lines = lines
        self._strips.clear()
        self.refresh(layout=relayout)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        width = self.content_region.width
        base = self.rich_style
        if not 0 <= y < len(self.lines):
            return Strip.blank(width, base)
        strip = self._strips.get((y, width))
        if strip is None:
            line = self.lines[y].copy()
            line.no_wrap = True
            line.truncate(width, overflow="ellipsis")
            segments = list(Segment.apply_style(line.render(self.app.console), base))
            strip = Strip(segments).crop_extend(0, width, base)
            self._strips[(y, width)] = strip
        return strip


class DetailPane(VerticalScroll, can_focus=True):
    """Shows :func:`describe` for the selected socket; the screen decides what to show."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back to the table", show=False),
    ]

    DEFAULT_CSS = """
    DetailPane #detail-traffic { height: auto; display: none; }
    DetailPane #detail-traffic.shown { display: block; }
    DetailPane #detail-rate { height: 2; display: none; }
    DetailPane #detail-rate.shown { display: block; }
    """

    class BackRequested(Message):
        """Escape in the pane: the screen moves focus back to the table."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-text", markup=False)
        yield HeldList(id="detail-held")
        # Traffic last: the head ends with the heading of the held sockets' list, which stays right
        # above it, and the process's identity stays where the reader finds it without traffic.
        yield Static(id="detail-traffic", markup=False)
        yield Sparkline([], id="detail-rate")

    def show(self, content: RenderableType, held: list[Text] | None = None) -> None:
        """Replace the pane's content: ``content`` on top, then the ``held`` lines (see :func:`held_lines`)."""
        self.show_head(content)
        self.show_held(held or [])

    def show_head(self, content: RenderableType, layout: bool = True) -> None:
        """Replace what is shown above the list of held sockets (``layout=False``: it keeps its size)."""
        self._content = content
        self.query_one("#detail-text", Static).update(content, layout=layout)

    def show_traffic(self, content: RenderableType | None, series: Sequence[float] | None) -> None:
        """Show the traffic section (None: none) and the process's rate history (None or too short: no sparkline)."""
        self._traffic = content
        section = self.query_one("#detail-traffic", Static)
        section.set_class(content is not None, "shown")
        section.update(content if content is not None else "")
        spark = self.query_one("#detail-rate", Sparkline)
        shown = series is not None and len(series) >= 2
        spark.set_class(shown, "shown")
        spark.data = list(series) if shown and series is not None else []

    @property
    def rate_series(self) -> list[float]:
        """The sparkline's data (for tests)."""
        return list(self.query_one("#detail-rate", Sparkline).data or [])

    def show_held(self, lines: list[Text]) -> None:
        """Replace the list of held sockets."""
        self.query_one("#detail-held", HeldList).set_lines(lines)

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        head = plain_text(getattr(self, "_content", Text()), width=400)
        lines = self.query_one("#detail-held", HeldList).lines
        traffic = getattr(self, "_traffic", None)
        tail = plain_text(traffic, width=400) if traffic is not None else ""
        return head + "".join(line.plain + "\n" for line in lines) + tail

    def action_back(self) -> None:
        """Go back to the table."""
        self.post_message(self.BackRequested())
