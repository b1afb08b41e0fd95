"""``kill`` and ``why`` with ``--host``: each runs on the named hosts, by the portmon installed there, over ssh.

The verdicts are the remote portmon's own (it test-binds and signals on its host; run by
portmon.remote.actions); the question before a kill is asked here, naming the host, after the
remote dry run listed who would be signalled. An agentless host (no portmon there) cannot do either: one line says so.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from portmon.cli.context import CommandFailed, Context, UsageError
from portmon.cli.hosts import host_specs, host_timeout
from portmon.portspec import PortSpec

if TYPE_CHECKING:
    from portmon.remote.hosts import HostSpec
    from portmon.remote.ssh import Ssh


def _specs(ctx: Context) -> list[HostSpec]:
    try:
        return list(host_specs(ctx.args))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read the hosts file: {exc.strerror or exc}") from None


def _ssh() -> Ssh:
    from portmon.remote.ssh import Ssh, SshError

    try:
        return Ssh()
    except SshError as exc:
        raise CommandFailed(str(exc), 2) from None


def has_hosts(ctx: Context) -> bool:
    """True when --host or --hosts-file named hosts (kill and why then act there, not here)."""
    return bool(_specs(ctx))


def _run(ctx: Context, ssh: Ssh, spec: HostSpec, words: Sequence[str], timeout: float) -> tuple[int, list[str]] | None:
    """``portmon WORDS`` on the host: (exit status, output lines escaped), or None after saying why it failed."""
    from portmon.remote.actions import run_portmon

    done = run_portmon(ssh, spec, words, timeout)
    if done.code is None:
        ctx.warn(f"host {spec.label}: {done.error}")
        return None
    return done.code, list(done.lines)


def why_on_hosts(ctx: Context, port: PortSpec) -> int:
    """``why PORT`` on every named host, one section each; 0 when the port is free on all of them."""
    if ctx.args.json:
        raise UsageError("--json cannot be combined with --host for why (one document per host)")
    code = 0
    ssh = _ssh()
    try:
        for spec in _specs(ctx):
            ctx.stdout.write(f"host {spec.label}:\n")
            done = _run(ctx, ssh, spec, ["why", str(port)], host_timeout(ctx.args) + 30)
            if done is None:
                code = 1
                continue
            status, lines = done
            ctx.stdout.write("".join(f"  {line}\n" for line in lines))
            code = max(code, min(status, 1))
            ctx.stdout.flush()
    finally:
        ssh.close()
    return code


def kill_on_hosts(ctx: Context, port: PortSpec) -> int:
    """``kill PORT`` on every named host: the remote dry run, a question here naming the host, the remote kill.

    The remote kill signals exactly the processes its dry run listed and the user confirmed (``--pids``
    with their start times in clock ticks): one replaced since is refused, a new holder left alone.
    """
    from portmon.actions.kill.confirmed import identities_from_lines
    from portmon.actions.kill.signals import signal_name

    args = ctx.args
    given = ["--pids", ",".join(f"{pid}:{ticks}" for pid, ticks in args.pids.items())] if args.pids else []
    if args.json:
        raise UsageError("--json cannot be combined with --host for kill (one document per host)")
    sig = signal_name(args.signal)
    timeout = host_timeout(args) + float(args.timeout) * 2 + 30
    code = 0
    ssh = _ssh()
    out = ctx.stdout
    try:
        for spec in _specs(ctx):
            label = spec.label
            out.write(f"host {label}:\n")
            plan = _run(ctx, ssh, spec, ["kill", str(port), "--dry-run", "--signal", sig, *given], timeout)
            if plan is None:
                code = 1
                continue
            status, lines = plan
            # The dry run names its targets by (pid, start ticks): the kill signals exactly those.
            identities, shown = identities_from_lines(lines)
            out.write("".join(f"  {line}\n" for line in (lines if args.dry_run else shown)))
            out.flush()
            if status != 0 or args.dry_run:
                code = max(code, min(status, 1))
                continue
            if identities is None:
                ctx.warn(
                    f"host {label}: its portmon named no exact process identities to confirm (an older portmon, "
                    "or no start times in clock ticks there): nothing was signalled"
                )
                code = 1
                continue
            if not args.yes:
                if not sys.stdin.isatty():
                    raise UsageError(
                        f"confirmation needed: stdin is not a terminal; pass --yes to send {sig} "
                        f"to the processes holding port {port} on host {label}"
                    )
                out.write(f"Send {sig} to the processes above, holding port {port} on host {label}? [y/N] ")
                out.flush()
                if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                    out.write(f"cancelled: nothing was signalled on host {label}\n")
                    code = 1
                    continue
            words = ["kill", str(port), "--yes", "--pids", identities, "--signal", sig]
            words += ["--timeout", f"{args.timeout:g}"]
            done = _run(ctx, ssh, spec, [*words, *(["--force"] if args.force else [])], timeout)
            if done is None:
                code = 1
                continue
            status, lines = done
            out.write("".join(f"  {line}\n" for line in lines))
            out.flush()
            code = max(code, min(status, 1) if status in (0, 1) else status)
    finally:
        ssh.close()
    return code
