"""Sorting sockets by a table column: typed comparisons, unknown values last, ties broken the same way every time."""

from __future__ import annotations

import socket as _socket
import struct
from collections.abc import Callable, Iterable
from itertools import compress, islice
from operator import and_, attrgetter, eq
from typing import Any
from zlib import crc32

from portmon.model import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    NEW_SYN_RECV,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    Socket,
)
from portmon.output import TABLE_HEADERS
from portmon.textsafe import echo

COLUMNS: tuple[str, ...] = (
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
"""The table's column ids, in display order."""

STATE_ORDER: tuple[str, ...] = (
    LISTEN,
    SYN_SENT,
    SYN_RECV,
    NEW_SYN_RECV,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    CLOSING,
    TIME_WAIT,
    CLOSE_WAIT,
    LAST_ACK,
    CLOSE,
)
"""TCP lifecycle order: listeners, handshakes, open connections, then the active and passive close paths."""

_STATE_RANK = {state: rank for rank, state in enumerate(STATE_ORDER)}


def _spelling(text: str) -> str:
    """``"Local Address"``, ``"local-addr"`` and ``"LOCAL_ADDR"`` spelled one way: ``"localaddr"``."""
    return "".join(c for c in text.casefold() if c.isalnum())


_COLUMN_SPELLINGS: dict[str, str] = {}
for _column, _title in zip(COLUMNS, TABLE_HEADERS, strict=True):
    _COLUMN_SPELLINGS[_spelling(_column)] = _column
    _COLUMN_SPELLINGS[_spelling(_title)] = _column
for _alias, _column in (("lport", "local_port"), ("rport", "remote_port"), ("laddr", "local_addr"),
                        ("raddr", "remote_addr"), ("local", "local_addr"), ("remote", "remote_addr"),
                        ("service", "local_service"), ("rservice", "remote_service"), ("name", "process"),
                        ("protocol", "proto")):  # fmt: skip
    _COLUMN_SPELLINGS.setdefault(_spelling(_alias), _column)


def parse_sort(text: str) -> tuple[str, bool]:
    """A sort argument as (column id, descending): ``pid``, ``PID``, ``"local address"``, ``-state``.

    Case and spacing do not matter; the column ids (COLUMNS), the plain table's header titles
    (``PORT``, ``RPORT``, ``LOCAL ADDRESS``) and a few short names (``lport``, ``raddr``) all name a
    column; a leading ``-`` sorts descending. Raises ValueError naming what is accepted.
    """
    body = text.strip()
    descending = body.startswith("-")
    column = _COLUMN_SPELLINGS.get(_spelling(body[1:] if descending else body))
    if column is None:
        raise ValueError(
            f"unknown sort column {echo(text, 40)}: expected one of {', '.join(COLUMNS)} or a header title "
            f"({', '.join(TABLE_HEADERS)}); a leading '-' sorts descending"
        )
    return column, descending

_ADDR_CACHE_LIMIT = 65536
_addr_keys: dict[str, tuple[int, int, str]] = {}


def address_sort_key(addr: str) -> tuple[int, int, str]:
    """(0 for IPv4, 1 for IPv6, 2 for anything else; numeric value; text), cached.

    IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) sort with IPv4, beside the address they map.
    """
    key = _addr_keys.get(addr)
    if key is None:
        key = _address_key(addr)
        if len(_addr_keys) >= _ADDR_CACHE_LIMIT:
            _addr_keys.clear()
        _addr_keys[addr] = key
    return key


def _address_key(addr: str) -> tuple[int, int, str]:
    # inet_pton is several times faster than ipaddress, which matters on a cold cache of 50k rows.
    text = addr.partition("%")[0]
    try:
        return 0, int.from_bytes(_socket.inet_pton(_socket.AF_INET, text), "big"), addr
    except (OSError, ValueError):
        pass
    try:
        value = int.from_bytes(_socket.inet_pton(_socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        return 2, 0, addr
    if value >> 32 == 0xFFFF:
        return 0, value & 0xFFFFFFFF, addr
    return 1, value, addr


def _text_key(text: str) -> tuple[str, str]:
    # Case-insensitive, then the exact text so "Foo" and "foo" always come out in the same order.
    return text.casefold(), text


def _state_key(state: str) -> tuple[int, str]:
    return _STATE_RANK.get(state, len(STATE_ORDER)), state


def _identity(value: Any) -> Any:
    return value


# column -> (value of one socket, sort key of one distinct known value). None and "" are unknown.
_COLUMN_SPECS: dict[str, tuple[Callable[[Socket], Any], Callable[[Any], Any]]] = {
    "proto": (attrgetter("proto"), _identity),  # ranked by _proto_ranks, with the family
    "local_addr": (attrgetter("local_addr"), address_sort_key),
    "local_port": (attrgetter("local_port"), _identity),
    "local_service": (attrgetter("local_service"), _text_key),
    "remote_addr": (attrgetter("remote_addr"), address_sort_key),
    "remote_port": (attrgetter("remote_port"), _identity),
    "remote_service": (attrgetter("remote_service"), _text_key),
    "state": (attrgetter("state"), _state_key),
    "pid": (attrgetter("pid"), _identity),
    "process": (attrgetter("process"), _text_key),
    "user": (attrgetter("user"), _text_key),
    # Sortable (a click on the live table's Host header, list --sort host), not in COLUMNS' cycle:
    # the Host column shows only with remote hosts. This machine (None) sorts last, as unknowns do.
    "host": (attrgetter("host"), _text_key),
    # Likewise the NetNS column, shown only when another network namespace has sockets; portmon's own
    # namespace (None) sorts last. Namespaces in the order the kernel made them (inode numbers).
    "netns": (attrgetter("netns"), _identity),
}

_LOCAL_PORT = attrgetter("local_port")
_PROTO = attrgetter("proto")
_FAMILY = attrgetter("family")
_REMOTE_PORT = attrgetter("remote_port")
_REMOTE_ADDR = attrgetter("remote_addr")
_PORTS = attrgetter("local_port", "remote_port")
_MAX_PORT = 65535
_NONE_PORT = _MAX_PORT + 1
_MANTISSA_BITS = 53


def sort_sockets(sockets: Iterable[Socket], column: str, descending: bool = False) -> list[Socket]:
    """Sockets ordered by ``column`` (one of COLUMNS); unknown values last in both directions.

    Ports and pids sort as numbers, addresses by value (IPv4 before IPv6), text case-insensitively,
    states in TCP lifecycle order (STATE_ORDER; any other state after those, by name); None and ""
    are unknown. Rows with equal values come in one fixed order, whatever the direction and whatever
    order the sockets came in, so rows do not jump between refreshes: by local port, then remote
    port, then a fixed but arbitrary order (the CRC-32 of the remote address, the address, the
    ``Socket.key``). Sockets with equal keys keep their input order. ``sort_sockets_plain`` is the
    same order written plainly. Raises ValueError for an unknown column.
    """
    if column not in _COLUMN_SPECS:
        raise ValueError(f"unknown sort column {column!r}; expected one of {', '.join(COLUMNS)}")
    items = list(sockets)
    if len(items) < 2:
        return items
    ranks, rank_count = _ranks(column, items, descending)
    composite = packed_sort_keys(column, ranks, rank_count.bit_length(), items)
    order = sorted(range(len(items)), key=composite.__getitem__)
    _break_ties(order, composite, items)
    return list(map(items.__getitem__, order))


def _remote_crc(addr: str | None) -> int:
    """The fixed but arbitrary tie order of a remote address (the same in every process, unlike hash())."""
    return crc32((addr or "").encode())


def sort_sockets_plain(sockets: Iterable[Socket], column: str, descending: bool = False) -> list[Socket]:
    """``sort_sockets`` written plainly: one sort on a tuple key per socket. The same order, slower.

    The key: the column's rank, local port, remote port (none first), the CRC-32 of the remote
    address, the address, ``Socket.key``. ``sort_sockets`` is tested against it.
    """
    if column not in _COLUMN_SPECS:
        raise ValueError(f"unknown sort column {column!r}; expected one of {', '.join(COLUMNS)}")
    items = list(sockets)
    ranks = list(_ranks(column, items, descending)[0])
    keys = list(map(_plain_key, ranks, items))
    return [items[i] for i in sorted(range(len(items)), key=keys.__getitem__)]


def _plain_key(rank: int, s: Socket) -> tuple[Any, ...]:
    """``sort_sockets_plain``'s key of one socket, given its rank in the sort column."""
    return (rank, s.local_port, -1 if s.remote_port is None else s.remote_port, _remote_crc(s.remote_addr),
            s.remote_addr or "", s.key)


PORT_COLUMNS = frozenset({"local_port", "remote_port"})
"""Columns whose order ``port_order_key`` gives one socket at a time."""


def port_order_key(column: str, descending: bool = False) -> Callable[[Socket], bytes]:
    """A key function that orders sockets exactly as ``sort_sockets(.., column, descending)`` does.

    Only for the port columns (PORT_COLUMNS), whose rank is the port itself, so a socket's key does
    not depend on the other sockets: this is what lets the live table insert a few new rows into
    the last sorted rows (a binary search on this key) instead of sorting every row again. The key
    orders as ``sort_sockets_plain``'s does, packed into bytes (``packed_plain_key``).
    """
    if column not in PORT_COLUMNS:
        raise ValueError(f"not a port column: {column!r}")
    port = _LOCAL_PORT if column == "local_port" else _REMOTE_PORT

    def key(sock: Socket) -> bytes:
        value = port(sock)
        return packed_plain_key(_NONE_PORT if value is None else (_MAX_PORT - value if descending else value), sock)

    return key


_HEAD = struct.Struct(">IHII")
"""Rank, local port, remote port + 1 (0: none), CRC-32 of the remote address."""
_MIDDLE = struct.Struct(">B")
_TAIL = struct.Struct(">HIQ")
"""``Socket.key``'s local port, remote port + 1, and inode or -seq offset by 2**63."""
_OFFSET = 1 << 63


def packed_plain_key(rank: int, sock: Socket) -> bytes:
    """``_plain_key(rank, sock)`` as bytes that compare as the tuple does (memory trick).

    Numbers become fixed-width big-endian fields (offset to be non-negative), texts their UTF-8
    (which keeps code-point order) ended by a NUL byte (below every character, so a text sorts
    before any longer text it begins). The live table keeps one key per row for its binary
    searches: at 31,000 rows the tuples (with their ``Socket.key`` tuple and CRC int) took 6.8 MB
    (tracemalloc), these bytes about 3 MB. tests/test_sorting_port_key.py checks that the order
    is ``sort_sockets``'; the texts compared (addresses, protocol labels) hold no NUL.
    """
    key = sock.key
    raddr = sock.remote_addr or ""
    rport = sock.remote_port
    return b"".join((
        _HEAD.pack(rank, sock.local_port, 0 if rport is None else rport + 1, _remote_crc(sock.remote_addr)),
        raddr.encode(), b"\0",
        key[0].encode(), b"\0",
        _MIDDLE.pack(key[1]),
        key[2].encode(), b"\0",
        key[4].encode(), b"\0",
        _TAIL.pack(key[3], key[5] + 1, key[6] + _OFFSET),
    ))


def _ranks(column: str, items: list[Socket], descending: bool) -> tuple[Iterable[int], int]:
    """(each socket's rank in the column's order, how many ranks), unknown values ranked last.

    Reversing the ranks rather than the sort keeps the tie order ascending in both directions.
    """
    if column == "proto":
        return _proto_ranks(items, descending)
    value_of, value_key = _COLUMN_SPECS[column]
    values = list(map(value_of, items))
    if column == "local_port" or column == "remote_port":
        # A port is its own rank: no need to sort up to 65536 distinct values.
        if descending:
            return [_NONE_PORT if v is None else _MAX_PORT - v for v in values], _NONE_PORT + 1
        return [_NONE_PORT if v is None else v for v in values], _NONE_PORT + 1
    # Rank the distinct values once (far fewer than sockets) so the big sort compares numbers.
    distinct = set(values)
    distinct.discard(None)
    distinct.discard("")
    ordered = sorted(distinct, key=value_key)
    if descending:
        ordered.reverse()
    rank: dict[Any, int] = {value: i for i, value in enumerate(ordered)}
    rank[None] = rank[""] = len(ordered)
    return map(rank.__getitem__, values), len(ordered) + 1


def _proto_ranks(items: list[Socket], descending: bool) -> tuple[list[int], int]:
    """Ranks by label ("tcp4" < "tcp6" < "udp4" ...) without building a (proto, family) tuple per row."""
    protos = list(map(_PROTO, items))
    families = list(map(_FAMILY, items))
    # Families are 4 and 6, so 16 slots per protocol keep (protocol, family) order in one int.
    base = {proto: 16 * i for i, proto in enumerate(sorted(set(protos)))}
    ranks = [base[proto] + family for proto, family in zip(protos, families, strict=True)]
    top = 16 * len(base)
    if descending:
        ranks = [top - rank for rank in ranks]
    return ranks, top + 1


def packed_sort_keys(column: str, ranks: Iterable[int], rank_bits: int, items: list[Socket]) -> list[Any]:
    """One float per socket packing rank, local port, remote port (+1, so none is 0) and remote address bits.

    The speed trick of ``sort_sockets``: floats sort several times faster than the tuples of
    ``sort_sockets_plain``. Measured at 10,000 sockets (``synthetic_snapshot(10_000)``, median of
    15; ``python bench/bench_tricks.py``): by process 8 ms against 22 ms plain, by local port 7
    against 10, by pid 15 against 21. The sum stays exact below 2**53. The bits left over hold the
    top bits of the remote address's CRC-32 (computed in C): on a busy server most rows the ports
    leave tied are clients that happen to use the same source port, and those bits split them far
    more cheaply than the tie-break pass could. Ports are taken to be 0..65535, as every collector
    reports them; a port column's rank already is that port, so it is not packed twice. With too
    many distinct values to pack (over a million), exact (rank, local port, remote port) tuples.
    """
    lport_bits = 0 if column == "local_port" else 16
    rport_bits = 0 if column == "remote_port" else 17
    spare = _MANTISSA_BITS - rank_bits - lport_bits - rport_bits
    if spare < 0:
        return [
            (r, lp, -1 if rp is None else rp)
            for r, lp, rp in zip(ranks, map(_LOCAL_PORT, items), map(_REMOTE_PORT, items), strict=True)
        ]
    scale_rp = float(1 << spare) if rport_bits else 0.0
    scale_lp = float(1 << (spare + rport_bits)) if lport_bits else 0.0
    scale_r = float(1 << (spare + rport_bits + lport_bits))
    if column == "remote_addr" or spare == 0:  # the rank already is the remote address, or no room
        return [
            r * scale_r + lp * scale_lp + (0 if rp is None else rp + 1) * scale_rp
            for r, (lp, rp) in zip(ranks, map(_PORTS, items), strict=True)
        ]
    # The CRC's top bits, so the packed order agrees with the order of the whole CRC.
    shift = max(0, 32 - spare)
    crcs = map(crc32, map(str.encode, [addr or "" for addr in map(_REMOTE_ADDR, items)]))
    return [
        r * scale_r + lp * scale_lp + (0 if rp is None else rp + 1) * scale_rp + (crc >> shift)
        for r, (lp, rp), crc in zip(ranks, map(_PORTS, items), crcs, strict=True)
    ]


def _tied_positions(*columns: list[Any]) -> list[int]:
    """Positions i in sorted rows where every column's value equals the next row's, and those next rows.

    The comparisons run in C: no Python-level loop over every row.
    """
    n = len(columns[0])
    same = map(eq, columns[0], islice(columns[0], 1, None))
    for values in columns[1:]:
        same = map(and_, same, map(eq, values, islice(values, 1, None)))
    same_as_next = list(compress(range(n - 1), same))
    if not same_as_next:
        return same_as_next
    return sorted(set(same_as_next).union([i + 1 for i in same_as_next]))


def _break_ties(order: list[int], composite: list[Any], items: list[Socket]) -> None:
    """Reorder the rows whose packed keys are equal by remote address CRC, address, then ``Socket.key``.

    The tied rows' positions are already in packed-key order, so sorting all of them at once and
    writing them back into the same positions fixes every run of ties in one go.
    """
    positions = _tied_positions(list(map(composite.__getitem__, order)))
    if not positions:
        return
    rows = list(map(order.__getitem__, positions))
    # Ties left: peers whose top CRC bits collide, or one peer on several sockets with the same
    # ports. Stable sorts on plain keys (address text, whole CRC, then packed key) beat one sort on tuples.
    remote_addrs = [addr or "" for addr in map(_REMOTE_ADDR, map(items.__getitem__, rows))]
    crcs = list(map(crc32, map(str.encode, remote_addrs)))
    keys = list(map(composite.__getitem__, rows))
    by = sorted(range(len(rows)), key=remote_addrs.__getitem__)
    by.sort(key=crcs.__getitem__)
    by.sort(key=keys.__getitem__)
    rows = list(map(rows.__getitem__, by))
    # The few left (same ports and peer: another local address, family or protocol) by full key.
    left = _tied_positions(list(map(keys.__getitem__, by)), list(map(remote_addrs.__getitem__, by)))
    if left:
        fixed = sorted((keys[by[i]], remote_addrs[by[i]], items[rows[i]].key, rows[i]) for i in left)
        for i, entry in zip(left, fixed, strict=True):
            rows[i] = entry[3]
    for position, row in zip(positions, rows, strict=True):
        order[position] = row
