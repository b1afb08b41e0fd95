"""The ``manager`` label of ``portmon_listening_socket_info``: the main holder's manager, without a pid."""

from __future__ import annotations

import psutil
from ownership_procs import Tree, wait_for

from portmon.export.metrics import _manager_label
from portmon.model import LISTEN, Holder, Socket


def test_the_label_names_a_restart_loop_and_leaves_other_hosts_alone() -> None:
    loop = Tree(["bash", "-c", "while :; do sleep 30; done"])
    try:
        wait_for(lambda: psutil.Process(loop.proc.pid).children(), 20.0, "the loop's child")
        child = psutil.Process(loop.proc.pid).children()[0]
        holder = Holder(child.pid, child.name(), create_time=child.create_time())
        sock = Socket("tcp", 4, "127.0.0.1", 8080, state=LISTEN, holders=(holder,))
        label = _manager_label(sock)
        assert label.startswith("shell ") and "bash" in label, label
        assert str(loop.proc.pid) not in label  # a bounded label: no pid
        assert _manager_label(sock._replace(host="web1")) == ""  # another host's process is not ours to read
        assert _manager_label(sock._replace(holders=())) == ""
    finally:
        loop.stop()
