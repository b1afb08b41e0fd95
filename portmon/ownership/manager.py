"""The Manager value: something above a process that starts, restarts or contains it."""

from __future__ import annotations

import shlex
from typing import Any, NamedTuple

# Kinds of manager, as ``Manager.kind`` spells them.
SYSTEMD_UNIT = "systemd-unit"
"""A systemd system unit (``nginx.service``)."""
SYSTEMD_USER_UNIT = "systemd-user-unit"
"""A unit of a user's systemd instance (``user@1000.service/app.slice/dev.service``)."""
SESSION = "session"
"""A login session scope (``session-3.scope``): an interactive login, nothing restarts it."""
SOCKET_UNIT = "systemd-socket"
"""A ``.socket`` unit owning the listener (socket activation)."""
DOCKER = "docker"
PODMAN = "podman"
CONTAINERD = "containerd"
CRIO = "cri-o"
CONTAINER = "container"
"""A container whose runtime the cgroup path does not name (a pod's container under the cgroupfs driver)."""
KUBERNETES = "kubernetes"
"""A Kubernetes pod (the pod's uid is the name)."""
LXC = "lxc"
NSPAWN = "nspawn"
"""A systemd-nspawn container or another registered machine (``machine-NAME.scope``)."""
SUPERVISORD = "supervisord"
PM2 = "pm2"
RUNIT = "runit"
S6 = "s6"
INIT = "init"
"""A container's minimal init (tini, docker-init, dumb-init): forwards signals, restarts nothing."""
GUNICORN = "gunicorn"
UVICORN = "uvicorn"
NODEMON = "nodemon"
WATCHER = "watcher"
"""A file watcher that reruns a command (watchexec, entr, watchmedo, cargo-watch, air, ...)."""
SHELL = "shell"
"""A non-interactive shell running a script or ``-c`` command (a loop restarts what it runs)."""

CONTAINER_KINDS = frozenset({DOCKER, PODMAN, CONTAINERD, CRIO, CONTAINER, LXC, NSPAWN})
UNIT_KINDS = frozenset({SYSTEMD_UNIT, SYSTEMD_USER_UNIT})

# Whether a manager will start the process again after it is killed.
RESTART_YES = "yes"
RESTART_LIKELY = "likely"
RESTART_ON_CHANGE = "on-change"
"""Only after a watched file changes (nodemon, a reloader)."""
RESTART_NO = "no"
RESTART_UNKNOWN = "unknown"


class Manager(NamedTuple):
    """One manager of a process, as far as portmon could tell."""

    kind: str
    name: str
    """The unit, container, program, pod uid, ... as the manager itself names it (untrusted text)."""
    source: str
    """Where it was found: "cgroup", "environ", "parents", "systemd", "engine"."""
    pid: int | None = None
    """The managing process, when the manager is one (a supervisor in the parent chain)."""
    restart: str = RESTART_UNKNOWN
    """RESTART_YES, RESTART_LIKELY, RESTART_ON_CHANGE, RESTART_NO or RESTART_UNKNOWN."""
    stop: str | None = None
    """The command that stops it for good (``systemctl stop nginx.service``), when one is known."""
    details: tuple[tuple[str, str], ...] = ()
    """(name, value) facts: restart policy, compose project, container id, pod, user, ..."""
    note: str | None = None
    """Why something could not be learnt (the Engine API was unreachable, ...)."""

    def detail(self, key: str) -> str | None:
        """The value of one ``details`` entry, or None."""
        for name, value in self.details:
            if name == key:
                return value
        return None

    @property
    def stop_argv(self) -> tuple[str, ...] | None:
        """The stop command as an argument vector, to run without a shell (after its own confirmation)."""
        return tuple(shlex.split(self.stop)) if self.stop else None

    @property
    def label(self) -> str:
        """``systemd unit nginx.service``, ``bash loop (pid 42)``, ``docker container web``."""
        return manager_label(self)


def command(*argv: str) -> str:
    """A command line with each argument quoted for a POSIX shell where needed (names are untrusted)."""
    return shlex.join(argv)


_KIND_WORDS = {
    SYSTEMD_UNIT: "systemd unit",
    SYSTEMD_USER_UNIT: "systemd user unit",
    SESSION: "login session",
    SOCKET_UNIT: "systemd socket",
    DOCKER: "docker container",
    PODMAN: "podman container",
    CONTAINERD: "containerd container",
    CRIO: "cri-o container",
    CONTAINER: "container",
    KUBERNETES: "kubernetes pod",
    LXC: "lxc container",
    NSPAWN: "machine",
}


def manager_label(m: Manager) -> str:
    """A short human description of a manager (the name is not escaped: pass it through textsafe)."""
    if m.kind in _KIND_WORDS:
        return f"{_KIND_WORDS[m.kind]} {m.name}"
    return f"{m.name} (pid {m.pid})" if m.pid is not None else m.name


def manager_record(m: Manager) -> dict[str, Any]:
    """A manager as a JSON-ready dict."""
    return {
        "kind": m.kind,
        "name": m.name,
        "source": m.source,
        "pid": m.pid,
        "restart": m.restart,
        "stop_command": m.stop,
        "details": dict(m.details),
        "note": m.note,
    }
