"""The history stores each holder's manager as ``kind name``: a process run by a shell restart loop."""

from __future__ import annotations

import psutil
from ownership_procs import Tree, wait_for

from portmon.history.procfacts import read_facts
from portmon.model import Holder


def test_a_holder_under_a_shell_loop_is_stored_with_its_manager() -> None:
    loop = Tree(["bash", "-c", "while :; do sleep 30; done"])
    try:
        wait_for(lambda: psutil.Process(loop.proc.pid).children(), 20.0, "the loop's child")
        child = psutil.Process(loop.proc.pid).children()[0]
        facts = read_facts(Holder(child.pid, child.name(), create_time=child.create_time()))
        assert facts.manager is not None
        kind, _, name = facts.manager.partition(" ")
        assert kind and "bash" in name, facts.manager
        assert str(loop.proc.pid) not in facts.manager  # no pid: a baseline compares it across restarts
    finally:
        loop.stop()
