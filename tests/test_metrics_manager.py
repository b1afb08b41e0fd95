"""The ``manager`` label of ``portmon_listening_socket_info``: the main holder's manager, without a pid."""

from __future__ import annotations

import os
import subprocess
import time

import psutil

from portmon.export.metrics import _manager_label
from portmon.model import LISTEN, Holder, Socket


def _child_of(parent: int, deadline: float) -> psutil.Process:
    while time.monotonic() < deadline:
        children = psutil.Process(parent).children()
        if children:
            return children[0]
        time.sleep(0.01)  # polling for a condition, bounded by the deadline
    raise AssertionError("the loop never started its child")


def test_the_label_names_a_restart_loop_and_leaves_other_hosts_alone() -> None:
    loop = subprocess.Popen(["bash", "-c", "while :; do sleep 30; done"], start_new_session=True)
    try:
        child = _child_of(loop.pid, time.monotonic() + 20)
        holder = Holder(child.pid, child.name(), create_time=child.create_time())
        sock = Socket("tcp", 4, "127.0.0.1", 8080, state=LISTEN, holders=(holder,))
        label = _manager_label(sock)
        assert label.startswith("shell ") and "bash" in label, label
        assert str(loop.pid) not in label  # a bounded label: no pid
        assert _manager_label(sock._replace(host="web1")) == ""  # another host's process is not ours to read
        assert _manager_label(sock._replace(holders=())) == ""
    finally:
        os.killpg(loop.pid, 9)
        loop.wait(timeout=10)
