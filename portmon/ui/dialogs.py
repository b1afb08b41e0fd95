"""Opening the monitor's dialogs ("why is this port busy?", kill): each captures what it acts on at the key press."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from portmon.actions.why import Binder, WhyReport, explain
from portmon.model import Snapshot, Socket
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessReader

if TYPE_CHECKING:
    from portmon.ui.killmodal import KillModal
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
