"""Tests of the bind probe: the verdicts from scripted binds and sockets, and real test binds on loopback."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence

import pytest

from portmon.actions.binds import (
    BIND_DENIED,
    BIND_IN_USE,
    BIND_OK,
    BIND_UNAVAILABLE,
    PROBE_ADDRESSES,
    BindAttempt,
    probe_binds,
    simulated_binder,
    try_bind,
)
from portmon.actions.kill.text import MAX_SOCKETS_LISTED
from portmon.actions.why import (
    FREE,
    HELD,
    HIDDEN,
    PARTIAL,
    PRIVILEGED,
    REMNANTS,
    UNKNOWN,
    UNSEEN,
    answer_lines,
    explain,
    judge,
    report_lines,
    report_record,
)
from portmon.model import (
    ESTABLISHED,
    FIN_WAIT2,
    LISTEN,
    OWNER_HIDDEN,
    OWNER_KERNEL,
    OWNER_UNSEEN,
    TIME_WAIT,
    Holder,
    Socket,
)
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessDetail

NOW = 1_767_268_800.0
STARTED = NOW - 3723.0  # up 1h 02m


def binds(proto: str = "tcp", *, plain: dict[str, str] | None = None, default: str = BIND_OK,
          reuse_default: str | None = None) -> tuple[BindAttempt, ...]:
    """Scripted test binds: every address ``default`` unless listed in ``plain`` (the SO_REUSEADDR ones
    ``reuse_default`` when given)."""
    out = []
    for family, address in PROBE_ADDRESSES:
        for use_reuse in (False, True):
            result = (plain or {}).get(address, default)
            if use_reuse and reuse_default is not None:
                result = reuse_default
            error = None if result == BIND_OK else f"bind: {result}"
            out.append(BindAttempt(proto, family, address, use_reuse, result, error))
    return tuple(out)


def listener(port: int = 8000, addr: str = "0.0.0.0", *, pids: Sequence[int] = (4121,), proto: str = "tcp",
             family: int = 4, note: str | None = None, user: str = "alice") -> Socket:
    return Socket(
        proto=proto,
        family=family,
        local_addr=addr,
        local_port=port,
        state=LISTEN if proto == "tcp" else None,
        holders=tuple(Holder(pid, "python3", user, STARTED) for pid in pids),
        owner_note=note,
    )


def connection(port: int, state: str, *, pids: Sequence[int] = (), note: str | None = OWNER_KERNEL) -> Socket:
    return Socket(
        proto="tcp",
        family=4,
        local_addr="127.0.0.1",
        local_port=port,
        remote_addr="127.0.0.1",
        remote_port=50000 + len(pids),
        state=state,
        holders=tuple(Holder(pid, "python3", "alice", STARTED) for pid in pids),
        owner_note=None if pids else note,
    )


def reader(pid: int, create_time: float | None = None) -> ProcessDetail:
    if pid == 666:
        return ProcessDetail(pid=pid, error=f"process {pid} has exited")
    return ProcessDetail(
        pid=pid,
        name="python3",
        user="root" if pid < 1000 else "alice",
        cmdline=("python3", "-m", "http.server", "8000"),
        create_time=STARTED,
    )


def verdict(binds_: Sequence[BindAttempt], sockets: Sequence[Socket], *, privileged: bool = True,
            user: str | None = "alice", port: int = 8000, proto: str = "tcp"):  # type: ignore[no-untyped-def]
    return judge(port, proto, binds_, sockets, privileged=privileged, reader=reader, now=NOW, user=user)


# -- verdicts ---------------------------------------------------------------------------------


def test_free_when_every_plain_bind_succeeds() -> None:
    answer = verdict(binds(), [])
    assert answer.free and answer.reason == FREE
    assert answer.message == "port 8000/tcp is free: a server can bind it now"
    assert answer.free_addresses == ("0.0.0.0", "127.0.0.1", "::", "::1") and answer.taken == ()
    assert answer.holders == () and answer.kill_command is None


def test_free_even_with_remnants_that_do_not_block() -> None:
    answer = verdict(binds(), [connection(8000, TIME_WAIT)])
    assert answer.free and answer.reason == FREE
    assert any("do not block it" in d for d in answer.details)


def test_held_by_a_wildcard_listener_names_holders_uptime_and_the_kill_command() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [listener(pids=(4121, 4122))])
    assert not answer.free and answer.reason == HELD
    assert answer.message == "port 8000/tcp is in use: held by python3 (4121), python3 (4122)"
    assert [h.pid for h in answer.holders] == [4121, 4122]
    first = answer.holders[0]
    assert first.user == "alice" and first.cmdline == ("python3", "-m", "http.server", "8000")
    assert first.uptime == pytest.approx(3723.0) and first.sockets == ("tcp4 0.0.0.0:8000 LISTEN",)
    assert answer.kill_command == "portmon kill 8000/tcp"
    text = "\n".join(answer_lines(answer))
    assert "pid 4121  python3  user alice  up 1h 02m" in text
    assert "cmd  python3 -m http.server 8000" in text
    assert "to free it: portmon kill 8000/tcp" in text


def test_a_holder_with_thousands_of_connections_lists_its_listener_and_a_few() -> None:
    conns = [connection(8000, ESTABLISHED, pids=(4121,))._replace(remote_port=40000 + i) for i in range(3000)]
    answer = verdict(binds(default=BIND_IN_USE), [*conns, listener(pids=(4121,))])
    assert len(answer.holders[0].sockets) == 3001  # every socket stays in the answer (and in --json)
    lines = [line for line in answer_lines(answer) if line.startswith("    on ")]
    assert lines[0] == "    on   tcp4 0.0.0.0:8000 LISTEN"  # the listener first, though it came last
    assert len(lines) == MAX_SOCKETS_LISTED + 1
    assert lines[-1] == f"    on   … and {3001 - MAX_SOCKETS_LISTED:,} more sockets on this port"


def test_held_by_a_wildcard_listener_with_only_ipv6_loopback_free_is_still_held() -> None:
    answer = verdict(simulated_binder([listener()])(8000, "tcp"), [listener()])
    assert answer.reason == HELD  # 0.0.0.0 includes 127.0.0.1; ::1 being free does not make it partial
    assert answer.free_addresses == ("::1",)
    assert any(d == "a bind fails on 0.0.0.0, 127.0.0.1, :: and succeeds on ::1" for d in answer.details)


def test_bound_on_loopback_only_says_which_addresses_are_taken_and_which_are_free() -> None:
    sockets = [listener(addr="127.0.0.1")]
    answer = verdict(simulated_binder(sockets)(8000, "tcp"), sockets)
    assert not answer.free and answer.reason == PARTIAL
    assert answer.message == "port 8000/tcp is taken on 127.0.0.1 only, by python3 (4121); still free on ::1"
    assert answer.taken == ("0.0.0.0", "127.0.0.1", "::") and answer.free_addresses == ("::1",)
    assert answer.kill_command == "portmon kill 8000/tcp"


def test_held_only_by_connections_says_nobody_listens() -> None:
    sockets = [connection(8000, ESTABLISHED, pids=(4121,))]
    answer = verdict(binds(default=BIND_IN_USE), sockets)
    assert answer.reason == HELD
    assert any("no process listens on it" in d for d in answer.details)


def test_time_wait_only_with_reuseaddr_working() -> None:
    sockets = [connection(8000, TIME_WAIT), connection(8000, FIN_WAIT2)]
    answer = verdict(binds(default=BIND_IN_USE, reuse_default=BIND_OK), sockets)
    assert not answer.free and answer.reason == REMNANTS
    assert answer.reuseaddr_ok is True
    assert "held only by the kernel: 2 closed connections (1 FIN_WAIT2, 1 TIME_WAIT)" in answer.message
    text = "\n".join(answer.details)
    assert "60 s on Linux" in text and "a server that sets SO_REUSEADDR can bind the port now" in text
    assert answer.holders == () and answer.kill_command is None


def test_time_wait_only_when_reuseaddr_does_not_help() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [connection(8000, TIME_WAIT)])
    assert answer.reason == REMNANTS and answer.reuseaddr_ok is False
    assert any("even with SO_REUSEADDR the test bind failed" in d for d in answer.details)


def test_ownerless_closing_states_are_remnants_even_when_the_collector_calls_them_hidden() -> None:
    # Without root the collector cannot tell an orphaned FIN_WAIT2 from another user's socket.
    sockets = [connection(8000, FIN_WAIT2, note=OWNER_HIDDEN), connection(8000, TIME_WAIT)]
    answer = verdict(binds(default=BIND_IN_USE), sockets, privileged=False)
    assert answer.reason == REMNANTS
    assert "(1 FIN_WAIT2, 1 TIME_WAIT)" in answer.message


def test_hidden_owner_says_root_would_show_it() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [listener(pids=(), note=OWNER_HIDDEN)], privileged=False)
    assert answer.reason == HIDDEN and not answer.free
    assert "run as root to see it (sudo portmon why 8000/tcp)" in answer.message


def test_unseen_owner_as_root_blames_another_namespace() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [listener(pids=(), note=OWNER_UNSEEN)])
    assert answer.reason == UNSEEN and "another PID namespace" in answer.message


def test_system_port_without_privileges() -> None:
    answer = verdict(binds(default=BIND_DENIED), [], privileged=False, port=80)
    assert answer.reason == PRIVILEGED and not answer.free
    assert answer.message.startswith("port 80/tcp needs privileges")


def test_a_held_system_port_names_the_holder_and_notes_privileges() -> None:
    sockets = [listener(port=80, pids=(812,), user="root")]
    answer = verdict(binds(default=BIND_DENIED), sockets, privileged=False, port=80)
    assert answer.reason == HELD
    assert any("needs privileges in any case" in d for d in answer.details)
    # Another user's process: killing it takes root.
    assert answer.kill_command == "sudo portmon kill 80/tcp"


def test_kill_command_needs_no_sudo_as_root_or_for_ones_own_process() -> None:
    sockets = [listener(user="alice")]
    in_use = binds(default=BIND_IN_USE)
    assert verdict(in_use, sockets, privileged=False, user="alice").kill_command == "portmon kill 8000/tcp"
    assert verdict(in_use, sockets, privileged=True, user="bob").kill_command == "portmon kill 8000/tcp"


def test_in_use_with_nothing_in_the_table_is_unknown() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [])
    assert answer.reason == UNKNOWN and not answer.free and "try again" in answer.message


def test_nothing_testable_is_unknown_never_free() -> None:
    answer = verdict(binds(default=BIND_UNAVAILABLE), [])
    assert answer.reason == UNKNOWN and not answer.free


def test_unavailable_ipv6_is_left_out_of_the_verdict() -> None:
    no_v6 = binds(plain={"::": BIND_UNAVAILABLE, "::1": BIND_UNAVAILABLE})
    answer = verdict(no_v6, [])
    assert answer.free and answer.free_addresses == ("0.0.0.0", "127.0.0.1")


def test_a_holder_that_exited_meanwhile_is_still_named_from_the_snapshot() -> None:
    answer = verdict(binds(default=BIND_IN_USE), [listener(pids=(666,))])
    assert answer.holders[0].name == "python3" and answer.holders[0].error == "process 666 has exited"
    assert "note process 666 has exited" in "\n".join(answer_lines(answer))


def test_only_sockets_on_the_port_and_protocol_count() -> None:
    others = [listener(port=8001), listener(port=8000, proto="udp"), listener(port=18000)]
    assert verdict(binds(), others).holders == ()
    assert verdict(binds(default=BIND_IN_USE), others).reason == UNKNOWN


def test_hostile_names_and_command_lines_are_escaped() -> None:
    def evil_reader(pid: int, create_time: float | None = None) -> ProcessDetail:
        return ProcessDetail(
            pid=pid, name="[/]\x1b[2J", user="m\x07", cmdline=("x\n", "\u202eevil"), create_time=STARTED
        )

    sock = Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(Holder(7, "[/]\x1b[2J", "m\x07"),))
    answer = judge(8000, "tcp", binds(default=BIND_IN_USE), [sock], privileged=True, reader=evil_reader, now=NOW)
    text = "\n".join(answer_lines(answer))
    for bad in ("\x1b", "\x07", "\u202e"):
        assert bad not in text
    assert "x\\n \\u202eevil" in text and "[/]\\x1b[2J (7)" in text


# -- reports, text and JSON ---------------------------------------------------------------------


def test_without_a_protocol_a_udp_holder_makes_the_port_busy() -> None:
    sockets = [listener(port=5353, proto="udp")]
    report = explain(PortSpec(5353), sockets, binder=simulated_binder(sockets), reader=reader, privileged=True, now=NOW)
    assert [a.proto for a in report.answers] == ["tcp", "udp"]
    assert report.primary.proto == "udp" and not report.primary.free and report.primary.reason == HELD
    assert report.exit_code == 1 and report.held_protocols == ("udp",)
    lines = report_lines(report)
    assert lines[0] == "port 5353 is in use over udp; free over tcp"
    assert lines[1].startswith("port 5353/udp is in use: held by ")
    assert lines[-1] == (
        "also checked 5353/tcp (give 5353/tcp or /udp to check one): port 5353/tcp is free: a server can bind it now"
    )
    doc = report_record(report)
    assert doc["proto"] == "udp" and doc["port_free"] is False and doc["held_protocols"] == ["udp"]
    assert [a["proto"] for a in doc["also_checked"]] == ["tcp"]


def test_without_a_protocol_both_held_names_both_and_tcp_leads() -> None:
    sockets = [listener(port=5353, proto="udp"), listener(port=5353)]
    report = explain(PortSpec(5353), sockets, binder=simulated_binder(sockets), reader=reader, privileged=True, now=NOW)
    assert report.primary.proto == "tcp" and report.exit_code == 1
    lines = report_lines(report)
    assert lines[0] == "port 5353 is in use over tcp and udp"
    assert lines[-1].startswith("also checked 5353/udp (give 5353/tcp or /udp to check one): port 5353/udp is in use")


def test_without_a_protocol_free_over_both_is_free() -> None:
    report = explain(PortSpec(5353), [], binder=simulated_binder([]), reader=reader, privileged=True, now=NOW)
    assert report.free and report.exit_code == 0 and report.headline is None
    assert report_lines(report)[0] == "port 5353/tcp is free: a server can bind it now"


def test_a_given_protocol_is_the_only_one_checked() -> None:
    sockets = [listener(port=5353, proto="udp")]
    report = explain(
        PortSpec(5353, "udp"), sockets, binder=simulated_binder(sockets), reader=reader, privileged=True, now=NOW
    )
    assert [a.proto for a in report.answers] == ["udp"] and report.exit_code == 1


def test_json_record() -> None:
    sockets = [listener(addr="127.0.0.1")]
    report = explain(PortSpec(8000), sockets, binder=simulated_binder(sockets), reader=reader, privileged=True, now=NOW)
    doc = json.loads(json.dumps(report_record(report)))
    assert doc["port"] == 8000 and doc["proto"] == "tcp" and doc["free"] is False and doc["reason"] == PARTIAL
    assert doc["proto_given"] is False
    assert doc["holders"][0]["pid"] == 4121 and doc["holders"][0]["cmdline"] == ["python3", "-m", "http.server", "8000"]
    assert doc["holders"][0]["uptime_seconds"] == pytest.approx(3723.0)
    assert doc["kill_command"] == "portmon kill 8000/tcp"
    assert doc["taken_addresses"] == ["0.0.0.0", "127.0.0.1", "::"] and doc["free_addresses"] == ["::1"]
    assert len(doc["binds"]) == 8
    every = {(a, r) for _, a in PROBE_ADDRESSES for r in (False, True)}
    assert {(b["address"], b["reuseaddr"]) for b in doc["binds"]} == every
    assert doc["sockets"][0]["local_addr"] == "127.0.0.1"
    assert [a["proto"] for a in doc["also_checked"]] == ["udp"] and doc["also_checked"][0]["free"] is True


# -- the simulation -------------------------------------------------------------------------------


def test_simulated_binder_follows_the_dual_stack_rules() -> None:
    def results(sockets: Sequence[Socket], reuse: bool = False) -> dict[str, str]:
        return {b.address: b.result for b in simulated_binder(sockets)(8000, "tcp") if b.reuseaddr == reuse}

    assert results([listener(addr="::1", family=6)]) == {
        "0.0.0.0": BIND_OK, "127.0.0.1": BIND_OK, "::": BIND_IN_USE, "::1": BIND_IN_USE
    }
    assert results([listener(addr="::", family=6)]) == {a: BIND_IN_USE for _, a in PROBE_ADDRESSES}
    assert results([connection(8000, TIME_WAIT)], reuse=True) == {a: BIND_OK for _, a in PROBE_ADDRESSES}
    assert set(results([], reuse=False).values()) == {BIND_OK}
    denied = simulated_binder([], denied_below=1024)(80, "tcp")
    assert {b.result for b in denied} == {BIND_DENIED}
    assert {b.result for b in simulated_binder([], ipv6=False)(80, "tcp") if b.family == 6} == {BIND_UNAVAILABLE}


# -- real test binds on loopback ----------------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 only, on a port the kernel picks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def test_real_binds_see_a_loopback_listener(loopback_listener: int) -> None:
    attempts = probe_binds(loopback_listener, "tcp")
    assert len(attempts) == 8
    result = {(b.address, b.reuseaddr): b.result for b in attempts}
    assert result[("127.0.0.1", False)] == BIND_IN_USE
    assert result[("127.0.0.1", True)] == BIND_IN_USE  # SO_REUSEADDR never shares with a listener
    assert result[("0.0.0.0", False)] == BIND_IN_USE
    in_use = next(b for b in attempts if b.address == "127.0.0.1" and not b.reuseaddr)
    assert in_use.error is not None and "EADDRINUSE" in in_use.error
    if _ipv6_loopback():
        assert result[("::1", False)] == BIND_OK  # a different address: free


def test_real_binds_on_a_free_port_succeed_and_leave_nothing_open() -> None:
    port = _free_port()
    before = _open_fds()
    attempts = probe_binds(port, "tcp")
    assert all(b.ok or b.result == BIND_UNAVAILABLE for b in attempts)
    assert any(b.ok and b.address == "127.0.0.1" for b in attempts)
    assert _open_fds() == before
    # Every probe socket is closed: the port can be bound (and listened on) again without SO_REUSEADDR.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        s.listen()


def test_real_udp_binds() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        result = {(b.address, b.reuseaddr): b.result for b in probe_binds(port, "udp")}
        assert result[("127.0.0.1", False)] == BIND_IN_USE
    assert try_bind(port, "udp", 4, "127.0.0.1", False).ok


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError):
        probe_binds(8000, "sctp")
