"""Running portmon's own commands (kill, why) on a remote host, by the portmon installed there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from portmon.remote.hosts import HostSpec
from portmon.remote.ssh import Ssh, SshError, last_error_line
from portmon.textsafe import safe

AGENTLESS_EXIT = 96
"""What ACTION_SCRIPT exits with when portmon is not installed on the host."""

ACTION_SCRIPT = f"""\
if command -v portmon >/dev/null 2>&1 && portmon _stream --probe >/dev/null 2>&1; then
  exec portmon "$@"
fi
exit {AGENTLESS_EXIT}
"""
"""Run by ``sh -s -- ARGS`` on the host: ``portmon ARGS`` when portmon is installed there."""

_LINE_WIDTH = 2000


class RemoteRun(NamedTuple):
    """What ``portmon WORDS`` did on a host."""

    host: str
    code: int | None
    """Its exit status; None when it could not run (see ``error``)."""
    lines: tuple[str, ...]
    """Its output (stdout then stderr), line by line, control characters escaped."""
    error: str | None = None
    """Why it could not run: ssh failed, no answer in time, or no portmon on the host. Printable."""


def run_portmon(ssh: Ssh, spec: HostSpec, words: Sequence[str], timeout: float) -> RemoteRun:
    """Run ``portmon WORDS`` on the host and wait for it (at most ``timeout`` seconds)."""
    label = spec.label
    try:
        result = ssh.run(spec, ["sh", "-s", "--", *words], timeout=timeout, stdin=ACTION_SCRIPT)
    except (TimeoutError, SshError) as exc:
        return RemoteRun(label, None, (), safe(str(exc), 300))
    if result.code == AGENTLESS_EXIT:
        what = words[0] if words else "run portmon"
        return RemoteRun(label, None, (), f"portmon is not installed there (agentless host): cannot {what} remotely")
    if result.code == 255:  # ssh's own failure
        return RemoteRun(label, None, (), safe(last_error_line(result.stderr) or "ssh failed", 300))
    lines = tuple(safe(line, _LINE_WIDTH) for line in (result.stdout + result.stderr).splitlines())
    return RemoteRun(label, result.code, lines)
