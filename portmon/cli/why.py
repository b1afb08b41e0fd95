"""``portmon why PORT``: could a server bind this port now, and if not, why not (test binds plus the socket table)."""

from __future__ import annotations

from typing import Any

from portmon.cli.context import Context, UsageError
from portmon.output import holder_records, netns_notes, to_json
from portmon.portspec import PORT_HELP, PortSpecError, parse_port_specs, sockets_on_port


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``why`` and return its runner."""
    p = subs.add_parser(
        "why",
        help="why is this port busy? test-binds it and explains who or what holds it",
        description="Answer whether a server could bind each PORT right now and, if not, why: real test binds (on "
        "0.0.0.0, 127.0.0.1, :: and ::1, without and with SO_REUSEADDR; each closed at once) read together with "
        "the socket table. Names the processes holding the port and the command that frees it, or explains "
        "TIME_WAIT remnants, hidden owners and privileged ports. Without /tcp or /udp both are checked, and the "
        "port is free only when both are; the first line then names the protocol that holds it. A service name "
        "means all its ports; several ports give one answer each. Exit 0 when every port is free, 1 when one is "
        "not, 2 on bad input.",
    )
    p.add_argument("ports", nargs="+", metavar="PORT", help=PORT_HELP + "; several may be given")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per port (a list for several): port, proto, free, reason, holders, binds, ...",
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
        specs = parse_port_specs(ctx.args.ports, ctx.registry())
    except PortSpecError as exc:
        raise UsageError(str(exc)) from None
    from portmon.cli.remote_actions import has_hosts, why_on_hosts  # --host: the answers come from those hosts

    if has_hosts(ctx):
        return max(why_on_hosts(ctx, spec) for spec in specs)
    snapshot = ctx.scan()
    ownership = PortOwnership(enricher=Enricher())
    # The test bind happens in portmon's own network namespace: only its sockets can make it fail. Other
    # namespaces' sockets on the port are named after the answer (and under "other_netns" in JSON).
    own = [s for s in snapshot.sockets if s.netns is None]
    reports = [explain(spec, own, ownership=ownership) for spec in specs]
    others = [[s for s in sockets_on_port(snapshot.sockets, spec, every_netns=True) if s.netns] for spec in specs]
    if ctx.args.json:
        docs = [
            dict(report_record(report), other_netns=holder_records(other))
            for report, other in zip(reports, others, strict=True)
        ]
        ctx.stdout.write(to_json(docs[0] if len(docs) == 1 else docs) + "\n")
    else:
        texts = [report_lines(report) + netns_notes(other) for report, other in zip(reports, others, strict=True)]
        ctx.stdout.write("\n\n".join("\n".join(lines) for lines in texts) + "\n")
    ctx.stdout.flush()
    return max(report.exit_code for report in reports)
