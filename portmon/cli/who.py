"""``portmon who PORT...``: every process holding a port, with its command line and the service registered for it."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.collect.fdwalk import own_socket_inodes
from portmon.model import OWNER_HIDDEN, OWNER_KERNEL, OWNER_NOTES, OWNER_UNSEEN, Holder, Socket
from portmon.output import LOCAL_HOST_LABEL, endpoint, format_table, holder_records, netns_label, netns_notes, to_json
from portmon.ownership.families import family, proc_lookup, role_text
from portmon.ownership.view import Ownership, managed_by_text, managers_json
from portmon.portspec import PORT_HELP, PortSpec, PortSpecError, parse_port_specs, sockets_on_port
from portmon.query.sorting import sort_sockets
from portmon.registry import Registry, port_range
from portmon.textsafe import safe

PIPE_WIDTH = 300
"""Characters of a command line shown when stdout is not a terminal (there is no width to fit)."""

HEADERS = ("PID", "PROCESS", "USER", "PROTO", "LOCAL", "REMOTE", "STATE", "NOTE", "COMMAND")

CommandLines = Callable[[Holder], "Sequence[str] | None"]
"""How ``who`` reads a holder's command line (``procinfo.command_line``; tests inject one)."""


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``who`` and return its runner."""
    p = subs.add_parser(
        "who",
        help="which processes hold a port",
        description="Show every process holding PORT (all holders of a shared listener) with its command line, "
        "the service registered for the port and its range class. PORT is " + PORT_HELP + "; a service name "
        "stands for all of its ports, and several ports may be given (who 80 443). Connections the kernel "
        "keeps after a close (TIME_WAIT) are summed up in one line. Exit 0 when any given port is held, 1 when "
        "none is, 2 on bad input.",
    )
    p.add_argument("ports", nargs="+", metavar="PORT", help=PORT_HELP)
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per port (an array of them for several ports), also when nobody holds it",
    )
    return "who", run


def run(ctx: Context, command_line: CommandLines | None = None) -> int:
    """Print the holders of each port; the exit code says whether anybody holds any of them."""
    registry = ctx.registry()
    try:
        specs = parse_port_specs(ctx.args.ports, registry)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    snap = ctx.scan()
    own = Ownership()
    # Every network namespace's sockets on the port (each row says which): "who holds 8080?" in a container too.
    found = [
        (spec, own.order(sort_sockets(sockets_on_port(snap.sockets, spec, every_netns=True), "proto")))
        for spec in specs
    ]
    held = any(_is_held(sockets) for _, sockets in found)
    if ctx.args.json:
        docs = [
            dict(_document(spec, sockets, registry), manager=_manager_json(own, sockets)) for spec, sockets in found
        ]
        ctx.stdout.write(to_json(docs[0] if len(docs) == 1 else docs) + "\n")
        return 0 if held else 1
    if command_line is None:
        command_line = _read_command_line
    width = _width(ctx)
    sections = [
        _section(spec, sockets, registry, command_line, width) + _manager_lines(own, sockets) for spec, sockets in found
    ]
    ctx.stdout.write("\n\n".join("\n".join(lines) for lines in sections) + "\n")
    return 0 if held else 1


def _main_holders(sockets: Sequence[Socket]) -> list[Socket]:
    """One socket per distinct main holder, in order (ownership: whose managers to name)."""
    seen: dict[int, Socket] = {}
    for s in sockets:
        if s.holders:
            seen.setdefault(s.holders[0].pid, s)
    return list(seen.values())


def _manager_json(own: Ownership, sockets: Sequence[Socket]) -> dict[str, Any] | None:
    """The ``manager`` of the first main holder on the port (ownership), or None."""
    mains = _main_holders(sockets)
    return managers_json(own.socket_managers(mains[0])) if mains else None


def _manager_lines(own: Ownership, sockets: Sequence[Socket]) -> list[str]:
    """``managed by systemd unit nginx.service`` per main holder that has a manager (ownership)."""
    mains = _main_holders(sockets)
    lines = []
    for s in mains:
        text = managed_by_text(own.socket_managers(s))
        if text:
            lines.append(f"managed by {text}" if len(mains) == 1 else f"pid {s.pid} managed by {text}")
    return lines


def _is_held(sockets: Sequence[Socket]) -> bool:
    """A process holds one of the sockets, or one is held by a process portmon cannot see."""
    return any(s.holders or s.owner_note in (OWNER_HIDDEN, OWNER_UNSEEN) for s in sockets)


def _document(spec: PortSpec, sockets: Sequence[Socket], registry: Registry) -> dict[str, Any]:
    return {
        "port": spec.port,
        "proto": spec.proto,
        "service": registry.service_for(spec.port, spec.proto),
        "range": port_range(spec.port),
        "holders": holder_records(sockets),
    }


def _width(ctx: Context) -> int | None:
    """The terminal's width when stdout is one, else None."""
    try:
        if not ctx.stdout.isatty():
            return None
        return os.get_terminal_size(ctx.stdout.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


def _read_command_line(holder: Holder) -> Sequence[str] | None:
    # procinfo brings psutil: imported only when there is a holder to describe.
    from portmon.procinfo import command_line

    return command_line(holder.pid, holder.create_time)


def kernel_summary(sockets: Sequence[Socket]) -> str | None:
    """One line for the sockets only the kernel keeps: ``305 closed connections (TIME_WAIT), kernel-owned``."""
    states = Counter(s.state or "no state" for s in sockets if not s.holders and s.owner_note == OWNER_KERNEL)
    if not states:
        return None
    total = sum(states.values())
    parts = ", ".join(f"{state} {n}" if len(states) > 1 else state for state, n in sorted(states.items()))
    noun = "connection" if total == 1 else "connections"
    return f"{total} closed {noun} ({parts}), kernel-owned: no process holds them; they clear by themselves"


def _section(
    spec: PortSpec, sockets: Sequence[Socket], registry: Registry, command_line: CommandLines, width: int | None
) -> list[str]:
    service = registry.service_for(spec.port, spec.proto)
    title = f"{spec} {safe(service) if service else '(no registered service)'}, {port_range(spec.port)} port"
    lines = [title]
    shown = [s for s in sockets if s.holders or s.owner_note != OWNER_KERNEL]
    summary = kernel_summary(sockets)
    if not sockets:
        return [*lines, "nobody holds this port"]
    if shown:
        lines.extend(_table(shown, command_line, width))
        if summary:
            lines.append(f"and {summary}")
    if not _is_held(sockets):
        lines.append(f"no process holds this port: only {summary}" if summary else "no process holds this port")
    lines.extend(netns_notes(sockets))
    return lines


INHERITED_NOTE = "held only by portmon itself (an inherited copy): freed when portmon exits"


def _ownerless_note(sock: Socket, own: frozenset[int]) -> str:
    """Why ``sock`` has no holder: portmon's own inherited copy, or the collector's owner note."""
    if sock.host is None and sock.inode in own:
        return INHERITED_NOTE
    return OWNER_NOTES.get(sock.owner_note or "", "")


def _table(sockets: Sequence[Socket], command_line: CommandLines, width: int | None) -> list[str]:
    rows: list[list[str]] = []
    hosts: list[str] = []
    spaces: list[str] = []
    commands: dict[tuple[int, float | None], str] = {}
    # portmon is no socket's holder: a socket only its inherited copy holds is said to be that, not unseen.
    own = own_socket_inodes() if any(s.host is None and s.inode and not s.holders for s in sockets) else frozenset()
    lookup = proc_lookup()  # for a shared socket's roles: "main", "worker of 1290" (memoised for this run)
    for s in sockets:
        roles = (
            {m.holder.pid: role_text(m) for m in family(s.holders, lookup)}
            if len(s.holders) > 1 and s.host is None
            else {}
        )
        for h in s.holders or (None,):
            command = ""
            hosts.append(LOCAL_HOST_LABEL if s.host is None else safe(s.host, 32))
            spaces.append(netns_label(s.netns))
            if h is not None and s.host is None:  # a remote host's pid is not this machine's to read
                key = (h.pid, h.create_time)
                if key not in commands:
                    argv = command_line(h)
                    commands[key] = safe(" ".join(argv)) if argv else ""
                command = commands[key]
            rows.append(
                [
                    "-" if h is None else str(h.pid),
                    "-" if h is None else safe(h.name or "?", 32),
                    "-" if h is None else safe(h.user or "?", 16),
                    s.proto_label,
                    endpoint(s.local_addr, s.local_port, s.family),
                    endpoint(s.remote_addr, s.remote_port, s.family),
                    s.state or "",
                    roles.get(h.pid, "") if h is not None else _ownerless_note(s, own),
                    command,
                ]
            )
    # The command line takes what the other columns leave of the width (at least 20 characters).
    others = [max(len(HEADERS[i]), *(len(r[i]) for r in rows)) for i in range(len(HEADERS) - 1)]
    room = PIPE_WIDTH if width is None else max(20, width - sum(others) - 2 * (len(HEADERS) - 1))
    headers: tuple[str, ...] = HEADERS
    if any(s.netns is not None for s in sockets):  # another network namespace: which one each row is in
        # Before the command line, which takes the room left: the namespace's label is cut to 48 characters.
        headers = (*HEADERS[:-1], "NETNS", HEADERS[-1])
        room = max(20, room - max(len("NETNS"), *map(len, spaces)) - 2)
        rows = [[*r[:-1], ns, r[-1]] for r, ns in zip(rows, spaces, strict=True)]
    for r in rows:
        r[-1] = safe(r[-1], room)
    if any(s.host is not None for s in sockets):  # remote hosts (--host): which one each row is on
        return format_table(("HOST", *headers), [(h, *r) for h, r in zip(hosts, rows, strict=True)]).split("\n")
    return format_table(headers, [tuple(r) for r in rows]).split("\n")
