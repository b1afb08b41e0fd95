"""The values of a kill: the plan (targets, refusals, notes), per-target results, the verdict and the outcome."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from portmon.actions.kill.identity import Identity, PidFd
from portmon.actions.kill.text import format_start
from portmon.model import Socket
from portmon.portspec import PortSpec
from portmon.textsafe import safe

# Kinds of refusal (each blocks the whole kill: the port cannot be freed while that holder stays).
REFUSED_NO_PID = "no-pid"
REFUSED_INIT = "init"
REFUSED_SELF = "self"
REFUSED_ANCESTOR = "ancestor"
REFUSED_KERNEL_THREAD = "kernel-thread"
REFUSED_HIDDEN = "hidden"
REFUSED_KERNEL_OWNED = "kernel-owned"
REFUSED_UNVERIFIED = "unverified"
REFUSED_PERMISSION = "permission"

# Per-target results of execute().
EXITED = "exited"
"""The process exited after the signal."""
GONE = "gone"
"""The process had already exited when its turn came: nothing was signalled."""
CHANGED = "identity-changed"
"""The pid now names a different process: nothing was signalled."""
DENIED = "permission-denied"
"""The kernel refused the signal (another user's process)."""
SURVIVED = "survived"
"""Still running when the timeout ran out."""
UNINTERRUPTIBLE = "uninterruptible"
"""Still running, in uninterruptible sleep (D state): no signal acts until its kernel call returns."""
LET_GO = "let-go"
"""No longer has an fd on any of the plan's sockets (it closed or replaced it since the scan): left alone."""

# Verdicts after the re-scan.
FREED = "freed"
TIME_WAIT_ONLY = "time-wait-only"
STILL_HELD = "still-held"
REBOUND = "rebound"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Target:
    """One process that will be signalled, with what the confirmation shows about it."""

    identity: Identity
    name: str | None = None
    user: str | None = None
    exe: str | None = None
    cmdline: tuple[str, ...] = ()
    status: str | None = None
    ppid: int | None = None
    sockets: tuple[str, ...] = ()
    """Labels of the sockets on the port it holds (see :func:`socket_label`)."""
    inodes: frozenset[int] = frozenset()
    """Inodes of the sockets on the port it held when planned (where the collector knows them)."""
    pidfd: PidFd | None = field(default=None, compare=False, repr=False)
    """A pidfd opened when its identity was confirmed, held until the plan is dropped (Linux)."""

    @property
    def pid(self) -> int:
        """The target's pid."""
        return self.identity.pid

    @property
    def started(self) -> str:
        """The start time, formatted."""
        return format_start(self.identity.create_time)

    @property
    def command(self) -> str:
        """The command line joined with spaces (or the name), control characters made visible."""
        if self.cmdline:
            return safe(" ".join(self.cmdline))
        return safe(self.name or "?")

    @property
    def label(self) -> str:
        """``1234 (nginx)``, safe to print."""
        return f"{self.pid} ({safe(self.name or '?')})"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why (part of) the kill is refused; every refusal blocks the whole kill."""

    kind: str
    reason: str
    """One line, safe to print."""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class KillPlan:
    """Who would be signalled for a port, who is refused, and what else the user should know."""

    spec: PortSpec
    label: str
    """``8080/tcp`` as shown to the user."""
    targets: tuple[Target, ...]
    refusals: tuple[Refusal, ...] = ()
    notes: tuple[str, ...] = ()
    """Information that does not block: kernel-owned sockets, holders that exited since the scan, ..."""
    other_users: tuple[tuple[int, str], ...] = ()
    """As root: (pid, user) of targets owned by someone other than the invoking user."""
    before: tuple[Socket, ...] = ()
    """Every socket on the port when the identity was captured (for telling old holders from new)."""
    sockets: tuple[Socket, ...] = ()
    """The sockets whose holders are the targets."""
    captured_at: float = 0.0
    """When the identities were captured (wall clock): a holder started later is a new process."""
    captured_ticks: int | None = None
    """The same moment in clock ticks since boot (Linux), the unit of process start times."""
    inherited: tuple[str, ...] = ()
    """Labels of the sockets portmon itself holds an inherited copy of (no holder: it is never signalled)."""

    @property
    def actionable(self) -> bool:
        """True when there is somebody to signal and nothing refused."""
        return bool(self.targets) and not self.refusals

    @property
    def held(self) -> bool:
        """True when any socket on the port was seen at all."""
        return bool(self.before or self.sockets)

    def reasons(self) -> list[str]:
        """Why the plan is not actionable, one safe line each (empty when it is)."""
        if self.actionable:
            return []
        if self.refusals:
            return [r.reason for r in self.refusals]
        if not self.held:
            return [f"nobody holds port {self.label}"]
        return [f"no process to signal on port {self.label}", *self.notes]

    def narrowed(self, pids: Iterable[int]) -> KillPlan:
        """The same plan with only the given pids as targets (the survivors, for a second signal)."""
        keep = set(pids)
        return replace(self, targets=tuple(t for t in self.targets if t.pid in keep))

    def release(self) -> None:
        """Close the targets' pidfds (they also close when the plan is garbage-collected)."""
        for target in self.targets:
            if target.pidfd is not None:
                target.pidfd.close()


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What happened to one target."""

    target: Target
    result: str
    """EXITED, GONE, CHANGED, DENIED, SURVIVED, UNINTERRUPTIBLE or LET_GO."""
    signals: tuple[str, ...] = ()
    """The signals actually delivered, in order (``SIGTERM``, ``SIGCONT``, ``SIGKILL``)."""
    detail: str = ""
    """One line for the user, safe to print."""

    @property
    def alive(self) -> bool:
        """True when the process may still hold the port."""
        return self.result in (SURVIVED, UNINTERRUPTIBLE, DENIED)


@dataclass(frozen=True, slots=True)
class NewHolder:
    """A process holding the port after the kill that did not hold it before."""

    pid: int
    name: str | None = None
    parent_pid: int | None = None
    parent_name: str | None = None
    create_time: float | None = None
    start_ticks: int | None = None
    """Its start time in clock ticks since boot (Linux): compared with the plan's stamp in the same unit."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the re-scan of the port showed."""

    kind: str
    """FREED, TIME_WAIT_ONLY, STILL_HELD, REBOUND or UNKNOWN."""
    message: str
    """One line, safe to print: ``port 8080/tcp freed``."""
    still_held_by: tuple[int, ...] = ()
    rebound_by: tuple[NewHolder, ...] = ()

    @property
    def freed(self) -> bool:
        """True when no process holds the port any more (TIME_WAIT leftovers allowed)."""
        return self.kind in (FREED, TIME_WAIT_ONLY)


@dataclass(frozen=True, slots=True)
class KillOutcome:
    """The per-target results of a kill and the verdict of the re-scan."""

    plan: KillPlan
    signal: int
    results: tuple[TargetResult, ...]
    verdict: Verdict

    @property
    def freed(self) -> bool:
        """True when the port was freed."""
        return self.verdict.freed

    @property
    def survivors(self) -> tuple[Target, ...]:
        """Targets still running after the signal (a second, harder signal may help them go)."""
        return tuple(r.target for r in self.results if r.result in (SURVIVED, UNINTERRUPTIBLE))

    @property
    def message(self) -> str:
        """The outcome line: the verdict's message."""
        return self.verdict.message

    @property
    def exit_code(self) -> int:
        """0 when the port was freed, 1 otherwise."""
        return 0 if self.freed else 1
