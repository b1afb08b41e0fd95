"""Before a kill: which manager will bring the process back, what to expect, and the manager's own stop command.

``predict`` is pure: managers in, a one-line prediction out. ``preflight`` does the reading (parent
chain, environment, cgroup, then systemd and the engine within their time box) for the pids a kill
would signal, main holder first. The texts name untrusted things (unit, container and program
names): they are escaped here, so every line is safe to print.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

from portmon.model import Snapshot
from portmon.ownership.enrich import Enricher
from portmon.ownership.manager import (
    CONTAINER_KINDS,
    GUNICORN,
    INIT,
    KUBERNETES,
    NODEMON,
    PM2,
    RESTART_LIKELY,
    RESTART_NO,
    RESTART_ON_CHANGE,
    RESTART_UNKNOWN,
    RESTART_YES,
    RUNIT,
    S6,
    SESSION,
    SHELL,
    SOCKET_UNIT,
    SUPERVISORD,
    SYSTEMD_UNIT,
    SYSTEMD_USER_UNIT,
    UVICORN,
    WATCHER,
    Manager,
    manager_record,
)
from portmon.ownership.proc import read_proc
from portmon.ownership.resolve import actionable, managers_of
from portmon.portspec import PortSpec, sockets_on_port
from portmon.textsafe import safe

GRACE = 3.0
"""Seconds a kill's verdict waits for a re-bind when a manager is expected to restart the holder."""

_NAME_WIDTH = 64


class Preflight(NamedTuple):
    """What a kill of these processes should lead to, and what to stop instead."""

    managers: tuple[Manager, ...]
    """Every manager found, innermost actionable first (those being signalled themselves left out)."""
    restart: str
    """RESTART_YES, RESTART_LIKELY, RESTART_ON_CHANGE, RESTART_NO or RESTART_UNKNOWN."""
    message: str
    """The prediction in one line, safe to print."""
    stop_command: str | None = None
    """The manager's own stop command (escaped), to offer as a second action after its own confirmation."""

    @property
    def restart_expected(self) -> bool:
        """Whether a verdict should wait a grace period for a re-bind before saying "freed"."""
        return self.restart in (RESTART_YES, RESTART_LIKELY)

    @property
    def manager(self) -> Manager | None:
        """The manager the prediction is about (the innermost actionable one), or None."""
        return self.managers[0] if self.managers else None


def _n(text: str) -> str:
    return safe(text, _NAME_WIDTH)


def _container_words(m: Manager) -> str:
    extra = []
    project, service = m.detail("compose_project"), m.detail("compose_service")
    if project and service:
        extra.append(f"compose {_n(project)}/{_n(service)}")
    policy = m.detail("restart_policy")
    if policy:
        extra.append(f"restart={_n(policy)}")
    kind = "container" if m.kind in CONTAINER_KINDS else m.kind
    return f"{kind} {_n(m.name)}" + (f" ({', '.join(extra)})" if extra else "")


def _why(m: Manager) -> str:
    return f" ({_n(m.note)})" if m.note else ""


def describe(m: Manager) -> tuple[str, str | None]:
    """(prediction line, stop command) for one manager."""
    stop = safe(m.stop, 200) if m.stop else None
    cmd = f": `{stop}`" if stop else ""
    name = _n(m.name)
    pid = f" (pid {m.pid})" if m.pid is not None else ""
    if m.kind == SOCKET_UNIT:
        activates = m.detail("activates")
        what = f" and starts {_n(activates)} again on the next connection" if activates else ""
        return (f"socket-activated: systemd holds the listener{what}; killing the process never frees the port: "
                f"stop `{name}`{cmd}"), stop
    if m.kind in (SYSTEMD_UNIT, SYSTEMD_USER_UNIT):
        unit = "user unit" if m.kind == SYSTEMD_USER_UNIT else "unit"
        policy = m.detail("Restart")
        if m.restart == RESTART_YES:
            return f"systemd will restart {name} (Restart={_n(policy or '?')}): stop the {unit} instead{cmd}", stop
        if m.restart == RESTART_LIKELY:
            return (f"systemd may restart {name} (Restart={_n(policy or '?')}: after SIGKILL or an error exit): "
                    f"stop the {unit} instead{cmd}"), stop
        if m.restart == RESTART_NO:
            return (f"runs as systemd {unit} {name} (Restart={_n(policy or 'no')}): it will stay down; "
                    f"to stop it cleanly{cmd}"), stop
        return (f"runs as systemd {unit} {name}; whether systemd restarts it is unknown{_why(m)}: "
                f"to stop it for good{cmd}"), stop
    if m.kind in CONTAINER_KINDS:
        words = _container_words(m)
        if m.restart == RESTART_YES:
            return f"{words}: the engine will restart it: stop the container instead{cmd}", stop
        if m.restart == RESTART_NO:
            return f"{words}: it stops with its main process; to stop the container{cmd}", stop
        return f"{words}{_why(m)}: it may be restarted; stop the container instead{cmd}", stop
    if m.kind == KUBERNETES:
        return f"kubernetes pod {name}: the kubelet will restart it; delete or scale down what owns the pod", None
    if m.kind == SESSION:
        return f"started from a login session ({name}): nothing restarts it", None
    if m.kind == INIT:
        return f"under {name}{pid}, a container init: it restarts nothing", None
    if m.kind in (SUPERVISORD, PM2, RUNIT, S6):
        verb = "will restart it" if m.restart == RESTART_YES else "will probably restart it"
        return f"supervised by {m.kind} {name}{pid}: it {verb}: stop it there instead{cmd}", stop
    if m.kind in (GUNICORN, UVICORN) and m.restart == RESTART_YES:
        return f"a worker of {name}{pid}: the master starts a new one: stop the master instead{cmd}", stop
    if m.kind in (NODEMON, WATCHER, UVICORN) and m.restart == RESTART_ON_CHANGE:
        return f"watched by {name}{pid}: it starts again when a watched file changes; stop the watcher{cmd}", stop
    if m.kind == WATCHER:
        return f"run by {name}{pid}: it runs again every interval: stop it instead{cmd}", stop
    if m.kind == SHELL:
        if m.restart == RESTART_LIKELY:
            return f"supervised by {name}{pid}: it will probably restart; stop the loop first{cmd}", stop
        if m.restart == RESTART_NO:
            return f"started by {name}{pid}, which has no loop: nothing should start it again", None
        return f"started by {name}{pid}: it may start it again{_why(m)}; to stop the script{cmd}", stop
    return f"managed by {name}{pid}{cmd}", stop


def predict(managers: Sequence[Manager], targets: Collection[int] = ()) -> Preflight:
    """The outcome of signalling ``targets`` given the main holder's managers (pure)."""
    kept = tuple(m for m in managers if m.pid is None or m.pid not in targets)
    if not kept:
        return Preflight((), RESTART_NO, "no manager found: nothing should start it again")
    first = kept[0]
    line, stop = describe(first)
    outer = [m for m in kept[1:] if actionable(m)]
    if outer:
        line += "; inside " + ", ".join(_n(m.label) for m in outer[:2])
    restart = first.restart if actionable(first) else RESTART_NO
    return Preflight(kept, restart, line, stop)


def managers_for(
    pid: int,
    *,
    port: int | None = None,
    enricher: Enricher | None = None,
    procfs: str = "/proc",
) -> tuple[Manager, ...]:
    """Every manager of one holder: cheap sources, docker-proxy's container, socket units for pid 1, then enrichment."""
    found = list(managers_of(pid, procfs))
    info = read_proc(pid, procfs)
    if enricher is not None and info is not None:
        if info.name == "docker-proxy":
            proxy = enricher.docker_proxy(pid, info.cmdline)
            if proxy is not None:
                found.insert(0, proxy)
        if (pid == 1 or info.name == "systemd") and port is not None:
            found[:0] = enricher.socket_units_on(port)
    if enricher is None:
        return tuple(found)
    uid = _uid_of(pid, procfs)
    return enricher.enrich(found, uid)


def preflight(
    pids: Sequence[int],
    *,
    port: int | None = None,
    enricher: Enricher | None = None,
    procfs: str = "/proc",
) -> Preflight:
    """The prediction for a kill of ``pids`` (main holder first): its managers, enriched within the time box."""
    if not pids:
        return Preflight((), RESTART_UNKNOWN, "no process to signal")
    return predict(managers_for(pids[0], port=port, enricher=enricher, procfs=procfs), set(pids))


def preflight_record(p: Preflight) -> dict[str, Any]:
    """A preflight as a JSON-ready dict."""
    return {
        "restart": p.restart,
        "message": p.message,
        "stop_command": p.stop_command,
        "managers": [manager_record(m) for m in p.managers],
    }


def _uid_of(pid: int, procfs: str) -> int | None:
    try:
        with open(f"{procfs}/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rebind_rescan(
    scan: Callable[[], Snapshot],
    spec: PortSpec,
    grace: float = GRACE,
    *,
    interval: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[], Snapshot]:
    """A re-scan for the kill verdict that waits up to ``grace`` seconds for any process to hold the port again.

    Use it when the preflight expects a restart (``Preflight.restart_expected``): a supervisor with a
    1 s restart delay leaves the port free for a moment, and a verdict taken then would say "freed".
    The first scan showing a holder on the port (new or old) ends the wait; so does the deadline.
    """

    def rescan() -> Snapshot:
        deadline = clock() + grace
        while True:
            snap = scan()
            if any(s.holders for s in sockets_on_port(snap.sockets, spec)) or clock() >= deadline:
                return snap
            sleep(min(interval, max(0.0, deadline - clock())))

    return rescan
