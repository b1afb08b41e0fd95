"""``portmon close``: endpoints, the plan, the SOCK_DESTROY request, and closing a real loopback connection (root)."""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from portmon.actions.close import (
    SOCK_DESTROY,
    EndpointError,
    close_connection,
    destroy,
    destroy_request,
    explain_error,
    parse_endpoint,
    plan_close,
)
from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Holder, Snapshot, Socket

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")
root_only = pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="SOCK_DESTROY needs root (CAP_NET_ADMIN)")
WEB = Holder(pid=42, name="web", user="www")


def conn(state: str = ESTABLISHED, cookie: int | None = 7, family: int = 4) -> Socket:
    local, remote = ("127.0.0.1", "127.0.0.1") if family == 4 else ("::ffff:127.0.0.1", "::ffff:127.0.0.1")
    return Socket("tcp", family, local, 8000, remote, 50000, state, (WEB,), inode=1, cookie=cookie)


@pytest.mark.parametrize(
    ("text", "addr", "port", "family"),
    [("127.0.0.1:80", "127.0.0.1", 80, 4), ("[::1]:8080", "::1", 8080, 6), ("[fe80::0001]:1", "fe80::1", 1, 6)],
)
def test_endpoints_are_read(text: str, addr: str, port: int, family: int) -> None:
    assert parse_endpoint(text) == (addr, port, family)


@pytest.mark.parametrize("text", ["::1:80", "localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "[::1]80"])
def test_bad_endpoints_are_refused(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)


def test_the_plan_picks_the_live_connection_not_its_remnant() -> None:
    local, remote = parse_endpoint("127.0.0.1:8000"), parse_endpoint("127.0.0.1:50000")
    plan = plan_close([conn(TIME_WAIT, cookie=3), conn(cookie=9)], local, remote)
    assert plan.target is not None and plan.target.cookie == 9
    mapped = plan_close([conn(family=6)], local, remote)  # an IPv4 peer of an IPv6 socket
    assert mapped.target is not None


def test_the_plan_refuses_listeners_remnants_and_sockets_without_cookie() -> None:
    local, remote = parse_endpoint("127.0.0.1:8000"), parse_endpoint("127.0.0.1:50000")
    listener = Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(WEB,), cookie=1)
    refused = plan_close([listener], local, remote)
    assert refused.target is None and refused.code == 2 and "listening" in (refused.problem or "")
    assert plan_close([conn(TIME_WAIT)], local, remote).code == 1
    assert plan_close([conn(cookie=None)], local, remote).target is None
    assert plan_close([], local, remote).problem == "no TCP connection 127.0.0.1:8000 -> 127.0.0.1:50000"


def test_the_request_names_the_socket_by_addresses_ports_and_cookie() -> None:
    sock = conn(cookie=(5 << 32) | 11)
    msg = destroy_request(sock, seq=3)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq) == (len(msg), SOCK_DESTROY, 3) and flags & 0x4  # acknowledged
    family, proto = struct.unpack_from("=BB", msg, 16)
    assert (family, proto) == (socket.AF_INET, socket.IPPROTO_TCP)
    sport, dport = struct.unpack_from(">HH", msg, 24)
    assert (sport, dport) == (8000, 50000)
    assert msg[28:32] == socket.inet_aton("127.0.0.1") and msg[44:48] == socket.inet_aton("127.0.0.1")
    assert struct.unpack_from("=III", msg, 60) == (0, 11, 5)
    assert len(msg) == 16 + 56


def _scan(*sockets: Socket) -> Snapshot:
    return Snapshot(sockets=sockets, taken_at=0.0)


def test_close_confirms_by_rescan_and_explains_refusals() -> None:
    target = conn()
    gone = close_connection(target, lambda: _scan(), destroyer=lambda s: None)
    assert gone.closed and gone.error is None
    still = close_connection(target, lambda: _scan(target), destroyer=lambda s: None)
    assert not still.closed and "still there" in (still.error or "")

    def refuse(code: int) -> object:
        def destroyer(sock: Socket) -> None:
            raise OSError(code, os.strerror(code))

        return destroyer

    eperm = close_connection(target, lambda: _scan(), destroyer=refuse(errno.EPERM))  # type: ignore[arg-type]
    assert not eperm.closed and eperm.errno == errno.EPERM and "root (CAP_NET_ADMIN)" in (eperm.error or "")
    nosupp = close_connection(target, lambda: _scan(), destroyer=refuse(errno.EOPNOTSUPP))  # type: ignore[arg-type]
    assert "CONFIG_INET_DIAG_DESTROY" in (nosupp.error or "")
    assert "gone already" in explain_error(OSError(errno.ENOENT, "x"))


def _portmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_bad_input_is_one_line_and_exit_2() -> None:
    res = _portmon("close", "nonsense", "127.0.0.1:5")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


SERVER = textwrap.dedent(
    """
    import socket, sys
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print(listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    print("accepted", flush=True)
    sys.stdin.readline()  # lives until the test says so
    """
)


@pytest.fixture
def served() -> object:
    """A server in a child process, and this process's connection to it: (child, client socket, server port)."""
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        port = int(child.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        assert child.stdout.readline().strip() == "accepted"
        yield child, client, port
        client.close()
    finally:
        child.stdin.close()
        child.wait(timeout=30)


@pytest.mark.skipif(not LINUX, reason="SOCK_DESTROY is Linux's")
def test_without_a_terminal_it_asks_for_yes(served: tuple[subprocess.Popen[str], socket.socket, int]) -> None:
    _, client, port = served
    res = _portmon("close", f"127.0.0.1:{port}", f"127.0.0.1:{client.getsockname()[1]}")
    assert res.returncode == 2 and "--yes" in res.stderr


@root_only
def test_close_ends_the_connection_and_the_server_lives(
    served: tuple[subprocess.Popen[str], socket.socket, int],
) -> None:
    child, client, port = served
    res = _portmon("close", f"127.0.0.1:{port}", f"127.0.0.1:{client.getsockname()[1]}", "--yes", "--json")
    doc = json.loads(res.stdout)
    if doc.get("errno") == errno.EOPNOTSUPP:
        pytest.skip("this kernel has no CONFIG_INET_DIAG_DESTROY")
    assert res.returncode == 0, res.stdout + res.stderr
    assert doc["closed"] is True and doc["socket"]["pid"] == child.pid
    # The client sees its connection end (the kernel reset it) while the server process goes on.
    try:
        ended = client.recv(1024) == b""
    except ConnectionResetError:
        ended = True
    assert ended
    assert child.poll() is None


@root_only
def test_without_cap_net_admin_the_kernel_says_eperm(served: tuple[subprocess.Popen[str], socket.socket, int]) -> None:
    _, client, port = served
    from portmon.collect.procfs import ProcfsCollector

    cport = client.getsockname()[1]
    sockets = ProcfsCollector().scan().sockets
    target = next(s for s in sockets if s.proto == "tcp" and s.local_port == cport and s.remote_port == port)
    pid = os.fork()
    if pid == 0:  # the child drops root and tries
        code = 3
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                destroy(target)
            except OSError as exc:
                code = 0 if exc.errno == errno.EPERM else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
