"""The live monitor application: ``PortmonApp`` and ``run_app`` for the command line."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from portmon.actions.binds import Binder, probe_binds
from portmon.collect.base import Collector
from portmon.config import ConfigError, remember
from portmon.ownership.preflight import GRACE
from portmon.procinfo import ProcessReader, read_process
from portmon.query.diff import Event
from portmon.query.events import DEFAULT_EVENT_LIMIT
from portmon.query.filters import SocketFilter, parse_filter
from portmon.query.ignore import IgnoringCollector
from portmon.query.sorting import COLUMNS
from portmon.textsafe import echo, one_line
from portmon.ui.background import reverse_lookup
from portmon.ui.closemodal import Closer, default_closer
from portmon.ui.columns import visible_columns
from portmon.ui.help import key_label
from portmon.ui.keys import QUIT_BINDINGS, once_per_key
from portmon.ui.monitor import MonitorScreen
from portmon.ui.owners import OwnershipReader
from portmon.ui.traffic import ListenReader
from portmon.ui.view import COLUMN_TITLES, ViewSpec

# The palette runs a toggle's action, whichever state it is in.
_TOGGLES = {"listening": "toggle_listening", "pause": "toggle_pause"}
# Built-in palette commands that write files: portmon may run as root, so it offers none.
_UNSAFE_SYSTEM_COMMANDS = frozenset({"Screenshot"})


def job_control() -> bool:
    """True when a shell with job control started portmon: stopped by ctrl+z, it can be resumed with ``fg``.

    That shell put portmon in a process group of its own, in the foreground of the terminal. A session
    leader (started by a terminal emulator or ``setsid`` itself) or a process in its parent's group
    would stop with nobody to resume it.
    """
    try:
        group = os.getpgrp()
        return group != os.getsid(0) and os.tcgetpgrp(sys.__stdin__.fileno()) == group  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return False


class PortmonApp(App[int]):
    """portmon's live TUI: a sortable, filterable table of every TCP and UDP socket.

    ``collector`` is scanned by one background thread every ``interval`` seconds. With
    ``poll=False`` nothing runs on a timer: it scans once at start and again on ``r`` (tests and
    screenshots). ``clock`` drives highlights and uptimes, so tests can fix it.
    ``process_reader`` reads the detail pane's process (a fake in tests); ``resolve`` does reverse DNS.
    ``event_limit`` is how many events the event log keeps. ``binder`` makes the test binds of the
    "why is this port busy?" dialog (a simulation in tests); ``privileged`` says whether to answer as
    root (None: ask the OS). ``history_db`` is the history database the history view reads (None: no
    history), ``history_note`` why the monitor does not record, ``past_events`` the event log's start.
    ``listen`` reads the host's listen-queue counters (None: /proc/net/netstat while polling); ``closer``
    closes one connection for the close dialog (a fake in tests). ``ownership`` says who manages each
    row's process (None: this machine; ``owners.DemoOwnership`` for the demo data); ``kill_grace`` is how
    long the kill dialog waits for a re-bind when a restart is predicted (the config file's ``grace``).
    """

    CSS_PATH = "portmon.tcss"
    TITLE = "portmon"

    BINDINGS: ClassVar[list[BindingType]] = QUIT_BINDINGS

    def __init__(
        self,
        collector: Collector,
        *,
        interval: float = 1.0,
        poll: bool = True,
        clock: Callable[[], float] = time.time,
        filter_text: str = "",
        listening_only: bool = False,
        sort: str = "local_port",
        descending: bool = False,
        process_reader: ProcessReader = read_process,
        resolve: Callable[[str], str | None] = reverse_lookup,
        event_limit: int = DEFAULT_EVENT_LIMIT,
        binder: Binder = probe_binds,
        privileged: bool | None = None,
        history_db: Path | None = None,
        history_note: str | None = None,
        past_events: Sequence[Event] = (),
        theme: str | None = None,
        columns: Sequence[str] = (),
        reverse_dns: bool = False,
        ignore: Sequence[SocketFilter] = (),
        settings_path: str | None = None,
        listen: ListenReader | None = None,
        closer: Closer = default_closer,
        ownership: OwnershipReader | None = None,
        kill_grace: float = GRACE,
    ) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be greater than 0")
        if sort not in COLUMNS:
            raise ValueError(f"unknown sort column {sort!r}; expected one of {', '.join(COLUMNS)}")
        if event_limit < 1:
            raise ValueError("the event log must keep at least one event")
        super().__init__()
        self._warnings: list[str] = []
        if theme is not None:
            if theme in self.available_themes:
                self.theme = theme
            else:
                self._warnings.append(
                    f"unknown theme {echo(theme)} (ctrl+p, 'Change theme' lists them); using {self.theme}"
                )
        shown, unknown = visible_columns(columns)
        if unknown:
            self._warnings.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(echo, unknown))}")
        # Without root, a one-time notice that other network namespaces are not shown (portmon.collect.netns).
        netns_note = getattr(collector, "netns_note", None)
        self._notes: list[str] = [netns_note] if isinstance(netns_note, str) else []
        if ignore:
            collector = IgnoringCollector(collector, ignore)
        self._monitor = MonitorScreen(
            collector,
            interval=interval,
            poll=poll,
            clock=clock,
            spec=ViewSpec(parse_filter(filter_text), listening_only, sort, descending),
            process_reader=process_reader,
            resolve=resolve,
            event_limit=event_limit,
            binder=binder,
            privileged=privileged,
            columns=shown,
            resolve_names=reverse_dns,
            ignored=" ".join(f.text for f in ignore),
            listen=listen,
            closer=closer,
            ownership=ownership,
            kill_grace=kill_grace,
        )
        self.settings_path = settings_path
        self.remember_error: str | None = None
        self._chosen_at_start = self._chosen()
        self.history_db = history_db
        self.history_note = history_note
        self._monitor.events.add(past_events)

    @property
    def monitor(self) -> MonitorScreen:
        """The monitor screen (the app's default screen)."""
        return self._monitor

    def get_default_screen(self) -> Screen[Any]:
        return self._monitor

    def on_mount(self) -> None:
        for warning in self._warnings:
            self.notify(warning, title="config", severity="warning", markup=False)
        for note in self._notes:
            self.notify(note, title="network namespaces", markup=False)

    def _chosen(self) -> dict[str, str]:
        """The settings the user may change in the TUI and portmon remembers, as the config file spells them."""
        spec = self._monitor.spec
        return {"theme": self.theme, "sort": ("-" if spec.descending else "") + spec.column}

    def on_unmount(self) -> None:
        self.remember_choices()

    def remember_choices(self) -> None:
        """Write the theme and sort the user changed into the config file (``settings_path``), if any."""
        if self.settings_path is None:
            return
        now = self._chosen()
        changed = {key: value for key, value in now.items() if value != self._chosen_at_start[key]}
        if not changed:
            return
        try:
            remember(self.settings_path, changed)
        except ConfigError as exc:
            self.remember_error = str(exc)
        except OSError as exc:
            reason = one_line(exc.strerror or str(exc))
            self.remember_error = f"config file {echo(self.settings_path)}: not updated ({reason})"
        else:
            self._chosen_at_start = now

    def action_suspend(self) -> None:
        """Suspend to the shell (``fg`` resumes) where the terminal allows it; else say why not."""
        driver = self._driver
        if driver is not None and driver.can_suspend and job_control():
            self.action_suspend_process()
        else:
            self.notify(
                "portmon cannot be suspended here: no shell job control would resume it (q quits).",
                severity="warning",
            )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: every monitor action, plus Textual's own minus those that write files."""
        monitor = self._monitor
        for binding in once_per_key(MonitorScreen.BINDINGS):
            if not isinstance(binding, Binding):
                continue
            name = binding.action.partition("(")[0]
            action = getattr(monitor, f"action_{_TOGGLES.get(name, name)}")
            yield SystemCommand(binding.tooltip or binding.description, f"key: {key_label(binding)}", action)
        for column in COLUMNS:
            title = COLUMN_TITLES.get(column, column)
            yield SystemCommand(f"Sort by {title}", "ascending; again: descending", partial(monitor.sort_by, column))
        for command in super().get_system_commands(screen):
            if command.title not in _UNSAFE_SYSTEM_COMMANDS:
                yield command


def run_app(collector: Collector, **options: Any) -> int:
    """Run the live monitor until the user quits; returns the exit status."""
    app = PortmonApp(collector, **options)
    app.run()
    if app.remember_error is not None:
        print(f"portmon: warning: {app.remember_error}", file=sys.stderr)
    return app.return_code or 0
