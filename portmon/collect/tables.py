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
from itertools import compress
from operator import add, itemgetter, not_
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


def state_name(number: int, tcp: bool) -> str | None:
    """A row's state as the model names it: a TCP state's name (``UNKNOWN_0D`` for a number not known), None for UDP."""
    if not tcp:
        return None
    return TCP_STATE_NAMES.get(number) or f"UNKNOWN_{number:02X}"


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
        name = state_name(state, table.proto == "tcp")
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
_PORTS = struct.Struct(">HH")
"""The first four bytes of a sockid: local and remote port, in network order."""
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
_INFO_FROM = 68
"""Where a row's tcp_info slice starts: tcpi_rtt; it ends after tcpi_bytes_received (``_INFO_NEEDS``)."""
_INFO_FIELDS = struct.Struct("=I28xI16xQQ")
"""In that slice: tcpi_rtt (us), tcpi_total_retrans, tcpi_bytes_acked, tcpi_bytes_received (linux/tcp.h)."""
_QUEUES = struct.Struct("=II")
_UID_INODE = struct.Struct("=II")
_DONE_SIZE = 20
"""An NLMSG_DONE message: the header and an int."""

Row = bytes
"""One socket of a sock_diag dump, as the bytes of its message that say what it is and what it moved: bytes
16-68 (family, state, timer, retransmits, sockid, interface, cookie), 72-88 (rqueue, wqueue, uid, inode), then
the tcp_info slice where there is one. Equal rows: nothing of the socket changed, its numbers included. One
object a row, which the garbage collector does not track (a tuple a row cost ~10 ms of collections a scan at
31,000 rows)."""
_COOKIE_AT = 44
_QUEUES_AT = 52
_OWNER_AT = 60
_INODE_AT = 64
_INFO_AT = 68

Traffic = tuple[int | None, int | None, float | None, int | None, int | None, int | None, int | None]
"""The values of ``model.TRAFFIC_FIELDS``: bytes_sent, bytes_received, rtt_ms, retransmits,
accept_queue, backlog, cookie."""

NO_TRAFFIC: Traffic = (None, None, None, None, None, None, None)
_LISTEN_STATE = 0x0A
_AF_INET6 = socket.AF_INET6


def row_cookie(row: Row) -> int:
    """A row's socket cookie."""
    low, high = _COOKIE.unpack_from(row, _COOKIE_AT)
    cookie: int = low | high << 32
    return cookie


def row_inode(row: Row) -> int:
    """A row's socket inode."""
    inode: int = _UID_INODE.unpack_from(row, _OWNER_AT)[1]
    return inode


def row_traffic(row: Row) -> Traffic:
    """A row's traffic fields: a listener's accept queue and backlog, a connection's tcp_info counters,
    and the cookie; a socket without tcp_info (TIME_WAIT, request sockets, UDP) has only the cookie."""
    cookie = row_cookie(row)
    if row[1] == _LISTEN_STATE:
        queue, backlog = _QUEUES.unpack_from(row, _QUEUES_AT)
        return (None, None, None, None, queue, backlog, cookie)
    if len(row) > _INFO_AT:
        rtt, retransmits, sent, received = _INFO_FIELDS.unpack_from(row, _INFO_AT)
        return (sent, received, rtt / 1000.0, retransmits, None, None, cookie)
    return (None, None, None, None, None, None, cookie)


class DiagRefused(OSError):
    """The kernel answered a dump request with an error message (errno says why)."""


def _info_at(buf: bytes, off: int, length: int) -> tuple[int, int] | None:
    """(offset in the message, length) of a message's tcp_info attribute when it holds the counters read."""
    at = _ATTRS_AT
    while at + 4 <= length:
        alen, atype = _RTATTR.unpack_from(buf, off + at)
        if alen < 4:
            break
        if atype == INET_DIAG_INFO:
            return (at, alen) if alen >= 4 + _INFO_NEEDS else None
        at += (alen + 3) & ~3
    return None


def unpack_rows(
    buf: bytes, rows: list[Row], kind_wanted: int = SOCK_DIAG_BY_FAMILY, split: list[Row] | None = None
) -> bool:
    """Append the ``Row`` of every socket entry in one read of a dump to ``rows``; True at its DONE message.

    The plain way: one Python step per message (``RowScanner`` is the fast one). ``kind_wanted``: the
    message type of the entries (the request's). ``split``: takes the IPv6 entries of a dump of both
    families. OSError on an error message or a malformed one.
    """
    header = _MSGHDR.unpack_from
    off = 0
    end = len(buf)
    while off < end:
        length, kind = header(buf, off)
        if kind == kind_wanted:
            if length < _ATTRS_AT or off + length > end:
                raise OSError("malformed sock_diag message")
            found = _info_at(buf, off, length)
            info = b"" if found is None else buf[off + found[0] + 4 + _INFO_FROM : off + found[0] + 4 + _INFO_NEEDS]
            row = buf[off + 16 : off + 68] + buf[off + 72 : off + 88] + info
            (split if split is not None and buf[off + 16] == _AF_INET6 else rows).append(row)
        elif kind == _NLMSG_DONE:
            return True
        elif kind == _NLMSG_ERROR:
            err = -_ERRNO.unpack_from(buf, off)[0]
            raise DiagRefused(err, f"sock_diag: {os.strerror(err)}")
        if length < 16:
            raise OSError("malformed netlink message")
        off += (length + 3) & ~3
    return False


_FIRST = itemgetter(0)


class RowScanner:
    """``unpack_rows`` for one message type, with the messages cut out by one regular expression in C.

    Speed trick: a sock_diag message is a fixed 88-byte head (header, family, state, sockid, cookie,
    queues, uid, inode) and attributes, and the messages of one kernel come in a few lengths (here
    96 for TIME_WAIT, 124 for other sockets, 408 with tcp_info). Once seen, each length is a branch
    of one pattern that checks the length field and the message type, captures the parts of a
    ``Row`` and skips the rest, so ``split`` cuts a whole read into those parts without a Python
    step per message. The rows are taken only when nothing lies between the matches (so each began
    where a message began) and what follows the last is nothing or the dump's DONE message;
    otherwise, or for a length not yet seen or one seen with two layouts, the read goes the plain
    way (learning the new lengths for the next read). Measured in a network namespace holding issue
    18's load (29,700 TCP sockets, 20,400 with tcp_info; 2-core VM shared with other work, CPU time,
    medians of 10): 14.6 ms instead of 36.1 ms to cut one dump of both TCP tables with tcp_info,
    13.7 ms instead of 26.4 ms without; whole reads of the four tables (recv included) 50.4 ms
    instead of 59.3 ms with the per-message loop of the last release (medians of 16, alternating);
    ``bench/bench_collect_tricks.py --load issue18 --only-scan`` (both TCP tables, CPU, medians of
    11): 66.6 ms instead of 88.9 ms with tcp_info. The rows are those of ``unpack_rows``
    (tests/test_collect_tricks.py).
    """

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self._plain: dict[int, None] = {}
        """Lengths of messages without tcp_info counters."""
        self._info: dict[int, int] = {}
        """Lengths of messages with them -> where their tcp_info attribute starts."""
        self._info_tail: tuple[int, int] | None = None
        """(attribute length, bytes after the counters' slice to the message's end) shared by them."""
        self._odd: set[int] = set()
        """Lengths seen with two layouts: never in the pattern."""
        self._split: Any = None

    def rows(self, buf: bytes, rows: list[Row], split: list[Row] | None = None) -> bool:
        """``unpack_rows(buf, rows, self.kind, split)``, the same rows, fast where it can be."""
        if self._split is not None:
            # [before, head, tail, counters, before, head, ..., after]: every "before" empty when the
            # matches follow one another from the first byte, so each began where a message began.
            parts = self._split(buf)
            after = parts[-1]
            if len(parts) > 1 and not any(parts[0:-1:4]) and (not after or after == _done_of(after)):
                infos = [info or b"" for info in parts[3::4]]
                found = list(map(add, map(add, parts[1::4], parts[2::4]), infos))
                if split is None:
                    rows.extend(found)
                    return bool(after)
                families = list(map(_FIRST, found))
                if _AF_INET6 not in families:
                    rows.extend(found)
                elif families.count(_AF_INET6) == len(families):
                    split.extend(found)
                else:
                    six = list(map(_AF_INET6.__eq__, families))
                    rows.extend(compress(found, map(not_, six)))
                    split.extend(compress(found, six))
                return bool(after)
        self._learn(buf)
        return unpack_rows(buf, rows, self.kind, split)

    def _learn(self, buf: bytes) -> None:
        """Add the lengths of this read's messages to the pattern."""
        header = _MSGHDR.unpack_from
        changed = False
        off = 0
        end = len(buf)
        while off + 16 <= end:
            length, kind = header(buf, off)
            if length < 16:
                return
            if kind == self.kind and length >= _ATTRS_AT and off + length <= end and length not in self._odd:
                found = _info_at(buf, off, length)
                if found is None:
                    if length in self._info:
                        self._odd.add(length)
                        changed = True
                    elif length not in self._plain:
                        self._plain[length] = None
                        changed = True
                else:
                    at, alen = found
                    tail = (alen, ((length + 3) & ~3) - (at + 4 + _INFO_NEEDS))
                    if length in self._plain or self._info.get(length, at) != at:
                        self._odd.add(length)
                        changed = True
                    elif length not in self._info and self._info_tail in (None, tail):
                        self._info[length] = at
                        self._info_tail = tail
                        changed = True
            off += (length + 3) & ~3
        if changed:
            self._compile()

    def _compile(self) -> None:
        def starts(length: int, skip: int) -> bytes:
            # Looks back to the message's length field.
            return b"(?<=" + re.escape(struct.pack("=I", length)) + b".{%d})" % skip

        plain = [length for length in self._plain if length not in self._odd]
        info = {length: at for length, at in self._info.items() if length not in self._odd}
        if not plain and not info:
            self._split = None
            return
        tails = [starts(length, 84) + b".{%d}" % (((length + 3) & ~3) - _ATTRS_AT) for length in plain]
        if info and self._info_tail is not None:
            alen, after = self._info_tail
            lead = b"|".join(starts(length, 84) + b".{%d}" % (at - _ATTRS_AT) for length, at in info.items())
            tails.append(
                b"(?:" + lead + b")" + re.escape(_RTATTR.pack(alen, INET_DIAG_INFO))
                + b".{%d}(.{%d}).{%d}" % (_INFO_FROM, _INFO_NEEDS - _INFO_FROM, after)
            )
        elif tails:
            info = {}
            tails[-1] += b"()"  # a third group all the same: empty counters
        else:
            self._split = None
            return
        lengths = b"|".join(re.escape(struct.pack("=I", length)) for length in (*plain, *info))
        # The length field, the message type, bytes 16-68 and 72-88 captured, the counters captured, the rest skipped.
        pattern = (
            b"(?:" + lengths + b")" + re.escape(struct.pack("=H", self.kind)) + b".{10}(.{52}).{4}(.{16})"
            + b"(?:" + b"|".join(tails) + b")"
        )
        self._split = re.compile(pattern, re.S).split


def _done_of(after: bytes) -> bytes | None:
    """``after`` when it is a whole NLMSG_DONE message (the end of a dump), else None."""
    if len(after) == _DONE_SIZE and _MSGHDR.unpack_from(after) == (_DONE_SIZE, _NLMSG_DONE):
        return after
    return None


class NetlinkReader:
    """Reads the socket tables through NETLINK_SOCK_DIAG (binary, what ``ss`` uses; about twice as fast)."""

    name = "netlink"

    def __init__(self, combine: bool = True, fast: bool = True) -> None:
        """``combine``: the speed trick of ``read_rows`` (False: each table dumped on its own, the
        plain way, which tests compare it with). ``fast``: messages cut by ``RowScanner`` (False:
        by ``unpack_rows``)."""
        self._sock: socket.socket | None = None
        self._seq = 0
        self.combine = combine
        self.fast = fast
        self._kept: tuple[bool, list[Row]] | None = None
        """(counters, rows) of the TCP/IPv6 rows of the last combined dump, for the next read."""
        self._addrs: dict[bytes, str] = {}
        """Raw address (4 or 16 bytes, so the families cannot collide) -> text."""
        self._scanners = {kind: RowScanner(kind) for kind in (SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK)}

    def close(self) -> None:
        """Close the netlink socket (it is reopened on the next read)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read_decoded(self, table: Table) -> list[Decoded]:
        """Every socket of ``table``, decoded (no tcp_info); OSError if refused."""
        return self.decode_rows(table, self.read_rows(table, False))

    def read_rows(self, table: Table, counters: bool) -> list[Row]:
        """The ``Row`` of every socket in ``table`` (with tcp_info for TCP when ``counters``); OSError if refused.

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
            return kept[1]
        try:
            if tcp and table.af == socket.AF_INET and self.combine:
                rows6: list[Row] = []
                try:
                    rows = self._dump(sock, _REQ_COMPAT.pack(0, 0, 0, ext, _ALL_STATES, 0), rows6)
                except DiagRefused:
                    self.combine = False  # refused (an error message): one dump per table from now on
                    self.close()
                    return self.read_rows(table, counters)
                self._kept = (counters, rows6)
                return rows
            return self._dump(sock, _REQ.pack(table.af, table.ipproto, ext, 0, _ALL_STATES))
        except BaseException:
            # A half-read dump would be answered on the next request: start afresh.
            self.close()
            raise

    def _dump(self, sock: socket.socket, req: bytes, split: list[Row] | None = None) -> list[Row]:
        """Send one dump request (a sock_diag one, or with ``split`` the older TCP one, whose IPv6
        rows go to ``split``) and read the dump whole."""
        self._seq += 1
        kind = SOCK_DIAG_BY_FAMILY if split is None else TCPDIAG_GETSOCK
        sock.send(_NLHDR.pack(_NLHDR.size + len(req), kind, _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0) + req)
        return self.receive(sock, kind, split)

    def receive(
        self, sock: socket.socket, kind: int = SOCK_DIAG_BY_FAMILY, split: list[Row] | None = None
    ) -> list[Row]:
        """Every socket entry of a dump, read until its DONE message (``kind`` and ``split``: see ``unpack_rows``)."""
        rows: list[Row] = []
        scan = self._scanners[kind].rows if self.fast else None
        while True:
            buf = sock.recv(1 << 16)
            if not buf:
                raise OSError("netlink socket closed during a dump")
            if scan(buf, rows, split) if scan is not None else unpack_rows(buf, rows, kind, split):
                return rows

    def decode_rows(self, table: Table, rows: list[Row]) -> list[Decoded]:
        """Decode each row: (local_addr, local_port, remote_addr, remote_port, state, uid, inode), in order.

        One loop with every helper a local: the hot path of a first scan (every row new)."""
        af = table.af
        size = 4 if af == socket.AF_INET else 16
        remote_to = 24 + size
        local_to = 8 + size
        known = self._addrs.get
        new = self._addr
        ports = _PORTS.unpack_from
        owner = _UID_INODE.unpack_from
        out: list[Decoded] = []
        append = out.append
        for row in rows:
            lport, rport = ports(row, 4)
            uid, inode = owner(row, _OWNER_AT)
            if lport:
                raw = row[8:local_to]
                laddr = known(raw) or new(af, raw)
            else:
                laddr = ""
            if rport:
                raw = row[24:remote_to]
                append((laddr, lport, known(raw) or new(af, raw), rport, row[1], uid, inode))
            else:
                append((laddr, lport, None, None, row[1], uid, inode))
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
        reader.read_rows(TABLES[0], False)
    except OSError:
        return False
    finally:
        reader.close()
    return True
