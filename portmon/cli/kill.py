"""``portmon kill PORT``: signal every process holding a port, after showing them and asking, then verify."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from portmon.actions.kill.signals import DEFAULT_TIMEOUT, SIGNALS, parse_signal, signal_name
from portmon.actions.kill.text import first_listed, grouped_lines, socket_label
from portmon.actions.ownerless import backlog_of
from portmon.cli.context import Context, UsageError, positive_float
from portmon.model import OWNER_NOTES
from portmon.output import holder_records, netns_notes, to_json
from portmon.portspec import PORT_HELP, PortSpecError, parse_port_specs, sockets_on_port
from portmon.textsafe import safe

if TYPE_CHECKING:
    from portmon.actions.kill.model import KillOutcome, KillPlan, Target
    from portmon.actions.managerstop import StopResult
    from portmon.model import Snapshot
    from portmon.ownership.preflight import Preflight


EXIT_FREED = 0
EXIT_NOT_FREED = 1
EXIT_USAGE = 2

_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)
"""SIGKILL (on Windows, where every signal is already a hard kill, SIGTERM)."""

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
        help="free ports: signal every process holding them, then check",
        description="Signal every process holding each PORT (all holders of a shared listener; a service name "
        "means all its ports), wait for them to exit and re-scan. Shows the holders of every port and asks once; "
        "refuses pid 1, portmon and its ancestors, kernel threads and kernel-owned sockets (TIME_WAIT). On a "
        "terminal, a holder that ignores the signal brings a second question: send SIGKILL now. Exit 0 when "
        "every port was freed (or, with --dry-run, when holders were found), 1 when nobody holds a port, holders "
        "survived or a holder is refused, 2 on bad input or when confirmation is needed but there is no terminal "
        "to ask on. With several ports, the worst of these; --json then prints a list of documents.",
    )
    p.add_argument("ports", nargs="+", metavar="PORT", help=PORT_HELP + "; several may be given")
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
        default=None,
        metavar="SECONDS",
        help="when a manager (systemd, a container, a supervisor, a shell loop) is expected to restart the holder, "
        "wait up to this long for it to bind the port again before judging (default: the config file's grace, 3)",
    )
    p.add_argument(
        "--stop-manager",
        action="store_true",
        help="when the holder's manager has a stop command (`systemctl stop UNIT`, `docker stop NAME`, `kill PID` "
        "for a shell loop), run it first, without a shell, after its own question (or with --yes), then signal "
        "whatever still holds the port; --json adds a manager_stop record",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask (needed when stdin is not a terminal)")
    p.add_argument("-n", "--dry-run", action="store_true", help="show who would be signalled; signal nothing")
    p.add_argument("--json", action="store_true", help="one JSON object describing the holders and what happened")
    p.add_argument(
        "--pids",
        type=_pids_arg,
        metavar="PID:TICKS,...",
        help="signal only these processes, each named by pid and start time in clock ticks as a dry run prints "
        "them; one that now names another process is refused, a holder not listed is left alone "
        "(what a remote kill confirms)",
    )
    return "kill", run


def _pids_arg(text: str) -> dict[int, int]:
    from portmon.actions.kill.confirmed import parse_identities

    try:
        return parse_identities(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _target_record(t: Target) -> dict[str, Any]:
    return {
        "pid": t.pid,
        "create_time": t.identity.create_time,
        "start_ticks": t.identity.start_ticks,
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
        "manager_stop": None,
    }


def _settle(doc: dict[str, Any], verdict: str, message: str, code: int) -> int:
    doc["verdict"] = verdict
    doc["message"] = message
    doc["exit_code"] = code
    return code


def _emit(ctx: Context, docs: list[dict[str, Any]]) -> None:
    """The JSON output: one document for one port, a list of them for several."""
    ctx.stdout.write(to_json(docs[0] if len(docs) == 1 else docs) + "\n")


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
            elif socket_label(s) in plan.inherited:
                who = "held only by portmon itself (an inherited copy): freed when portmon exits"
            else:
                who = OWNER_NOTES.get(s.owner_note or "", "no owner")
            lines.append(f"  {socket_label(s)}  {who}")
        if left:
            lines.append(f"  … and {left:,} more on this port (--json lists them all)")
    # One refusal or note per socket (every TIME_WAIT left by a busy server, say): a repeated explanation
    # is said once with its count, and of the distinct ones the first few are shown.
    for title, texts in (("refused", [r.reason for r in plan.refusals]), ("note", list(plan.notes))):
        shown_texts, left = first_listed(grouped_lines(texts), lambda _: False)
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


def _outcome_text(outcome: KillOutcome, force: bool, hint: bool = True) -> list[str]:
    lines = [r.detail for r in outcome.results]
    lines.append(outcome.message)
    survivors = [t.pid for t in outcome.survivors]
    if hint and survivors and not force and outcome.signal != _SIGKILL:
        lines.append(f"hint: pass --force to send SIGKILL to {', '.join(map(str, survivors))} after the timeout")
    return lines


def _not_actionable(ctx: Context, plan: KillPlan, doc: dict[str, Any], notes: list[str]) -> int:
    """Say why nothing will be signalled on this port (refused, nobody, only kernel-owned sockets); ``notes``
    name the port's sockets in other network namespaces, which are not this port."""
    reasons = plan.reasons()
    if ctx.args.json:
        verdict = "refused" if plan.refusals else ("nothing-to-do" if plan.held else "nobody")
        return _settle(doc, verdict, reasons[0], EXIT_NOT_FREED)
    lines = _plan_text(plan)
    if not plan.refusals:
        lines.extend(r for r in reasons if r not in plan.notes)  # the notes are in the listing already
    elif plan.targets:
        lines.append("nothing was signalled: the port cannot be freed while a refused holder keeps it")
    else:
        lines.append("nothing was signalled")
    ctx.stdout.write("\n".join(lines + notes) + "\n")
    return EXIT_NOT_FREED


def _ports_text(plans: list[KillPlan]) -> str:
    return ("port " if len(plans) == 1 else "ports ") + ", ".join(p.label for p in plans)


def _confirmed(
    ctx: Context, plans: list[KillPlan], docs: list[dict[str, Any]], question: str, listing: list[str]
) -> bool:
    """Ask on the terminal (the listing first, on stderr with --json); UsageError when there is none."""
    sig: int = ctx.args.signal
    if not sys.stdin.isatty():
        n = len({t.pid for plan in plans for t in plan.targets})
        message = (
            f"confirmation needed: stdin is not a terminal; pass --yes to send {signal_name(sig)} to "
            f"{n} process{'es' if n != 1 else ''} holding {_ports_text(plans)}"
        )
        if ctx.args.json:
            for doc in docs:
                _settle(doc, "confirmation-needed", message, EXIT_USAGE)
        raise UsageError(message)
    talk = ctx.stderr if ctx.args.json else ctx.stdout
    if ctx.args.json:
        talk.write("\n".join(listing) + "\n")
    return _ask(question, talk)


def _report(ctx: Context, doc: dict[str, Any], outcome: KillOutcome, hint: bool) -> int:
    """The per-target results and the verdict, as text or in the JSON document."""
    if not ctx.args.json:
        ctx.stdout.write("\n".join(_outcome_text(outcome, ctx.args.force, hint)) + "\n")
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
    return _settle(doc, outcome.verdict.kind, outcome.message, outcome.exit_code)


def _may_ask_again(ctx: Context) -> bool:
    """True when a second question (SIGKILL for survivors) can be asked: a person at a terminal, in text mode."""
    args = ctx.args
    return (
        not args.json
        and not args.yes
        and not args.force
        and args.signal != _SIGKILL
        and sys.stdin.isatty()
        and ctx.stdout.isatty()
    )


def _offer_sigkill(
    ctx: Context, outcomes: list[KillOutcome], rescans: list[Callable[[], Snapshot]]
) -> list[int] | None:
    """Ask whether to SIGKILL the holders that ignored the signal; the new exit codes per outcome, or None.

    ``rescans[i]`` re-scans the port of ``outcomes[i]`` (waiting for a managed server's restart, when one is due).
    """
    from portmon.actions.kill.execute import execute

    survivors: dict[int, str] = {}
    for outcome in outcomes:
        for target in outcome.survivors:
            survivors.setdefault(target.pid, target.label)
    if not survivors:
        return None
    named = ", ".join(survivors.values())
    verb = "ignores" if len(survivors) == 1 else "ignore"
    question = f"{named} {verb} {signal_name(ctx.args.signal)}: send SIGKILL now?"
    if not _ask(question, ctx.stdout):
        listed = ", ".join(map(str, survivors))
        ctx.stdout.write(f"not sent: {listed} still running (pass --force to send SIGKILL after the timeout)\n")
        return None
    codes = []
    for outcome, rescan in zip(outcomes, rescans, strict=True):
        pids = [t.pid for t in outcome.survivors]
        if not pids:
            codes.append(outcome.exit_code)
            continue
        again = execute(outcome.plan.narrowed(pids), _SIGKILL, ctx.args.timeout, rescan=rescan)
        ctx.stdout.write("\n".join(_outcome_text(again, force=True)) + "\n")
        codes.append(again.exit_code)
    return codes


def _preflight(plan: KillPlan) -> Preflight:
    """What manages the holders and what the kill should lead to (ownership; systemd and engines time-boxed)."""
    from portmon.actions.managerstop import plan_preflight
    from portmon.ownership.enrich import Enricher
    from portmon.ownership.view import PortOwnership

    return plan_preflight(plan, PortOwnership(enricher=Enricher()))


def _preflight_lines(pre: Preflight) -> list[str]:
    if not pre.managers:
        return []
    return [f"manager: {pre.message}"]


def _grace(ctx: Context) -> float:
    """``--grace``, else the config file's ``grace`` setting (3 s by default)."""
    grace: float | None = ctx.args.grace
    return grace if grace is not None else float(ctx.settings["grace"])


def _stop_dry_run(pre: Preflight) -> str:
    """What ``--stop-manager`` would run, for ``--dry-run``."""
    if pre.stop_command is None:
        return "dry run: no manager stop command known; nothing would be run"
    return f"dry run: would first run the manager's stop command `{pre.stop_command}`"


def _manager_stop(
    ctx: Context, plan: KillPlan, pre: Preflight, scan: Callable[[], Snapshot], doc: dict[str, Any]
) -> StopResult | None:
    """``--stop-manager``: ask, run the manager's stop command and judge the port; None when nothing was run."""
    from portmon.actions.managerstop import stop_argv, stop_manager

    talk = ctx.stderr if ctx.args.json else ctx.stdout
    if not stop_argv(pre):
        talk.write(f"manager: no stop command known for port {plan.label}; nothing run\n")
        return None
    if not ctx.args.yes and not _ask(f"run the manager's stop command `{pre.stop_command}` first?", talk):
        talk.write("manager stop: not run\n")
        return None
    result = stop_manager(plan, pre, scan, wait=ctx.args.timeout)
    doc["manager_stop"] = result.record()
    talk.write(f"manager stop: {result.message}\n")
    return result


def run(ctx: Context) -> int:
    """Plan, show, confirm, signal, verify, for every port given; the exit code is the worst port's.

    A start-up trick, kept in this one place: planning and signalling (and psutil under them) are imported
    here, not at the top, since every command imports this module to build its parser. Deferring them saves
    every other command 58 ms of CPU (median, p10-p90 49-63 ms, 30 fresh interpreters on the 2-core dev
    host: ``python bench/bench_cli_imports.py``). ``test_deferred_engine_gives_the_same_answer_as_an_eager_import``
    in tests/test_killcmd.py checks the plain version (engine imported up front) answers the same.
    """
    from portmon.actions.kill.execute import execute
    from portmon.actions.kill.plan import confirmation_for, plan_kill

    args = ctx.args
    try:
        specs = parse_port_specs(args.ports, ctx.registry())
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    sig: int = args.signal
    from portmon.cli.remote_actions import has_hosts, kill_on_hosts  # --host: the kill runs on those hosts

    if has_hosts(ctx):
        return max(kill_on_hosts(ctx, spec) for spec in specs)
    snap = ctx.scan()
    plans = [plan_kill(sockets_on_port(snap.sockets, spec), spec) for spec in specs]
    if args.pids is not None:  # exactly the processes confirmed (a remote kill's second step)
        from portmon.actions.kill.confirmed import keep_confirmed
        from portmon.actions.kill.identity import system_clock

        clock = system_clock()
        plans = [keep_confirmed(plan, args.pids, clock) for plan in plans]
    docs = [_document(plan, sig, args.dry_run) for plan in plans]
    # A port number names portmon's own network namespace's port: the same port in a container's namespace is
    # another socket, never signalled here; it is named so nobody thinks it was (JSON: "other_netns").
    elsewhere = [[s for s in sockets_on_port(snap.sockets, spec, every_netns=True) if s.netns] for spec in specs]
    for doc, other in zip(docs, elsewhere, strict=True):
        doc["other_netns"] = holder_records(other)
    notes = [netns_notes(other) for other in elsewhere]
    codes = [EXIT_FREED] * len(plans)
    chosen: list[int] = []
    for i, plan in enumerate(plans):
        if plan.actionable:
            chosen.append(i)
        else:
            codes[i] = _not_actionable(ctx, plan, docs[i], notes[i])
    if not chosen:
        if args.json:
            _emit(ctx, docs)
        return max(codes)

    from portmon.ownership.preflight import preflight_record, rebind_rescan
    from portmon.ownership.view import managers_json

    todo = [plans[i] for i in chosen]
    pres = {i: _preflight(plans[i]) for i in chosen}
    for i, pre in pres.items():
        docs[i]["manager"] = managers_json(pre.managers)
        docs[i]["preflight"] = preflight_record(pre)
    question, *warnings = confirmation_for(todo, sig)
    listing = [line for i in chosen for line in _plan_text(plans[i]) + _preflight_lines(pres[i]) + notes[i]]
    listing += [f"warning: {w}" for w in warnings]
    if not args.json:
        # With --json the human-facing listing and question go to stderr, keeping stdout JSON.
        ctx.stdout.write("\n".join(listing) + "\n")
    if args.dry_run:
        from portmon.actions.kill.confirmed import IDENTITIES_PREFIX, format_identities

        identities = format_identities(t for plan in todo for t in plan.targets)
        if identities and not args.json:
            ctx.stdout.write(IDENTITIES_PREFIX + identities + "\n")
        for i in chosen:
            pids = ", ".join(str(t.pid) for t in plans[i].targets)
            message = f"dry run: would send {signal_name(sig)} to {pids} on port {plans[i].label}; nothing signalled"
            codes[i] = _settle(docs[i], "dry-run", message, EXIT_FREED)
            if not args.json:
                ctx.stdout.write(message + "\n")
                if args.stop_manager:
                    ctx.stdout.write(_stop_dry_run(pres[i]) + "\n")
    elif not args.yes and not _confirmed_or_emit(ctx, todo, [docs[i] for i in chosen], docs, question, listing):
        message = "cancelled: nothing was signalled"
        for i in chosen:
            codes[i] = _settle(docs[i], "cancelled", message, EXIT_NOT_FREED)
        if not args.json:
            ctx.stdout.write(message + "\n")
    else:
        collector = ctx.collector()
        ask_again = _may_ask_again(ctx)
        outcomes = []
        rescans = []
        signalled = []
        for i in chosen:
            stop = _manager_stop(ctx, plans[i], pres[i], collector.scan, docs[i]) if args.stop_manager else None
            if stop is not None and stop.verdict.freed:
                # The manager's own stop freed the port: nothing is left to signal.
                codes[i] = _settle(docs[i], stop.verdict.kind, stop.verdict.message, EXIT_FREED)
                continue
            # Once the manager was stopped, nothing is expected to start the holder again.
            restart = pres[i].restart_expected and (stop is None or not stop.ran)
            rescan = rebind_rescan(collector.scan, plans[i].spec, _grace(ctx)) if restart else collector.scan
            outcome = execute(plans[i], sig, args.timeout, rescan=rescan, force=args.force)
            outcomes.append(outcome)
            rescans.append(rescan)
            signalled.append(i)
            codes[i] = _report(ctx, docs[i], outcome, hint=not ask_again)
        if ask_again:
            again = _offer_sigkill(ctx, outcomes, rescans)
            for i, code in zip(signalled, again or (), strict=False):
                codes[i] = code
    if args.json:
        _emit(ctx, docs)
    return max(codes)


def _confirmed_or_emit(
    ctx: Context,
    plans: list[KillPlan],
    docs: list[dict[str, Any]],
    all_docs: list[dict[str, Any]],
    question: str,
    listing: list[str],
) -> bool:
    """:func:`_confirmed`; when it cannot ask, the JSON documents are printed before the usage error."""
    try:
        return _confirmed(ctx, plans, docs, question, listing)
    except UsageError:
        if ctx.args.json:
            _emit(ctx, all_docs)
        raise
