"""``portmon kill PORT``: signal every process holding a port, after showing them and asking, then verify."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import TYPE_CHECKING, Any, TextIO

from portmon.actions.kill.signals import DEFAULT_TIMEOUT, SIGNALS, parse_signal, signal_name
from portmon.actions.kill.text import first_listed, socket_label
from portmon.actions.ownerless import backlog_of
from portmon.cli.context import Context, UsageError, positive_float
from portmon.model import OWNER_NOTES
from portmon.output import to_json
from portmon.portspec import PortSpecError, parse_port_spec, sockets_on_port
from portmon.textsafe import safe

if TYPE_CHECKING:
    from portmon.actions.kill.model import KillOutcome, KillPlan, Target
    from portmon.ownership.preflight import Preflight


EXIT_FREED = 0
EXIT_NOT_FREED = 1
EXIT_USAGE = 2

_WIDTH = 300
"""Characters of an executable path or command line shown before it is cut."""


def _signal_arg(text: str) -> int:
    try:
        return parse_signal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``kill`` and return its runner."""
    p = subs.add_parser(
        "kill",
        help="free a port: signal every process holding it, then check",
        description="Signal every process holding PORT (all holders of a shared listener), wait for them to exit "
        "and re-scan the port. Shows the holders and asks first; refuses pid 1, portmon and its ancestors, kernel "
        "threads and kernel-owned sockets (TIME_WAIT). Exit 0 when the port was freed (or, with --dry-run, when "
        "holders were found), 1 when nobody holds it, holders survived or a holder is refused, 2 on bad input or "
        "when confirmation is needed but there is no terminal to ask on.",
    )
    p.add_argument("port", metavar="PORT[/tcp|/udp]")
    p.add_argument(
        "--signal",
        type=_signal_arg,
        default=signal.SIGTERM,
        metavar="|".join(SIGNALS),
        help="the signal to send first (default TERM)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the holders to exit (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--force", action="store_true", help="send SIGKILL to holders that survive the first signal")
    p.add_argument(
        "--grace",
        type=positive_float,
        default=3.0,
        metavar="SECONDS",
        help="when a manager (systemd, a container, a supervisor, a shell loop) is expected to restart the holder, "
        "wait up to this long for it to bind the port again before judging (default 3)",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("-n", "--dry-run", action="store_true", help="show who would be signalled; signal nothing")
    p.add_argument("--json", action="store_true", help="one JSON object describing the holders and what happened")
    return "kill", run


def _target_record(t: Target) -> dict[str, Any]:
    return {
        "pid": t.pid,
        "create_time": t.identity.create_time,
        "started": t.started,
        "name": t.name,
        "user": t.user,
        "exe": t.exe,
        "cmdline": list(t.cmdline),
        "status": t.status,
        "ppid": t.ppid,
        "sockets": list(t.sockets),
    }


def _document(plan: KillPlan, sig: int, dry_run: bool) -> dict[str, Any]:
    return {
        "port": plan.spec.port,
        "proto": plan.spec.proto,
        "label": plan.label,
        "signal": signal_name(sig),
        "dry_run": dry_run,
        "sockets": [
            {
                "socket": socket_label(s),
                "pids": [h.pid for h in s.holders],
                "owner_note": s.owner_note,
            }
            for s in plan.sockets
        ],
        "targets": [_target_record(t) for t in plan.targets],
        "refusals": [{"kind": r.kind, "pid": r.pid, "reason": r.reason} for r in plan.refusals],
        "notes": list(plan.notes),
        "other_users": [{"pid": pid, "user": user} for pid, user in plan.other_users],
        "results": [],
        "verdict": None,
        "message": None,
        "still_held_by": [],
        "rebound_by": [],
        "exit_code": None,
        "manager": None,
        "preflight": None,
    }


def _finish(ctx: Context, doc: dict[str, Any], verdict: str, message: str, code: int) -> int:
    doc["verdict"] = verdict
    doc["message"] = message
    doc["exit_code"] = code
    ctx.stdout.write(to_json(doc) + "\n")
    return code


def _plan_text(plan: KillPlan) -> list[str]:
    """The holders, their sockets, refusals and notes, every untrusted field escaped."""
    lines: list[str] = []
    n = len(plan.targets)
    if plan.targets:
        lines.append(f"port {plan.label} is held by {n} process{'es' if n != 1 else ''}:")
        for t in plan.targets:
            lines.append(f"  pid {t.pid}  user {safe(t.user or '?', 32)}  started {t.started}")
            lines.append(f"    exe  {safe(t.exe or '?', _WIDTH)}")
            lines.append(f"    cmd  {safe(t.command, _WIDTH)}")
    if plan.sockets:
        lines.append("sockets:")
        shown, left = first_listed(plan.sockets, lambda s: s.listening)
        for s in shown:
            listener = backlog_of(s, plan.before)
            if s.holders:
                who = "held by " + ", ".join(str(h.pid) for h in s.holders)
            elif listener is not None:
                who = f"not yet accepted (in the backlog of pid {listener})"
            else:
                who = OWNER_NOTES.get(s.owner_note or "", "no owner")
            lines.append(f"  {socket_label(s)}  {who}")
        if left:
            lines.append(f"  … and {left:,} more on this port (--json lists them all)")
    # One refusal or note per socket (every TIME_WAIT left by a busy server, say): the first few.
    for title, texts in (("refused", [r.reason for r in plan.refusals]), ("note", list(plan.notes))):
        shown_texts, left = first_listed(texts, lambda _: False)
        lines.extend(f"{title}: {text}" for text in shown_texts)
        if left:
            lines.append(f"{title}: … and {left:,} more like these (--json lists them all)")
    return lines


def _ask(question: str, out: TextIO) -> bool:
    """Ask on the terminal; only an explicit yes counts."""
    out.write(question + " [y/N] ")
    out.flush()
    answer = sys.stdin.readline()
    if not answer:
        out.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _outcome_text(outcome: KillOutcome, force: bool) -> list[str]:
    lines = [r.detail for r in outcome.results]
    lines.append(outcome.message)
    survivors = [t.pid for t in outcome.survivors]
    if survivors and not force and outcome.signal != getattr(signal, "SIGKILL", None):
        lines.append(f"hint: pass --force to send SIGKILL to {', '.join(map(str, survivors))} after the timeout")
    return lines


def _not_actionable(ctx: Context, plan: KillPlan, doc: dict[str, Any]) -> int:
    """Say why nothing will be signalled (refused, nobody, only kernel-owned sockets)."""
    reasons = plan.reasons()
    if ctx.args.json:
        verdict = "refused" if plan.refusals else ("nothing-to-do" if plan.held else "nobody")
        return _finish(ctx, doc, verdict, reasons[0], EXIT_NOT_FREED)
    lines = _plan_text(plan)
    if not plan.refusals:
        lines.extend(r for r in reasons if f"note: {r}" not in lines)
    elif plan.targets:
        lines.append("nothing was signalled: the port cannot be freed while a refused holder keeps it")
    else:
        lines.append("nothing was signalled")
    ctx.stdout.write("\n".join(lines) + "\n")
    return EXIT_NOT_FREED


def _confirmed(ctx: Context, plan: KillPlan, doc: dict[str, Any], question: str, listing: list[str]) -> bool:
    """Ask on the terminal (the listing first, on stderr with --json); UsageError when there is none."""
    sig: int = ctx.args.signal
    if not sys.stdin.isatty():
        n = len(plan.targets)
        message = (
            f"confirmation needed: stdin is not a terminal; pass --yes to send {signal_name(sig)} to "
            f"{n} process{'es' if n != 1 else ''} holding port {plan.label}"
        )
        if ctx.args.json:
            _finish(ctx, doc, "confirmation-needed", message, EXIT_USAGE)
        raise UsageError(message)
    talk = ctx.stderr if ctx.args.json else ctx.stdout
    if ctx.args.json:
        talk.write("\n".join(listing) + "\n")
    return _ask(question, talk)


def _report(ctx: Context, doc: dict[str, Any], outcome: KillOutcome) -> int:
    """The per-target results and the verdict, as text or in the JSON document."""
    if not ctx.args.json:
        ctx.stdout.write("\n".join(_outcome_text(outcome, ctx.args.force)) + "\n")
        return outcome.exit_code
    doc["results"] = [
        {"pid": r.target.pid, "result": r.result, "signals": list(r.signals), "detail": r.detail}
        for r in outcome.results
    ]
    doc["still_held_by"] = list(outcome.verdict.still_held_by)
    doc["rebound_by"] = [
        {"pid": h.pid, "name": h.name, "parent_pid": h.parent_pid, "parent_name": h.parent_name}
        for h in outcome.verdict.rebound_by
    ]
    return _finish(ctx, doc, outcome.verdict.kind, outcome.message, outcome.exit_code)


def _preflight(plan: KillPlan) -> Preflight:
    """What manages the holders and what the kill should lead to (ownership; systemd and engines time-boxed)."""
    from portmon.ownership.enrich import Enricher
    from portmon.ownership.view import PortOwnership

    ownership = PortOwnership(enricher=Enricher())
    targets = {t.pid for t in plan.targets}
    holders = [h for s in plan.sockets for h in s.holders if h.pid in targets]
    return ownership.preflight(ownership.order_pids(holders), plan.spec.port)


def _preflight_lines(pre: Preflight) -> list[str]:
    if not pre.managers:
        return []
    return [f"manager: {pre.message}"]


def run(ctx: Context) -> int:
    """Plan, show, confirm, signal, verify; the exit code says whether the port was freed.

    A start-up trick, kept in this one place: planning and signalling (and psutil under them) are imported
    here, not at the top, since every command imports this module to build its parser. Deferring them saves
    every other command 58 ms of CPU (median, p10-p90 49-63 ms, 30 fresh interpreters on the 2-core dev
    host: ``python bench/bench_cli_imports.py``). ``test_deferred_engine_gives_the_same_answer_as_an_eager_import``
    in tests/test_killcmd.py checks the plain version (engine imported up front) answers the same.
    """
    from portmon.actions.kill.execute import execute
    from portmon.actions.kill.plan import confirmation_lines, plan_kill

    args = ctx.args
    try:
        spec = parse_port_spec(args.port)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    sig: int = args.signal
    from portmon.cli.remote_actions import has_hosts, kill_on_hosts  # --host: the kill runs on those hosts

    if has_hosts(ctx):
        return kill_on_hosts(ctx, spec)
    snap = ctx.scan()
    plan = plan_kill(sockets_on_port(snap.sockets, spec), spec)
    doc = _document(plan, sig, args.dry_run)
    if not plan.actionable:
        return _not_actionable(ctx, plan, doc)

    from portmon.ownership.preflight import preflight_record, rebind_rescan
    from portmon.ownership.view import managers_json

    pre = _preflight(plan)
    doc["manager"] = managers_json(pre.managers)
    doc["preflight"] = preflight_record(pre)
    question, *warnings = confirmation_lines(plan, sig)
    listing = _plan_text(plan) + _preflight_lines(pre) + [f"warning: {w}" for w in warnings]
    if not args.json:
        # With --json the human-facing listing and question go to stderr, keeping stdout one JSON document.
        ctx.stdout.write("\n".join(listing) + "\n")
    if args.dry_run:
        pids = ", ".join(str(t.pid) for t in plan.targets)
        message = f"dry run: would send {signal_name(sig)} to {pids} on port {plan.label}; nothing signalled"
        if args.json:
            return _finish(ctx, doc, "dry-run", message, EXIT_FREED)
        ctx.stdout.write(message + "\n")
        return EXIT_FREED
    if not args.yes and not _confirmed(ctx, plan, doc, question, listing):
        message = "cancelled: nothing was signalled"
        if args.json:
            return _finish(ctx, doc, "cancelled", message, EXIT_NOT_FREED)
        ctx.stdout.write(message + "\n")
        return EXIT_NOT_FREED

    collector = ctx.collector()
    rescan = rebind_rescan(collector.scan, spec, args.grace) if pre.restart_expected else collector.scan
    return _report(ctx, doc, execute(plan, sig, args.timeout, rescan=rescan, force=args.force))
