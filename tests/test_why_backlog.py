"""``why`` on a listener whose accept queue is over its backlog: it says the server is not accepting."""

from __future__ import annotations

from portmon.actions.binds import simulated_binder
from portmon.actions.why import answer_lines, backlog_notes, judge
from portmon.model import LISTEN, Holder, Socket
from portmon.procinfo import ProcessDetail

SERVER = Holder(pid=4321, name="server", user="alice", create_time=1000.0)


def reader(pid: int, create_time: float | None = None) -> ProcessDetail:
    return ProcessDetail(pid=pid, name="server", user="alice", cmdline=("server",), create_time=1000.0)


def listener(queued: int | None, backlog: int | None) -> Socket:
    return Socket("tcp", 4, "0.0.0.0", 8000, state=LISTEN, holders=(SERVER,), inode=1,
                  accept_queue=queued, backlog=backlog)  # fmt: skip


def test_a_full_backlog_is_named_in_why() -> None:
    full = listener(129, 128)
    answer = judge(8000, "tcp", simulated_binder([full])(8000, "tcp"), [full], privileged=True, reader=reader,
                   now=2000.0, user="alice")  # fmt: skip
    assert answer.reason == "held"
    assert "the server is not accepting: 129/128 queued on tcp4 0.0.0.0:8000" in "\n".join(answer_lines(answer))


def test_a_listener_keeping_up_or_without_counters_gets_no_note() -> None:
    assert backlog_notes([listener(128, 128), listener(0, 128), listener(None, None)]) == []
    assert backlog_notes([listener(5, 4)]) == [
        "the server is not accepting: 5/4 queued on tcp4 0.0.0.0:8000 (new connections are dropped until it accepts)"
    ]
