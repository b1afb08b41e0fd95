"""Loopback loads shaped like a busy host: N processes x M connections, a busy server, server-closed short connections.

A ``LoadSpec`` says what to build; ``Load(spec)`` builds it from processes it starts itself, on
loopback only, and takes it down again (``stop()``, or leaving the ``with`` block):

* **holders**: one process per entry of ``spec.holders``, holding that many TCP connections.
  With ``peer="server"`` they are clients of the busy server, which holds the other ends (the
  holder has M sockets, the server the sum); with ``peer="self"`` each holder also accepts its own
  connections, so it holds both ends (2 x M sockets). The holders are forked by one small spawner
  process, so 300 of them cost little memory and start in a few seconds.
* **short connections**: a churner process opens ``spec.churn_per_s`` connections a second to the
  server, which sends a short reply and closes first; the churner reads to the end and closes. The
  server's side is left in TIME_WAIT (60 s on Linux), so about ``60 x churn_per_s`` TIME_WAIT
  sockets build up, as on a web or API server. ``spec.prefill`` connections are made as fast as
  possible before ``start()`` returns, so a benchmark need not wait a minute for TIME_WAIT to build.
* ``churn(percent)`` replaces that share of the held connections (closed with a reset, reopened),
  so the count of held sockets stays the same while their inodes change.

Every process exits when its parent goes away (its stdin reaches EOF) or after ``max_seconds``,
and on ``stop()`` the held connections are reset, so they leave no TIME_WAIT behind. Each
process raises its RLIMIT_NOFILE soft limit as it needs; a holder or server whose sockets would
exceed the hard limit (which only CAP_SYS_RESOURCE may raise, up to nr_open) is spread over
several processes, and ``Load.note`` says so.

Two shapes are named: ``realistic(n)`` (issue 11: ~n sockets over 300 processes holding 1-200
sockets each, one busy server, 20 % of the sockets in TIME_WAIT) and ``issue18(scale)`` (3
processes x 3,400 connections, both ends held, plus 200 short connections a second).

Run as a script it holds a load until Ctrl-C (or ``--seconds``)::

    python bench/loads.py realistic 10000
    python bench/loads.py issue18 [--scale 3.5]
    python bench/loads.py custom --holders 3x3400 --peer self --churn 200 --prefill 4000
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import resource
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import IO, NamedTuple

TIME_WAIT_SECONDS = 60
"""How long Linux keeps a TIME_WAIT socket (TCP_TIMEWAIT_LEN, not tunable)."""

PAIRS_PER_PORT = 8000
"""Client ports are picked per destination; one listener port per 8,000 connections leaves room."""

REPLY = b"HTTP/1.0 204 No Content\r\n\r\n"
_LINGER0 = struct.pack("ii", 1, 0)
_SPARE_FDS = 64


class LoadSpec(NamedTuple):
    """What to build: holder processes, where the accepting ends live, and the short-connection churn."""

    holders: tuple[int, ...]
    """Connections held by each holder process."""
    peer: str = "server"
    """``"server"``: the busy server holds the accepting ends; ``"self"``: each holder holds both ends."""
    churn_per_s: float = 0.0
    """Short connections a second to the server, server closing first (TIME_WAIT on the server's side)."""
    prefill: int = 0
    """Short connections made as fast as possible before the load is ready (TIME_WAIT to start with)."""
    host: str = "127.0.0.1"

    @property
    def held_sockets(self) -> int:
        """Sockets of the held connections (both ends), listeners and TIME_WAIT not counted."""
        return 2 * sum(self.holders)

    def describe(self) -> str:
        """One line for a benchmark's header."""
        counts = sorted(self.holders)
        where = "the busy server holds the other ends" if self.peer == "server" else "each holds both ends"
        shape = (
            f"{len(counts)} processes x {counts[0]}" if counts[0] == counts[-1]
            else f"{len(counts)} processes x {counts[0]}-{counts[-1]} (median {counts[len(counts) // 2]})"
        )
        churn = (
            f"; {self.churn_per_s:.3g} short connections/s closed server-first (TIME_WAIT ~{self.time_wait_steady:,}"
            f" after {TIME_WAIT_SECONDS} s, {self.prefill:,} made up front)"
            if self.churn_per_s or self.prefill else "; no short connections"
        )
        return f"{shape} connections ({self.held_sockets:,} sockets), {where}{churn}"

    @property
    def time_wait_steady(self) -> int:
        """TIME_WAIT sockets once the churn has run for a minute."""
        return round(self.churn_per_s * TIME_WAIT_SECONDS)


def spread(total: int, procs: int, lo: int = 1, hi: int = 200, seed: int = 0) -> list[int]:
    """``procs`` counts in [lo, hi] summing to ``total``, skewed: most processes hold a few, a few hold up to ``hi``.

    ``procs`` grows when ``total`` does not fit under ``hi`` each and shrinks when it cannot give ``lo``
    each. Deterministic for a seed.
    """
    if total < lo:
        raise ValueError(f"need at least {lo} connections")
    procs = max(1, min(max(procs, math.ceil(total / hi)), total // lo))
    rng = random.Random(seed)
    weights = [math.exp(rng.random() ** 3 * math.log(hi)) for _ in range(procs)]

    def filled(f: float) -> float:
        return sum(min(hi, max(lo, w * f)) for w in weights)

    low, high = 0.0, float(total)
    for _ in range(100):
        mid = (low + high) / 2
        if filled(mid) < total:
            low = mid
        else:
            high = mid
    exact = [min(hi, max(lo, w * high)) for w in weights]
    counts = [int(x) for x in exact]
    missing = total - sum(counts)
    # Hand out what rounding down left, largest fractions first, never above hi.
    order = sorted(range(procs), key=lambda i: exact[i] - counts[i], reverse=True)
    while missing > 0:
        for i in order:
            if missing and counts[i] < hi:
                counts[i] += 1
                missing -= 1
    while missing < 0:
        for i in reversed(order):
            if missing and counts[i] > lo:
                counts[i] -= 1
                missing += 1
    return counts


def realistic(sockets: int, procs: int = 300, time_wait_share: float = 0.2, seed: int = 0) -> LoadSpec:
    """About ``sockets`` sockets: 300 processes holding 1-200 connections each to one busy server, plus TIME_WAIT.

    ``time_wait_share`` of the sockets are TIME_WAIT once the churn has run a minute (half of them
    are made up front); the rest are the held connections, half in the holders, half in the server.
    """
    time_wait = round(sockets * time_wait_share)
    connections = max(1, (sockets - time_wait) // 2)
    churn = time_wait / TIME_WAIT_SECONDS
    return LoadSpec(tuple(spread(connections, procs, seed=seed)), "server", churn, time_wait // 2)


def issue18(scale: float = 1.0) -> LoadSpec:
    """Issue 18's host: 3 processes x 3,400 connections (both ends held), 200 short connections a second.

    ``scale`` multiplies the connections and the churn (``scale=3.5`` gives ~100,000 sockets once the
    TIME_WAIT has built up). 8,000 TIME_WAIT sockets (times ``scale``) are made up front, as the issue saw.
    """
    per = round(3400 * scale)
    return LoadSpec((per, per, per), "self", 200.0 * scale, round(8000 * scale))


def fd_headroom() -> int:
    """Sockets one process may hold: the hard RLIMIT_NOFILE, or nr_open with CAP_SYS_RESOURCE, less some spare."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:
        with open("/proc/self/status") as f:
            caps = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
        if caps & (1 << 24):  # CAP_SYS_RESOURCE: the hard limit may be raised up to nr_open
            with open("/proc/sys/fs/nr_open") as f:
                limit = max(limit, int(f.read()))
    except OSError:
        pass
    if limit == resource.RLIM_INFINITY:
        limit = 1 << 20
    return max(limit - _SPARE_FDS, 2)


def split_to_fit(counts: tuple[int, ...], most: int) -> list[int]:
    """``counts`` with each count above ``most`` split into equal parts of at most ``most``."""
    out: list[int] = []
    for count in counts:
        parts = max(1, math.ceil(count / most))
        out += [count // parts + (1 if i < count % parts else 0) for i in range(parts)]
    return out


def raise_nofile(need: int) -> None:
    """Raise RLIMIT_NOFILE to ``need`` (the hard limit too, which needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError) as exc:
            raise RuntimeError(f"need RLIMIT_NOFILE >= {need}, the hard limit is {hard}: {exc}") from exc
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _listen(host: str, count: int) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out = []
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0))
        s.listen(4096)
        out.append(s)
    return out


def _reset_close(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER0)
    except OSError:
        pass
    s.close()


# ---- the busy server -------------------------------------------------------------------------


def _server_main(held_ports: int, short_ports: int, nofile: int, host: str, deadline: float) -> None:
    """Accept held connections (keep them) and short ones (reply, close first) until stdin says stop."""
    raise_nofile(nofile)
    held = _listen(host, held_ports)
    short = _listen(host, short_ports)
    if not held and not short:
        raise ValueError("a server with no ports")
    for s in held + short:
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    for s in held:
        sel.register(s, selectors.EVENT_READ, ("held", s))
    for s in short:
        sel.register(s, selectors.EVENT_READ, ("short", s))
    sel.register(sys.stdin, selectors.EVENT_READ, ("stdin", None))
    kept: dict[int, socket.socket] = {}
    ports = ",".join(str(s.getsockname()[1]) for s in held) or "-"
    shorts = ",".join(str(s.getsockname()[1]) for s in short) or "-"
    sys.stdout.write(f"ready {ports} {shorts}\n")
    sys.stdout.flush()
    running = True
    while running and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            what, sock = key.data
            if what == "stdin":
                line = sys.stdin.readline()
                if not line or line.strip() == "stop":
                    running = False
                    break
                sys.stdout.write(f"held {len(kept)}\n")
                sys.stdout.flush()
            elif what == "held":
                for _ in range(256):
                    try:
                        conn, _addr = sock.accept()
                    except BlockingIOError:
                        break
                    conn.setblocking(False)
                    kept[conn.fileno()] = conn
                    sel.register(conn, selectors.EVENT_READ, ("conn", conn))
            elif what == "short":
                for _ in range(256):
                    try:
                        conn, _addr = sock.accept()
                    except BlockingIOError:
                        break
                    try:
                        conn.send(REPLY)
                    except OSError:
                        pass
                    conn.close()  # the server closes first: its side goes to TIME_WAIT
            else:  # a held connection's peer went away (churn): close our end
                conn = sock
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    kept.pop(conn.fileno(), None)
                    _reset_close(conn)
    for conn in kept.values():
        _reset_close(conn)


# ---- the holders -----------------------------------------------------------------------------


class _Held:
    """One holder's connections: to the server's ports, or to its own listeners (both ends held)."""

    def __init__(self, count: int, peer: str, ports: list[int], host: str, offset: int = 0) -> None:
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listeners = _listen(host, math.ceil(count / PAIRS_PER_PORT)) if peer == "self" else []
        self.ports = [s.getsockname()[1] for s in self.listeners] if peer == "self" else ports
        self.conns: list[tuple[socket.socket, ...]] = []
        self._next = offset
        """Connections to the server go round its ports from here (the holders' running total), so its
        processes get equal shares."""
        self.open(count)

    def open(self, n: int) -> None:
        if not self.listeners:
            for _ in range(n):
                c = socket.socket(self.family, socket.SOCK_STREAM)
                c.connect((self.host, self.ports[self._next % len(self.ports)]))
                self._next += 1
                self.conns.append((c,))
            return
        while n > 0:
            batch = min(n, 1000)  # under the accept backlog
            i = self._next % len(self.ports)
            self._next += 1
            clients = []
            for _ in range(batch):
                c = socket.socket(self.family, socket.SOCK_STREAM)
                c.connect((self.host, self.ports[i]))
                clients.append(c)
            for c in clients:
                s, _ = self.listeners[i].accept()
                self.conns.append((c, s))
            n -= batch

    def churn(self, n: int) -> int:
        n = min(n, len(self.conns))
        for _ in range(n):  # from the middle, so churn is spread over the fd table
            for s in self.conns.pop(len(self.conns) // 2):
                _reset_close(s)
        self.open(n)
        return n

    def close(self) -> None:
        for conn in self.conns:
            for s in conn:
                _reset_close(s)
        for s in self.listeners:
            s.close()


def _holder_child(
    count: int, offset: int, spec: dict[str, object], commands: int, replies: int, deadline: float
) -> None:
    ports = spec["ports"]
    assert isinstance(ports, list)
    try:
        raise_nofile((2 if spec["peer"] == "self" else 1) * count + _SPARE_FDS)
        held = _Held(count, str(spec["peer"]), ports, str(spec["host"]), offset)
    except Exception as exc:  # noqa: BLE001 - reported to the spawner, which reports it to the parent
        os.write(replies, f"error {os.getpid()} {type(exc).__name__}: {exc}\n".encode()[:500])
        return
    os.write(replies, f"ok {os.getpid()} {count}\n".encode())
    buf = b""
    while time.monotonic() < deadline:
        ready = select.select([commands], [], [], 1.0)[0]
        if not ready:
            continue
        data = os.read(commands, 4096)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            n = held.churn(int(line.split()[1]))
            os.write(replies, f"ok {os.getpid()} {n}\n".encode())
    held.close()


def _spawner_main(spec: dict[str, object], deadline: float) -> None:
    """Fork one holder per count, one after the other; relay ``churn <percent>`` to them; stop on EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    counts = spec["holders"]
    assert isinstance(counts, list)
    replies_r, replies_w = os.pipe()
    replies = os.fdopen(replies_r, "rb")
    children: list[tuple[int, int, int]] = []  # pid, command pipe, connections
    gc.freeze()  # keep the forked children from copying the interpreter's pages
    offset = 0
    for count in counts:
        cmd_r, cmd_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(cmd_w)
            os.close(replies_r)
            for _, other, _ in children:
                os.close(other)
            code = 0
            try:
                _holder_child(count, offset, spec, cmd_r, replies_w, deadline)
            except BaseException:  # noqa: BLE001 - a child never returns into the spawner's loop
                code = 1
            os._exit(code)
        os.close(cmd_r)
        offset += count
        children.append((pid, cmd_w, count))
        words = replies.readline().decode().split()
        if not words or words[0] != "ok":
            sys.stdout.write(f"error {' '.join(words[1:]) or 'a holder died'}\n")
            sys.stdout.flush()
            _stop_children(children)
            return
    sys.stdout.write(f"ready {','.join(str(pid) for pid, _, _ in children)}\n")
    sys.stdout.flush()
    rng = random.Random(1)
    total = sum(counts)
    while time.monotonic() < deadline:
        if not select.select([sys.stdin], [], [], 1.0)[0]:
            continue
        line = sys.stdin.readline()
        if not line or line.strip() == "stop":
            break
        n = round(total * float(line.split()[1]) / 100.0)
        # Pick n connections at random over all holders, so big holders churn more.
        per: dict[int, int] = {}
        for i in rng.choices(range(len(children)), weights=[c for _, _, c in children], k=n):
            per[i] = per.get(i, 0) + 1
        for i, k in per.items():
            os.write(children[i][1], f"churn {k}\n".encode())
        done = 0
        for _ in per:
            words = replies.readline().decode().split()
            done += int(words[2]) if words and words[0] == "ok" else 0
        sys.stdout.write(f"ok {done}\n")
        sys.stdout.flush()
    _stop_children(children)


def _stop_children(children: list[tuple[int, int, int]]) -> None:
    for _, cmd_w, _ in children:
        os.close(cmd_w)  # EOF: the holder resets its connections and exits
    for pid, _, _ in children:
        os.waitpid(pid, 0)


# ---- the churner -----------------------------------------------------------------------------


def _short_connections(host: str, ports: list[int], n: int, first: int = 0) -> None:
    """``n`` short connections: connect, read the reply to its end (the server closes first), close.

    Connections go round the server's ports (starting at index ``first``): a client port is reused
    per destination, and a SYN from a reused port would end the server's TIME_WAIT early.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    i = first
    while n > 0:
        batch = min(n, 200)
        socks = []
        for _ in range(batch):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.connect((host, ports[i % len(ports)]))
            i += 1
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()
        n -= batch


def _churner_main(host: str, ports: list[int], rate: float, prefill: int, deadline: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _short_connections(host, ports, prefill)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    started = time.monotonic()
    made = 0
    while time.monotonic() < deadline:
        if select.select([sys.stdin], [], [], 0.01)[0]:
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                return
        due = int((time.monotonic() - started) * rate) - made
        if due > 0:
            _short_connections(host, ports, due, made)
            made += due


# ---- the parent side -------------------------------------------------------------------------


class Load:
    """A ``LoadSpec`` built from processes this object starts; ``stop()`` (or ``with``) takes it down."""

    def __init__(self, spec: LoadSpec, max_seconds: float = 3600.0) -> None:
        if not spec.holders and not (spec.churn_per_s or spec.prefill):
            raise ValueError("an empty load")
        self.spec = spec
        self.max_seconds = max_seconds
        room = fd_headroom()
        per_conn = 2 if spec.peer == "self" else 1
        self.holders = split_to_fit(spec.holders, room // per_conn)
        """Connections per holder process: ``spec.holders``, a holder split when its sockets exceed the fd limit."""
        held = sum(spec.holders) if spec.peer == "server" else 0
        self.servers = max(1, math.ceil(held / room))
        """Server processes: one, or several (each with its own ports) when its sockets exceed the fd limit."""
        self.note = ""
        """Says how the load was spread to fit RLIMIT_NOFILE, when it had to be."""
        if len(self.holders) != len(spec.holders) or self.servers > 1:
            self.note = (
                f"spread over {len(self.holders)} holder and {self.servers} server processes to stay under "
                f"RLIMIT_NOFILE ({room + _SPARE_FDS:,} per process here)"
            )
        self._procs: list[tuple[str, subprocess.Popen[str]]] = []
        self.holder_pids: list[int] = []
        self.server_pids: list[int] = []
        self.churner_pid: int | None = None
        self.held_ports: list[int] = []
        """The servers' ports for held connections (empty with ``peer="self"``)."""
        self.short_ports: list[int] = []
        """The server's ports for short connections: its TIME_WAIT sockets have these as local port."""

    @property
    def server_pid(self) -> int | None:
        """The (first) server process."""
        return self.server_pids[0] if self.server_pids else None

    @property
    def pids(self) -> list[int]:
        """Every process holding sockets of the load."""
        return self.server_pids + ([self.churner_pid] if self.churner_pid is not None else []) + self.holder_pids

    @property
    def ports(self) -> list[int]:
        """The servers' listening ports: local port of the servers' held ends and of their TIME_WAIT sockets."""
        return self.held_ports + self.short_ports

    def _start(self, role: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", role, str(self.max_seconds), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._procs.append((role, proc))
        return proc

    def start(self, timeout: float = 300.0) -> Load:
        """Start the server, the holders and the churner; return once every connection is up."""
        spec = self.spec
        try:
            needs_server = spec.peer == "server" or spec.churn_per_s or spec.prefill
            held = sum(spec.holders) if spec.peer == "server" else 0
            share = math.ceil(held / self.servers)
            for i in range(self.servers if needs_server else 0):
                # One short-connection port per 4,000 TIME_WAIT sockets, so client ports are rarely reused on one;
                # the first server takes them all (TIME_WAIT sockets hold no file descriptor).
                shorts = math.ceil(max(spec.time_wait_steady, spec.prefill) / 4000) if i == 0 else 0
                server = self._start("server", str(math.ceil(share / PAIRS_PER_PORT)), str(shorts),
                                     str(share + _SPARE_FDS), spec.host)
                self.server_pids.append(server.pid)
                words = _reply(server, "server", timeout)
                self.held_ports += [int(p) for p in words[1].split(",") if p != "-"]
                self.short_ports += [int(p) for p in words[2].split(",") if p != "-"]
            if spec.holders:
                blob = json.dumps(
                    {"holders": list(self.holders), "peer": spec.peer, "ports": self.held_ports, "host": spec.host}
                )
                spawner = self._start("holders", blob)
                self.holder_pids = [int(p) for p in _reply(spawner, "holders", timeout)[1].split(",")]
            if spec.churn_per_s or spec.prefill:
                shorts_arg = ",".join(map(str, self.short_ports))
                churner = self._start("churner", spec.host, shorts_arg, str(spec.churn_per_s), str(spec.prefill))
                self.churner_pid = churner.pid
                _reply(churner, "churner", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def churn(self, percent: float, timeout: float = 120.0) -> int:
        """Replace ``percent`` % of the held connections (reset, reopened); the number replaced."""
        spawner = self._role("holders")
        if spawner is None:
            return 0
        assert spawner.stdin is not None
        spawner.stdin.write(f"churn {percent}\n")
        spawner.stdin.flush()
        return int(_reply(spawner, "holders", timeout)[1])

    def _role(self, role: str) -> subprocess.Popen[str] | None:
        for name, proc in self._procs:
            if name == role:
                return proc
        return None

    def stop(self) -> None:
        """Stop every process (the churner first, then the holders, then the server); kill any that hangs."""
        for _, proc in reversed(self._procs):
            try:
                if proc.stdin is not None and proc.poll() is None:
                    proc.stdin.write("stop\n")
                    proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._procs = []

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reply(proc: subprocess.Popen[str], role: str, timeout: float) -> list[str]:
    stdout: IO[str] | None = proc.stdout
    assert stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"load process {proc.pid} ({role}) did not answer in {timeout} s")
    words = stdout.readline().split()
    if not words:
        raise RuntimeError(f"load process {proc.pid} ({role}) exited (status {proc.wait()})")
    if words[0] == "error":
        raise RuntimeError(f"load process {proc.pid} ({role}): {' '.join(words[1:])}")
    return words


def count_tcp_states(port_filter: set[int] | None = None) -> dict[str, int]:
    """Counts of TCP sockets by state on this host, from /proc/net/tcp and tcp6 (for reports)."""
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "0A": "LISTEN", "08": "CLOSE_WAIT"}
    counts: dict[str, int] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split(None, 4)
                    if port_filter is not None and int(fields[1].rsplit(":", 1)[1], 16) not in port_filter:
                        continue
                    state = names.get(fields[3], "other")
                    counts[state] = counts.get(state, 0) + 1
        except OSError:
            pass
    return counts


def _parse_holders(text: str) -> tuple[int, ...]:
    """``3x3400`` or ``10,20,30``."""
    if "x" in text:
        n, m = text.split("x", 1)
        return (int(m),) * int(n)
    return tuple(int(x) for x in text.split(","))


def main(argv: list[str] | None = None) -> int:
    """Hold a load until Ctrl-C or ``--seconds`` (or run one of its processes with ``--role``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--role"]:
        role, deadline, rest = argv[1], time.monotonic() + float(argv[2]), argv[3:]
        if role == "server":
            _server_main(int(rest[0]), int(rest[1]), int(rest[2]), rest[3], deadline)
        elif role == "holders":
            _spawner_main(json.loads(rest[0]), deadline)
        elif role == "churner":
            _churner_main(rest[0], [int(p) for p in rest[1].split(",")], float(rest[2]), int(rest[3]), deadline)
        return 0
    parser = argparse.ArgumentParser(description="Hold a loopback load shaped like a busy host until Ctrl-C.")
    parser.add_argument("shape", choices=["realistic", "issue18", "custom"])
    parser.add_argument("sockets", type=int, nargs="?", default=10_000, help="realistic: about this many sockets")
    parser.add_argument("--scale", type=float, default=1.0, help="issue18: multiply connections and churn")
    parser.add_argument("--holders", default="3x3400", help="custom: NxM, or a comma-separated list of counts")
    parser.add_argument("--peer", choices=["server", "self"], default="server")
    parser.add_argument("--churn", type=float, default=0.0, help="custom: short connections per second")
    parser.add_argument("--prefill", type=int, default=0, help="custom: short connections made up front")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: at Ctrl-C)")
    args = parser.parse_args(argv)
    if args.shape == "realistic":
        spec = realistic(args.sockets)
    elif args.shape == "issue18":
        spec = issue18(args.scale)
    else:
        spec = LoadSpec(_parse_holders(args.holders), args.peer, args.churn, args.prefill)
    print(spec.describe(), flush=True)
    started = time.monotonic()
    with Load(spec, max_seconds=args.seconds + 60 if args.seconds else 3600.0) as load:
        print(f"ready in {time.monotonic() - started:.1f} s: {len(load.pids)} processes; Ctrl-C stops", flush=True)
        if load.note:
            print(f"({load.note})", flush=True)
        try:
            while not args.seconds or time.monotonic() - started < args.seconds:
                time.sleep(min(5.0, args.seconds or 5.0))
                print(f"  tcp sockets by state: {count_tcp_states()}", flush=True)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
