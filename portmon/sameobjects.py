"""Which sockets of two scans are the very same objects: the split every part of a live refresh shares.

The procfs collector hands back the same Socket object for a socket that did not change, so the
sockets that differ between two scans are found by object identity. The change marks, the rows,
the rates, the events, the history recorder and the family ordering of the live monitor all ask
this of the same pair of scans; the answer is computed once and kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress

from portmon.model import Socket

_CACHE_SIZE = 2
"""Tuples whose keys are kept: each scan's are needed again for the next pair."""

_ids: list[tuple[tuple[Socket, ...], list[int], set[int]]] = []
"""(sockets, their object keys, the same as a set) of the last two tuples compared by identity."""
_last_split: tuple[tuple[Socket, ...], tuple[Socket, ...], list[Socket], list[Socket]] | None = None
"""The last ``changed_objects`` answer."""

_OBJECT_HASH = object.__hash__
"""Hashes by identity (also for a tuple, whose own hash is by value): the address rotated right by 4 bits."""


def object_keys(sockets: Sequence[Socket]) -> list[int]:
    """A number per socket that tells apart every object alive at once: ``object.__hash__``, its address rotated.

    Speed trick for :func:`changed_objects`. An object's address is a multiple of 16 and an int
    hashes to itself, so sets of raw ``id()`` values crowd into a sixteenth of their slots and
    every lookup probes on. CPython's identity hash is the address rotated right by 4 bits: as
    unique as the address (a rotation loses nothing) with the zero bits moved out of the way, and
    made in one call per socket (``id() >> 4`` takes two, each making an int). Saving on issue
    18's load (31,000 sockets, 200-450 new objects per scan): ``changed_objects`` of a pair takes
    5-6 ms of CPU instead of 12-16 ms with raw ``id()`` sets (medians of 24-41 runs;
    ``bench/bench_step.py`` has the whole refresh). tests/test_diff_identity.py checks the split
    equals :func:`changed_objects_plain`'s.
    """
    return list(map(_OBJECT_HASH, sockets))


def _ids_of(sockets: tuple[Socket, ...]) -> tuple[list[int], set[int]]:
    for cached, ids, id_set in _ids:
        if cached is sockets:
            return ids, id_set
    ids = object_keys(sockets)
    id_set = set(ids)
    _ids.append((sockets, ids, id_set))
    if len(_ids) > _CACHE_SIZE:
        del _ids[0]
    return ids, id_set


def changed_objects(old: tuple[Socket, ...], new: tuple[Socket, ...]) -> tuple[list[Socket], list[Socket]]:
    """(the sockets of ``old`` that are not objects of ``new``, those of ``new`` that are not objects of ``old``).

    The procfs collector hands back the same Socket object for a socket that did not change, so
    between two scans these are the few sockets that closed, opened or changed (state or holders).
    Matched by identity with sets of ints (:func:`object_keys`), in C; the new side's set is kept
    for the next scan, and the last pair's answer too: every part of a refresh (change marks, rows,
    rates, events, the history recorder) asks this one question of the same pair, so it is answered
    once. Each list keeps its side's order. Callers must not change the lists returned.
    """
    global _last_split
    last = _last_split
    if last is not None and last[0] is old and last[1] is new:
        return last[2], last[3]
    old_ids, old_set = _ids_of(old)
    new_ids, new_set = _ids_of(new)
    either = old_set.symmetric_difference(new_set)  # one pass; the few keys found are then split
    came = either.intersection(new_set)
    gone = either.difference(came)
    old_only = list(compress(old, map(gone.__contains__, old_ids))) if gone else []
    new_only = list(compress(new, map(came.__contains__, new_ids))) if came else []
    _last_split = (old, new, old_only, new_only)
    return old_only, new_only


def changed_objects_plain(old: Sequence[Socket], new: Sequence[Socket]) -> tuple[list[Socket], list[Socket]]:
    """:func:`changed_objects` by raw ``id()`` in plain loops (for the equivalence test and the benchmark)."""
    old_ids = {id(sock) for sock in old}
    new_ids = {id(sock) for sock in new}
    return [s for s in old if id(s) not in new_ids], [s for s in new if id(s) not in old_ids]
