"""Opening the monitor's dialogs ("why is this port busy?", kill): each captures what it acts on at the key press."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from portmon.actions.why import Binder, WhyReport, explain
from portmon.model import Snapshot, Socket
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessReader
from portmon.textsafe import visible

if TYPE_CHECKING:
    from portmon.ui.killmodal import KillModal
    from portmon.ui.remotemodal import RemoteActionModal
    from portmon.ui.whymodal import WhyModal, WhyProbe


def why_prober(
    binder: Binder, reader: ProcessReader, privileged: bool | None, clock: Callable[[], float]
) -> WhyProbe:
    """The dialog's probe: test-bind a port with ``binder`` and explain it against the sockets given."""

    def probe(spec: PortSpec, sockets: Sequence[Socket]) -> WhyReport:
        return explain(spec, sockets, binder=binder, reader=reader, privileged=privileged, now=clock())

    return probe


def why_dialog(
    sock: Socket | None, probe: WhyProbe, sockets: Callable[[], Sequence[Socket]], *, background: bool
) -> WhyModal:
    """The "why is this port busy?" dialog on ``sock``'s port (empty, to type a port, without one)."""
    from portmon.ui.whymodal import WhyModal  # deferred: see kill_dialog

    spec = PortSpec(sock.local_port, sock.proto) if sock is not None and sock.local_port else None
    return WhyModal(spec, probe, sockets, background=background)


def kill_dialog(sock: Socket, snapshot: Snapshot) -> KillModal:
    """The kill dialog for ``sock``'s holders as they were in ``snapshot``.

    The dialogs' modules (and the kill planner they pull in) are imported on first use, not at
    start: ``python -X importtime`` puts them at 5-10 ms of a start that is not waiting for them.
    """
    from portmon.ui.killmodal import KillModal

    return KillModal(sock, snapshot)


REMOTE_TIMEOUT = 120.0
"""Seconds a remote kill or why may take (connection, the remote scan, the holders' exit)."""


def remote_dialog(kind: str, sock: Socket, collector: object) -> RemoteActionModal | str:
    """Kill or why (``kind``) for a remote host's row, run by that host's portmon; or why it cannot be.

    ``collector`` is the monitor's: with remote hosts it is a MultiHostCollector, whose session
    for the row's host carries the command over its master connection.
    """
    from portmon.ui.remotemodal import RemoteActionModal

    host = sock.host or ""
    session_for = getattr(collector, "session_for", None)
    session = session_for(host) if session_for is not None else None
    if session is None:
        return f"no connection to host {visible(host)}"
    port = f"{sock.local_port}/{sock.proto}"
    return RemoteActionModal(kind, host, port, lambda words: session.run_portmon(words, REMOTE_TIMEOUT))
