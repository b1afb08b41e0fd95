"""The detail pane: who holds the selected socket, what that process is, and every socket it holds."""

from __future__ import annotations

import io
import time
from typing import ClassVar, Optional, Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from portmon.model import (
    OWNER_HIDDEN,
    OWNER_NOTES,
    TIME_WAIT,
    Socket,
)
from portmon.procinfo import ProcessDetail, uptime_text
from portmon.textsafe import safe, visible

LABEL_WIDTH = 10
MAX_SOCKETS_LISTED = 200
MAX_FIELD_CHARS = 2000
"""Characters of a command line or path shown; a process may have a megabyte of arguments."""
MAX_NAME_CHARS = 100
"""Characters of a process, user or service name shown (names come from other processes and files)."""


def endpoint(addr: Optional[str], port: Optional[int], family: int) -> str:
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

    def add(self, label: str, value: Optional[str], *, denied: bool = False, style: str = "") -> None:
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


def describe(
    sock: Optional[Socket],
    held: Sequence[Socket],
    process: Optional[ProcessDetail],
    now: float,
    closed: bool = False,
) -> Group:
    """The detail pane's content for ``sock``: ``held`` are the sockets of its primary holder, ``process``
    what was read about that holder (None while the read is in flight); ``closed`` says the socket
    has just gone away and is only still shown.

    Everything that comes from other processes is added as plain text, never parsed as markup.
    """
    parts: list[RenderableType] = []
    if sock is None:
        parts.append(Text("No socket selected.", "dim italic"))
        return Group(*parts)
    parts.append(_heading("Socket"))
    parts.append(socket_line(sock))
    if closed:
        parts.append(Text("Closed: this socket has just gone away; its row leaves the table in a few seconds.", "bold red"))
    if not sock.holders:
        parts.append(Text())
        parts.append(_heading("No owner"))
        parts.append(Text(_owner_explanation(sock)))
        return Group(*parts)
    if len(sock.holders) > 1:
        parts.append(Text())
        parts.append(_heading(f"Held by {len(sock.holders)} processes", "(all must exit to free it)"))
        holders = Table.grid(padding=(0, 2))
        holders.add_column(justify="right", style="bold", no_wrap=True)
        holders.add_column(overflow="fold")
        holders.add_column(style="dim", overflow="fold")
        for holder in sock.holders:
            holders.add_row(
                Text(str(holder.pid)),
                Text(safe(holder.name, MAX_NAME_CHARS) if holder.name is not None else "?"),
                Text(safe(holder.user, MAX_NAME_CHARS) if holder.user else ""),
            )
        parts.append(holders)
    holder = sock.holders[0]
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
    parts.append(Text())
    parts.append(_heading(f"Sockets held by pid {holder.pid}", f"({len(held)})"))
    lines = Text()
    for i, other in enumerate(held[:MAX_SOCKETS_LISTED]):
        if i:
            lines.append("\n")
        lines.append("  ")
        lines.append_text(socket_line(other))
    if len(held) > MAX_SOCKETS_LISTED:
        lines.append(f"\n  … and {len(held) - MAX_SOCKETS_LISTED} more", "dim")
    parts.append(lines)
    return Group(*parts)


def _process_fields(fields: _Fields, process: ProcessDetail, now: float) -> None:
    denied = set(process.denied)
    pid_line = str(process.pid)
    if process.status:
        pid_line += f"  ({visible(process.status)})"
    fields.add("PID", pid_line)
    fields.add("Name", safe(process.name, MAX_NAME_CHARS) if process.name is not None else None, denied="name" in denied, style="bold")
    if process.ancestors:
        chain = "  ←  ".join(f"{pid} {safe(name, MAX_NAME_CHARS) if name is not None else '?'}" for pid, name in process.ancestors)
        fields.add("Parents", chain)
    else:
        fields.add("Parents", str(process.ppid) if process.ppid is not None else None, denied="ppid" in denied)
    fields.add("Exe", clipped(process.exe) if process.exe is not None else None, denied="exe" in denied)
    if process.cmdline is None:
        fields.add("Command", None, denied="cmdline" in denied)
    else:
        fields.add("Command", clipped(" ".join(process.cmdline)) if process.cmdline else "(none)")
    fields.add("Cwd", clipped(process.cwd) if process.cwd is not None else None, denied="cwd" in denied)
    fields.add("User", safe(process.user, MAX_NAME_CHARS) if process.user is not None else None, denied="user" in denied)
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


class DetailPane(VerticalScroll, can_focus=True):
    """Shows :func:`describe` for the selected socket; the screen decides what to show."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back to the table", show=False),
    ]

    class BackRequested(Message):
        """Escape in the pane: the screen moves focus back to the table."""

    def compose(self) -> ComposeResult:
        yield Static(id="detail-text", markup=False)

    def show(self, content: RenderableType) -> None:
        """Replace the pane's content."""
        self._content = content
        self.query_one("#detail-text", Static).update(content)

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        return plain_text(getattr(self, "_content", Text()), width=400)

    def action_back(self) -> None:
        """Go back to the table."""
        self.post_message(self.BackRequested())
