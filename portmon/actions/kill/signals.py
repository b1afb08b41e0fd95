"""The signals a kill may send, by name, and how long it waits after them (cheap: the CLI's parser uses it)."""

from __future__ import annotations

import signal

DEFAULT_TIMEOUT = 3.0
"""Seconds to wait for the holders to exit after a signal."""

DEFAULT_SETTLE = 0.3
"""Pause before the re-scan, so a supervisor's quick restart (systemd waits 100 ms) is seen."""


SIGNALS: dict[str, int] = {
    name: int(getattr(signal, "SIG" + name)) for name in ("TERM", "KILL", "INT", "HUP") if hasattr(signal, "SIG" + name)
}
"""The signals ``kill --signal`` accepts, by short name."""


def parse_signal(text: str) -> int:
    """``TERM``, ``sigkill``, ``INT``, ``HUP`` -> the signal number; ValueError for anything else."""
    name = text.strip().upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in SIGNALS:
        raise ValueError(f"unknown signal '{text}': expected one of {', '.join(SIGNALS)}")
    return SIGNALS[name]


def signal_name(sig: int) -> str:
    """``SIGTERM`` for 15, and so on; ``signal N`` for numbers without a name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
