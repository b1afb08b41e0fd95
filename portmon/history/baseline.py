"""Baselines of the listening surface: what listens (no pids, no times), saved as JSON and compared later.

A record is one listening socket's protocol, family, address and port with its process name, user,
exe and manager. Records are compared by endpoint (protocol, family, address, port): an endpoint only
in the current scan is ``added``, only in the baseline ``removed``, in both with other processes
``changed``. An endpoint held by several sockets (SO_REUSEPORT) or processes keeps each distinct record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from portmon.history.procfacts import FactsCache, ProcessFacts
from portmon.model import Holder, Socket

FORMAT = "portmon-baseline"
VERSION = 1
FIELDS = ("proto", "family", "address", "port", "process", "user", "exe", "manager")

Record = dict[str, Any]
Endpoint = tuple[str, int, str, int]


class BaselineError(Exception):
    """A baseline file that cannot be read or written; str() is one line naming the file."""


def records(sockets: Iterable[Socket], facts: Callable[[Holder], ProcessFacts] | None = None) -> list[Record]:
    """The listening sockets as sorted, distinct baseline records (one per socket and holder)."""
    read = facts if facts is not None else FactsCache().facts
    seen: set[tuple[Any, ...]] = set()
    out: list[Record] = []
    for sock in sockets:
        if not sock.listening:
            continue
        for h in sock.holders or (None,):
            f = read(h) if h is not None else None
            rec = {
                "proto": sock.proto,
                "family": sock.family,
                "address": sock.local_addr,
                "port": sock.local_port,
                "process": h.name if h is not None else None,
                "user": h.user if h is not None else None,
                "exe": f.exe if f is not None else None,
                "manager": f.manager if f is not None else None,
            }
            key = tuple(rec[k] for k in FIELDS)
            if key not in seen:
                seen.add(key)
                out.append(rec)
    out.sort(key=_sort_key)
    return out


def _sort_key(rec: Record) -> tuple[Any, ...]:
    return tuple("" if rec[k] is None else str(rec[k]) if k not in ("family", "port") else rec[k] for k in FIELDS)


def _endpoint(rec: Record) -> Endpoint:
    return (rec["proto"], rec["family"], rec["address"], rec["port"])


def save(path: Path, recs: list[Record], filter_text: str = "") -> None:
    """Write the baseline file (replaced atomically)."""
    doc = {"format": FORMAT, "version": VERSION, "filter": filter_text, "listeners": recs}
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise BaselineError(f"cannot write baseline {path}: {exc.strerror or exc}") from None


def load(path: Path) -> tuple[list[Record], str]:
    """The records and filter text of a baseline file; BaselineError when missing or malformed."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist (make one with 'portmon baseline save')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BaselineError(f"baseline {path} is not a portmon baseline (no \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise BaselineError(f"baseline {path} has version {doc.get('version')!r}; this portmon reads version {VERSION}")
    listeners = doc.get("listeners")
    if not isinstance(listeners, list):
        raise BaselineError(f"baseline {path} has no \"listeners\" list")
    out: list[Record] = []
    for i, rec in enumerate(listeners):
        if not isinstance(rec, dict) or not all(k in rec for k in FIELDS):
            raise BaselineError(f"baseline {path}: listener {i} lacks one of {', '.join(FIELDS)}")
        if not isinstance(rec["port"], int) or not isinstance(rec["family"], int) or not isinstance(rec["proto"], str):
            raise BaselineError(f"baseline {path}: listener {i} has a malformed proto, family or port")
        if not isinstance(rec["address"], str):
            raise BaselineError(f"baseline {path}: listener {i} has a malformed address")
        out.append({k: rec[k] for k in FIELDS})
    flt = doc.get("filter", "")
    return out, flt if isinstance(flt, str) else ""


def compare(before: list[Record], now: list[Record]) -> dict[str, list[Record]]:
    """``added``, ``removed`` and ``changed`` (each with ``before`` and ``after`` record lists), sorted."""
    old: dict[Endpoint, list[Record]] = {}
    new: dict[Endpoint, list[Record]] = {}
    for rec in before:
        old.setdefault(_endpoint(rec), []).append(rec)
    for rec in now:
        new.setdefault(_endpoint(rec), []).append(rec)
    added = [r for ep in sorted(set(new) - set(old)) for r in sorted(new[ep], key=_sort_key)]
    removed = [r for ep in sorted(set(old) - set(new)) for r in sorted(old[ep], key=_sort_key)]
    changed: list[Record] = []
    for ep in sorted(set(old) & set(new)):
        was = sorted(old[ep], key=_sort_key)
        is_ = sorted(new[ep], key=_sort_key)
        if was != is_:
            proto, family, address, port = ep
            changed.append(
                {"proto": proto, "family": family, "address": address, "port": port, "before": was, "after": is_}
            )
    return {"added": added, "removed": removed, "changed": changed}
