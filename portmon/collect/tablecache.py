"""The four kernel socket tables read each scan, each key mapped to the socket built for it last time.

A table is read through sock_diag netlink when it answers, else from /proc/net (for good, once its
netlink dump failed). A key seen in the previous scan maps straight to the previous ``Socket``, so
an unchanged socket costs one dict lookup and only new keys are decoded (see ``portmon.collect.procfs``).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from itertools import compress, repeat
from operator import is_, itemgetter, ne, not_

from portmon.collect.tables import TABLES, Decoded, Key, NetlinkReader, ProcNetReader, Raw, Table, Traffic, traffic
from portmon.model import TRAFFIC_FIELDS, Socket

TRAFFIC_AT = Socket._fields.index(TRAFFIC_FIELDS[0])
"""Where Socket's traffic fields begin (they are contiguous)."""
_TRAFFIC_END = TRAFFIC_AT + len(TRAFFIC_FIELDS)
_make = Socket._make


def with_traffic(sock: Socket, values: Traffic) -> Socket:
    """``sock`` with new traffic fields (one tuple copy: ~4x cheaper than ``_replace``)."""
    return _make(sock[:TRAFFIC_AT] + values + sock[_TRAFFIC_END:])

Reader = NetlinkReader | ProcNetReader
_KEY_INODE = itemgetter(4)
_KEY_PLACE = itemgetter(1)
"""A netlink key's ports and addresses (36 bytes: local port, remote port, local and remote address)."""
_NO_PORT = re.compile(rb"(?:..)?\x00\x00", re.S).match
"""Matches the place of a row with local port 0 or remote port 0."""


class TableRead:
    """What one read of the four tables found, against the sockets of the last scan."""

    __slots__ = ("out", "misses", "keys", "raws", "fresh", "fresh_raws", "dropped", "decoded", "new_inodes", "traffic")

    def __init__(self) -> None:
        self.out: list[Socket | None] = []
        """Every row's socket, in table order: the last scan's where the key is known, None where new."""
        self.misses: list[list[tuple[int, Key]]] = [[] for _ in TABLES]
        """Per table: (position in ``out``, key) of every key not seen in the last scan."""
        self.keys: list[list[Key]] = []
        """Per table: every key read."""
        self.raws: list[list[Raw]] = []
        """Per table: every key's ``Raw`` numbers (``()`` where the reader gives none)."""
        self.fresh: list[dict[Key, Socket | None]] = []
        """Per table: the key -> socket map to keep (new keys' sockets filled in by ``keep``)."""
        self.fresh_raws: list[dict[Key, Raw]] = []
        """Per table: the key -> ``Raw`` numbers map to keep (netlink only)."""
        self.dropped: set[int] = set()
        """Inodes of the last scan's rows that are gone (or changed key)."""
        self.decoded: list[list[Decoded]] = []
        """Per table: the decoded rows of ``misses``, in the same order."""
        self.new_inodes: dict[int, int] = {}
        """inode -> uid of every new row with an inode."""
        self.traffic: list[list[Traffic]] = [[] for _ in TABLES]
        """Per table: the traffic fields of ``misses``, in the same order."""

    @property
    def new_rows(self) -> int:
        """How many rows were not in the last scan."""
        return sum(map(len, self.misses))




class TableCache:
    """Reads the tables (netlink or /proc/net) and remembers, per table, the socket built for each key."""

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
        self._caches: list[dict[Key, Socket | None]] = [{} for _ in TABLES]
        """Per table: key -> the socket built for it."""
        self._counters = counters
        self._raws: list[dict[Key, Raw]] = [{} for _ in TABLES]
        """Per table: key -> its ``Raw`` numbers in the last read (netlink only)."""

    @property
    def source(self) -> str:
        """Where the TCP/IPv4 table was last read from: "netlink" or "procnet"."""
        return self._readers[0].name

    def forget(self) -> None:
        """Drop every remembered socket: the next read decodes every row afresh."""
        self._caches = [{} for _ in TABLES]

    def read(self) -> TableRead:
        """Read the four tables, reuse the sockets of known keys, decode the new keys.

        Per row, four dict operations (the last scan's socket and numbers, the two new maps; which
        old keys are gone is looked for only when the counts say some are) and otherwise work in C
        (``map``, ``compress``): only new keys and known ones whose numbers changed take a Python
        step. (One map of (socket, numbers) pairs would save a dict operation, but its 31,000 new
        pairs a scan, holding sockets the collector of cycles tracks, cost more in collections.)
        """
        found = TableRead()
        out = found.out
        for ti, table in enumerate(TABLES):
            keys, raws = self._read_table(ti, table)
            numbered = bool(raws) or not keys
            if not numbered:
                raws = [()] * len(keys)  # /proc/net: no numbers
            found.keys.append(keys)
            found.raws.append(raws)
            cache = self._caches[ti]
            base = len(out)
            cookie = self._readers[ti].cookie
            socks: list[Socket | None] = list(map(cache.get, keys))
            if cache and numbered:
                # The known sockets whose numbers changed since the last read get new traffic fields.
                for j in compress(range(len(keys)), map(ne, map(self._raws[ti].get, keys), raws)):
                    sock = socks[j]
                    if sock is not None:
                        key = keys[j]
                        socks[j] = with_traffic(sock, traffic(key[0], raws[j], cookie(key)))
            misses = [(base + j, keys[j]) for j in compress(range(len(keys)), map(is_, socks, repeat(None)))]
            found.misses[ti] = misses
            if numbered:
                found.traffic[ti] = [traffic(key[0], raws[pos - base], cookie(key)) for pos, key in misses]
            else:
                found.traffic[ti] = [traffic(0, None, cookie(key)) for _, key in misses]
            out.extend(socks)
            fresh = dict(zip(keys, socks, strict=True))
            found.fresh.append(fresh)
            found.fresh_raws.append(dict(zip(keys, raws, strict=True)) if numbered and keys else {})
            if len(cache) > len(fresh) - len(misses) or len(fresh) < len(keys):
                for key in compress(cache, map(not_, map(fresh.__contains__, cache))):
                    old = cache[key]
                    if old is not None:
                        found.dropped.add(old.inode)
        # The new keys are decoded before any process is walked, while a cold walk's child may
        # still be reading fds.
        found.decoded = [
            self._readers[ti].decode_all(table, [key for _, key in found.misses[ti]]) if found.misses[ti] else []
            for ti, table in enumerate(TABLES)
        ]
        # Decoded rows end with uid, inode.
        found.new_inodes = {row[6]: row[5] for rows in found.decoded for row in rows if row[6]}
        found.dropped.discard(0)
        return found

    def keep(self, found: TableRead, sockets: list[Socket], replaced: Iterable[int] = ()) -> None:
        """Remember ``sockets`` (the scan's answer, in ``found``'s order) for the next read: the
        sockets of new keys, and those at the ``replaced`` positions (rebuilt with new holders)."""
        fresh = found.fresh
        bases = [0]
        for keys in found.keys:
            bases.append(bases[-1] + len(keys))
        for ti, misses in enumerate(found.misses):
            table = fresh[ti]
            for pos, key in misses:
                table[key] = sockets[pos]
        for pos in replaced:
            ti = bisect_right(bases, pos) - 1
            fresh[ti][found.keys[ti][pos - bases[ti]]] = sockets[pos]
        self._caches = fresh
        self._raws = found.fresh_raws

    def may_have_twins(self, found: TableRead) -> bool:
        """False when no two rows without an inode (TIME_WAIT and request sockets) of one table can
        name the same addresses and ports, so ``number_duplicates`` has nothing to number.

        Speed trick: a netlink key holds a row's ports and addresses as the kernel sent them
        (network order, an IPv4 address zero-filled to 16 bytes), so rows whose sockets would
        share the fields ``number_duplicates`` compares share those bytes, unless a port is 0 (then
        the address is not shown). The bytes of the rows without an inode are picked out and
        compared in C, where looking at every ``Socket`` takes a Python step each. Measured on issue
        18's load (31,000 sockets, 11,000 without an inode; 2-core VM busy with other work, CPU time
        inside the collector, one scan every 0.3 s, means of 20 scans, twice): 4.4-4.6 ms instead
        of 10.7-11.2 ms spent in ``number_duplicates`` a scan. True (look at the sockets) for
        /proc/net tables; the answer is the plain one either way
        (tests/test_collect_tricks.py).
        """
        for ti, keys in enumerate(found.keys):
            if not isinstance(self._readers[ti], NetlinkReader):
                return True
            inodeless = list(compress(keys, map(not_, map(_KEY_INODE, keys))))
            if len(inodeless) < 2:
                continue
            places = list(map(_KEY_PLACE, inodeless))
            if len(set(places)) != len(places) or any(map(_NO_PORT, places)):
                return True
        return False

    def present(self, found: TableRead) -> set[int]:
        """Every inode in the tables ``found`` read."""
        present: set[int] = set()
        for ti, keys in enumerate(found.keys):
            inode = self._readers[ti].inode
            present.update(map(inode, keys))
        return present

    def _read_table(self, ti: int, table: Table) -> tuple[list[Key], list[Raw]]:
        reader = self._readers[ti]
        if isinstance(reader, NetlinkReader):
            try:
                return reader.read_rows(table, self._counters)
            except OSError:
                if self._force_netlink:
                    raise
                # This table (or netlink itself) is refused here: read /proc/net from now on.
                self._readers[ti] = self._procnet
                self._caches[ti] = {}
        try:
            return self._procnet.read(table), []
        except FileNotFoundError:
            if table.family == 6:
                return [], []  # IPv6 disabled
            raise
