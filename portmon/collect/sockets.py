"""Building ``Socket`` values from decoded table rows and the owner index: holders, service names, owner notes."""

from __future__ import annotations

from collections.abc import Callable

from portmon.collect.base import ServiceLookup, owner_note
from portmon.collect.holders import HolderInfo
from portmon.collect.owners import OwnerIndex, Proc
from portmon.collect.tablecache import TRAFFIC_AT
from portmon.collect.tables import Decoded, Key, Table, Traffic, state_name
from portmon.model import TRAFFIC_FIELDS, Holder, Socket

_BETWEEN = tuple(Socket._field_defaults[f] for f in Socket._fields[12:TRAFFIC_AT])
"""Defaults of the fields between ``remote_service`` and the traffic fields (``seq``, ...)."""
_AFTER = tuple(Socket._field_defaults[f] for f in Socket._fields[TRAFFIC_AT + len(TRAFFIC_FIELDS) :])
"""Defaults of the fields after the traffic fields."""

_MISSING = object()


class SocketBuilder:
    """Turns decoded rows into sockets, naming their holders (from an ``OwnerIndex``) and services.

    Holder tuples are shared: every socket held by the same pids gets the same tuple, built once
    per scan (``new_scan``); a process's ``Holder`` is read once per process.
    """

    def __init__(
        self, owners: OwnerIndex, holder_info: HolderInfo, clock_ticks: int, services: ServiceLookup | None
    ) -> None:
        self._owners = owners
        self._holder_info = holder_info
        self._clock_ticks = clock_ticks
        self._services = services
        self._port_names: Callable[[str], dict[int, str]] | None = getattr(services, "port_names", None)
        """``services.port_names(proto)`` when the lookup offers it (a Registry does): the memo starts full."""
        self._svc: dict[str, dict[int, str | None]] = self._service_memo()
        """proto -> port -> service name, as ``services`` said (cleared by ``forget_services``)."""
        self._holders: dict[frozenset[int], tuple[Holder, ...]] = {}
        """pids -> their holders tuple, for this scan only (a pid may name another process next time)."""

    def new_scan(self) -> None:
        """Forget the holder tuples of the last scan (its pids may name other processes now)."""
        self._holders = {}

    def forget_services(self) -> None:
        """Start the service-name memo afresh (the lookup's answers may have changed)."""
        self._svc = self._service_memo()

    def holders_of(self, ino: int) -> tuple[Holder, ...]:
        """Every process holding socket ``ino`` (the one psutil names first), () when none is known."""
        where = self._owners.where.get(ino) if ino else None
        if not where:
            return ()
        hs = self._holders.get(where)
        return hs if hs is not None else self._holders_of_pids(where)

    def _holders_of_pids(self, where: frozenset[int]) -> tuple[Holder, ...]:
        procs = self._owners.procs
        hs: tuple[Holder, ...]
        if len(where) == 1:
            proc = procs[next(iter(where))]
            if proc.single is None:
                proc.single = (self._holder(proc),)
            hs = proc.single
        else:
            pids = sorted(where)
            # psutil names the highest pid holding a socket; the rest follow by pid (see model.Socket).
            order = [pids[-1]] + pids[:-1]
            hs = tuple(self._holder(procs[p]) for p in order)
        # Most inodes share their process's ``solo`` set: one lookup (its hash is cached) per socket.
        self._holders[where] = hs
        return hs

    def _holder(self, proc: Proc) -> Holder:
        if proc.holder is None:
            proc.holder = self._holder_info(proc.pid, proc.start / self._clock_ticks)
        return proc.holder

    def _service_memo(self) -> dict[str, dict[int, str | None]]:
        """A fresh proto -> port -> service name memo: every named port when the lookup can list
        them (then a port missing from it has no name), else empty."""
        if self._services and self._port_names is not None:
            return {"tcp": dict(self._port_names("tcp")), "udp": dict(self._port_names("udp"))}
        return {"tcp": {}, "udp": {}}

    def service(self, port: int, proto: str) -> str | None:
        """The service name on ``port``/``proto``, memoised."""
        memo = self._svc[proto]
        if port in memo:
            return memo[port]
        name = memo[port] = self._services(port, proto) if self._services else None
        return name

    def build(
        self,
        table: Table,
        table_misses: list[tuple[int, Key]],
        decoded: list[Decoded],
        traffic: list[Traffic],
        out: list[Socket | None],
        privileged: bool,
    ) -> None:
        """Decode the new keys of one table into sockets, at their places in ``out``.

        The hot path of a cold scan (10,000 sockets: ~25 ms): everything it needs per socket is a
        local. Speed trick: each ``Socket`` is made from one tuple of its fields in order, ~4.5 ms
        for 10,000 where keywords take ~11 ms (best of 30, 2-core VM); tests/test_collect_parts.py
        checks the built fields by name.
        """
        proto = table.proto
        family = table.family
        tcp = proto == "tcp"
        name_of = state_name
        where_of = self._owners.where.get
        known = self._holders.get
        holders_of_pids = self._holders_of_pids
        services = self._services
        service = self.service
        memo: Callable[..., object] = self._svc[proto].get
        complete = self._port_names is not None
        miss = _MISSING
        make = Socket._make
        between = _BETWEEN
        after = _AFTER
        lsvc: object
        rsvc: object
        for (pos, _key), (laddr, lport, raddr, rport, state_no, _uid, ino), values in zip(
            table_misses, decoded, traffic, strict=True
        ):
            state = name_of(state_no, tcp)
            where = where_of(ino) if ino else None
            hs = (known(where) or holders_of_pids(where)) if where else ()
            if complete:
                lsvc = memo(lport)
                rsvc = None if rport is None else memo(rport)
            elif services:
                lsvc = memo(lport, miss)
                if lsvc is miss:
                    lsvc = service(lport, proto)
                rsvc = None
                if rport is not None:
                    rsvc = memo(rport, miss)
                    if rsvc is miss:
                        rsvc = service(rport, proto)
            else:
                lsvc = rsvc = None
            # One tuple in field order: this is the hot path of a cold scan (tests pin the field order).
            sock = make(
                (
                    proto,
                    family,
                    laddr,
                    lport,
                    raddr,
                    rport,
                    state,
                    hs,
                    None if hs else owner_note(state, privileged),
                    ino,
                    lsvc,
                    rsvc,
                )
                + between
                + values
                + after
            )
            out[pos] = sock

    @staticmethod
    def with_holders(sock: Socket, hs: tuple[Holder, ...], privileged: bool) -> Socket:
        """``sock`` with new holders (and the owner note that goes with them)."""
        return sock._replace(holders=hs, owner_note=None if hs else owner_note(sock.state, privileged))


def number_duplicates(sockets: list[Socket]) -> list[Socket]:
    """Give ``seq`` 1, 2, ... to sockets without an inode that share every other key field."""
    zero = [i for i, s in enumerate(sockets) if not s.inode]
    if len(zero) < 2:
        return sockets
    seen: dict[tuple[object, ...], int] = {}
    for i in zero:
        s = sockets[i]
        ident = (s.proto, s.family, s.local_addr, s.local_port, s.remote_addr, s.remote_port)
        n = seen.get(ident, 0)
        seen[ident] = n + 1
        if n != s.seq:
            sockets[i] = s._replace(seq=n)
    return sockets
