"""Lazy, time-boxed enrichment of managers: systemd unit properties and the Docker/Podman Engine API.

Only for the selected row, a kill or a ``why``: each answer is cached (30 s by default) and one
enrichment spends about 2 s at most, however many sources it asks. When systemd or the engine
cannot be reached the manager found in the cgroup stays as it was, with a note saying why.
The engine is only ever sent GET requests, over its unix socket.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from portmon.ownership.manager import (
    DOCKER,
    PODMAN,
    RESTART_LIKELY,
    RESTART_NO,
    RESTART_YES,
    SOCKET_UNIT,
    SYSTEMD_UNIT,
    SYSTEMD_USER_UNIT,
    Manager,
    command,
)

BUDGET = 2.0
"""Seconds one enrichment may spend in total."""
TTL = 30.0
"""Seconds an answer stays cached."""

_ACTIVATION_NOTE = "systemd holds the listener and starts the service again on the next connection"
UNIT_PROPERTIES = ("Restart", "NRestarts", "TriggeredBy", "ActiveState", "SubState", "MainPID")

Runner = Callable[[Sequence[str], float], "tuple[int, str, str]"]
"""``run(argv, timeout) -> (exit status, stdout, stderr)``; raises OSError or TimeoutError."""


def run_command(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    """Run a command found on PATH with a timeout (TimeoutError when it overruns)."""
    import subprocess

    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:.1f} s") from exc
    return done.returncode, done.stdout, done.stderr


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show`` output (``Key=value`` lines) as a dict."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return props


def parse_list_sockets(text: str) -> list[tuple[str, str, str]]:
    """``systemctl list-sockets --no-legend --all`` rows: (listen address, socket unit, units it activates)."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].endswith(".socket"):
            rows.append((parts[0], parts[1], " ".join(parts[2:])))
    return rows


def _restart_of(policy: str) -> str:
    # SIGTERM counts as a clean exit for systemd: on-failure/on-abnormal/on-abort restart only after SIGKILL.
    if policy == "always":
        return RESTART_YES
    if policy in ("on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"):
        return RESTART_LIKELY
    if policy == "no":
        return RESTART_NO
    return RESTART_LIKELY if policy else RESTART_NO


def engine_sockets(kind: str, env: Mapping[str, str], uid: int | None = None) -> list[str]:
    """Unix socket paths to try for a container engine, most specific first (DOCKER_HOST/CONTAINER_HOST win)."""
    paths: list[str] = []

    def from_url(url: str | None) -> None:
        if url and url.startswith("unix://"):
            paths.append(url[len("unix://") :])

    runtime = env.get("XDG_RUNTIME_DIR")
    user_dirs = [d for d in (runtime, f"/run/user/{uid}" if uid is not None else None) if d]
    if kind == PODMAN:
        from_url(env.get("CONTAINER_HOST"))
        paths += [f"{d}/podman/podman.sock" for d in user_dirs]
        paths.append("/run/podman/podman.sock")
        from_url(env.get("DOCKER_HOST"))
    else:
        from_url(env.get("DOCKER_HOST"))
        paths += ["/var/run/docker.sock", "/run/docker.sock"]
        paths += [f"{d}/docker.sock" for d in user_dirs]
        home = env.get("HOME")
        if home:
            paths.append(f"{home}/.docker/run/docker.sock")
    seen: dict[str, None] = {}
    for p in paths:
        seen.setdefault(p, None)
    return list(seen)


def _unix_connection(path: str, timeout: float) -> Any:
    """An HTTP connection over a unix socket (http.client is imported only when an engine is asked)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixConnection("localhost", timeout=timeout)


def engine_get(path: str, url: str, timeout: float) -> Any:
    """GET ``url`` from the engine on unix socket ``path``; the decoded JSON (OSError or ValueError on failure)."""
    import http.client
    import json

    conn = _unix_connection(path, timeout)
    try:
        conn.request("GET", url, headers={"Host": "docker", "Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(1 << 22)
        if resp.status != 200:
            raise OSError(f"{url}: HTTP {resp.status}")
        return json.loads(body)
    except http.client.HTTPException as exc:
        raise OSError(f"{url}: {exc}") from exc
    finally:
        conn.close()


def docker_proxy_target(cmdline: Sequence[str]) -> tuple[str, int, str | None, int | None] | None:
    """(proto, host port, container ip, container port) from a ``docker-proxy`` command line, or None."""
    opts: dict[str, str] = {}
    args = list(cmdline[1:])
    for i, arg in enumerate(args):
        if arg.startswith("-") and i + 1 < len(args):
            opts[arg.lstrip("-")] = args[i + 1]
    try:
        port = int(opts["host-port"])
    except (KeyError, ValueError):
        return None
    cport = opts.get("container-port")
    return opts.get("proto", "tcp"), port, opts.get("container-ip"), int(cport) if cport and cport.isdigit() else None


def _container_facts(info: Mapping[str, Any]) -> tuple[str | None, list[tuple[str, str]], str | None]:
    """(name, details, restart policy) from a /containers/{id}/json or /containers/json entry."""
    name = info.get("Name")
    if not name:
        names = info.get("Names") or []
        name = names[0] if names else None
    name = name.lstrip("/") if isinstance(name, str) else None
    config = info.get("Config") or {}
    labels = config.get("Labels") or info.get("Labels") or {}
    details: list[tuple[str, str]] = []
    cid = info.get("Id")
    if isinstance(cid, str):
        details.append(("id", cid))
    project = labels.get("com.docker.compose.project")
    service = labels.get("com.docker.compose.service")
    if project:
        details.append(("compose_project", str(project)))
    if service:
        details.append(("compose_service", str(service)))
    host = info.get("HostConfig") or {}
    policy = (host.get("RestartPolicy") or {}).get("Name")
    state = info.get("State")
    status = state.get("Status") if isinstance(state, dict) else state
    if isinstance(status, str):
        details.append(("state", status))
    if isinstance(policy, str):
        details.append(("restart_policy", policy or "no"))
    return name, details, policy if isinstance(policy, str) else None


def _container_restart(policy: str | None) -> str:
    if policy in ("always", "unless-stopped"):
        return RESTART_YES
    if policy == "on-failure":
        return RESTART_LIKELY
    return RESTART_NO if policy is not None else RESTART_LIKELY


class Enricher:
    """Asks systemd and the container engines about managers, within a time budget, caching the answers."""

    def __init__(
        self,
        *,
        run: Runner = run_command,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: float = BUDGET,
        ttl: float = TTL,
        engine: Callable[[str, str, float], Any] = engine_get,
        sockets: Callable[[str, Mapping[str, str], int | None], list[str]] = engine_sockets,
    ) -> None:
        self._run = run
        self._env = dict(os.environ if env is None else env)
        self._clock = clock
        self._budget = budget
        self._ttl = ttl
        self._engine = engine
        self._sockets = sockets
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._deadline = 0.0

    def _cached(self, key: tuple[str, ...], compute: Callable[[], Any]) -> Any:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = compute()
        self._cache[key] = (self._clock(), value)
        return value

    def _left(self) -> float:
        return self._deadline - self._clock()

    # -- systemd ----------------------------------------------------------------------------------

    def _systemctl(self, args: Sequence[str], uid: str | None) -> tuple[str | None, str | None]:
        """(stdout, None) or (None, why it failed)."""
        left = self._left()
        if left <= 0:
            return None, "no time left to ask systemd"
        argv = ["systemctl"]
        if uid is not None:
            argv += ["--user", f"--machine={_user_name(uid)}@"]
        argv += list(args)
        try:
            status, out, err = self._run(argv, left)
        except FileNotFoundError:
            return None, "systemctl is not installed"
        except (OSError, TimeoutError) as exc:
            return None, f"systemctl failed: {exc}"
        if status != 0:
            first = (err.strip().splitlines() or [f"exit status {status}"])[0]
            return None, f"systemd not reachable: {first}"
        return out, None

    def unit(self, m: Manager) -> tuple[Manager, ...]:
        """A unit with its Restart policy, restart count and state; its socket unit first when socket-activated."""
        uid = m.detail("uid") if m.kind == SYSTEMD_USER_UNIT else None
        key = ("unit", m.name, uid or "")
        out, why = self._cached(key, lambda: self._systemctl(
            ["show", f"--property={','.join(UNIT_PROPERTIES)}", "--", m.name], uid))
        if out is None:
            return (m._replace(note=why),)
        props = parse_show(out)
        policy = props.get("Restart", "")
        details = dict(m.details)
        for prop in UNIT_PROPERTIES:
            if props.get(prop):
                details[prop] = props[prop]
        enriched = m._replace(source=m.source + "+systemd", restart=_restart_of(policy),
                              details=tuple(details.items()))
        sockets = [u for u in props.get("TriggeredBy", "").split() if u.endswith(".socket")]
        if not sockets:
            return (enriched,)
        user = ("--user",) if uid is not None else ()
        socket_unit = Manager(
            SOCKET_UNIT, sockets[0], "systemd", restart=RESTART_YES,
            stop=command("systemctl", *user, "stop", *sockets, m.name),
            details=(("activates", m.name), *((("uid", uid),) if uid else ())),
            note=_ACTIVATION_NOTE,
        )
        return (socket_unit, enriched)

    def socket_units_on(self, port: int) -> tuple[Manager, ...]:
        """The ``.socket`` units listening on ``port`` (for a listener held by pid 1)."""
        out, why = self._cached(("list-sockets",), lambda: self._systemctl(
            ["list-sockets", "--all", "--no-legend", "--no-pager"], None))
        if out is None:
            return ()
        found = []
        for listen, unit, activates in parse_list_sockets(out):
            if listen.rpartition(":")[2] == str(port):
                found.append(Manager(SOCKET_UNIT, unit, "systemd", restart=RESTART_YES,
                                     stop=command("systemctl", "stop", unit, *activates.split()),
                                     details=(("listen", listen), ("activates", activates)),
                                     note=_ACTIVATION_NOTE))
        return tuple(found)

    # -- container engines ------------------------------------------------------------------------

    def _engine_json(self, kind: str, url: str, uid: int | None) -> tuple[Any, str | None]:
        """(decoded answer, None) from the first engine socket that answers, else (None, why)."""
        tried: list[str] = []
        for path in self._sockets(kind, self._env, uid):
            left = self._left()
            if left <= 0:
                tried.append("no time left")
                break
            if not os.path.exists(path):
                continue
            try:
                return self._engine(path, url, min(left, 1.0)), None
            except (OSError, ValueError) as exc:
                tried.append(f"{path}: {exc}")
        host = self._env.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            tried.append(f"DOCKER_HOST={host} is not a unix socket (only unix sockets are asked)")
        engine = "podman" if kind == PODMAN else "docker"
        because = f" ({'; '.join(tried)})" if tried else " (no socket found)"
        return None, f"the {engine} Engine API is not reachable{because}"

    def container(self, m: Manager, uid: int | None = None) -> Manager:
        """A docker or podman container manager with its name, compose project/service and restart policy."""
        cid = m.detail("id") or m.name
        key = ("container", m.kind, cid)
        info, why = self._cached(key, lambda: self._engine_json(m.kind, f"/containers/{cid}/json", uid))
        if info is None or not isinstance(info, dict):
            return m._replace(note=why or "the engine gave no answer")
        return self._with_container(m, info)

    def _with_container(self, m: Manager, info: Mapping[str, Any]) -> Manager:
        name, facts, policy = _container_facts(info)
        details = dict(m.details)
        details.update(facts)
        tool = "podman" if m.kind == PODMAN else "docker"
        label = name or m.name
        return m._replace(name=label, source=m.source + "+engine", restart=_container_restart(policy),
                          stop=command(tool, "stop", label), details=tuple(details.items()), note=None)

    def docker_proxy(self, pid: int, cmdline: Sequence[str]) -> Manager | None:
        """The container a ``docker-proxy`` process forwards to, found by its published port."""
        target = docker_proxy_target(cmdline)
        if target is None:
            return None
        proto, port, cip, cport = target
        where = f"{cip}:{cport}" if cip else f"port {cport}"
        base = Manager(DOCKER, f"container at {where}", "parents", pid=pid, restart=RESTART_LIKELY,
                       details=(("published_port", f"{port}/{proto}"),))
        listing, why = self._cached(("containers",), lambda: self._engine_json(DOCKER, "/containers/json", None))
        if not isinstance(listing, list):
            return base._replace(note=why)
        for entry in listing:
            for p in entry.get("Ports") or ():
                if p.get("PublicPort") == port and p.get("Type", "tcp") == proto:
                    found = self._with_container(base._replace(source="engine"), entry)
                    # The listing has no restart policy: ask for the container itself.
                    cid = entry.get("Id")
                    if isinstance(cid, str):
                        more = self.container(found._replace(details=(*found.details, ("id", cid))))
                        if more.note is None:
                            return more._replace(pid=None)
                    return found._replace(pid=None)
        return base._replace(note=f"no container publishes port {port}/{proto}")

    # -- everything -------------------------------------------------------------------------------

    def enrich(self, managers: Sequence[Manager], uid: int | None = None) -> tuple[Manager, ...]:
        """The managers with what systemd and the engines add (a socket unit before the service it activates)."""
        self._deadline = self._clock() + self._budget
        out: list[Manager] = []
        for m in managers:
            if m.kind in (SYSTEMD_UNIT, SYSTEMD_USER_UNIT):
                out.extend(self.unit(m))
            elif m.kind in (DOCKER, PODMAN) and m.detail("id"):
                out.append(self.container(m, uid))
            else:
                out.append(m)
        return tuple(out)


def _user_name(uid: str) -> str:
    try:
        import pwd

        return pwd.getpwuid(int(uid)).pw_name
    except (ImportError, KeyError, ValueError):
        return uid
