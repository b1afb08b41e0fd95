"""Managers read from a process's cgroup: systemd units and sessions, containers, pods and machines.

Pure parsing of ``/proc/PID/cgroup`` text. The path is taken from the cgroup v2 line (``0::/…``)
or, on a v1 or hybrid host, from the ``name=systemd`` line; a v1 host whose containers use the
cgroupfs driver names them on every controller line, so those lines are a last resort. Each path
segment is matched whole against anchored patterns, never searched for substrings: dockerd's own
``docker.service`` is a systemd unit, ``docker-<id>.scope`` is a container.
"""

from __future__ import annotations

import re

from portmon.ownership.manager import (
    CONTAINER,
    CONTAINERD,
    CRIO,
    DOCKER,
    KUBERNETES,
    LXC,
    NSPAWN,
    PODMAN,
    RESTART_LIKELY,
    RESTART_NO,
    SESSION,
    SYSTEMD_UNIT,
    SYSTEMD_USER_UNIT,
    Manager,
    command,
)

_HEX_ID = r"[0-9a-f]{12,64}"
_DOCKER_SCOPE = re.compile(rf"docker-({_HEX_ID})\.scope")
_HEX_SEGMENT = re.compile(_HEX_ID)
_LIBPOD = re.compile(rf"libpod-({_HEX_ID})(?:\.scope)?")
_CRI_CONTAINERD = re.compile(rf"cri-containerd-({_HEX_ID})\.scope")
_NERDCTL = re.compile(rf"nerdctl-({_HEX_ID})\.scope")
_CRIO = re.compile(rf"crio-({_HEX_ID})(?:\.scope)?")
_CONMON = re.compile(rf"(?:libpod|crio)-conmon-{_HEX_ID}(?:\.scope)?")
_KUBEPODS_SLICE_POD = re.compile(r"kubepods(?:-[a-z]+)?-pod([0-9a-f_]{36})\.slice")
_KUBEPODS_DIR_POD = re.compile(r"pod([0-9a-f-]{36})")
_KUBEPODS = re.compile(r"kubepods(?:[.-].*)?")
_LXC_PAYLOAD = re.compile(r"lxc\.payload\.(.+)")
_LXC_MONITOR = re.compile(r"lxc\.monitor(?:\..+)?")
_NSPAWN_SERVICE = re.compile(r"systemd-nspawn@(.+)\.service")
_MACHINE_SCOPE = re.compile(r"machine-(.+)\.scope")
_USER_MANAGER = re.compile(r"user@(\d+)\.service")
_SESSION = re.compile(r"session-(\w+)\.scope")
_UNIT = re.compile(r"[^/]+\.(?:service|scope)")
_KUBELET_NOTE = "the kubelet starts a pod's containers again; scale down or delete what owns the pod (kubectl)"
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def unescape_unit(name: str) -> str:
    """Undo systemd's name escaping (``\\x2d`` is ``-``)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def cgroup_path(text: str) -> str | None:
    """The cgroup path that names the process's managers, from ``/proc/PID/cgroup`` text (None if none)."""
    unified = named = None
    others: list[str] = []
    for line in text.splitlines():
        hierarchy, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep1 and sep2):
            continue
        if hierarchy == "0" and controllers == "":
            unified = path
        elif "name=systemd" in controllers.split(","):
            named = path
        else:
            others.append(path)
    for candidate in (unified, named):
        if candidate and candidate != "/":
            return candidate
    for path in dict.fromkeys(p for p in others if p != "/"):
        # Containers under the cgroupfs driver show on every controller (``/docker/<id>``).
        if parse_path(path):
            return path
    return unified or named


def _container(kind: str, cid: str, stop: str | None, outer: str | None = None) -> Manager:
    details: list[tuple[str, str]] = [("id", cid)]
    if outer:
        details.append(("runtime", outer))
    return Manager(kind, cid[:12], "cgroup", stop=stop, details=tuple(details))


def parse_path(path: str) -> tuple[Manager, ...]:
    """The managers a cgroup path names, innermost first."""
    segs = [s for s in path.split("/") if s]
    found: list[Manager] = []  # outermost first while scanning
    in_user: str | None = None
    unit_seen = False
    pod: str | None = None
    kubepods = False
    i = 0
    while i < len(segs):
        seg = segs[i]
        nxt = segs[i + 1] if i + 1 < len(segs) else None
        m: re.Match[str] | None
        if _CONMON.fullmatch(seg) or _LXC_MONITOR.fullmatch(seg):
            # The container runtime's monitor, not the container: its own unit (if any) was seen above.
            i += 1
            continue
        if (m := _DOCKER_SCOPE.fullmatch(seg)) or (seg == "docker" and nxt and _HEX_SEGMENT.fullmatch(nxt)):
            cid = m.group(1) if m else (nxt or "")
            found.append(_container(DOCKER, cid, f"docker stop {cid[:12]}"))
            i += 1 if m else 2
            continue
        if m := _LIBPOD.fullmatch(seg):
            cid = m.group(1)
            found.append(_container(PODMAN, cid, f"podman stop {cid[:12]}"))
        elif m := _CRI_CONTAINERD.fullmatch(seg):
            cid = m.group(1)
            found.append(_container(CONTAINERD, cid, f"crictl stop {cid[:12]}"))
        elif m := _NERDCTL.fullmatch(seg):
            cid = m.group(1)
            found.append(_container(CONTAINERD, cid, f"nerdctl stop {cid[:12]}"))
        elif m := _CRIO.fullmatch(seg):
            cid = m.group(1)
            found.append(_container(CRIO, cid, f"crictl stop {cid[:12]}"))
        elif _KUBEPODS.fullmatch(seg) and not _KUBEPODS_SLICE_POD.fullmatch(seg):
            kubepods = True
        elif (m := _KUBEPODS_SLICE_POD.fullmatch(seg)) or (kubepods and (m := _KUBEPODS_DIR_POD.fullmatch(seg))):
            pod = m.group(1).replace("_", "-")
            found.append(
                Manager(
                    KUBERNETES, pod, "cgroup", restart=RESTART_LIKELY,
                    details=(("pod_uid", pod),),
                    note=_KUBELET_NOTE,
                )
            )
        elif pod is not None and _HEX_SEGMENT.fullmatch(seg):
            # cgroupfs driver: the container's directory below the pod's, runtime unknown.
            found.append(_container(CONTAINER, seg, f"crictl stop {seg[:12]}", "cri"))
        elif m := _LXC_PAYLOAD.fullmatch(seg):
            name = m.group(1)
            found.append(Manager(LXC, name, "cgroup", stop=command("lxc-stop", "-n", name)))
        elif seg in ("lxc", "lxc.payload") and nxt and i == 0:
            found.append(Manager(LXC, nxt, "cgroup", stop=command("lxc-stop", "-n", nxt)))
            i += 2
            continue
        elif (m := _NSPAWN_SERVICE.fullmatch(seg)) or (m := _MACHINE_SCOPE.fullmatch(seg)):
            name = unescape_unit(m.group(1))
            found.append(Manager(NSPAWN, name, "cgroup", stop=command("machinectl", "poweroff", name),
                                 details=(("unit", seg),)))
            unit_seen = True
        elif m := _USER_MANAGER.fullmatch(seg):
            in_user = m.group(1)
            unit_seen = False
        elif m := _SESSION.fullmatch(seg):
            found.append(Manager(SESSION, seg, "cgroup", restart=RESTART_NO,
                                 details=(("session", m.group(1)),),
                                 note="an interactive login session: nothing restarts it"))
            unit_seen = True
        elif _UNIT.fullmatch(seg) and not unit_seen and seg != "init.scope" and not found_container(found):
            name = unescape_unit(seg)
            if in_user is not None:
                stop = command("systemctl", "--user", "stop", name)
                found.append(Manager(SYSTEMD_USER_UNIT, name, "cgroup", stop=stop, details=(("uid", in_user),)))
            else:
                found.append(Manager(SYSTEMD_UNIT, name, "cgroup", stop=command("systemctl", "stop", name)))
            unit_seen = True
        i += 1
    return tuple(reversed(found))


def found_container(found: list[Manager]) -> bool:
    """Whether a container or pod was already found: units below one belong to its own systemd."""
    return any(m.kind in (DOCKER, PODMAN, CONTAINERD, CRIO, CONTAINER, KUBERNETES, LXC) for m in found)


def parse_cgroup(text: str) -> tuple[Manager, ...]:
    """The managers named by ``/proc/PID/cgroup`` text, innermost first (empty when none)."""
    path = cgroup_path(text)
    return parse_path(path) if path else ()


def read_cgroup(pid: int, procfs: str = "/proc") -> str | None:
    """``/proc/PID/cgroup`` as text, or None when it cannot be read."""
    try:
        with open(f"{procfs}/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except OSError:
        return None
