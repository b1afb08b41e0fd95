"""Each speed trick of a one-shot scan gives what the plain way gives: the cold walk child, gc off.

(The fd-table tricks are compared with a plain listing in test_fdwalk.py.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the cold walk is the procfs collector's")

LAUNCH = "from portmon.cli.launch import main; main()"
"""The ``portmon`` console script: a cold walk child for ``list``, gc off, ``os._exit`` at the end."""
NO_WALK = "import sys; from portmon.cli.main import main; sys.exit(main(exit_hard=True))"
"""The same command with no cold walk child (the scan walks every process itself)."""
GC_ON = "import gc; gc.disable = lambda: None; " + LAUNCH
"""The same command with the cyclic garbage collector left on."""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _list(code: str, port: int) -> list[dict[str, object]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code, "list", f":{port}", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


@pytest.mark.parametrize("plain", [NO_WALK, GC_ON], ids=["without-cold-walk", "gc-on"])
def test_a_trick_gives_the_plain_answer(listener: socket.socket, plain: str) -> None:
    port = listener.getsockname()[1]
    fast = _list(LAUNCH, port)
    assert fast == _list(plain, port)
    assert [(r["local_port"], r["pid"]) for r in fast] == [(port, os.getpid())]
