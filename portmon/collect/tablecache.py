"""The four kernel socket tables read each scan, each row mapped to the socket built for it last time.

A table is read through sock_diag netlink when it answers, else from /proc/net (for good, once its
netlink dump failed). A row seen in the previous scan maps straight to the previous ``Socket``, so
an unchanged socket costs one dict lookup; a netlink row whose numbers alone changed (queues,
tcp_info counters) gets the previous socket with new traffic fields; only new rows are decoded
(see ``portmon.collect.procfs``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from itertools import compress, repeat
from operator import is_, itemgetter, not_
from typing import Any, TypeAlias

from portmon.collect.tables import (
    NO_TRAFFIC,
    TABLES,
    Decoded,
    NetlinkReader,
    ProcNetReader,
    Row,
    Table,
    Traffic,
    row_cookie,
    row_inode,
    row_traffic,
    state_name,
)
from portmon.model import TRAFFIC_FIELDS, Socket

TRAFFIC_AT = Socket._fields.index(TRAFFIC_FIELDS[0])
"""Where Socket's traffic fields begin (they are contiguous)."""
_TRAFFIC_END = TRAFFIC_AT + len(TRAFFIC_FIELDS)
_make = Socket._make


def with_traffic(sock: Socket, values: Traffic) -> Socket:
    """``sock`` with new traffic fields (one tuple copy: ~4x cheaper than ``_replace``)."""
    return _make(sock[:TRAFFIC_AT] + values + sock[_TRAFFIC_END:])

Reader = NetlinkReader | ProcNetReader
Entry: TypeAlias = Any
"""One row of a table as its reader gives it: a netlink ``Row`` or a /proc/net ``Key``."""
_INODE_BYTES = itemgetter(slice(64, 68))
"""A row's inode (see ``tables.Row``)."""
_NO_INODE = bytes(4)
_PLACE = slice(4, 40)
"""A row's ports and addresses (local port, remote port, local and remote address)."""
_PLACE_BYTES = itemgetter(_PLACE)
_DECODED_INODE = itemgetter(6)
"""A decoded row's inode."""
_NO_PORT = re.compile(rb"(?:..)?\x00\x00", re.S).match
"""Matches the place of a row with local port 0 or remote port 0."""


def _same_socket(sock: Socket, decoded: Decoded, proto: str) -> bool:
    """True when a new row of ``sock``'s cookie decodes to what ``sock`` shows (addresses, ports, state, inode):
    then only its numbers changed."""
    laddr, lport, raddr, rport, state, _uid, inode = decoded
    name = state_name(state, proto == "tcp")
    return (sock.inode, sock.state, sock.local_port, sock.remote_port, sock.local_addr, sock.remote_addr) == (
        inode, name, lport, rport, laddr, raddr
    )


def _count(counts: dict[Any, int], key: Any, step: int) -> None:
    """Add ``step`` to ``counts[key]``, dropping the key at 0."""
    count = counts.get(key, 0) + step
    if count:
        counts[key] = count
    else:
        del counts[key]


def twins_plain(rows: list[Row]) -> bool:
    """True when two of a netlink table's rows without an inode share their place, or one has a zero
    port (``TableCache.may_have_twins`` without its counts)."""
    places = [row[_PLACE] for row in rows if _INODE_BYTES(row) == _NO_INODE]
    return len(set(places)) != len(places) or any(map(_NO_PORT, places))


class TableRead:
    """What one read of the four tables found, against the sockets of the last scan."""

    __slots__ = ("out", "misses", "keys", "fresh", "dropped", "decoded", "new_inodes", "traffic", "repeated", "first")

    def __init__(self) -> None:
        self.out: list[Socket | None] = []
        """Every row's socket, in table order: the last scan's where the row is known, None where new."""
        self.misses: list[list[tuple[int, Entry]]] = [[] for _ in TABLES]
        """Per table: (position in ``out``, row) of every row not seen in the last scan."""
        self.keys: list[list[Entry]] = []
        """Per table: every row read."""
        self.fresh: list[dict[Entry, Socket | None]] = []
        """Per table: the row -> socket map to keep (new rows' sockets filled in by ``keep``)."""
        self.dropped: set[int] = set()
        """Inodes of the last scan's rows that are gone (or changed other than in their numbers)."""
        self.decoded: list[list[Decoded]] = [[] for _ in TABLES]
        """Per table: the decoded rows of ``misses``, in the same order."""
        self.new_inodes: dict[int, int] = {}
        """inode -> uid of every new row with an inode."""
        self.traffic: list[list[Traffic]] = [[] for _ in TABLES]
        """Per table: the traffic fields of ``misses``, in the same order."""
        self.first: set[int] = set()
        """Tables read with nothing remembered, their rows decoded in bulk (``TableCache._first_read``)."""
        self.repeated = False
        """True when a table gave one row twice (the kernel never does: each socket has its cookie)."""

    @property
    def new_rows(self) -> int:
        """How many rows were not in the last scan."""
        return sum(map(len, self.misses))


class TableCache:
    """Reads the tables (netlink or /proc/net) and remembers, per table, the socket built for each row."""

    def __init__(self, procfs: str = "/proc", tables: str = "auto", counters: bool = True) -> None:
        """``tables``: "auto" (netlink when it works and ``procfs`` is the real /proc), "netlink" or "procnet".

        ``counters``: ask netlink for every TCP socket's tcp_info (bytes, RTT, retransmits); the
        queues (a listener's accept queue and backlog) and the cookie come with every dump.
        """
        if tables not in ("auto", "netlink", "procnet"):
            raise ValueError(f"unknown table source {tables!r}: expected auto, netlink or procnet")
        self._procnet = ProcNetReader(procfs)
        netlink: NetlinkReader | None = None
        if tables == "netlink" or (tables == "auto" and procfs == "/proc"):
            netlink = NetlinkReader()
        self._force_netlink = tables == "netlink"
        self._readers: list[Reader] = [netlink or self._procnet for _ in TABLES]
        self._caches: list[dict[Entry, Socket | None]] = [{} for _ in TABLES]
        """Per table: row -> the socket built for it."""
        self._by_cookie: list[dict[int, Socket]] = [{} for _ in TABLES]
        """Per netlink table: cookie -> that socket's ``Socket``, to find a socket whose numbers changed (the
        cookie int is the socket's own, so the map costs its slots only)."""
        self._counters = counters
        self.bulk_first = True
        """A first read's rows are taken in bulk (``_first_read``); False: through ``read``'s loop, the plain way."""
        self._inodes: list[dict[int, int]] = [{} for _ in TABLES]
        """Per table: inode -> how many of its rows have it (0 left out), counted as rows come and go."""
        self._places: list[dict[bytes, int]] = [{} for _ in TABLES]
        self._inodeless = [0 for _ in TABLES]
        self._zero_ports = [0 for _ in TABLES]
        """Per netlink table: how many rows without an inode have each place (ports and addresses),
        how many such rows there are, and how many of them have a zero port (see ``may_have_twins``)."""

    @property
    def source(self) -> str:
        """Where the TCP/IPv4 table was last read from: "netlink" or "procnet"."""
        return self._readers[0].name

    def forget(self) -> None:
        """Drop every remembered socket: the next read decodes every row afresh."""
        for ti in range(len(TABLES)):
            self._forget_table(ti)

    def _forget_table(self, ti: int) -> None:
        self._caches[ti] = {}
        self._by_cookie[ti] = {}
        self._places[ti] = {}
        self._inodes[ti] = {}
        self._inodeless[ti] = 0
        self._zero_ports[ti] = 0

    def _count_inode(self, ti: int, inode: int, step: int) -> None:
        """Count a row's inode in or out of the table's inodes (``present``)."""
        if inode:
            _count(self._inodes[ti], inode, step)

    def _count_place(self, ti: int, row: Row, step: int) -> None:
        """Count a row in or out (``step`` 1 or -1) of the places of rows without an inode."""
        if _INODE_BYTES(row) != _NO_INODE:
            return
        place = row[_PLACE]
        _count(self._places[ti], place, step)
        self._inodeless[ti] += step
        if _NO_PORT(place):
            self._zero_ports[ti] += step

    def read(self) -> TableRead:
        """Read the four tables, reuse the sockets of known rows, decode the new rows.

        Per row, two dict operations (the last scan's socket, the new map), both in C (``map``,
        ``compress``); which old rows are gone is looked for only when the counts say some are.
        Only new rows, and known sockets whose numbers changed (found by their cookie), take a
        Python step.
        """
        found = TableRead()
        out = found.out
        for ti, table in enumerate(TABLES):
            rows = self._read_table(ti, table)
            reader = self._readers[ti]
            netlink = isinstance(reader, NetlinkReader)
            found.keys.append(rows)
            cache = self._caches[ti]
            by_cookie = self._by_cookie[ti]
            base = len(out)
            if netlink and not cache and rows and self.bulk_first and self._first_read(ti, table, rows, base, found):
                continue
            socks: list[Socket | None] = list(map(cache.get, rows))
            misses = found.misses[ti]
            traffic = found.traffic[ti]
            moved: set[int] = set()
            """Cookies of sockets whose numbers alone changed."""
            counted: set[Entry] = set()
            for j in compress(range(len(rows)), map(is_, socks, repeat(None))):
                row = rows[j]
                if netlink:
                    now = row_traffic(row)
                    last = by_cookie.get(now[6])  # type: ignore[arg-type]
                    if last is not None and _same_socket(last, self._decode(ti, table, [row])[0], table.proto):
                        # Only its numbers changed: the same socket with new traffic fields.
                        socks[j] = by_cookie[last.cookie] = with_traffic(last, now)  # type: ignore[index]
                        moved.add(now[6])  # type: ignore[arg-type]
                        continue
                    misses.append((base + j, row))
                    traffic.append(now)
                    if row not in counted:  # a row read twice is one row of the map
                        counted.add(row)
                        self._count_place(ti, row, 1)
                        self._count_inode(ti, row_inode(row), 1)
                else:
                    misses.append((base + j, row))
                    traffic.append(NO_TRAFFIC)
                    if row not in counted:
                        counted.add(row)
                        self._count_inode(ti, self._procnet.inode(row), 1)
            out.extend(socks)
            fresh = dict(zip(rows, socks, strict=True))
            found.fresh.append(fresh)
            if len(fresh) < len(rows):
                found.repeated = True
            if len(cache) > len(fresh) - len(misses) - len(moved) or len(fresh) < len(rows):
                for row in compress(cache, map(not_, map(fresh.__contains__, cache))):
                    old_sock = cache[row]
                    if netlink:
                        cookie = row_cookie(row)
                        if cookie in moved:
                            continue
                        if old_sock is not None and by_cookie.get(cookie) is old_sock:
                            del by_cookie[cookie]
                        self._count_place(ti, row, -1)
                        self._count_inode(ti, row_inode(row), -1)
                    else:
                        self._count_inode(ti, self._procnet.inode(row), -1)
                    if old_sock is not None:
                        found.dropped.add(old_sock.inode)
        # The new rows are decoded before any process is walked, while a cold walk's child may
        # still be reading fds.
        found.decoded = [
            found.decoded[ti] if ti in found.first else self._decode(ti, table, [key for _, key in found.misses[ti]])
            for ti, table in enumerate(TABLES)
        ]
        # Decoded rows end with uid, inode.
        found.new_inodes = {row[6]: row[5] for rows in found.decoded for row in rows if row[6]}
        found.dropped.discard(0)
        return found

    def _decode(self, ti: int, table: Table, keys: list[Entry]) -> list[Decoded]:
        """The new rows of a table decoded: netlink rows, or /proc/net keys."""
        if not keys:
            return []
        reader = self._readers[ti]
        if isinstance(reader, NetlinkReader):
            return reader.decode_rows(table, keys)
        return reader.decode_all(table, keys)

    def _first_read(self, ti: int, table: Table, rows: list[Row], base: int, found: TableRead) -> bool:
        """A netlink table's read with nothing remembered (the first scan, or after ``forget``): every row is
        new, so their keys, numbers and counts are made in bulk. False (nothing done) when a row repeats.

        Speed trick: the plain way (``read``'s loop) takes a Python step a row through five helpers;
        here rows are decoded straight from their bytes (``NetlinkReader.decode_rows``) and counted
        with ``Counter`` in C. Measured on issue 18's load (29,600 sockets; ``bench/bench_collect_tricks.py
        --load issue18 --only-scan``, a first read of the four tables, CPU, medians of 7 alternating on a
        2-core VM shared with other work): 94 ms instead of 133 ms. tests/test_collect_tricks.py checks
        that a first read leaves what the plain loop leaves (sockets, counts, what later reads find).
        """
        if len(set(rows)) != len(rows):
            return False
        reader = self._readers[ti]
        assert isinstance(reader, NetlinkReader)
        n = len(rows)
        found.first.add(ti)
        found.decoded[ti] = reader.decode_rows(table, rows)
        found.misses[ti] = list(zip(range(base, base + n), rows, strict=True))
        found.traffic[ti] = list(map(row_traffic, rows))
        found.out.extend(repeat(None, n))
        found.fresh.append(dict.fromkeys(rows))
        inodes = Counter(map(_DECODED_INODE, found.decoded[ti]))
        inodes.pop(0, None)
        self._inodes[ti] = dict(inodes)
        inodeless = list(compress(rows, map(_NO_INODE.__eq__, map(_INODE_BYTES, rows))))
        places = list(map(_PLACE_BYTES, inodeless))
        self._places[ti] = dict(Counter(places))
        self._inodeless[ti] = len(inodeless)
        self._zero_ports[ti] = sum(map(bool, map(_NO_PORT, places)))
        return True

    def keep(self, found: TableRead, sockets: list[Socket], replaced: Iterable[int] = ()) -> None:
        """Remember ``sockets`` (the scan's answer, in ``found``'s order) for the next read: the
        sockets of new rows, and those at the ``replaced`` positions (rebuilt with new holders)."""
        fresh = found.fresh
        bases = [0]
        for keys in found.keys:
            bases.append(bases[-1] + len(keys))
        for ti, misses in enumerate(found.misses):
            table = fresh[ti]
            by_cookie = self._by_cookie[ti] if isinstance(self._readers[ti], NetlinkReader) else None
            rows = found.keys[ti]
            for pos, _key in misses:
                sock = table[rows[pos - bases[ti]]] = sockets[pos]
                if by_cookie is not None and sock.cookie is not None:
                    by_cookie[sock.cookie] = sock
        for pos in replaced:
            ti = bisect_right(bases, pos) - 1
            row = found.keys[ti][pos - bases[ti]]
            sock = fresh[ti][row] = sockets[pos]
            if isinstance(self._readers[ti], NetlinkReader) and sock.cookie is not None:
                self._by_cookie[ti][sock.cookie] = sock
        self._caches = fresh

    def may_have_twins(self, found: TableRead) -> bool:
        """False when no two rows without an inode (TIME_WAIT and request sockets) of one table can
        name the same addresses and ports, so ``number_duplicates`` has nothing to number.

        Speed trick: a netlink row holds its ports and addresses as the kernel sent them (network
        order, an IPv4 address zero-filled to 16 bytes), so rows whose sockets would share the
        fields ``number_duplicates`` compares share those bytes, unless a port is 0 (then the
        address is not shown). Those bytes of the rows without an inode are counted as rows come
        and go (``read``), so the answer costs nothing per row, where looking at every ``Socket``
        takes a Python step each, and picking out the bytes of every row without an inode 14 ms at
        14,000 of them. Measured on issue 18's load (31,000 sockets, 11,000 without an inode; 2-core
        VM busy with other work, CPU time inside the collector, one scan every 0.3 s, means of 20
        scans, twice): 4.4-4.6 ms instead of 10.7-11.2 ms spent in ``number_duplicates`` a scan.
        True (look at the sockets) for /proc/net tables; the answer is ``twins_plain``'s
        (tests/test_collect_tricks.py).
        """
        if found.repeated:
            return True
        for ti in range(len(found.keys)):
            if not isinstance(self._readers[ti], NetlinkReader):
                return True
            if self._zero_ports[ti] or self._inodeless[ti] != len(self._places[ti]):
                return True
        return False

    def present(self, found: TableRead) -> set[int]:
        """Every inode but 0 in the tables ``found`` read (the last read), from the counts ``read`` keeps
        (4 ms less a scan than reading them out of 31,000 rows); ``present_plain`` is the plain way."""
        present: set[int] = set()
        for inodes in self._inodes:
            present.update(inodes)
        return present

    def present_plain(self, found: TableRead) -> set[int]:
        """``present`` read out of every row."""
        present: set[int] = set()
        for ti, rows in enumerate(found.keys):
            if isinstance(self._readers[ti], NetlinkReader):
                present.update(map(row_inode, rows))
            else:
                present.update(map(self._procnet.inode, rows))
        present.discard(0)
        return present

    def _read_table(self, ti: int, table: Table) -> list[Entry]:
        reader = self._readers[ti]
        if isinstance(reader, NetlinkReader):
            try:
                return reader.read_rows(table, self._counters)
            except OSError:
                if self._force_netlink:
                    raise
                # This table (or netlink itself) is refused here: read /proc/net from now on.
                self._readers[ti] = self._procnet
                self._forget_table(ti)
        try:
            return self._procnet.read(table)
        except FileNotFoundError:
            if table.family == 6:
                return []  # IPv6 disabled
            raise
