"""``portmon close``: close one TCP connection (not its process), after showing it and asking."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from portmon.cli.context import CommandFailed, Context, UsageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# What run() needs is imported there: this module is imported to build the parser for every command.


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``close`` and return its runner."""
    p = subs.add_parser(
        "close",
        help="close one TCP connection, not the process holding it (Linux, root)",
        description="Close the TCP connection from LOCAL to REMOTE (ADDR:PORT, or [V6ADDR]:PORT) the way "
        "'ss -K' does: the kernel aborts that one socket (SOCK_DESTROY), its peer gets a reset, and the "
        "process holding it goes on. Shows the connection and its holders and asks first; the connection is "
        "named by its kernel cookie, so a newer one on the same addresses is never hit, and a re-scan "
        "confirms it is gone. Never closes a listening socket. Needs root (CAP_NET_ADMIN) and a kernel with "
        "CONFIG_INET_DIAG_DESTROY. Exit 0 when closed (or, with --dry-run, found), 1 when there is no such "
        "connection or it could not be closed, 2 on bad input, for a listening socket, or when confirmation "
        "is needed but there is no terminal to ask on.",
    )
    p.add_argument("local", metavar="LOCAL", help="the connection's local end, ADDR:PORT or [V6ADDR]:PORT")
    p.add_argument("remote", metavar="REMOTE", help="its remote end, ADDR:PORT or [V6ADDR]:PORT")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("-n", "--dry-run", action="store_true", help="show the connection; close nothing")
    p.add_argument("--json", action="store_true", help="one JSON object describing the connection and the outcome")
    return "close", run


def _ask(question: str, out: TextIO) -> bool:
    """Ask on the terminal; only an explicit yes counts."""
    out.write(question + " [y/N] ")
    out.flush()
    answer = sys.stdin.readline()
    if not answer:
        out.write("\n")
    return answer.strip().lower() in ("y", "yes")


def run(ctx: Context) -> int:
    """Find the connection, confirm, close it and check; see the parser's description for exit codes."""
    from portmon.actions.close import EndpointError, close_connection, parse_endpoint, plan_close
    from portmon.output import socket_record, to_json
    from portmon.query.events import endpoints_text
    from portmon.textsafe import safe

    args: argparse.Namespace = ctx.args
    try:
        local, remote = parse_endpoint(args.local), parse_endpoint(args.remote)
    except EndpointError as exc:
        raise UsageError(str(exc)) from None
    doc: dict[str, Any] = {"local": args.local, "remote": args.remote, "dry_run": bool(args.dry_run)}

    def finish(verdict: str, message: str, code: int) -> int:
        if args.json:
            doc.update(verdict=verdict, message=message, exit_code=code)
            ctx.stdout.write(to_json(doc) + "\n")
            ctx.stdout.flush()
            return code
        if code == EXIT_OK:
            ctx.stdout.write(message + "\n")
            ctx.stdout.flush()
            return code
        raise CommandFailed(message, code)

    plan = plan_close(ctx.scan().sockets, local, remote)
    target = plan.target
    if target is None:
        return finish("refused" if plan.code == EXIT_USAGE else "not-found", plan.problem or "", plan.code)
    doc["socket"] = socket_record(target)
    doc["cookie"] = target.cookie
    doc["holders"] = [{"pid": h.pid, "process": h.name, "user": h.user} for h in target.holders]
    listing = [f"close tcp{target.family} {endpoints_text(target)} {target.state}"]
    for h in target.holders:
        listing.append(f"  held by pid {h.pid}  {safe(h.name or '?', 32)}  user {safe(h.user or '?', 32)}")
    if not target.holders:
        listing.append("  held by no process portmon can see (the kernel still has it)")
    talk = ctx.stderr if args.json else ctx.stdout
    if args.dry_run:
        if not args.json:
            talk.write("\n".join(listing) + "\n")
        return finish("dry-run", "dry run: nothing closed", EXIT_OK)
    if not args.yes:
        if not sys.stdin.isatty():
            message = "confirmation needed: stdin is not a terminal; pass --yes to close the connection"
            if args.json:
                return finish("confirmation-needed", message, EXIT_USAGE)
            raise UsageError(message)
        talk.write("\n".join(listing) + "\n")
        if not _ask("Close this connection?", talk):
            return finish("cancelled", "cancelled: nothing closed", EXIT_FAILED)
    outcome = close_connection(target, ctx.collector().scan)
    doc["closed"] = outcome.closed
    doc["errno"] = outcome.errno
    if outcome.closed:
        return finish("closed", f"closed: {endpoints_text(target)} is gone from the socket table", EXIT_OK)
    return finish("failed", f"not closed: {outcome.error}", EXIT_FAILED)
