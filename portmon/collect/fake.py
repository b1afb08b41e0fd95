"""Deterministic demo and synthetic socket data for tests, screenshots and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from portmon.model import (
    CLOSE_WAIT,
    ESTABLISHED,
    FIN_WAIT2,
    LISTEN,
    OWNER_HIDDEN,
    OWNER_KERNEL,
    SYN_SENT,
    TIME_WAIT,
    Holder,
    Snapshot,
    Socket,
)
from portmon.procinfo import ProcessDetail

DEMO_TIME = 1_767_268_800.0
"""A fixed wall-clock time for the demo (2026-01-01 12:00:00 UTC), so screenshots never change."""

HOSTILE_NAME = "[@click=app.quit]x"
"""A process name that would run an action if anything rendered it as markup."""
HOSTILE_NAME_2 = "[/]\x1b[2Jevil"
"""A process name with a markup closing tag and a terminal escape sequence."""

_BOOT = DEMO_TIME - 9 * 86400

# pid -> (name, user, started seconds before DEMO_TIME, ppid, exe, cmdline, cwd, threads, rss MiB, cpu %)
_PROCS: dict[int, tuple[str, str, float, int, str, tuple[str, ...], str, int, int, float]] = {
    1: ("systemd", "root", 9 * 86400, 0, "/usr/lib/systemd/systemd", ("/sbin/init", "splash"), "/", 1, 12, 0.0),
    602: ("systemd-resolve", "systemd-resolve", 9 * 86400 - 4, 1, "/usr/lib/systemd/systemd-resolved",
          ("/usr/lib/systemd/systemd-resolved",), "/", 1, 9, 0.0),
    640: ("avahi-daemon", "avahi", 9 * 86400 - 5, 1, "/usr/sbin/avahi-daemon",
          ("avahi-daemon: running [laptop.local]",), "/", 1, 3, 0.0),
    812: ("sshd", "root", 9 * 86400 - 6, 1, "/usr/sbin/sshd",
          ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",), "/", 1, 8, 0.0),
    1044: ("postgres", "postgres", 9 * 86400 - 8, 1, "/usr/lib/postgresql/16/bin/postgres",
           ("/usr/lib/postgresql/16/bin/postgres", "-D", "/var/lib/postgresql/16/main",
            "-c", "config_file=/etc/postgresql/16/main/postgresql.conf"), "/var/lib/postgresql/16/main", 1, 31, 0.1),
    1290: ("nginx", "root", 9 * 86400 - 9, 1, "/usr/sbin/nginx",
           ("nginx: master process /usr/sbin/nginx -g daemon on; master_process on;",), "/", 1, 6, 0.0),
    1291: ("nginx", "www-data", 9 * 86400 - 9, 1290, "/usr/sbin/nginx", ("nginx: worker process",), "/", 1, 9, 0.4),
    1292: ("nginx", "www-data", 9 * 86400 - 9, 1290, "/usr/sbin/nginx", ("nginx: worker process",), "/", 1, 9, 0.2),
    2210: ("bash", "alice", 3 * 3600, 2205, "/usr/bin/bash", ("-bash",), "/home/alice", 1, 5, 0.0),
    2205: ("tmux: server", "alice", 3 * 3600 + 2, 1, "/usr/bin/tmux", ("tmux",), "/home/alice", 1, 7, 0.0),
    4021: ("firefox", "alice", 2 * 3600, 2210, "/usr/lib/firefox/firefox", ("/usr/lib/firefox/firefox",),
           "/home/alice", 96, 612, 3.8),
    23001: ("python3", "alice", 41 * 60, 2210, "/usr/bin/python3.12",
            ("python3", "manage.py", "runserver", "127.0.0.1:8000", "--settings=shop.settings.dev"),
            "/home/alice/src/shop", 3, 84, 1.2),
    24310: ("sshd", "alice", 50 * 60, 812, "/usr/sbin/sshd", ("sshd: alice@pts/1",), "/", 1, 7, 0.0),
    24555: ("node", "alice", 12 * 60, 2210, "/usr/bin/node",
            ("node", "/home/alice/src/web/node_modules/.bin/vite", "--port", "3000", "--host", "::"),
            "/home/alice/src/web", 11, 143, 0.6),
    30112: ("postgres", "postgres", 40 * 60, 1044, "/usr/lib/postgresql/16/bin/postgres",
            ("postgres: 16/main: alice shop 127.0.0.1(41822) idle",), "/var/lib/postgresql/16/main", 1, 18, 0.0),
    31337: (HOSTILE_NAME, "mallory", 5 * 60, 2210, "/tmp/.x/[@click=app.quit]x",
            (HOSTILE_NAME, "--listen", "[bold red]127.0.0.1:9999[/]"), "/tmp/.x", 1, 4, 0.0),
    31338: (HOSTILE_NAME_2, "mallory", 5 * 60, 2210, "/tmp/.x/evil",
            (HOSTILE_NAME_2, "\x1b]0;pwned\x07"), "/tmp/.x", 1, 4, 0.0),
}


def _holder(pid: int) -> Holder:
    name, user, age, *_ = _PROCS[pid]
    return Holder(pid=pid, name=name, user=user, create_time=DEMO_TIME - age)


_SERVICES = {
    22: "ssh", 53: "domain", 80: "http", 443: "https", 631: "ipp", 5353: "mdns", 5432: "postgresql",
    3000: "hbci", 8000: "irdmi",
}


def _sock(
    proto: str,
    family: int,
    laddr: str,
    lport: int,
    raddr: str | None = None,
    rport: int | None = None,
    state: str | None = None,
    pids: tuple[int, ...] = (),
    note: str | None = None,
    inode: int = 0,
) -> Socket:
    return Socket(
        proto=proto,
        family=family,
        local_addr=laddr,
        local_port=lport,
        remote_addr=raddr,
        remote_port=rport,
        state=state,
        holders=tuple(_holder(p) for p in pids),
        owner_note=note if not pids else None,
        inode=inode,
        local_service=_SERVICES.get(lport),
        remote_service=_SERVICES.get(rport) if rport is not None else None,
    )


def demo_sockets() -> tuple[Socket, ...]:
    """The sockets of a developer laptop running a few services: the same every call."""
    nginx = (1290, 1291, 1292)
    rows = [
        _sock("tcp", 4, "0.0.0.0", 22, state=LISTEN, pids=(812,)),
        _sock("tcp", 6, "::", 22, state=LISTEN, pids=(812,)),
        _sock("tcp", 4, "192.168.1.20", 22, "192.168.1.7", 53122, ESTABLISHED, (24310,)),
        _sock("tcp", 4, "0.0.0.0", 80, state=LISTEN, pids=nginx),
        _sock("tcp", 6, "::", 80, state=LISTEN, pids=nginx),
        _sock("tcp", 4, "0.0.0.0", 443, state=LISTEN, pids=nginx),
        _sock("tcp", 4, "192.168.1.20", 443, "203.0.113.5", 61044, ESTABLISHED, (1291,)),
        _sock("tcp", 4, "192.168.1.20", 443, "198.51.100.23", 50312, TIME_WAIT, note=OWNER_KERNEL),
        _sock("tcp", 4, "192.168.1.20", 443, "198.51.100.41", 50977, TIME_WAIT, note=OWNER_KERNEL),
        _sock("tcp", 4, "127.0.0.1", 5432, state=LISTEN, pids=(1044,)),
        _sock("tcp", 6, "::1", 5432, state=LISTEN, pids=(1044,)),
        _sock("tcp", 4, "127.0.0.1", 5432, "127.0.0.1", 41822, ESTABLISHED, (30112,)),
        _sock("tcp", 4, "127.0.0.1", 41822, "127.0.0.1", 5432, ESTABLISHED, (23001,)),
        _sock("tcp", 4, "127.0.0.1", 8000, state=LISTEN, pids=(23001,)),
        _sock("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52714, CLOSE_WAIT, (23001,)),
        _sock("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52730, CLOSE_WAIT, (23001,)),
        _sock("tcp", 6, "::", 3000, state=LISTEN, pids=(24555,)),
        _sock("tcp", 6, "::1", 3000, "::1", 60418, ESTABLISHED, (24555,)),
        _sock("tcp", 4, "192.168.1.20", 51544, "140.82.112.3", 443, ESTABLISHED, (4021,)),
        _sock("tcp", 4, "192.168.1.20", 51560, "151.101.1.69", 443, ESTABLISHED, (4021,)),
        _sock("tcp", 4, "192.168.1.20", 51602, "151.101.1.69", 443, FIN_WAIT2, (4021,)),
        _sock("tcp", 6, "2001:db8::20", 40112, "2001:db8:1::443", 443, ESTABLISHED, (4021,)),
        _sock("tcp", 4, "192.168.1.20", 51618, "203.0.113.80", 443, SYN_SENT, (4021,)),
        _sock("tcp", 4, "0.0.0.0", 631, state=LISTEN, note=OWNER_HIDDEN),
        _sock("tcp", 4, "127.0.0.1", 9999, state=LISTEN, pids=(31337,)),
        _sock("tcp", 4, "127.0.0.1", 9998, state=LISTEN, pids=(31338,)),
        _sock("udp", 4, "127.0.0.53", 53, pids=(602,)),
        _sock("udp", 4, "0.0.0.0", 5353, pids=(640,)),
        _sock("udp", 6, "::", 5353, pids=(640,)),
        _sock("udp", 4, "192.168.1.20", 41234, "192.168.1.1", 53, pids=(4021,)),
    ]
    return tuple(rows)


def demo_snapshot(taken_at: float = DEMO_TIME, scan_ms: float = 12.4) -> Snapshot:
    """A realistic, fixed snapshot: sshd, nginx with workers sharing :80, postgres, dev servers, a browser, ..."""
    sockets = demo_sockets()
    hidden = sum(1 for s in sockets if s.owner_note == OWNER_HIDDEN)
    return Snapshot(sockets=sockets, taken_at=taken_at, scan_ms=scan_ms, hidden_owners=hidden, collector="fake")


def demo_process(pid: int, create_time: float | None = None) -> ProcessDetail:
    """A ProcessDetail for a demo pid (the same every call); an "exited" detail for any other pid.

    Has the signature of :func:`portmon.procinfo.read_process`, so the UI can show the demo without
    reading the real machine.
    """
    info = _PROCS.get(pid)
    if info is None:
        return ProcessDetail(pid=pid, error=f"process {pid} has exited")
    name, user, age, ppid, exe, cmdline, cwd, threads, rss_mib, cpu = info
    started = DEMO_TIME - age
    if create_time is not None and abs(create_time - started) > 0.5:
        return ProcessDetail(pid=pid, error=f"pid {pid} now belongs to a different process ({name})")
    ancestors: list[tuple[int, str | None]] = []
    parent = ppid
    while parent and parent in _PROCS and len(ancestors) < 64:
        ancestors.append((parent, _PROCS[parent][0]))
        parent = _PROCS[parent][3]
    return ProcessDetail(
        pid=pid,
        name=name,
        exe=exe,
        cmdline=cmdline,
        cwd=cwd,
        user=user,
        create_time=started,
        ppid=ppid,
        ancestors=tuple(ancestors),
        cpu_percent=cpu,
        rss=rss_mib * 1024 * 1024,
        threads=threads,
        status="sleeping",
    )


_SYN_NAMES = ("nginx", "postgres", "python3", "node", "java", "redis-server", "envoy", "haproxy", "sshd", "curl")
_SYN_USERS = ("root", "www-data", "postgres", "alice", "bob", "redis")
_SYN_STATES = (ESTABLISHED,) * 6 + (TIME_WAIT, TIME_WAIT, CLOSE_WAIT, FIN_WAIT2)


def _synthetic_socket(rng: random.Random, inode: int, holders: list[Holder]) -> Socket:
    kind = rng.random()
    if kind < 0.03:
        holder = rng.choice(holders)
        port = rng.randrange(1024, 30000)
        return Socket("tcp", 4, "0.0.0.0", port, state=LISTEN, holders=(holder,), inode=inode)
    if kind < 0.08:
        holder = rng.choice(holders)
        return Socket("udp", 4, "0.0.0.0", rng.randrange(1024, 65535), holders=(holder,), inode=inode)
    state = rng.choice(_SYN_STATES)
    family = 6 if rng.random() < 0.2 else 4
    if family == 4:
        laddr = "127.0.0.1"
        raddr = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    else:
        laddr = "::1"
        raddr = f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    hs: tuple[Holder, ...] = () if state == TIME_WAIT else (rng.choice(holders),)
    return Socket(
        "tcp",
        family,
        laddr,
        rng.randrange(1024, 65535),
        raddr,
        rng.choice((80, 443, 5432, 6379, 8080, rng.randrange(1024, 65535))),
        state,
        holders=hs,
        owner_note=OWNER_KERNEL if not hs else None,
        inode=inode,
    )


def synthetic_snapshot(
    n: int, seed: int = 0, churn: float = 0.0, base: Snapshot | None = None, taken_at: float = DEMO_TIME
) -> Snapshot:
    """``n`` random but reproducible sockets, for benchmarks.

    With ``base``, return ``base`` with ``round(len(base) * churn)`` sockets closed and as many new
    ones opened (and a few states changed), so a refresh with that churn can be measured. Every
    socket has a unique inode, so keys never collide.
    """
    rng = random.Random(seed)
    holders = [
        Holder(pid=1000 + i, name=_SYN_NAMES[i % len(_SYN_NAMES)], user=_SYN_USERS[i % len(_SYN_USERS)],
               create_time=DEMO_TIME - 1000 - i)
        for i in range(200)
    ]
    if base is None:
        sockets = [_synthetic_socket(rng, inode + 1, holders) for inode in range(n)]
        return Snapshot(sockets=tuple(sockets), taken_at=taken_at, scan_ms=0.0, collector="fake")
    old = list(base.sockets)
    k = round(len(old) * churn)
    next_inode = max((s.inode for s in old), default=0) + 1
    if k:
        for index in sorted(rng.sample(range(len(old)), min(k, len(old))), reverse=True):
            del old[index]
        old.extend(_synthetic_socket(rng, next_inode + i, holders) for i in range(k))
        # A few established connections move on to CLOSE_WAIT, as they do on a real host.
        for index in rng.sample(range(len(old)), min(max(1, k // 4), len(old))):
            sock = old[index]
            if sock.state == ESTABLISHED:
                old[index] = sock._replace(state=CLOSE_WAIT)
    return Snapshot(sockets=tuple(old), taken_at=taken_at, scan_ms=0.0, collector="fake")


def demo_snapshot_after(taken_at: float = DEMO_TIME + 1.0) -> Snapshot:
    """The demo one refresh later: the SSH session closed, a new request reached the dev server, and
    an nginx connection moved to CLOSE_WAIT, so the table shows new, closed and changed rows."""
    before = demo_snapshot()
    sockets: list[Socket] = []
    for sock in before.sockets:
        if sock.remote_port == 53122:
            continue
        if sock.remote_port == 61044:
            sock = _sock("tcp", 4, "192.168.1.20", 443, "203.0.113.5", 61044, CLOSE_WAIT, (1291,))
        sockets.append(sock)
    sockets.append(_sock("tcp", 4, "127.0.0.1", 8000, "127.0.0.1", 52802, ESTABLISHED, (23001,)))
    sockets.append(_sock("tcp", 4, "127.0.0.1", 52802, "127.0.0.1", 8000, ESTABLISHED, (4021,)))
    return Snapshot(
        sockets=tuple(sockets), taken_at=taken_at, scan_ms=11.8, hidden_owners=before.hidden_owners, collector="fake"
    )


Step = Snapshot | BaseException | Callable[[], Snapshot]


class ScriptedCollector:
    """A collector that plays back a script: snapshots to return, exceptions to raise, or callables.

    After the last step it keeps repeating the last one (or loops, with ``loop=True``). Used by the
    tests, the screenshots and the benchmarks; never touches the real machine.
    """

    name = "fake"

    def __init__(self, steps: Sequence[Step], loop: bool = False) -> None:
        if not steps:
            raise ValueError("a scripted collector needs at least one step")
        self._steps = list(steps)
        self._loop = loop
        self._index = 0
        self.calls = 0

    def scan(self) -> Snapshot:
        """Return (or raise) the next step of the script."""
        self.calls += 1
        if self._index < len(self._steps):
            step = self._steps[self._index]
            self._index += 1
        elif self._loop:
            self._index = 1
            step = self._steps[0]
        else:
            step = self._steps[-1]
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step()
        return step
