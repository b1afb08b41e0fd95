"""The streaming JSON a remote portmon writes for a local one: one line per snapshot, validated when read."""

from __future__ import annotations

import json
from typing import Any

from portmon.model import Holder, Snapshot, Socket

STREAM_VERSION = 1
HELLO_KEY = "portmon_stream"
"""The first line is ``{"portmon_stream": 1, "collector": ..., "version": ...}``."""


class StreamError(ValueError):
    """A line of the stream that is not what a portmon stream sends."""


def hello_line(collector: str, version: str) -> str:
    """The stream's first line."""
    return json.dumps({HELLO_KEY: STREAM_VERSION, "collector": collector, "version": version})


def snapshot_line(snap: Snapshot, same: bool = False) -> str:
    """One snapshot as one line; ``same``: only the time and notes (the sockets did not change)."""
    doc: dict[str, Any] = {
        "taken_at": snap.taken_at,
        "scan_ms": snap.scan_ms,
        "hidden_owners": snap.hidden_owners,
        "warning": snap.warning,
        "error": snap.error,
    }
    if not same:
        doc["sockets"] = [
            [
                s.proto,
                s.family,
                s.local_addr,
                s.local_port,
                s.remote_addr,
                s.remote_port,
                s.state,
                [[h.pid, h.name, h.user, h.create_time] for h in s.holders],
                s.owner_note,
                s.inode,
                s.local_service,
                s.remote_service,
                s.seq,
                s.bytes_sent,
                s.bytes_received,
                s.rtt_ms,
                s.retransmits,
                s.accept_queue,
                s.backlog,
                s.cookie,
            ]
            for s in snap.sockets
        ]
    return json.dumps(doc, separators=(",", ":"))


def parse_hello(line: str) -> tuple[str, str]:
    """(collector, version) from the first line, or StreamError."""
    doc = _load(line)
    if not isinstance(doc, dict) or doc.get(HELLO_KEY) != STREAM_VERSION:
        raise StreamError("not a portmon stream (or another version of it)")
    return _str(doc.get("collector")), _str(doc.get("version"))


def _load(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise StreamError(f"malformed stream line: {exc}") from None


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise StreamError("expected a string")
    return value


def _opt_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise StreamError("expected a string or null")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise StreamError("expected an integer")
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _num(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise StreamError("expected a number")
    return float(value)


class StreamDecoder:
    """Reads snapshot lines into Snapshots of the named host; the sockets carry ``host``.

    A ``same`` line repeats the previous sockets. Holders are shared between sockets of one
    process, as a local scan shares them (the table and filters cache per holder object).
    """

    def __init__(self, host: str, collector: str = "portmon") -> None:
        self.host = host
        self.collector = collector
        self._sockets: tuple[Socket, ...] = ()

    def feed(self, line: str, taken_at: float) -> Snapshot:
        """One snapshot line; ``taken_at`` is the local time it arrived (the remote clock may be off)."""
        doc = _load(line)
        if not isinstance(doc, dict):
            raise StreamError("expected an object")
        if "sockets" in doc:
            raw = doc["sockets"]
            if not isinstance(raw, list):
                raise StreamError("expected a list of sockets")
            self._sockets = self._decode(raw)
        return Snapshot(
            sockets=self._sockets,
            taken_at=taken_at,
            scan_ms=_num(doc.get("scan_ms", 0.0)),
            hidden_owners=_int(doc.get("hidden_owners", 0)),
            warning=_opt_str(doc.get("warning")),
            error=_opt_str(doc.get("error")),
            collector=self.collector,
        )

    def _decode(self, raw: list[Any]) -> tuple[Socket, ...]:
        holders: dict[Holder, Holder] = {}
        out: list[Socket] = []
        host = self.host
        for item in raw:
            if not isinstance(item, list) or len(item) not in (13, 20):
                raise StreamError("expected a socket as a list of 13 or 20 fields")
            proto, family, laddr, lport, raddr, rport, state, hs, note, inode, lsvc, rsvc, seq = item[:13]
            sent, received, rtt, retrans, queue, backlog, cookie = item[13:] or (None,) * 7
            if proto not in ("tcp", "udp") or family not in (4, 6):
                raise StreamError("unknown protocol or family")
            if not isinstance(hs, list):
                raise StreamError("expected a list of holders")
            owned: list[Holder] = []
            for h in hs:
                if not isinstance(h, list) or len(h) != 4:
                    raise StreamError("expected a holder as a list of 4 fields")
                ctime = h[3]
                holder = Holder(
                    pid=_int(h[0]),
                    name=_opt_str(h[1]),
                    user=_opt_str(h[2]),
                    create_time=None if ctime is None else _num(ctime),
                )
                owned.append(holders.setdefault(holder, holder))
            out.append(
                Socket(
                    proto,
                    family,
                    _str(laddr),
                    _int(lport),
                    _opt_str(raddr),
                    _opt_int(rport),
                    _opt_str(state),
                    tuple(owned),
                    _opt_str(note),
                    _int(inode),
                    _opt_str(lsvc),
                    _opt_str(rsvc),
                    _int(seq),
                    _opt_int(sent),
                    _opt_int(received),
                    None if rtt is None else _num(rtt),
                    _opt_int(retrans),
                    _opt_int(queue),
                    _opt_int(backlog),
                    _opt_int(cookie),
                    host,
                )
            )
        return tuple(out)
