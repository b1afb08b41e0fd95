"""``portmon why PORT``: could a server bind this port now, and if not, why not (test binds plus the socket table)."""

from __future__ import annotations

from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.output import to_json
from portmon.portspec import PortSpecError, parse_port_spec


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``why`` and return its runner."""
    p = subs.add_parser(
        "why",
        help="why is this port busy? test-binds it and explains who or what holds it",
        description="Answer whether a server could bind PORT right now and, if not, why: real test binds (on "
        "0.0.0.0, 127.0.0.1, :: and ::1, without and with SO_REUSEADDR; each closed at once) read together with "
        "the socket table. Names the processes holding the port and the command that frees it, or explains "
        "TIME_WAIT remnants, hidden owners and privileged ports. Without /tcp or /udp both are checked and the "
        "verdict follows TCP. Exit 0 when the port is free, 1 when it is not, 2 on bad input.",
    )
    p.add_argument("port", metavar="PORT[/tcp|/udp]")
    p.add_argument(
        "--json", action="store_true", help="one JSON object: port, proto, free, reason, holders, binds, ..."
    )
    return "why", run


def run(ctx: Context) -> int:
    """Test-bind, scan, explain; the exit code says whether the port is free.

    A start-up trick, kept in this one place: portmon.actions.why (and psutil under it) is imported here,
    not at the top, since every command imports this module to build its parser. Deferring it saves every
    other command 47 ms of CPU (median, p10-p90 36-53 ms, 30 fresh interpreters on the 2-core dev host:
    ``python bench/bench_cli_imports.py``). ``test_deferred_engine_gives_the_same_answer_as_an_eager_import``
    in tests/test_whycmd.py checks the plain version (imported up front) answers the same.
    """
    from portmon.actions.why import explain, report_lines, report_record
    from portmon.ownership.enrich import Enricher
    from portmon.ownership.view import PortOwnership

    try:
        spec = parse_port_spec(ctx.args.port)
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    if spec.port == 0:
        raise UsageError("invalid port '0': binding port 0 means 'any free port', so it is never busy")
    from portmon.cli.remote_actions import has_hosts, why_on_hosts  # --host: the answers come from those hosts

    if has_hosts(ctx):
        return why_on_hosts(ctx, spec)
    snapshot = ctx.scan()
    report = explain(spec, snapshot.sockets, ownership=PortOwnership(enricher=Enricher()))
    if ctx.args.json:
        ctx.stdout.write(to_json(report_record(report)) + "\n")
    else:
        ctx.stdout.write("\n".join(report_lines(report)) + "\n")
    ctx.stdout.flush()
    return report.exit_code
