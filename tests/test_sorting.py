"""Tests for sorting sockets by column: typed order, unknowns last both ways, stable deterministic ties."""

from __future__ import annotations

import random
from typing import Any

import pytest

from portmon.model import (
    CLOSE_WAIT,
    ESTABLISHED,
    LISTEN,
    SYN_SENT,
    TIME_WAIT,
    Holder,
    Socket,
)
from portmon.query import sorting
from portmon.query.sorting import COLUMNS, STATE_ORDER, address_sort_key, sort_sockets


def sock(
    proto: str = "tcp",
    family: int = 4,
    local: str = "127.0.0.1",
    lport: int = 8080,
    remote: str | None = None,
    rport: int | None = None,
    state: str | None = LISTEN,
    holders: tuple[Holder, ...] = (),
    lservice: str | None = None,
    rservice: str | None = None,
    inode: int = 0,
    seq: int = 0,
) -> Socket:
    """A hand-built socket with sensible defaults."""
    return Socket(
        proto=proto,
        family=family,
        local_addr=local,
        local_port=lport,
        remote_addr=remote,
        remote_port=rport,
        state=state,
        holders=holders,
        local_service=lservice,
        remote_service=rservice,
        inode=inode,
        seq=seq,
    )


def owned(pid: int, name: str | None = None, user: str | None = None, **kw: Any) -> Socket:
    """A socket held by one process."""
    return sock(holders=(Holder(pid=pid, name=name, user=user),), **kw)


def column(socks: list[Socket], name: str) -> list[Any]:
    """The sort values of a column, as the table would show them."""
    if name == "proto":
        return [s.proto_label for s in socks]
    return [getattr(s, name) for s in socks]


def test_columns() -> None:
    assert COLUMNS == (
        "proto",
        "local_addr",
        "local_port",
        "local_service",
        "remote_addr",
        "remote_port",
        "remote_service",
        "state",
        "pid",
        "process",
        "user",
    )


def test_unknown_column_raises() -> None:
    with pytest.raises(ValueError, match="unknown sort column 'nosuch'"):
        sort_sockets([sock()], "nosuch")
    with pytest.raises(ValueError):
        sort_sockets([], "nosuch")


@pytest.mark.parametrize("name", COLUMNS)
def test_empty_and_single(name: str) -> None:
    one = sock()
    assert sort_sockets([], name) == []
    assert sort_sockets([one], name, descending=True) == [one]
    assert sort_sockets(iter([one]), name) == [one]


# --- numbers ----------------------------------------------------------------------------------------


def test_local_port_numeric_both_ways() -> None:
    socks = [sock(lport=p, seq=i) for i, p in enumerate([8080, 22, 443, 80, 10000, 9])]
    assert column(sort_sockets(socks, "local_port"), "local_port") == [9, 22, 80, 443, 8080, 10000]
    assert column(sort_sockets(socks, "local_port", True), "local_port") == [10000, 8080, 443, 80, 22, 9]


def test_remote_port_none_last_both_ways() -> None:
    socks = [
        sock(lport=1, remote="10.0.0.1", rport=443, state=ESTABLISHED),
        sock(lport=2),
        sock(lport=3, remote="10.0.0.1", rport=80, state=ESTABLISHED),
        sock(lport=4),
        sock(lport=5, remote="10.0.0.1", rport=0, state=ESTABLISHED),
    ]
    assert column(sort_sockets(socks, "remote_port"), "remote_port") == [0, 80, 443, None, None]
    assert column(sort_sockets(socks, "remote_port", True), "remote_port") == [443, 80, 0, None, None]


def test_pid_numeric_none_last_both_ways() -> None:
    socks = [owned(1000, lport=1), sock(lport=2), owned(2, lport=3), owned(30, lport=4), sock(lport=5)]
    assert column(sort_sockets(socks, "pid"), "pid") == [2, 30, 1000, None, None]
    assert column(sort_sockets(socks, "pid", True), "pid") == [1000, 30, 2, None, None]


# --- addresses --------------------------------------------------------------------------------------


def test_addresses_by_value_ipv4_before_ipv6() -> None:
    addrs = ["::1", "10.0.0.10", "10.0.0.9", "2001:db8::1", "192.168.1.1", "fe80::1%eth0", "9.255.255.255"]
    socks = [sock(local=a, family=6 if ":" in a else 4, lport=i) for i, a in enumerate(addrs)]
    up = ["9.255.255.255", "10.0.0.9", "10.0.0.10", "192.168.1.1", "::1", "2001:db8::1", "fe80::1%eth0"]
    assert column(sort_sockets(socks, "local_addr"), "local_addr") == up
    assert column(sort_sockets(socks, "local_addr", True), "local_addr") == up[::-1]


def test_ipv4_mapped_sorts_beside_ipv4() -> None:
    addrs = ["10.0.0.2", "::ffff:10.0.0.1", "::1", "10.0.0.1", "10.0.0.3"]
    socks = [sock(local=a, lport=i) for i, a in enumerate(addrs)]
    ordered = column(sort_sockets(socks, "local_addr"), "local_addr")
    assert ordered == ["10.0.0.1", "::ffff:10.0.0.1", "10.0.0.2", "10.0.0.3", "::1"]


def test_non_ip_text_after_ips() -> None:
    socks = [sock(local="*", lport=1), sock(local="::", lport=2), sock(local="0.0.0.0", lport=3)]
    assert column(sort_sockets(socks, "local_addr"), "local_addr") == ["0.0.0.0", "::", "*"]
    assert column(sort_sockets(socks, "local_addr", True), "local_addr") == ["*", "::", "0.0.0.0"]


def test_remote_addr_unknown_last_both_ways() -> None:
    socks = [
        sock(lport=1, remote="2001:db8::5", rport=1),
        sock(lport=2),
        sock(lport=3, remote="8.8.8.8", rport=1),
        sock(lport=4, remote="", rport=None),
        sock(lport=5, remote="1.1.1.1", rport=1),
    ]
    up = column(sort_sockets(socks, "remote_addr"), "remote_addr")
    assert up[:3] == ["1.1.1.1", "8.8.8.8", "2001:db8::5"]
    assert set(up[3:]) == {None, ""}
    down = column(sort_sockets(socks, "remote_addr", True), "remote_addr")
    assert down[:3] == ["2001:db8::5", "8.8.8.8", "1.1.1.1"]
    assert set(down[3:]) == {None, ""}


def test_address_sort_key() -> None:
    assert address_sort_key("10.0.0.1") == (0, 0x0A000001, "10.0.0.1")
    assert address_sort_key("::ffff:10.0.0.1")[:2] == (0, 0x0A000001)
    assert address_sort_key("::1") == (1, 1, "::1")
    assert address_sort_key("fe80::1%lo")[:2] == (1, 0xFE80 << 112 | 1)
    assert address_sort_key("nonsense")[0] == 2


# --- text -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["process", "user"])
def test_holder_text_case_insensitive_none_last(name: str) -> None:
    values = ["nginx", None, "Apache", "zsh", "bash", None]
    socks = [owned(100 + i, lport=i, **{"name" if name == "process" else "user": v}) for i, v in enumerate(values)]
    socks.append(sock(lport=99))  # no holder at all: unknown too
    assert column(sort_sockets(socks, name), name) == ["Apache", "bash", "nginx", "zsh", None, None, None]
    assert column(sort_sockets(socks, name, True), name) == ["zsh", "nginx", "bash", "Apache", None, None, None]


@pytest.mark.parametrize("name", ["local_service", "remote_service"])
def test_services_case_insensitive_unknown_last(name: str) -> None:
    values = ["ssh", None, "HTTP", "domain", "", "https"]
    if name == "local_service":
        socks = [sock(lport=i, lservice=v) for i, v in enumerate(values)]
    else:
        socks = [sock(lport=i, rservice=v) for i, v in enumerate(values)]
    up = column(sort_sockets(socks, name), name)
    assert up[:4] == ["domain", "HTTP", "https", "ssh"]
    assert set(up[4:]) == {None, ""}
    down = column(sort_sockets(socks, name, True), name)
    assert down[:4] == ["ssh", "https", "HTTP", "domain"]
    assert set(down[4:]) == {None, ""}


def test_text_same_but_for_case_has_a_fixed_order() -> None:
    socks = [owned(1, "Foo", lport=1), owned(2, "foo", lport=1), owned(3, "FOO", lport=1)]
    first = column(sort_sockets(socks, "process"), "process")
    assert first == ["FOO", "Foo", "foo"]
    assert column(sort_sockets(socks[::-1], "process"), "process") == first


def test_proto_by_label() -> None:
    socks = [
        sock(proto="udp", family=6, lport=1, state=None),
        sock(proto="tcp", family=6, lport=2),
        sock(proto="udp", family=4, lport=3, state=None),
        sock(proto="tcp", family=4, lport=4),
    ]
    assert column(sort_sockets(socks, "proto"), "proto") == ["tcp4", "tcp6", "udp4", "udp6"]
    assert column(sort_sockets(socks, "proto", True), "proto") == ["udp6", "udp4", "tcp6", "tcp4"]


# --- state ------------------------------------------------------------------------------------------


def test_state_lifecycle_order_none_last_both_ways() -> None:
    states = [TIME_WAIT, None, ESTABLISHED, "WEIRD", LISTEN, CLOSE_WAIT, SYN_SENT]
    socks = [sock(lport=i, state=s) for i, s in enumerate(states)]
    up = [LISTEN, SYN_SENT, ESTABLISHED, TIME_WAIT, CLOSE_WAIT, "WEIRD", None]
    assert column(sort_sockets(socks, "state"), "state") == up
    assert column(sort_sockets(socks, "state", True), "state") == up[-2::-1] + [None]


def test_state_order_covers_every_tcp_state() -> None:
    from portmon.model import TCP_STATES

    assert sorted(STATE_ORDER) == sorted(TCP_STATES)
    assert STATE_ORDER[0] == LISTEN


# --- every column, both directions ------------------------------------------------------------------


def _mixed() -> list[Socket]:
    rng = random.Random(7)
    names = ["nginx", "Postgres", "sshd", None]
    users = ["root", "Alice", None]
    states = [LISTEN, ESTABLISHED, TIME_WAIT, None]
    out = []
    for i in range(200):
        v6 = rng.random() < 0.4
        has_remote = rng.random() < 0.6
        holder = () if rng.random() < 0.2 else (Holder(rng.randrange(1, 50), rng.choice(names), rng.choice(users)),)
        out.append(
            sock(
                proto=rng.choice(["tcp", "udp"]),
                family=6 if v6 else 4,
                local=rng.choice(["::1", "fe80::2"]) if v6 else rng.choice(["127.0.0.1", "10.0.0.2", "0.0.0.0"]),
                lport=rng.choice([22, 80, 443, 8080, rng.randrange(65536)]),
                remote=(rng.choice(["::1", "2001:db8::9"]) if v6 else rng.choice(["127.0.0.1", "10.9.9.9"]))
                if has_remote
                else None,
                rport=rng.randrange(1024, 1100) if has_remote else None,
                state=rng.choice(states),
                holders=holder,
                lservice=rng.choice(["http", "SSH", None]),
                rservice=rng.choice(["https", None]),
                seq=i,
            )
        )
    return out


def _value_key(name: str, value: Any) -> Any:
    if name in ("local_addr", "remote_addr"):
        return address_sort_key(value)
    if name == "state":
        order = {s: i for i, s in enumerate(STATE_ORDER)}
        return order.get(value, len(order)), value
    if isinstance(value, str):
        return value.casefold(), value
    return value


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("name", COLUMNS)
def test_every_column_is_ordered_with_unknowns_last(name: str, descending: bool) -> None:
    socks = _mixed()
    result = sort_sockets(socks, name, descending)
    assert sorted(map(id, result)) == sorted(map(id, socks))  # a permutation
    values = column(result, name)
    known = [v for v in values if v is not None and v != ""]
    unknown = values[len(known) :]
    assert all(v is None or v == "" for v in unknown), "unknown values must all come last"
    keys = [_value_key(name, v) for v in known]
    assert keys == sorted(keys, reverse=descending)


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("name", COLUMNS)
def test_order_does_not_depend_on_input_order(name: str, descending: bool) -> None:
    socks = _mixed()
    expected = sort_sockets(socks, name, descending)
    for seed in range(3):
        shuffled = socks[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_sockets(shuffled, name, descending) == expected


def test_identical_but_for_key_fields_fixed_order() -> None:
    # Same state and ports; a, b and c also share the remote address, so only the Socket.key (local
    # address and family) tells them apart.
    a = sock(local="10.0.0.2", lport=80, remote="10.0.0.9", rport=5000, state=ESTABLISHED)
    b = sock(local="10.0.0.1", lport=80, remote="10.0.0.9", rport=5000, state=ESTABLISHED)
    c = sock(local="::1", family=6, lport=80, remote="10.0.0.9", rport=5000, state=ESTABLISHED)
    d = sock(local="10.0.0.1", lport=80, remote="10.0.0.8", rport=5000, state=ESTABLISHED)
    expected = sort_sockets([a, b, c, d], "state")
    assert [s for s in expected if s is not d] == [b, a, c]  # family 4 before 6, then local address
    for perm in ([d, c, b, a], [c, a, d, b], [b, d, a, c]):
        assert sort_sockets(perm, "state") == expected
        assert sort_sockets(perm, "state", descending=True) == expected
        assert sort_sockets(perm, "remote_addr") == [d, b, a, c]  # there the address is the value


def test_equal_keys_keep_input_order() -> None:
    a = owned(1, "x", lport=80)
    b = owned(2, "y", lport=80)  # same key as a (only the holder differs)
    assert a.key == b.key
    assert sort_sockets([a, b], "local_port") == [a, b]
    assert sort_sockets([b, a], "local_port") == [b, a]


def test_does_not_modify_input() -> None:
    socks = _mixed()
    before = list(socks)
    sort_sockets(socks, "state", True)
    assert socks == before


def _tie_ports(s: Socket, name: str) -> tuple[int, ...]:
    """The documented start of the tie order: local port, then remote port (none first)."""
    lport = 0 if name == "local_port" else s.local_port  # a port column already orders by its port
    rport = 0 if name == "remote_port" else (-1 if s.remote_port is None else s.remote_port)
    return lport, rport


@pytest.mark.parametrize("packed", [True, False], ids=["float-keys", "tuple-keys"])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("name", COLUMNS)
def test_ties_by_ports_then_fixed(name: str, descending: bool, packed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not packed:
        # Pretend floats hold too few bits, to run the exact tuple path used for huge rank counts.
        monkeypatch.setattr(sorting, "_MANTISSA_BITS", 20)
    socks = _mixed()
    result = sort_sockets(socks, name, descending)
    values = [v if v != "" else None for v in column(result, name)]
    ties = 0
    for i in range(len(result) - 1):
        if values[i] == values[i + 1]:
            ties += 1
            assert _tie_ports(result[i], name) <= _tie_ports(result[i + 1], name)
    assert ties > 10  # the data has plenty of ties to check
    for seed in range(3):
        shuffled = socks[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_sockets(shuffled, name, descending) == result


@pytest.mark.parametrize("mantissa_bits", [53, 40, 36, 33, 20])
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("name", COLUMNS)
def test_packed_keys_sort_exactly_as_the_plain_tuple_sort(
    name: str, descending: bool, mantissa_bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every packing the float trick can take (a few or many CRC bits, no room for them, exact tuples
    # when the rank does not fit) gives the plain version's order.
    monkeypatch.setattr(sorting, "_MANTISSA_BITS", mantissa_bits)
    from portmon.collect.fake import synthetic_snapshot

    for socks in (_mixed(), list(synthetic_snapshot(3000, seed=5).sockets)):
        assert sort_sockets(socks, name, descending) == sorting.sort_sockets_plain(socks, name, descending)


def test_ties_follow_the_remote_address_crc_then_the_address() -> None:
    # Same ports, different peers: the CRC decides, and the order is the same in every process.
    peers = [f"10.0.0.{i}" for i in range(1, 40)]
    socks = [sock(lport=80, remote=p, rport=5000, state=ESTABLISHED, seq=i) for i, p in enumerate(peers)]
    result = [s.remote_addr for s in sort_sockets(socks, "state")]
    from zlib import crc32

    assert result == sorted(peers, key=lambda p: crc32(p.encode()))
