"""Times and durations as people type them: ISO 8601, ``2h`` (ago), ``yesterday 14:02``, ``30d``, ``500M``.

Every function takes ``now`` (seconds since the epoch) so callers and tests inject the clock. Times
without a UTC offset are local time.
"""

from __future__ import annotations

import datetime as _dt
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)\s*([smhdw]))+$", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$", re.IGNORECASE)

TIME_HELP = (
    "ISO 8601 (2026-01-31T14:02, 2026-01-31 14:02:05Z), 14:02, today 9:00, yesterday 14:02, "
    "2h or 2h30m (ago), now, @EPOCH"
)


class TimeError(ValueError):
    """Text that is not a time, duration or size; str() is one line."""


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h30m``, ``30d``, ``1w`` in seconds (a bare number is seconds)."""
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        pass
    else:
        if value >= 0 and value != float("inf"):
            return value
        raise TimeError(f"expected a duration such as 30d, 12h or 90m, got '{text}'")
    if not _DURATION.match(t):
        raise TimeError(f"expected a duration such as 30d, 12h or 90m, got '{text}'")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(t))


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GiB``, ``4096`` in bytes (K, M, G, T are powers of 1024)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise TimeError(f"expected a size such as 512M or 2G, got '{text}'")
    return int(float(m.group(1)) * 1024 ** " kmgt".index((m.group(2) or " ").lower()))


def _local_midnight(now: float, days_back: int) -> _dt.datetime:
    today = _dt.datetime.fromtimestamp(now).date() - _dt.timedelta(days=days_back)
    return _dt.datetime.combine(today, _dt.time())


def _at_clock(day: _dt.datetime, clock: str, text: str) -> float:
    m = _CLOCK.match(clock)
    if not m:
        raise TimeError(f"expected a time of day such as 14:02 in '{text}'")
    hour, minute = int(m.group(1)), int(m.group(2))
    second = int(m.group(3) or 0)
    micro = int((m.group(4) or "0").ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 59:
        raise TimeError(f"'{clock}' is not a time of day, in '{text}'")
    return day.replace(hour=hour, minute=minute, second=second, microsecond=micro).timestamp()


def parse_time(text: str, now: float) -> float:
    """A point in time from ``text`` (see TIME_HELP), in seconds since the epoch."""
    t = " ".join(text.strip().split())
    low = t.lower()
    if not low:
        raise TimeError("expected a time, got nothing")
    if low == "now":
        return now
    if low.startswith("@"):
        try:
            return float(low[1:])
        except ValueError:
            raise TimeError(f"expected seconds since the epoch after '@', got '{text}'") from None
    relative = low[:-4].strip() if low.endswith(" ago") else low
    if _DURATION.match(relative.replace(" ", "")):
        return now - parse_duration(relative.replace(" ", ""))
    for word, back in (("today", 0), ("yesterday", 1)):
        if low == word:
            return _local_midnight(now, back).timestamp()
        if low.startswith(word + " "):
            return _at_clock(_local_midnight(now, back), low[len(word) + 1 :], text)
    if _CLOCK.match(low):
        return _at_clock(_local_midnight(now, 0), low, text)
    iso = t[:-1] + "+00:00" if t[-1:] in ("Z", "z") else t
    try:
        when = _dt.datetime.fromisoformat(iso)
    except ValueError:
        raise TimeError(f"cannot read '{text}' as a time; use {TIME_HELP}") from None
    return when.timestamp()  # a naive datetime is local time


def utc_iso(when: float) -> str:
    """ISO 8601 in UTC to the millisecond: ``2026-01-01T12:00:01.000+00:00``."""
    return _dt.datetime.fromtimestamp(when, _dt.timezone.utc).isoformat(timespec="milliseconds")


def local_text(when: float) -> str:
    """``2026-01-01 12:00:01`` in local time, for people."""
    return _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")
