"""Readers of the Linux kernel's TCP/UDP socket tables: /proc/net/{tcp,tcp6,udp,udp6} and sock_diag netlink.

Both readers return, per table, a list of opaque *keys* (cheap to produce, hashable, equal for an
unchanged socket from one read to the next) and decode a key into socket fields only on demand,
so a caller that remembers what it decoded last time pays almost nothing for sockets that did not
change. ``parse_proc_net`` is the plain, readable interface on top of the same code.

Address decoding: /proc/net prints an IPv4 address as one 32-bit word and an IPv6 address as four
32-bit words, each word in host byte order (``%08X`` of the in-memory value), so on little-endian
hosts the bytes of every word are reversed. Netlink gives addresses and ports in network order.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import sys
from typing import Any, NamedTuple

from portmon.model import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
)

TCP_STATE_NAMES: dict[int, str] = {
    0x01: ESTABLISHED,
    0x02: SYN_SENT,
    0x03: SYN_RECV,
    0x04: FIN_WAIT1,
    0x05: FIN_WAIT2,
    0x06: TIME_WAIT,
    0x07: CLOSE,
    0x08: CLOSE_WAIT,
    0x09: LAST_ACK,
    0x0A: LISTEN,
    0x0B: CLOSING,
    0x0C: SYN_RECV,  # the kernel's request-socket state; ss and psutil both call it SYN_RECV
}
"""Kernel TCP state numbers (include/net/tcp_states.h) to the model's state names."""


class Table(NamedTuple):
    """One kernel socket table."""

    proto: str
    """"tcp" or "udp"."""
    family: int
    """4 or 6."""
    filename: str
    """Its name under /proc/net."""
    ipproto: int
    af: int


TABLES: tuple[Table, ...] = (
    Table("tcp", 4, "tcp", socket.IPPROTO_TCP, socket.AF_INET),
    Table("tcp", 6, "tcp6", socket.IPPROTO_TCP, socket.AF_INET6),
    Table("udp", 4, "udp", socket.IPPROTO_UDP, socket.AF_INET),
    Table("udp", 6, "udp6", socket.IPPROTO_UDP, socket.AF_INET6),
)
"""The four tables every scan reads, in the order sockets are reported."""

Key = tuple[Any, ...]
"""One row of a table as a reader returns it: opaque, hashable, equal for an unchanged socket."""

Decoded = tuple[str, int, str | None, int | None, int, int, int]
"""(local_addr, local_port, remote_addr, remote_port, kernel state number, uid, inode)."""


class RawSocket(NamedTuple):
    """One row of a kernel socket table, decoded."""

    proto: str
    family: int
    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str | None
    """TCP state name; None for UDP."""
    uid: int
    inode: int


_LITTLE = sys.byteorder == "little"
_SWAP_V6 = struct.Struct("<4I")
_PACK_V6 = struct.Struct(">4I")


def decode_hex_addr(hexaddr: str | bytes, family: int) -> str:
    """Decode the address part of a /proc/net endpoint ("0100007F" -> "127.0.0.1")."""
    raw = bytes.fromhex(hexaddr.decode("ascii") if isinstance(hexaddr, bytes) else hexaddr)
    if family == 4:
        if len(raw) != 4:
            raise ValueError(f"bad IPv4 address in /proc/net: {hexaddr!r}")
        return socket.inet_ntop(socket.AF_INET, raw[::-1] if _LITTLE else raw)
    if len(raw) != 16:
        raise ValueError(f"bad IPv6 address in /proc/net: {hexaddr!r}")
    if _LITTLE:
        raw = _PACK_V6.pack(*_SWAP_V6.unpack(raw))
    return socket.inet_ntop(socket.AF_INET6, raw)


def decode_hex_endpoint(text: str | bytes, family: int) -> tuple[str | None, int | None]:
    """Decode "ADDR:PORT" from /proc/net; port 0 (not bound/connected) gives (None, None), as psutil does."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    hexaddr, _, hexport = text.partition(":")
    port = int(hexport, 16)
    if not port:
        return None, None
    return decode_hex_addr(hexaddr, family), port


# One regex over the whole file does the per-line splitting in C. Groups: "LOCAL REMOTE ST", uid,
# inode. The tx/rx queues, timers and retransmit counts in between change without the socket
# changing, so they are matched but left out of the key.
_LINE = re.compile(
    rb"^ *\d+: ([0-9A-Fa-f]+:[0-9A-Fa-f]+ [0-9A-Fa-f]+:[0-9A-Fa-f]+ [0-9A-Fa-f]{2}) "
    rb"[0-9A-Fa-f]+:[0-9A-Fa-f]+ [0-9A-Fa-f]+:[0-9A-Fa-f]+ [0-9A-Fa-f]+ +(\d+) +-?\d+ +(\d+)",
    re.M,
)


class ProcNetReader:
    """Reads /proc/net/{tcp,tcp6,udp,udp6} (text; the kernel formats every socket on every read)."""

    name = "procnet"

    def __init__(self, procfs: str = "/proc") -> None:
        self._procfs = procfs
        self._addrs: dict[bytes, str] = {}

    def read_bytes(self, table: Table) -> bytes:
        """The raw table; FileNotFoundError when it does not exist (IPv6 disabled)."""
        fd = os.open(f"{self._procfs}/net/{table.filename}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 18)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def read(self, table: Table) -> list[Key]:
        """Keys of every socket in ``table``: (b"LOCAL REMOTE ST", b"uid", b"inode")."""
        return self.keys_of(self.read_bytes(table))

    def read_rows(self, table: Table, counters: bool) -> tuple[list[Key], list[Raw]]:
        """``read``'s keys and no numbers: /proc/net gives no tcp_info (``counters`` is ignored)."""
        return self.read(table), []

    @staticmethod
    def cookie(key: Key) -> int | None:
        """None: /proc/net does not give the socket cookie."""
        return None

    @staticmethod
    def keys_of(data: bytes) -> list[Key]:
        """Keys of every row in a /proc/net table's text; ValueError on a row that is not understood."""
        keys = _LINE.findall(data)
        rows = data.count(b"\n") - 1 + (0 if data.endswith(b"\n") or not data else 1)
        if len(keys) != max(rows, 0):
            # The fast pattern missed a row (a format this module has not seen): parse line by line,
            # which raises on a row it cannot read rather than dropping it silently.
            keys = []
            for line in data.splitlines()[1:]:
                parts = line.split()
                if not parts:
                    continue
                if len(parts) < 10 or not parts[0].endswith(b":"):
                    raise ValueError(f"unreadable /proc/net row: {line[:120]!r}")
                int(parts[9])
                int(parts[7])
                keys.append((b" ".join(parts[1:4]), parts[7], parts[9]))
        return keys

    @staticmethod
    def inode(key: Key) -> int:
        """The socket inode in a key."""
        return int(key[2])

    @staticmethod
    def uid(key: Key) -> int:
        """The socket's uid in a key."""
        return int(key[1])

    def decode(self, table: Table, key: Key) -> Decoded:
        """Decode a key: (local_addr, local_port, remote_addr, remote_port, state, uid, inode)."""
        local, remote, state = key[0].split(b" ")
        laddr, lport = self._endpoint(local, table.family)
        raddr, rport = self._endpoint(remote, table.family)
        return laddr or "", lport or 0, raddr, rport, int(state, 16), int(key[1]), int(key[2])

    def decode_all(self, table: Table, keys: list[Key]) -> list[Decoded]:
        """``decode`` of every key in ``keys``, in order."""
        decode = self.decode
        return [decode(table, key) for key in keys]

    def _endpoint(self, text: bytes, family: int) -> tuple[str | None, int | None]:
        hexaddr, _, hexport = text.partition(b":")
        port = int(hexport, 16)
        if not port:
            return None, None
        addr = self._addrs.get(hexaddr)
        if addr is None:
            if len(self._addrs) > 65536:
                self._addrs.clear()
            addr = self._addrs[hexaddr] = decode_hex_addr(hexaddr, family)
        return addr, port


def parse_proc_net(data: bytes, table: Table) -> list[RawSocket]:
    """Decode every row of a /proc/net/{tcp,tcp6,udp,udp6} text (``table`` says which)."""
    reader = ProcNetReader()
    out = []
    for key in reader.keys_of(data):
        laddr, lport, raddr, rport, state, uid, inode = reader.decode(table, key)
        name = TCP_STATE_NAMES.get(state, f"UNKNOWN_{state:02X}") if table.proto == "tcp" else None
        out.append(RawSocket(table.proto, table.family, laddr, lport, raddr, rport, name, uid, inode))
    return out


# sock_diag: see linux/sock_diag.h and linux/inet_diag.h.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
# States 1..12 (ESTABLISHED..NEW_SYN_RECV); leaves out 13, the "bound-inactive" sockets that
# /proc/net and psutil do not list.
_ALL_STATES = sum(1 << s for s in range(1, 13))
_NLHDR = struct.Struct("=IHHII")
_MSGHDR = struct.Struct("=IH")
_REQ = struct.Struct("=BBBBI48x")
TCPDIAG_GETSOCK = 18
"""The older inet_diag request for TCP (``struct inet_diag_req``): the one that takes AF_UNSPEC."""
_REQ_COMPAT = struct.Struct("=BBBB48xII")
"""struct inet_diag_req: family, src_len, dst_len, ext, sockid, states, dbs."""
# From the start of a message: nlmsghdr (16), family, *state*, timer, retrans, *sockid ports and
# addresses (36)*, if (4), *cookie (8)*, expires, rqueue, wqueue, *uid*, *inode*.
_ENTRY = struct.Struct("=17xB2x36s4x8s12xII")
_PORTS = struct.Struct(">HH")
"""The first four bytes of a key's sockid: local and remote port, in network order."""
_COOKIE = struct.Struct("=II")
"""The sockid's cookie: two 32-bit words in host order, the low one first."""
_ERRNO = struct.Struct("=16xi")
INET_DIAG_INFO = 2
"""The attribute that carries a TCP socket's ``struct tcp_info``."""
_INFO_EXT = 1 << (INET_DIAG_INFO - 1)
"""The request's ``idiag_ext`` bit asking for it."""
_ATTRS_AT = 88
"""Attributes follow the nlmsghdr (16) and the inet_diag_msg (72)."""
_RTATTR = struct.Struct("=HH")
_INFO_NEEDS = 136
"""tcp_info bytes up to tcpi_bytes_received (Linux >= 4.1); a shorter one is not read."""
_QUEUES = struct.Struct("=72xII")
"""(rqueue, wqueue) of a message without tcp_info."""

Raw = tuple[int, ...]
"""A row's changing numbers: (rqueue, wqueue) and, with tcp_info, (attribute length, attribute
type, tcpi_rtt in us, tcpi_total_retrans, tcpi_bytes_acked, tcpi_bytes_received)."""

Traffic = tuple[int | None, int | None, float | None, int | None, int | None, int | None, int | None]
"""The values of ``model.TRAFFIC_FIELDS``: bytes_sent, bytes_received, rtt_ms, retransmits,
accept_queue, backlog, cookie."""

NO_TRAFFIC: Traffic = (None, None, None, None, None, None, None)
_LISTEN_STATE = 0x0A
_AF_INET6 = socket.AF_INET6


def counter_layout(buf: bytes, off: int, length: int) -> struct.Struct:
    """The struct that reads a message's ``Raw`` numbers: where its tcp_info attribute is, if any."""
    at = _ATTRS_AT
    while at + 4 <= length:
        alen, atype = _RTATTR.unpack_from(buf, off + at)
        if alen < 4:
            break
        if atype == INET_DIAG_INFO and alen >= 4 + _INFO_NEEDS:
            # rtt at 68, total_retrans at 100, bytes_acked and bytes_received at 120 (linux/tcp.h).
            return struct.Struct(f"=72xII{at - 80}xHH68xI28xI16xQQ")
        at += (alen + 3) & ~3
    return _QUEUES


def traffic(state: int, raw: Raw | None, cookie: int | None) -> Traffic:
    """A row's traffic fields from its ``Raw`` numbers (None: not read) and cookie.

    A LISTEN socket's queues are its accept queue and backlog; another TCP socket's counters
    come from its tcp_info; a socket without tcp_info (TIME_WAIT, request sockets, UDP) has none.
    """
    if raw is None:
        return NO_TRAFFIC if cookie is None else (None, None, None, None, None, None, cookie)
    if state == _LISTEN_STATE:
        return (None, None, None, None, raw[0], raw[1], cookie)
    if len(raw) > 2:
        return (raw[6], raw[7], raw[4] / 1000.0, raw[5], None, None, cookie)
    return (None, None, None, None, None, None, cookie)


class DiagRefused(OSError):
    """The kernel answered a dump request with an error message (errno says why)."""


def unpack_messages(
    buf: bytes,
    keys: list[Key],
    raws: list[Raw] | None = None,
    layouts: dict[int, struct.Struct] | None = None,
    kind_wanted: int = SOCK_DIAG_BY_FAMILY,
    split: tuple[list[Key], list[Raw] | None] | None = None,
) -> bool:
    """Append the key of every socket entry in one read of a dump to ``keys``; True at its DONE message.

    With ``raws``, each entry's ``Raw`` numbers go there too, read by the struct ``layouts`` holds
    for its length (learnt from the first entry of that length, checked on each). One Python
    step per message. Reads of same-length entries used to be unpacked by two ``iter_unpack``
    calls instead: that saved 0.8-1.5 ms at 10,000 sockets (best of 30 on a 2-core VM), under
    the 2 ms a trick must save, and does not apply to entries with tcp_info of different
    lengths (nor do ``map`` calls of ``unpack_from`` over the message offsets: 21 ms against
    15 ms for 31,000 messages). OSError on an error message or a malformed one.

    ``kind_wanted``: the message type of the entries (the request's). ``split``: (keys, raws)
    that take the IPv6 entries of a dump of both families, the rest going to ``keys``/``raws``.
    """
    entry = _ENTRY.unpack_from
    header = _MSGHDR.unpack_from
    if layouts is None:
        layouts = {}
    splitting = split is not None
    keys6, raws6 = split if split is not None else (keys, raws)
    off = 0
    end = len(buf)
    while off < end:
        length, kind = header(buf, off)
        if kind == kind_wanted:
            six = splitting and buf[off + 16] == _AF_INET6
            (keys6 if six else keys).append(entry(buf, off))
            if raws is not None:
                layout = layouts.get(length)
                if layout is None:
                    layout = layouts[length] = counter_layout(buf, off, length)
                raw = layout.unpack_from(buf, off)
                if len(raw) > 2 and raw[3] != INET_DIAG_INFO:  # another layout of the same length
                    raw = counter_layout(buf, off, length).unpack_from(buf, off)
                (raws6 if six and raws6 is not None else raws).append(raw)
        elif kind == _NLMSG_DONE:
            return True
        elif kind == _NLMSG_ERROR:
            err = -_ERRNO.unpack_from(buf, off)[0]
            raise DiagRefused(err, f"sock_diag: {os.strerror(err)}")
        if length < 16:
            raise OSError("malformed netlink message")
        off += (length + 3) & ~3
    return False


class NetlinkReader:
    """Reads the socket tables through NETLINK_SOCK_DIAG (binary, what ``ss`` uses; about twice as fast)."""

    name = "netlink"

    def __init__(self, combine: bool = True) -> None:
        """``combine``: the speed trick of ``read_rows`` (False: each table dumped on its own, the
        plain way, which tests compare it with)."""
        self._sock: socket.socket | None = None
        self._seq = 0
        self.combine = combine
        self._kept: tuple[bool, list[Key], list[Raw]] | None = None
        """(counters, keys, raws) of the TCP/IPv6 rows of the last combined dump, for the next read."""
        self._addrs: dict[bytes, str] = {}
        """Raw address (4 or 16 bytes, so the families cannot collide) -> text."""
        self._layouts: dict[int, struct.Struct] = {}
        """Message length -> the struct reading its ``Raw`` numbers (see ``unpack_messages``)."""

    def close(self) -> None:
        """Close the netlink socket (it is reopened on the next read)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, table: Table) -> list[Key]:
        """Keys of every socket in ``table``: (state, ports+addresses, cookie, uid, inode); OSError if refused."""
        return self.read_rows(table, False)[0]

    def read_rows(self, table: Table, counters: bool) -> tuple[list[Key], list[Raw]]:
        """Keys of every socket in ``table`` and each one's ``Raw`` numbers (queues, and tcp_info
        for TCP when ``counters``); OSError if refused.

        Speed trick (``combine``): a read of TCP/IPv4 dumps both TCP tables at once and keeps the
        IPv6 rows for a read of TCP/IPv6 that follows it directly (the order ``TABLES`` has, in
        which every scan reads them). Every TCP dump walks the kernel's whole established hash,
        ~8 ms of kernel time at 31,000 sockets even when it matches none, and the two tables share
        that hash: one walk instead of two. Only the older request (TCPDIAG_GETSOCK) takes
        AF_UNSPEC; where the kernel refuses it, each table is dumped on its own from then on.
        Measured on issue 18's load (31,000 TCP sockets, a third of them TIME_WAIT; 2-core VM busy
        with other work): the four tables read in 51.1 ms of CPU instead of 58.0 ms with tcp_info
        (medians of 40 reads each, alternating, 0.3 s apart as scans are; read back to back, as
        ``bench/bench_collect_tricks.py --load issue18`` does, the saving looks larger, ~20 ms). The
        rows are the same (tests/test_collect_tricks.py).
        """
        if self._sock is None:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        sock = self._sock
        tcp = table.proto == "tcp"
        ext = _INFO_EXT if counters and tcp else 0
        kept, self._kept = self._kept, None
        if tcp and table.af == socket.AF_INET6 and kept is not None and kept[0] == counters:
            return kept[1], kept[2]
        raws: list[Raw] = []
        try:
            if tcp and table.af == socket.AF_INET and self.combine:
                keys6: list[Key] = []
                raws6: list[Raw] = []
                try:
                    keys = self._dump(sock, _REQ_COMPAT.pack(0, 0, 0, ext, _ALL_STATES, 0), raws, (keys6, raws6))
                except DiagRefused:
                    self.combine = False  # refused (an error message): one dump per table from now on
                    self.close()
                    return self.read_rows(table, counters)
                self._kept = (counters, keys6, raws6)
                return keys, raws
            return self._dump(sock, _REQ.pack(table.af, table.ipproto, ext, 0, _ALL_STATES), raws), raws
        except BaseException:
            # A half-read dump would be answered on the next request: start afresh.
            self.close()
            raise

    def _dump(
        self,
        sock: socket.socket,
        req: bytes,
        raws: list[Raw],
        split: tuple[list[Key], list[Raw]] | None = None,
    ) -> list[Key]:
        """Send one dump request (a sock_diag one, or with ``split`` the older TCP one, whose IPv6
        rows go to ``split``) and read the dump whole."""
        self._seq += 1
        kind = SOCK_DIAG_BY_FAMILY if split is None else TCPDIAG_GETSOCK
        sock.send(_NLHDR.pack(_NLHDR.size + len(req), kind, _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0) + req)
        return self._receive(sock, raws, self._layouts, kind, split)

    @staticmethod
    def _receive(
        sock: socket.socket,
        raws: list[Raw] | None = None,
        layouts: dict[int, struct.Struct] | None = None,
        kind: int = SOCK_DIAG_BY_FAMILY,
        split: tuple[list[Key], list[Raw]] | None = None,
    ) -> list[Key]:
        """Every socket entry of a dump, read until its DONE message (with ``raws``: their numbers too;
        ``kind`` and ``split``: see ``unpack_messages``)."""
        keys: list[Key] = []
        while True:
            buf = sock.recv(1 << 16)
            if not buf:
                raise OSError("netlink socket closed during a dump")
            if unpack_messages(buf, keys, raws, layouts, kind, split):
                return keys

    @staticmethod
    def inode(key: Key) -> int:
        """The socket inode in a key."""
        inode: int = key[4]
        return inode

    @staticmethod
    def uid(key: Key) -> int:
        """The socket's uid in a key."""
        uid: int = key[3]
        return uid

    @staticmethod
    def cookie(key: Key) -> int | None:
        """The kernel's socket cookie in a key."""
        low, high = _COOKIE.unpack(key[2])
        cookie: int = low | high << 32
        return cookie

    def decode(self, table: Table, key: Key) -> Decoded:
        """Decode a key: (local_addr, local_port, remote_addr, remote_port, state, uid, inode)."""
        state, ident, _cookie, uid, inode = key
        lport = (ident[0] << 8) | ident[1]
        rport = (ident[2] << 8) | ident[3]
        size = 4 if table.af == socket.AF_INET else 16
        addrs = self._addrs
        laddr = ""
        raddr = None
        if lport:
            raw = ident[4 : 4 + size]
            laddr = addrs.get(raw) or self._addr(table.af, raw)
        if rport:
            raw = ident[20 : 20 + size]
            raddr = addrs.get(raw) or self._addr(table.af, raw)
        return laddr, lport, raddr, rport or None, state, uid, inode

    def decode_all(self, table: Table, keys: list[Key]) -> list[Decoded]:
        """``decode`` of every key in ``keys``, in order (one loop: the hot path of a cold scan)."""
        af = table.af
        size = 4 if af == socket.AF_INET else 16
        remote_at = 20 + size
        local_at = 4 + size
        known = self._addrs.get
        new = self._addr
        ports = _PORTS.unpack_from
        out: list[Decoded] = []
        append = out.append
        for state, ident, _cookie, uid, inode in keys:
            lport, rport = ports(ident)
            if lport:
                raw = ident[4:local_at]
                laddr = known(raw) or new(af, raw)
            else:
                laddr = ""
            if rport:
                raw = ident[20:remote_at]
                append((laddr, lport, known(raw) or new(af, raw), rport, state, uid, inode))
            else:
                append((laddr, lport, None, None, state, uid, inode))
        return out

    def _addr(self, af: int, raw: bytes) -> str:
        if len(self._addrs) > 65536:
            self._addrs.clear()
        addr = self._addrs[raw] = socket.inet_ntop(af, raw)
        return addr


def netlink_works() -> bool:
    """True when sock_diag answers a TCP/IPv4 dump here (it may be filtered in some sandboxes)."""
    reader = NetlinkReader()
    try:
        reader.read(TABLES[0])
    except OSError:
        return False
    finally:
        reader.close()
    return True
