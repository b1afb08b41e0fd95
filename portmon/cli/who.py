"""``portmon who PORT``: every process holding a port, with the service registered for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.model import OWNER_HIDDEN, OWNER_NOTES, OWNER_UNSEEN, Socket
from portmon.output import endpoint, format_table, holder_records, to_json
from portmon.ownership.view import Ownership, managed_by_text, managers_json
from portmon.portspec import PortSpecError, parse_port_spec, sockets_on_port
from portmon.query.sorting import sort_sockets
from portmon.registry import port_range
from portmon.textsafe import safe


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``who`` and return its runner."""
    p = subs.add_parser(
        "who",
        help="which processes hold a port",
        description="Show every process holding PORT (all holders of a shared listener), the service "
        "registered for it and its range class. Exit 0 when held, 1 when nobody holds it, 2 on bad input.",
    )
    p.add_argument("port", metavar="PORT[/tcp|/udp]")
    p.add_argument("--json", action="store_true", help="one JSON object, also when nobody holds the port")
    return "who", run


def _managed(own: Ownership, sockets: Sequence[Socket]) -> list[Socket]:
    """One socket per distinct main holder, in order (ownership: whose managers to name)."""
    seen: dict[int, Socket] = {}
    for s in sockets:
        if s.holders:
            seen.setdefault(s.holders[0].pid, s)
    return list(seen.values())


def _manager_lines(own: Ownership, managed: Sequence[Socket]) -> list[str]:
    """``managed by systemd unit nginx.service`` per main holder that has a manager (ownership)."""
    lines = []
    for s in managed:
        text = managed_by_text(own.socket_managers(s))
        if text:
            lines.append(f"managed by {text}" if len(managed) == 1 else f"pid {s.pid} managed by {text}")
    return lines


def run(ctx: Context) -> int:
    """Print the holders; the exit code says whether anybody holds the port."""
    try:
        spec = parse_port_spec(ctx.args.port)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    registry = ctx.registry()
    snap = ctx.scan()
    own = Ownership()
    sockets = own.order(sort_sockets(sockets_on_port(snap.sockets, spec), "proto"))
    managed = _managed(own, sockets)
    held = any(s.holders or s.owner_note in (OWNER_HIDDEN, OWNER_UNSEEN) for s in sockets)
    service = registry.service_for(spec.port, spec.proto)
    rng = port_range(spec.port)
    if ctx.args.json:
        doc = {
            "port": spec.port,
            "proto": spec.proto,
            "service": service,
            "range": rng,
            "holders": holder_records(sockets),
            "manager": managers_json(own.socket_managers(managed[0])) if managed else None,
        }
        ctx.stdout.write(to_json(doc) + "\n")
        return 0 if held else 1
    title = f"{spec} {safe(service) if service else '(no registered service)'}, {rng} port"
    lines = [title]
    if not sockets:
        lines.append("nobody holds this port")
    else:
        rows = []
        for s in sockets:
            for h in s.holders or (None,):
                rows.append(
                    (
                        "-" if h is None else str(h.pid),
                        "-" if h is None else safe(h.name or "?", 32),
                        "-" if h is None else safe(h.user or "?", 16),
                        s.proto_label,
                        endpoint(s.local_addr, s.local_port, s.family),
                        endpoint(s.remote_addr, s.remote_port, s.family),
                        s.state or "",
                        "" if h is not None else OWNER_NOTES.get(s.owner_note or "", ""),
                    )
                )
        lines.append(format_table(("PID", "PROCESS", "USER", "PROTO", "LOCAL", "REMOTE", "STATE", "NOTE"), rows))
        lines.extend(_manager_lines(own, managed))
        if not held:
            lines.append(
                "no process holds this port: only kernel-owned sockets (TIME_WAIT) remain; they clear by themselves"
            )
    ctx.stdout.write("\n".join(lines) + "\n")
    return 0 if held else 1
