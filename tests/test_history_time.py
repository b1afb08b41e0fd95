"""Times, durations and sizes as people type them, with an injected clock and TZ=UTC."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from portmon.history.timeparse import TimeError, parse_duration, parse_size, parse_time, utc_iso

NOW = dt.datetime(2026, 1, 2, 15, 30, 0, tzinfo=dt.timezone.utc).timestamp()


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.timezone.utc).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("2h", NOW - 7200),
        ("2h30m ago", NOW - 9000),
        ("90s", NOW - 90),
        ("1w", NOW - 7 * 86400),
        ("yesterday 14:02", at(2026, 1, 1, 14, 2)),
        ("yesterday", at(2026, 1, 1)),
        ("today 9:05:30", at(2026, 1, 2, 9, 5, 30)),
        ("14:02", at(2026, 1, 2, 14, 2)),
        ("2026-01-01T12:00:00Z", at(2026, 1, 1, 12)),
        ("2026-01-01T12:00:00+02:00", at(2026, 1, 1, 10)),
        ("2026-01-01 12:00", at(2026, 1, 1, 12)),
        ("2026-01-01", at(2026, 1, 1)),
        ("@1767268800", 1767268800.0),
    ],
)
def test_times(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "soon", "25:00", "yesterday 9", "2026-13-01", "@x", "-2h"])
def test_bad_times_are_one_line_errors(text: str) -> None:
    with pytest.raises(TimeError) as info:
        parse_time(text, NOW)
    assert "\n" not in str(info.value)


def test_durations_and_sizes() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("45") == 45
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("4096") == 4096
    for bad in ("x", "-1d", "inf"):
        with pytest.raises(TimeError):
            parse_duration(bad)
    with pytest.raises(TimeError):
        parse_size("lots")


def test_utc_iso() -> None:
    assert utc_iso(at(2026, 1, 1, 12)) == "2026-01-01T12:00:00.000+00:00"
