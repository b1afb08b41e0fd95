"""Managers found in a process's parent chain: supervisors, pre-fork masters, reloaders, watchers, shell loops."""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Callable, Sequence

from portmon.ownership.manager import (
    GUNICORN,
    INIT,
    NODEMON,
    PM2,
    RESTART_LIKELY,
    RESTART_NO,
    RESTART_ON_CHANGE,
    RESTART_UNKNOWN,
    RESTART_YES,
    RUNIT,
    S6,
    SHELL,
    SUPERVISORD,
    UVICORN,
    WATCHER,
    Manager,
    command,
)
from portmon.ownership.proc import ProcInfo, process_cwd

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "yash"})
_INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit", "tini-static"})
_WATCHERS_ON_CHANGE = frozenset(
    {"watchexec", "entr", "watchmedo", "cargo-watch", "air", "reflex", "modd", "watchman-make", "onchange", "gow"}
)
_LOOP = re.compile(r"(?:^|[;&|\s({])(?:while|until|for)\s")
_SCRIPT_LIMIT = 1 << 16

ScriptReader = Callable[[str], "str | None"]
"""``read(path) -> text``: how a shell's script is read to look for a loop (None if unreadable)."""


def read_script(path: str) -> str | None:
    """The first 64 KiB of a script that is a regular file, or None.

    Never a pipe, FIFO or terminal: opening a FIFO would block, and reading a pipe would steal the
    shell's own input (``bash /dev/fd/3``, ``bash <(...)``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _SCRIPT_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def script_path(path: str, pid: int, procfs: str = "/proc") -> str:
    """Where to read a shell's script from here: its own fds and cwd, not portmon's (``/dev/fd/3``, ``serve.sh``)."""
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            return f"{procfs}/{pid}/fd/{path[len(prefix):]}"
    if path == "/dev/stdin":
        return f"{procfs}/{pid}/fd/0"
    if not os.path.isabs(path):
        cwd = process_cwd(pid, procfs)
        return os.path.join(cwd, path) if cwd else path
    return path


def _base(arg: str) -> str:
    return os.path.basename(arg)


def _script_name(arg: str) -> str:
    """``nodemon`` from ``/usr/lib/node_modules/nodemon/bin/nodemon.js``."""
    base = _base(arg)
    stem, dot, ext = base.rpartition(".")
    return stem if dot and ext in ("js", "cjs", "mjs", "py") else base


def _program(info: ProcInfo) -> tuple[str, tuple[str, ...]]:
    """The program's name and its arguments, seen through an interpreter (``python gunicorn``, ``node nodemon``)."""
    argv = info.cmdline
    if not argv:
        return info.name, ()
    first = _base(argv[0])
    if re.fullmatch(r"(?:python[\d.]*|node|nodejs|ruby|perl|bun|deno)", first) and len(argv) > 1:
        rest = list(argv[1:])
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c", "-e"):
            rest.pop(0)
        if rest and rest[0] in ("-c", "-e"):
            return first, tuple(argv[1:])
        if rest and rest[0] == "-m" and len(rest) > 1:
            return rest[1], tuple(rest[2:])
        if rest:
            return _script_name(rest[0]), tuple(rest[1:])
    return first, tuple(argv[1:])


def shell_script(info: ProcInfo) -> tuple[str, str | None] | None:
    """("-c", command) or ("script", path) for a non-interactive shell; None for an interactive one or no shell."""
    argv = info.cmdline
    name = info.name if not argv else _base(argv[0]).lstrip("-")
    if name not in SHELLS or not argv or argv[0].startswith("-"):
        return None
    args = list(argv[1:])
    if name == "busybox" and args and args[0] in SHELLS:
        args.pop(0)
    while args:
        arg = args.pop(0)
        if arg == "-c" or (arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]):
            return ("-c", args[0] if args else "")
        if arg in ("-i", "--interactive") or (arg.startswith("-") and not arg.startswith("--") and "i" in arg[1:]):
            return None
        if arg.startswith("-") or arg.startswith("+"):
            continue
        return ("script", arg)
    return None


def classify(info: ProcInfo, script_reader: ScriptReader = read_script, procfs: str = "/proc") -> Manager | None:
    """The manager one ancestor is, or None when it is not a known one."""
    program, args = _program(info)
    name = info.name
    pid = info.pid
    title = " ".join(info.cmdline)
    if program == "supervisord" or name == "supervisord":
        return Manager(SUPERVISORD, "supervisord", "parents", pid=pid, restart=RESTART_LIKELY)
    if name.startswith("PM2 ") or title.startswith("PM2 v") or program in ("pm2", "PM2"):
        return Manager(PM2, "pm2", "parents", pid=pid, restart=RESTART_YES)
    if name == "runsv" or program == "runsv":
        service = args[0] if args else "?"
        return Manager(RUNIT, f"runsv {service}", "parents", pid=pid, restart=RESTART_YES,
                       stop=command("sv", "down", service), details=(("service", service),))
    if name == "s6-supervise" or program == "s6-supervise":
        service = args[0] if args else "?"
        return Manager(S6, f"s6-supervise {service}", "parents", pid=pid, restart=RESTART_YES,
                       stop=command("s6-svc", "-d", service), details=(("service", service),))
    if name in _INITS or program in _INITS:
        return Manager(INIT, program if program in _INITS else name, "parents", pid=pid, restart=RESTART_NO,
                       note="a container's init: it forwards signals and restarts nothing")
    if program == "gunicorn" or title.startswith("gunicorn: master"):
        return Manager(GUNICORN, "gunicorn master", "parents", pid=pid, restart=RESTART_YES,
                       stop=f"kill -TERM {pid}", note="the master starts a new worker for each one that dies")
    if program == "uvicorn":
        if "--reload" in args:
            return Manager(UVICORN, "uvicorn reloader", "parents", pid=pid, restart=RESTART_ON_CHANGE,
                           stop=f"kill -TERM {pid}", note="the reloader starts the server again when a file changes")
        return Manager(UVICORN, "uvicorn master", "parents", pid=pid, restart=RESTART_YES, stop=f"kill -TERM {pid}",
                       note="the master starts a new worker for each one that dies")
    if program == "nodemon" or name == "nodemon":
        return Manager(NODEMON, "nodemon", "parents", pid=pid, restart=RESTART_ON_CHANGE, stop=f"kill -TERM {pid}",
                       note="nodemon starts the app again when a watched file changes")
    if program in _WATCHERS_ON_CHANGE or name in _WATCHERS_ON_CHANGE:
        watcher = program if program in _WATCHERS_ON_CHANGE else name
        return Manager(WATCHER, watcher, "parents", pid=pid, restart=RESTART_ON_CHANGE, stop=f"kill -TERM {pid}",
                       note="it runs the command again when a watched file changes")
    if program == "watch" or name == "watch":
        return Manager(WATCHER, "watch", "parents", pid=pid, restart=RESTART_YES, stop=f"kill -TERM {pid}",
                       note="watch runs the command again every interval")
    script = shell_script(info)
    if script is not None:
        how, what = script
        shell = _base(info.cmdline[0]) if info.cmdline else name
        if how == "-c":
            text: str | None = what
            shown = f"{shell} -c"
        else:
            text = script_reader(script_path(what or "", pid, procfs))
            shown = f"{shell} {shlex.quote(what or '')}"
        if text is not None and _LOOP.search(text):
            return Manager(SHELL, f"{shell} loop", "parents", pid=pid, restart=RESTART_LIKELY, stop=f"kill {pid}",
                           details=(("command", shown),))
        if text is None:
            return Manager(SHELL, f"{shell} script", "parents", pid=pid, restart=RESTART_UNKNOWN, stop=f"kill {pid}",
                           details=(("command", shown),), note="its script could not be read")
        # A script without a loop goes on to its next command or ends: it starts nothing again.
        return Manager(SHELL, f"{shell} script", "parents", pid=pid, restart=RESTART_NO,
                       details=(("command", shown),), note="no loop in its commands")
    return None


def chain_managers(
    chain: Sequence[ProcInfo], script_reader: ScriptReader = read_script, procfs: str = "/proc"
) -> tuple[Manager, ...]:
    """The known managers among a process's ancestors (its parent first), nearest first; pid 1 is left to the cgroup."""
    found: list[Manager] = []
    for info in chain:
        if info.pid <= 1:
            break
        m = classify(info, script_reader, procfs)
        if m is not None:
            found.append(m)
    return tuple(found)
