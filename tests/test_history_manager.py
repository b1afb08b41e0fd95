"""The history stores each holder's manager as ``kind name``: a process run by a shell restart loop."""

from __future__ import annotations

import os
import subprocess
import time

import psutil

from portmon.history.procfacts import read_facts
from portmon.model import Holder


def _child_of(parent: int, deadline: float) -> psutil.Process:
    while time.monotonic() < deadline:
        children = psutil.Process(parent).children()
        if children:
            return children[0]
        time.sleep(0.01)  # polling for a condition, bounded by the deadline
    raise AssertionError("the loop never started its child")


def test_a_holder_under_a_shell_loop_is_stored_with_its_manager() -> None:
    loop = subprocess.Popen(["bash", "-c", "while :; do sleep 30; done"], start_new_session=True)
    try:
        child = _child_of(loop.pid, time.monotonic() + 20)
        facts = read_facts(Holder(child.pid, child.name(), create_time=child.create_time()))
        assert facts.manager is not None
        kind, _, name = facts.manager.partition(" ")
        assert kind and "bash" in name, facts.manager
        assert str(loop.pid) not in facts.manager  # no pid: a baseline compares it across restarts
    finally:
        os.killpg(loop.pid, 9)
        loop.wait(timeout=10)

