"""A streaming command whose reader goes away ends by itself: ``_stream`` (the remote side) and ``top --json``.

The remote side runs under sshd; when the session ends, nobody reads its stdout any more. Without a
check it would scan on forever as an orphan (seen: dozens of them after the remote tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX pipes")
@pytest.mark.parametrize(
    "argv",
    [["_stream", "--interval", "0.2"], ["top", "--json", "--interval", "0.2"]],
    ids=["_stream", "top --json"],
)
def test_a_streaming_command_ends_when_its_reader_goes_away(argv: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "portmon", *argv],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()  # it is running and writing
        proc.stdout.close()  # the reader goes away
        code = proc.wait(WAIT)
        err = proc.stderr.read().decode(errors="replace")
        assert code == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
