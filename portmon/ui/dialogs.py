"""The monitor's dialogs ("why is this port busy?", kill, copy, help): each captures what it acts on at the key
press, and reports back to the screen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import App
from textual.binding import BindingType

from portmon.actions.binds import Binder
from portmon.actions.why import WhyReport, explain
from portmon.model import Snapshot, Socket
from portmon.portspec import PortSpec
from portmon.procinfo import ProcessReader
from portmon.textsafe import visible
from portmon.ui.copymodal import CopyModal, copy_values
from portmon.ui.help import HelpScreen

if TYPE_CHECKING:
    from portmon.ui.killmodal import KillModal
    from portmon.ui.remotemodal import RemoteActionModal
    from portmon.ui.whymodal import WhyModal, WhyProbe


def why_prober(
    binder: Binder, reader: ProcessReader, privileged: bool | None, clock: Callable[[], float]
) -> WhyProbe:
    """The dialog's probe: test-bind a port with ``binder`` and explain it against the sockets given."""

    def probe(spec: PortSpec, sockets: Sequence[Socket]) -> WhyReport:
        # The test bind is in portmon's own network namespace: only its sockets can make it fail.
        own = [s for s in sockets if s.netns is None]
        return explain(spec, own, binder=binder, reader=reader, privileged=privileged, now=clock())

    return probe


def why_dialog(
    sock: Socket | None,
    probe: WhyProbe,
    sockets: Callable[[], Sequence[Socket]],
    *,
    background: bool,
    kill: Callable[[PortSpec], bool] | None = None,
) -> WhyModal:
    """The "why is this port busy?" dialog on ``sock``'s port (empty, to type a port, without one)."""
    from portmon.ui.whymodal import WhyModal  # deferred: see kill_dialog

    spec = PortSpec(sock.local_port, sock.proto) if sock is not None and sock.local_port else None
    return WhyModal(spec, probe, sockets, background=background, kill=kill)


def holder_of(sockets: Sequence[Socket], spec: PortSpec) -> Socket | None:
    """The socket to kill for ``spec``: one with a process on that local port, a listener first."""
    held = [s for s in sockets if spec.matches(s) and s.holders]
    listening = [s for s in held if s.listening]
    first = listening or held
    return first[0] if first else None


def kill_dialog(sock: Socket, snapshot: Snapshot, grace: float | None = None) -> KillModal:
    """The kill dialog for ``sock``'s holders as they were in ``snapshot`` (``grace``: see KillModal).

    The dialogs' modules (and the kill planner they pull in) are imported on first use, not at
    start: ``python -X importtime`` puts them at 5-10 ms of a start that is not waiting for them.
    """
    from portmon.ui.killmodal import KillModal

    return KillModal(sock, snapshot) if grace is None else KillModal(sock, snapshot, grace=grace)


class Monitor(Protocol):
    """What the dialogs need of the monitor screen."""

    snapshot: Snapshot | None
    poll: bool

    @property
    def app(self) -> App[Any]: ...

    @property
    def selected(self) -> Socket | None:
        """The socket under the table's cursor."""

    def why_probe(self, spec: PortSpec, sockets: Sequence[Socket]) -> WhyReport:
        """Test-bind ``spec`` and explain it against ``sockets``."""

    def cmdline_of(self, sock: Socket) -> Sequence[str] | None:
        """The command line of ``sock``'s first holder, when it can be read."""

    def kill_reported(self, outcome: str) -> None:
        """A kill finished with ``outcome``."""

    def key_groups(self) -> list[tuple[str, list[BindingType]]]:
        """The keys, grouped, for the help."""

    def notify(self, message: str, *, title: str = ..., severity: Any = ..., markup: bool = ...) -> None:
        """A toast."""


class Dialogs:
    """Opens the dialogs over ``monitor`` on what was selected at the key press."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def _sockets(self) -> Sequence[Socket]:
        snapshot = self._monitor.snapshot
        return snapshot.sockets if snapshot is not None else ()

    def why(self) -> None:
        """Why is the selected row's port busy? (The dialog also takes a typed port.)"""
        monitor = self._monitor
        sock = monitor.selected
        if sock is not None and sock.host is not None:  # a remote host's row: that host's portmon answers
            self._remote("why", sock)
            return
        dialog = why_dialog(monitor.selected, monitor.why_probe, self._sockets, background=monitor.poll,
                            kill=self.kill_port)
        monitor.app.push_screen(dialog)

    def kill(self) -> None:
        """Ask to kill the holders of the selected socket, as it is now."""
        # Capture the socket and snapshot at the key press: the modal acts on these, whatever the
        # table shows by the time the user confirms.
        monitor = self._monitor
        sock = monitor.selected
        snapshot = monitor.snapshot
        if sock is None or snapshot is None:
            monitor.notify("No socket selected.", severity="warning")
            return
        if sock.host is not None:  # a remote host's row: never planned or signalled here
            self._remote("kill", sock)
            return
        monitor.app.push_screen(kill_dialog(sock, snapshot, getattr(monitor, "kill_grace", None)), self._killed)

    def _remote(self, kind: str, sock: Socket) -> None:
        """Kill or why on a remote host's row: a dialog naming the host, run there by its portmon."""
        monitor = self._monitor
        dialog = remote_dialog(kind, sock, getattr(monitor, "collector", None))
        if isinstance(dialog, str):
            monitor.notify(dialog, severity="warning", markup=False)
            return
        monitor.app.push_screen(dialog, self._killed)

    def kill_port(self, spec: PortSpec) -> bool:
        """Open the kill dialog for what holds ``spec`` now (from the why dialog); False when nothing does."""
        monitor = self._monitor
        snapshot = monitor.snapshot
        sock = holder_of(snapshot.sockets, spec) if snapshot is not None else None
        if sock is None or snapshot is None:
            return False
        # After the why dialog has closed: the kill dialog goes on top of the monitor.
        dialog = kill_dialog(sock, snapshot, getattr(monitor, "kill_grace", None))
        monitor.app.call_later(monitor.app.push_screen, dialog, self._killed)
        return True

    def _killed(self, outcome: str | None) -> None:
        if outcome is not None:
            self._monitor.kill_reported(outcome)

    def copy(self) -> None:
        """Copy the selected socket's pid, command line or address to the clipboard (asks which)."""
        monitor = self._monitor
        sock = monitor.selected
        if sock is None:
            monitor.notify("No socket selected.", severity="warning")
            return
        monitor.app.push_screen(CopyModal(copy_values(sock, monitor.cmdline_of(sock))), self._copied)

    def _copied(self, choice: tuple[str, str] | None) -> None:
        if choice is None:
            return
        label, text = choice
        self._monitor.app.copy_to_clipboard(text)
        self._monitor.notify(f"Copied the {label}: {text[:80]}", title="clipboard", markup=False)

    def help(self) -> None:
        """Show every key."""
        self._monitor.app.push_screen(HelpScreen(self._monitor.key_groups()))


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
