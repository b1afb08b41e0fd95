"""Managers named in a process's environment: supervisord and pm2 set variables in the programs they start."""

from __future__ import annotations

from collections.abc import Mapping

from portmon.ownership.manager import PM2, RESTART_LIKELY, RESTART_YES, SUPERVISORD, Manager, command

ENV_KEYS = ("SUPERVISOR_PROCESS_NAME", "SUPERVISOR_GROUP_NAME", "pm_id", "name", "PM2_HOME", "pm_exec_path")
"""The only variables :func:`environ_managers` looks at (``read_environ(pid, keys=ENV_KEYS)``)."""


def environ_managers(env: Mapping[str, str]) -> tuple[Manager, ...]:
    """supervisord (``SUPERVISOR_PROCESS_NAME``/``SUPERVISOR_GROUP_NAME``) or pm2 (``pm_id``, ``name``)."""
    found: list[Manager] = []
    process = env.get("SUPERVISOR_PROCESS_NAME")
    if process:
        group = env.get("SUPERVISOR_GROUP_NAME") or process
        name = process if group == process else f"{group}:{process}"
        found.append(
            Manager(SUPERVISORD, name, "environ", restart=RESTART_LIKELY, stop=command("supervisorctl", "stop", name),
                    details=(("program", process), ("group", group)))
        )
    pm_id = env.get("pm_id")
    if pm_id is not None and pm_id.isdigit() and ("name" in env or "PM2_HOME" in env or "pm_exec_path" in env):
        app = env.get("name") or pm_id
        found.append(
            Manager(PM2, app, "environ", restart=RESTART_YES, stop=command("pm2", "stop", app),
                    details=(("pm_id", pm_id), ("app", app)))
        )
    return tuple(found)
