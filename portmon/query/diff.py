"""Differences between two snapshots: sockets opened, closed, or changed TCP state."""

from __future__ import annotations

import time as _time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from portmon.model import Snapshot, Socket, SocketKey
from portmon.sameobjects import changed_objects

OPEN = "open"
CLOSE = "close"
STATE = "state"

SocketsLike = Snapshot | Sequence[Socket]

# The TUI diffs each snapshot against the previous one, so the new side's key map is the old side's
# next time. Remember the last two, by the identity of their (immutable) socket tuple.
_KEY_MAP_CACHE_SIZE = 2
_key_maps: list[tuple[tuple[Socket, ...], bool, dict[SocketKey, Socket]]] = []


def identity(sock: Socket) -> SocketKey:
    """What the kernel keeps for a socket: a connection is its protocol and both endpoints.

    A connection whose owner dies while it closes (ESTABLISHED -> FIN_WAIT2 or TIME_WAIT) loses its
    inode and its holders but keeps its endpoints, so it stays one socket that changed state, not
    a close and an open. Sockets without a peer (listeners, bound UDP) can share their local
    endpoint (SO_REUSEPORT), so they keep ``Socket.key``, inode included.
    """
    if sock.remote_port:
        # Another network namespace's connection can have the very same endpoints (127.0.0.1 in both).
        proto = sock.proto if sock.netns is None else f"{sock.proto}%{sock.netns.inode}"
        return (proto, sock.family, sock.local_addr, sock.local_port, sock.remote_addr or "", sock.remote_port, 0)
    return sock.key


@dataclass(frozen=True, slots=True)
class Event:
    """One change between two snapshots."""

    kind: str
    """OPEN, CLOSE or STATE."""
    time: float
    """When it was seen (seconds since the epoch): by default the newer snapshot's taken_at."""
    socket: Socket
    """For CLOSE the socket as last seen; for OPEN and STATE the socket as it is now."""
    old_state: str | None = None
    """The state before (CLOSE, STATE); None for OPEN or a socket without state."""
    new_state: str | None = None
    """The state now (OPEN, STATE); None for CLOSE or a socket without state."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed, in the cheap form the live table uses to highlight rows."""

    opened: frozenset[SocketKey]
    closed: tuple[Socket, ...]
    """The sockets that went away, as last seen, ordered by key."""
    state_changed: frozenset[SocketKey]

    @property
    def is_empty(self) -> bool:
        """True when nothing opened, closed or changed state."""
        return not (self.opened or self.closed or self.state_changed)


def _sockets(value: SocketsLike | None) -> Sequence[Socket]:
    if value is None:
        return ()
    if isinstance(value, Snapshot):
        return value.sockets
    return value


def _key_map(sockets: Sequence[Socket], by_identity: bool = False) -> dict[SocketKey, Socket]:
    """Sockets by ``Socket.key`` (or by ``identity``); a later duplicate key wins (a well-formed snapshot has none)."""
    key_of = identity if by_identity else _socket_key
    # Only tuples are cached: a list could change between two calls while keeping its identity.
    if type(sockets) is not tuple:
        return {key_of(sock): sock for sock in sockets}
    for cached, cached_by_identity, mapping in _key_maps:
        if cached is sockets and cached_by_identity == by_identity:
            return mapping
    mapping = {key_of(sock): sock for sock in sockets}
    _key_maps.append((sockets, by_identity, mapping))
    if len(_key_maps) > _KEY_MAP_CACHE_SIZE:
        del _key_maps[0]
    return mapping


def _socket_key(sock: Socket) -> SocketKey:
    return sock.key


_Compared = tuple[
    dict[SocketKey, Socket], dict[SocketKey, Socket], list[SocketKey], list[SocketKey], list[SocketKey]
]


_last_compared: tuple[tuple[Socket, ...], tuple[Socket, ...], _Compared] | None = None
"""The last identity comparison: the live table diffs each pair twice (change marks, then events)."""


def _split_keys(
    old_map: dict[SocketKey, Socket], new_map: dict[SocketKey, Socket]
) -> tuple[list[SocketKey], list[SocketKey], list[SocketKey]]:
    """(opened, closed, state-changed) keys between two key maps, each list unsorted.

    One pass over the new side finds opens and state changes (a tuple key's hash is not cached, so
    each lookup costs; this does one per new socket). Every old key still present is matched there,
    so closes exist only when the counts say so; set(dict).difference(dict) reuses stored hashes.
    """
    old_get = old_map.get
    opened: list[SocketKey] = []
    changed: list[SocketKey] = []
    for key, sock in new_map.items():
        before = old_get(key)
        if before is None:
            opened.append(key)
        elif before is not sock and before.state != sock.state:
            changed.append(key)
    if len(old_map) == len(new_map) - len(opened):
        return opened, [], changed
    return opened, list(set(old_map).difference(new_map)), changed


def _compare_changed_objects(old: tuple[Socket, ...], new: tuple[Socket, ...]) -> _Compared:
    """``_compare`` looking only at the sockets that are not the very same object on both sides.

    At 28,000 sockets with 200 short connections a second only a few hundred objects differ
    between two scans (see ``changed_objects``). Keys only for those cost ~3 ms at 30,000 sockets
    and 1 % churn, where two key maps and 30,000 key lookups cost ~30 ms; the live table diffs each
    pair twice (for the change marks, then for the event log), and the second time is a lookup.
    Exact when each side holds every key once, as every snapshot does (``Socket.key`` includes the
    inode, or a ``seq`` that numbers sockets sharing every other field): an object on both sides
    then has the same key on both, so no other socket of either side can have it. The maps returned
    hold only the sockets that differ, which are all the keys the result names. Callers must not
    change the lists returned.
    """
    global _last_compared
    last = _last_compared
    if last is not None and last[0] is old and last[1] is new:
        return last[2]
    old_only, new_only = changed_objects(old, new)
    old_map = {sock.key: sock for sock in old_only}
    new_map = {sock.key: sock for sock in new_only}
    opened, closed, changed = _split_keys(old_map, new_map)
    result = (old_map, new_map, opened, closed, changed)
    _last_compared = (old, new, result)
    return result


def _compare(old: SocketsLike | None, new: SocketsLike, by_identity: bool = False) -> _Compared:
    """(old map, new map, opened keys, closed keys, state-changed keys), each key list unsorted.

    The maps hold at least every socket the key lists name. ``by_identity`` keys sockets on what the
    kernel keeps (``identity``); the object-identity shortcut is exact only for ``Socket.key``.
    """
    old_sockets, new_sockets = _sockets(old), _sockets(new)
    # Tuples only (a snapshot's): a list could hold the same objects yet have been changed in place.
    if not by_identity and old_sockets and type(old_sockets) is tuple and type(new_sockets) is tuple:
        return _compare_changed_objects(old_sockets, new_sockets)
    old_map = _key_map(old_sockets, by_identity)
    new_map = _key_map(new_sockets, by_identity)
    if not old_map:
        return old_map, new_map, list(new_map), [], []
    return (old_map, new_map, *_split_keys(old_map, new_map))


def diff_snapshots(old: SocketsLike | None, new: SocketsLike, time: float | None = None) -> list[Event]:
    """Events turning ``old`` into ``new``: closes, then state changes, then opens, each ordered by key.

    Sockets are matched by ``identity`` (a connection by its protocol and endpoints, anything else
    by ``Socket.key``): a socket whose holders or inode changed but whose identity did not is
    neither closed nor opened. ``old=None`` (the first snapshot) makes every socket an open.
    ``time`` defaults to the new snapshot's taken_at, or to now when ``new`` is a plain sequence.
    """
    if time is None:
        time = new.taken_at if isinstance(new, Snapshot) else _time.time()
    return _events(*_compare(old, new, by_identity=True), time)


def _events(
    old_map: dict[SocketKey, Socket],
    new_map: dict[SocketKey, Socket],
    opened: list[SocketKey],
    closed: list[SocketKey],
    changed: list[SocketKey],
    time: float,
) -> list[Event]:
    events: list[Event] = []
    for key in sorted(closed):
        gone = old_map[key]
        events.append(Event(CLOSE, time, gone, old_state=gone.state))
    for key in sorted(changed):
        sock = new_map[key]
        events.append(Event(STATE, time, sock, old_state=old_map[key].state, new_state=sock.state))
    for key in sorted(opened):
        sock = new_map[key]
        events.append(Event(OPEN, time, sock, new_state=sock.state))
    return events


class IdentityTally:
    """How many sockets of one socket tuple share each ``identity``, kept up to date scan by scan.

    Built once over every socket, then moved to the next tuple by counting out the sockets that
    went and in those that came (see ``diff_changed_objects``). ``shared`` says how many identities
    more than one socket has: while it is 0, every identity names one socket.

    Memory trick: the identities are counted by their ``hash``, an int, not kept as tuples: 2.2 MB
    less at 34,000 sockets (tracemalloc of the live monitor on issue 18's load: 3.3 MB of identity
    tuples). Two identities with one hash count as shared, which only sends that scan's diff the
    plain way, so the events are the same (tests/test_diff_identity.py).
    """

    __slots__ = ("sockets", "counts", "shared")

    def __init__(self, sockets: tuple[Socket, ...]) -> None:
        self.sockets = sockets
        """The tuple the counts are of."""
        self.counts: dict[int, int] = {}
        """The hash of each identity -> how many sockets have it."""
        self.shared = 0
        self._count_in(map(hash, map(identity, sockets)))

    def _count_in(self, keys: Iterable[int]) -> None:
        counts = self.counts
        for key in keys:
            n = counts.get(key, 0)
            if n == 1:
                self.shared += 1
            counts[key] = n + 1

    def _count_out(self, keys: Iterable[int]) -> None:
        counts = self.counts
        for key in keys:
            n = counts[key]
            if n == 2:
                self.shared -= 1
            if n == 1:
                del counts[key]
            else:
                counts[key] = n - 1

    def advance(self, sockets: tuple[Socket, ...], gone: Iterable[Socket], came: Iterable[Socket]) -> None:
        """Count ``sockets`` instead: the last tuple less ``gone``, plus ``came`` (as objects)."""
        self.advance_keys(sockets, map(identity, gone), map(identity, came))

    def advance_keys(
        self, sockets: tuple[Socket, ...], gone: Iterable[SocketKey], came: Iterable[SocketKey]
    ) -> None:
        """``advance`` given the identities of the sockets that went and came."""
        self._count_out(map(hash, gone))
        self._count_in(map(hash, came))
        self.sockets = sockets


CHANGED_SHARE = 4
"""``diff_changed_objects`` runs the plain diff when more than 1/4 of the sockets are new objects."""


def diff_changed_objects(
    old: tuple[Socket, ...], new: tuple[Socket, ...], time: float, tally: IdentityTally | None = None
) -> tuple[list[Event], IdentityTally | None]:
    """``diff_snapshots(old, new, time)``, looking only at the sockets that are not the same object on both sides.

    Speed trick for the event stream of the live monitor. The procfs collector hands back the very
    Socket object of a socket that did not change, and an object on both sides has the same
    identity and state on both, so it makes no event; the others are picked out by object identity
    in C (``changed_objects``, whose answer the change marks already asked for). That is exact
    while every identity names one socket on each side, which ``tally`` (the counts of identities
    of ``old``, brought up to ``new`` here and returned for the next call; None or a tally of
    another tuple: counted afresh) tells; otherwise the plain diff runs, as it does when many
    sockets are new objects (a collector that builds every socket anew; no tally returned then).
    tests/test_diff_identity.py compares the two. Saving on issue 18's load (31,100 sockets,
    270-1,800 changed objects between two scans a second apart; ``python
    bench/bench_derive_tricks.py`` on a busy 2-core VM, medians of 31): 0.6-3.9 ms of CPU per
    scan instead of 17-32 ms.
    """
    gone, came = changed_objects(old, new)
    if len(gone) + len(came) > len(new) // CHANGED_SHARE:
        # A collector that builds every socket anew (psutil): nothing to skip, and counting costs.
        return diff_snapshots(old, new, time), None
    if tally is None or tally.sockets is not old:
        tally = IdentityTally(old)
    unique = tally.shared == 0
    gone_keys = list(map(identity, gone))
    came_keys = list(map(identity, came))
    tally.advance_keys(new, gone_keys, came_keys)
    if not (unique and tally.shared == 0):
        return diff_snapshots(old, new, time), tally
    old_map = dict(zip(gone_keys, gone, strict=True))
    new_map = dict(zip(came_keys, came, strict=True))
    opened, closed, changed = _split_keys(old_map, new_map)
    return _events(old_map, new_map, opened, closed, changed, time), tally


def changes(old: SocketsLike | None, new: SocketsLike) -> Changes:
    """The keys that opened or changed state, and the sockets that closed, between two snapshots.

    Keyed by ``Socket.key``, as the live table's rows are.
    """
    old_map, _new_map, opened, closed, changed = _compare(old, new)
    return Changes(
        opened=frozenset(opened),
        closed=tuple(old_map[key] for key in sorted(closed)),
        state_changed=frozenset(changed),
    )
