"""Plain-text, JSON and CSV renderings of sockets for the one-shot commands."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from portmon.model import Holder, NetnsRef, Socket
from portmon.registry import port_range
from portmon.textsafe import safe, visible

TRAFFIC_KEYS = ("bytes_sent", "bytes_received", "rtt_ms", "retransmits", "accept_queue", "backlog")
"""The socket's traffic and health counters (null where the collector has none), last in a record."""
_TRAFFIC_AT = Socket._fields.index(TRAFFIC_KEYS[0])
_TRAFFIC_END = _TRAFFIC_AT + len(TRAFFIC_KEYS)
_NO_TRAFFIC_JSON = "".join(f', "{k}": null' for k in TRAFFIC_KEYS)

RECORD_KEYS = (
    "proto",
    "family",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "state",
    "pid",
    "process",
    "user",
    "local_service",
    "remote_service",
    "local_range",
    *TRAFFIC_KEYS,
    "host",
    "netns",
)
"""The keys of one socket in ``--json`` output, and the CSV header, in order.

``netns`` is null for portmon's own network namespace, else ``{"inode": N, "label": TEXT-or-null}``;
the CSV cell is ``net:[N] label`` (empty for the own namespace)."""

CSV_KEYS = (*RECORD_KEYS, "pids")
"""The CSV header: the record's keys, then every holder's pid (space-separated, main holder first)."""

RecordExtra = Callable[[Socket], dict[str, Any]]
"""``extra(sock) -> keys`` appended to each socket record: ``list --json``'s ``holders`` and ``manager``
(``portmon.ownership.view.Ownership.record_extra``). It must depend on the socket's holders tuple
alone (the JSON writer asks once per tuple)."""


def socket_record(sock: Socket, holder: Holder | None = None, extra: RecordExtra | None = None) -> dict[str, Any]:
    """One socket as a JSON-ready dict; ``holder`` picks which holder's pid/process/user to give."""
    h = holder if holder is not None else (sock.holders[0] if sock.holders else None)
    record = {
        "proto": sock.proto,
        "family": sock.family,
        "local_addr": sock.local_addr,
        "local_port": sock.local_port,
        "remote_addr": sock.remote_addr,
        "remote_port": sock.remote_port,
        "state": sock.state,
        "pid": h.pid if h else None,
        "process": h.name if h else None,
        "user": h.user if h else None,
        "local_service": sock.local_service,
        "remote_service": sock.remote_service,
        "local_range": port_range(sock.local_port),
        "bytes_sent": sock.bytes_sent,
        "bytes_received": sock.bytes_received,
        "rtt_ms": sock.rtt_ms,
        "retransmits": sock.retransmits,
        "accept_queue": sock.accept_queue,
        "backlog": sock.backlog,
        "host": sock.host,
        "netns": netns_record(sock.netns),
    }
    if extra is not None:
        record.update(extra(sock))
    return record


def netns_record(ref: NetnsRef | None) -> dict[str, Any] | None:
    """A socket's network namespace in JSON: null for portmon's own, else its inode and label."""
    return None if ref is None else {"inode": ref.inode, "label": ref.label}


def holder_records(sockets: Iterable[Socket]) -> list[dict[str, Any]]:
    """One record per (socket, holder): a socket shared by three processes gives three records."""
    out: list[dict[str, Any]] = []
    for sock in sockets:
        if sock.holders:
            out.extend(socket_record(sock, h) for h in sock.holders)
        else:
            out.append(socket_record(sock))
    return out


def to_json(value: Any) -> str:
    """JSON with every non-ASCII and control character escaped, so it is safe on a terminal."""
    return json.dumps(value, ensure_ascii=True)


def sockets_json(sockets: Sequence[Socket], extra: RecordExtra | None = None) -> str:
    """The ``list --json`` document: an array of socket records (``iter_sockets_json`` joined)."""
    return "".join(iter_sockets_json(sockets, extra))


JSON_CHUNK = 512
"""Socket records per piece of ``iter_sockets_json``."""


def iter_sockets_json(sockets: Sequence[Socket], extra: RecordExtra | None = None) -> Iterator[str]:
    """The ``list --json`` document in pieces of JSON_CHUNK records, to be written one after another (speed trick).

    The same text as the plain ``to_json([socket_record(s) for s in sockets])`` (tests/test_output.py
    checks it), written directly: measured at 10,000 sockets (``python bench/bench_tricks.py``,
    synthetic_snapshot(10_000), median of 21 on a busy 2-core host) 28 ms against 52 ms plain.
    Strings go through json's own ASCII escaper, each distinct one once. A record is three cached
    parts and three values: its head (protocol, family, local address) and its tail (state, holder,
    services, range) repeat across sockets; only the ports and the remote address vary. Written
    piece by piece, the document is never whole in memory. ``extra``'s keys (see ``socket_record``)
    end each record, encoded by json.dumps once per holders tuple.
    """
    text: dict[str | None, str] = {None: "null"}
    escape = encode_basestring_ascii

    def quoted(value: str | None) -> str:
        done = text.get(value)
        if done is None:
            done = text[value] = escape(value)  # type: ignore[arg-type]  # None is in ``text`` from the start
        return done

    known = text.get
    heads: dict[tuple[str, int, str], str] = {}
    tails: dict[tuple[str | None, int, str | None, str | None, str], str] = {}
    ranges: dict[int, str] = {}
    extras: dict[int, str] = {}
    spaces: dict[NetnsRef | None, str] = {None: "null"}

    def netns_text(ref: NetnsRef) -> str:
        done = spaces.get(ref)
        if done is None:
            done = spaces[ref] = f'{{"inode": {int(ref.inode)}, "label": {quoted(ref.label)}}}'
        return done

    def extra_text(sock: Socket) -> str:
        done = extras.get(id(sock.holders))
        if done is None:
            assert extra is not None
            done = extras[id(sock.holders)] = "".join(
                f", {escape(key)}: {json.dumps(value, ensure_ascii=True)}" for key, value in extra(sock).items()
            )
        return done

    yield "["
    for first in range(0, len(sockets), JSON_CHUNK):
        records: list[str] = []
        append = records.append
        # Unpacked by position (Socket's field order, which tests pin): much cheaper than 11 attributes.
        for sock in sockets[first : first + JSON_CHUNK]:
            proto, family, laddr, lport, raddr, rport, state, hs, _, _, lsvc, rsvc = sock[:12]
            host = sock.host
            ns = sock.netns
            head = heads.get((proto, family, laddr))
            if head is None:
                head = heads[(proto, family, laddr)] = (
                    f'{{"proto": {quoted(proto)}, "family": {int(family)}, '
                    f'"local_addr": {quoted(laddr)}, "local_port": '
                )
            rng = ranges.get(lport)
            if rng is None:
                rng = ranges[lport] = port_range(lport)
            # Keyed by the holders tuple's identity: sockets of one process share one, kept alive by ``sockets``.
            tail_key = (state, id(hs), lsvc, rsvc, rng)
            tail = tails.get(tail_key)
            if tail is None:
                if hs:
                    h = hs[0]
                    holder = f'"pid": {int(h.pid)}, "process": {quoted(h.name)}, "user": {quoted(h.user)}'
                else:
                    holder = '"pid": null, "process": null, "user": null'
                tail = tails[tail_key] = (
                    f', "state": {quoted(state)}, {holder}, "local_service": {quoted(lsvc)}, '
                    f'"remote_service": {quoted(rsvc)}, "local_range": {escape(rng)}'
                )
            counters = sock[_TRAFFIC_AT:_TRAFFIC_END]
            # Ports are ints (every collector makes them so): their str() is their JSON.
            append(
                f'{head}{lport}, "remote_addr": {known(raddr) or quoted(raddr)}, '
                f'"remote_port": {"null" if rport is None else rport}{tail}'
                f"{_NO_TRAFFIC_JSON if counters == _NONE else _traffic_json(counters)}"
                f', "host": {quoted(host)}, "netns": {"null" if ns is None else netns_text(ns)}'
                f'{extra_text(sock) if extra is not None else ""}}}'
            )
        yield (", " if first else "") + ", ".join(records)
    yield "]"


_NONE = (None,) * len(TRAFFIC_KEYS)


def _traffic_json(counters: tuple[object, ...]) -> str:
    """The traffic counters of one ``list --json`` record (ints, a float or null); the host follows."""
    pairs = zip(TRAFFIC_KEYS, counters, strict=True)
    return "".join(f', "{key}": {"null" if value is None else repr(value)}' for key, value in pairs)


def sockets_csv(sockets: Sequence[Socket]) -> str:
    """The ``list --csv`` document: a header row (CSV_KEYS), then one row per socket, control characters escaped.

    The ``pids`` column names every holder, in the sockets' holder order (main holder first once
    ``portmon.ownership`` has ordered them).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_KEYS)
    for sock in sockets:
        rec = socket_record(sock)
        rec["netns"] = sock.netns
        cells = ["" if rec[k] is None else visible(str(rec[k])) for k in RECORD_KEYS]
        cells.append(" ".join(str(h.pid) for h in sock.holders))
        writer.writerow(cells)
    return buf.getvalue()


def endpoint(addr: str | None, port: int | None, family: int) -> str:
    """``127.0.0.1:8080`` or ``[::1]:8080``; ``*`` for an unconnected end."""
    if addr is None and port is None:
        return "*"
    host = addr or "*"
    if family == 6 and ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def process_label(sock: Socket, width: int = 24) -> str:
    """The owner as shown in tables: ``nginx``, ``nginx (+2)`` when shared, or why it is unknown."""
    if not sock.holders:
        return "-" if sock.owner_note is None else f"({sock.owner_note})"
    name = safe(sock.holders[0].name or "?", width)
    extra = len(sock.holders) - 1
    return f"{name} (+{extra})" if extra else name


TABLE_HEADERS = (
    "PROTO",
    "LOCAL ADDRESS",
    "PORT",
    "SERVICE",
    "REMOTE ADDRESS",
    "RPORT",
    "RSERVICE",
    "STATE",
    "PID",
    "PROCESS",
    "USER",
)


def table_rows(sockets: Iterable[Socket], label: Callable[[Socket], str] = process_label) -> list[tuple[str, ...]]:
    """The cells of the plain-text table, every untrusted field escaped and cut to a sane width.

    ``label`` writes the PROCESS cell (``ownership.families.family_label``: ``python3 +3 workers``).
    """
    return [
        (
            s.proto_label,
            safe(s.local_addr or "", 39),
            str(s.local_port),
            safe(s.local_service or "", 16),
            safe(s.remote_addr or "*", 39),
            "*" if s.remote_port is None else str(s.remote_port),
            safe(s.remote_service or "", 16),
            s.state or "",
            str(s.holders[0].pid) if s.holders else "",
            label(s),
            safe(s.holders[0].user or "", 16) if s.holders else "",
        )
        for s in sockets
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, numbers right-aligned; no trailing blanks (speed trick).

    The same text as ``format_table_plain`` (tests/test_output.py checks it), with one format
    string for every line so the fields pad in C, and each column's distinct values tested once:
    measured at 10,000 sockets (``python bench/bench_tricks.py``, median of 21 on a busy 2-core
    host) 20 ms against 30 ms plain.
    """
    if not rows:
        return "  ".join(headers)
    columns = list(zip(*rows, strict=True))
    widths = [max(len(h), max(map(len, column))) for h, column in zip(headers, columns, strict=True)]
    numeric = [all(c.isdigit() or c in ("", "*") for c in set(column)) for column in columns]
    template = "  ".join(f"{{:{'>' if num else '<'}{w}}}" for w, num in zip(widths, numeric, strict=True))
    fill = template.format
    return "\n".join([fill(*headers).rstrip(), *(fill(*r).rstrip() for r in rows)])


def format_table_plain(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``format_table`` written plainly: pad every cell of every line in Python. The same text, slower."""
    if not rows:
        return "  ".join(headers)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    numeric = [all(r[i].isdigit() or r[i] in ("", "*") for r in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True))
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


LOCAL_HOST_LABEL = "local"
"""How the HOST column names this machine when remote hosts are in the table."""


def sockets_table(
    sockets: Sequence[Socket], host_column: bool = False, label: Callable[[Socket], str] = process_label
) -> str:
    """The default ``portmon list`` output; a HOST column first when asked or when any socket is a remote host's,
    a NETNS column last when any socket is in another network namespace than portmon's (``-`` for its own)."""
    rows = table_rows(sockets, label)
    headers: tuple[str, ...] = TABLE_HEADERS
    if any(s.netns is not None for s in sockets):
        headers = (*headers, "NETNS")
        rows = [(*r, netns_label(s.netns)) for r, s in zip(rows, sockets, strict=True)]
    if not host_column and not any(s.host is not None for s in sockets):
        return format_table(headers, rows)
    hosts = [LOCAL_HOST_LABEL if s.host is None else safe(s.host, 32) for s in sockets]
    return format_table(("HOST", *headers), [(h, *r) for h, r in zip(hosts, rows, strict=True)])


def netns_label(ref: NetnsRef | None, width: int = 48) -> str:
    """A socket's network namespace for text output: ``net:[4026532283] container web``, ``-`` for portmon's own."""
    return "-" if ref is None else safe(str(ref), width)


def netns_notes(sockets: Iterable[Socket]) -> list[str]:
    """One line per other network namespace with sockets among ``sockets`` (one port's): that namespace's port,
    which does not keep the port busy in portmon's own (``who``, ``why``, ``kill``)."""
    spaces: dict[NetnsRef, list[int]] = {}
    for s in sockets:
        if s.netns is not None:
            pids = spaces.setdefault(s.netns, [])
            pids.extend(h.pid for h in s.holders if h.pid not in pids)
    out = []
    for ref, pids in spaces.items():
        held = f"pid {', '.join(map(str, pids))}" if pids else "no visible process"
        out.append(
            f"also bound in network namespace {netns_label(ref)} ({held}): that namespace's port, "
            "it does not keep this one busy"
        )
    return out
