"""Safe kill of a port's holders: exact identity, refusals, SIGTERM then report, and a re-scan verdict."""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import psutil

from portmon.model import (
    CLOSE,
    CLOSING,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    NEW_SYN_RECV,
    OWNER_KERNEL,
    OWNER_UNSEEN,
    SYN_RECV,
    TIME_WAIT,
    Holder,
    Snapshot,
    Socket,
)
from portmon.output import endpoint
from portmon.portspec import PortSpec, sockets_on_port
from portmon.procinfo import IDENTITY_TOLERANCE
from portmon.textsafe import safe

TIME_WAIT_SECONDS = 60
"""How long Linux keeps a TIME_WAIT socket (TCP_TIMEWAIT_LEN); other systems use 30-120 s."""

DEFAULT_TIMEOUT = 3.0
"""Seconds to wait for the holders to exit after a signal."""

DEFAULT_SETTLE = 0.3
"""Pause before the re-scan, so a supervisor's quick restart (systemd waits 100 ms) is seen."""

IS_WINDOWS = sys.platform == "win32"
IS_LINUX = sys.platform.startswith("linux")

_SIGCONT: int | None = getattr(signal, "SIGCONT", None)
_SIGKILL: int = getattr(signal, "SIGKILL", signal.SIGTERM)

SIGNALS: dict[str, int] = {
    name: int(getattr(signal, "SIG" + name)) for name in ("TERM", "KILL", "INT", "HUP") if hasattr(signal, "SIG" + name)
}
"""The signals ``kill --signal`` accepts, by short name."""

_PF_KTHREAD = 0x00200000
"""Linux task flag of kernel threads (include/linux/sched.h)."""

_MAX_ANCESTORS = 64

T = TypeVar("T")

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

# Verdicts after the re-scan.
FREED = "freed"
TIME_WAIT_ONLY = "time-wait-only"
STILL_HELD = "still-held"
REBOUND = "rebound"
UNKNOWN = "unknown"


def parse_signal(text: str) -> int:
    """``TERM``, ``sigkill``, ``INT``, ``HUP`` -> the signal number; ValueError for anything else."""
    name = text.strip().upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name not in SIGNALS:
        raise ValueError(f"unknown signal '{text}': expected one of {', '.join(SIGNALS)}")
    return SIGNALS[name]


def signal_name(sig: int) -> str:
    """``SIGTERM`` for 15, and so on; ``signal N`` for numbers without a name."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def format_start(create_time: float | None) -> str:
    """A process start time as local ``YYYY-MM-DD HH:MM:SS``, or ``?``."""
    if create_time is None:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(create_time))


def port_label(spec: PortSpec, sockets: Sequence[Socket]) -> str:
    """``8080/tcp`` when the protocol is given or all sockets share one, else ``8080``."""
    if spec.proto:
        return f"{spec.port}/{spec.proto}"
    protos = {s.proto for s in sockets}
    if len(protos) == 1:
        return f"{spec.port}/{protos.pop()}"
    return str(spec.port)


def socket_label(sock: Socket) -> str:
    """``tcp4 127.0.0.1:8080 LISTEN`` or ``tcp4 127.0.0.1:8080 -> 127.0.0.1:51234 TIME_WAIT``."""
    text = f"{sock.proto_label} {endpoint(sock.local_addr, sock.local_port, sock.family)}"
    if sock.remote_port is not None:
        text += f" -> {endpoint(sock.remote_addr, sock.remote_port, sock.family)}"
    if sock.state:
        text += f" {sock.state}"
    return safe(text)


MAX_SOCKETS_LISTED = 8
"""Sockets a text listing names for one port (or one process on it) before saying how many more there are:
a server with 5,000 connections is one listener and 5,000 lines nobody reads before a y/N prompt."""

def first_listed(
    items: Sequence[T], listening: Callable[[T], bool], limit: int = MAX_SOCKETS_LISTED
) -> tuple[list[T], int]:
    """What a listing shows of ``items`` and how many it leaves out.

    Up to ``limit`` items are kept in their order. Past that, the listening (or bound) ones
    come first, then the others in order, ``limit`` in all.
    """
    if len(items) <= limit:
        return list(items), 0
    first = [item for item in items if listening(item)]
    rest = [item for item in items if not listening(item)]
    shown = (first + rest)[:limit]
    return shown, len(items) - len(shown)


def same_start(expected: float | None, actual: float | None) -> bool:
    """True when two start times name the same process (both known and within clock rounding)."""
    if expected is None or actual is None:
        return False
    return abs(expected - actual) <= IDENTITY_TOLERANCE


@dataclass(frozen=True, slots=True)
class Identity:
    """A process as the user saw it: its pid and its start time (a reused pid has another start time)."""

    pid: int
    create_time: float | None

    @classmethod
    def of(cls, holder: Holder) -> Identity:
        """The identity a snapshot's Holder captured."""
        return cls(holder.pid, holder.create_time)


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


@dataclass(frozen=True, slots=True)
class TargetResult:
    """What happened to one target."""

    target: Target
    result: str
    """EXITED, GONE, CHANGED, DENIED, SURVIVED or UNINTERRUPTIBLE."""
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


# ---------------------------------------------------------------------------------------------
# Reading processes


@dataclass(frozen=True, slots=True)
class _ProcRead:
    """What planning reads about one pid, fresh from the OS."""

    create_time: float | None
    name: str | None
    user: str | None
    exe: str | None
    exe_known: bool
    cmdline: tuple[str, ...] | None
    status: str | None
    ppid: int | None
    uids: tuple[int, int, int] | None


def _read(pid: int) -> _ProcRead | None:
    """Read a process for planning; None when it does not exist (or is a zombie, which holds nothing)."""
    try:
        proc = psutil.Process(pid)
        created: float | None = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        # The identity cannot be confirmed without the start time; planning refuses such a pid.
        return _ProcRead(None, None, None, None, False, None, None, None, None)
    gone = False

    def attempt(getter: Callable[[], T]) -> T | None:
        # One field at a time: a refused field stays None, a vanished process ends the read.
        nonlocal gone
        if gone:
            return None
        try:
            return getter()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            gone = True
        except (psutil.AccessDenied, KeyError, OSError):
            # KeyError: a uid with no passwd entry; OSError: an odd /proc entry. Either way: unknown.
            pass
        return None

    with proc.oneshot():
        status = attempt(proc.status)
        name = attempt(proc.name)
        user = attempt(proc.username)
        exe = attempt(proc.exe)
        cmdline = attempt(proc.cmdline)
        ppid = attempt(proc.ppid)
        uids = attempt(proc.uids) if hasattr(proc, "uids") else None
    if gone or status == psutil.STATUS_ZOMBIE:
        return None
    return _ProcRead(
        create_time=created,
        name=name,
        user=user,
        exe=exe or None,
        exe_known=exe is not None,
        cmdline=tuple(cmdline) if cmdline is not None else None,
        status=status,
        ppid=ppid,
        uids=(uids.real, uids.effective, uids.saved) if uids is not None else None,
    )


def _linux_kthread_flag(pid: int) -> bool | None:
    """The PF_KTHREAD bit from /proc/PID/stat, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ") "; fields follow the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        flags = int(fields[6])
    except (IndexError, ValueError):
        return None
    return bool(flags & _PF_KTHREAD)


def is_kernel_thread(pid: int, ppid: int | None, exe: str | None, exe_known: bool, cmdline: Sequence[str] | None) -> bool:
    """True for a kernel thread: kthreadd (pid 2) and its children on Linux, or no executable and no argv."""
    if IS_LINUX:
        flag = _linux_kthread_flag(pid)
        if flag is not None:
            return flag
        if pid == 2 or ppid == 2:
            return True
    # Only a successful read of "no exe and an empty argv" says kernel thread; a refused read says nothing.
    return exe_known and not exe and cmdline is not None and len(cmdline) == 0


def protected_pids() -> dict[int, str]:
    """portmon itself and every ancestor (shell, sudo, terminal, ...), pid -> safe name."""
    me = os.getpid()
    out: dict[int, str] = {me: "portmon itself"}
    try:
        proc: psutil.Process | None = psutil.Process(me)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        proc = None
    count = 0
    ppid = os.getppid() if hasattr(os, "getppid") else 0
    while proc is not None and count < _MAX_ANCESTORS:
        try:
            parent = proc.parent()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            break
        if parent is None:
            break
        try:
            pname = parent.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pname = "?"
        out.setdefault(parent.pid, safe(pname))
        proc = parent
        count += 1
    if ppid > 0:
        # The direct parent even when psutil could not walk the chain.
        out.setdefault(ppid, "?")
    return out


def _invoking_user() -> str | None:
    """The human behind this run: SUDO_USER under sudo, else the effective user's name."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return None


def _privileged() -> bool:
    geteuid = getattr(os, "geteuid", None)
    return True if geteuid is None else geteuid() == 0


def _may_signal(uids: tuple[int, int, int] | None) -> bool:
    """The POSIX rule: our real or effective uid equals the target's real or saved uid (or we are root)."""
    if uids is None or _privileged() or not hasattr(os, "getuid"):
        return True
    mine = {os.getuid(), os.geteuid()}
    return uids[0] in mine or uids[2] in mine


def _sudo_hint(spec: PortSpec) -> str:
    if IS_WINDOWS:
        return "run portmon from an administrator prompt"
    return f"run it with sudo (sudo portmon kill {spec})"


# ---------------------------------------------------------------------------------------------
# Planning


_CLOSING_STATES = frozenset({FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK, CLOSE, SYN_RECV, NEW_SYN_RECV})
"""TCP states a socket passes through on its way out (or in): the kernel finishes them without a process."""


def kernel_owned_note(sock: Socket) -> str:
    """Why a socket no process holds cannot be killed, and whether it goes away by itself."""
    if sock.state == TIME_WAIT:
        return (
            f"{socket_label(sock)}: kernel-owned, no process holds it; it clears by itself within the kernel's "
            f"TIME_WAIT period ({TIME_WAIT_SECONDS} s on Linux), and a new server can bind the port now with SO_REUSEADDR"
        )
    if sock.state in _CLOSING_STATES:
        return f"{socket_label(sock)}: kernel-owned, no process holds it; the kernel finishes and drops it by itself"
    return (
        f"{socket_label(sock)}: no visible process holds it (a kernel socket, or one held from another container's "
        "PID namespace): there is nothing here portmon can signal"
    )


def plan_kill(
    sockets: Sequence[Socket],
    spec: PortSpec,
    port_sockets: Sequence[Socket] | None = None,
    *,
    protected: dict[int, str] | None = None,
) -> KillPlan:
    """Decide whom signalling would reach for ``sockets`` (the holders of which are the targets).

    Identity is the snapshot's (pid, start time) per holder, re-read now: a holder that exited or whose
    pid now names another process is left out with a note. ``port_sockets`` is every socket on the port
    (default: ``sockets``), kept to tell old holders from new ones after the kill. ``protected`` maps
    pids that must never be signalled to a name (default: portmon and its ancestors).
    """
    guard = protected_pids() if protected is None else protected
    before = tuple(port_sockets) if port_sockets is not None else tuple(sockets)
    label = port_label(spec, before or tuple(sockets))
    targets: dict[int, Target] = {}
    held_by: dict[int, list[str]] = {}
    captured: dict[int, Holder] = {}
    refusals: list[Refusal] = []
    notes: list[str] = []
    kernel_notes: list[str] = []
    for sock in sockets:
        if not sock.holders:
            if sock.owner_note in (OWNER_KERNEL, OWNER_UNSEEN):
                kernel_notes.append(kernel_owned_note(sock))
            else:
                refusals.append(
                    Refusal(
                        REFUSED_HIDDEN,
                        f"{socket_label(sock)}: held by a process portmon cannot see (another user's); "
                        f"root would reveal the owner: {_sudo_hint(spec)}",
                    )
                )
            continue
        for holder in sock.holders:
            captured.setdefault(holder.pid, holder)
            held_by.setdefault(holder.pid, []).append(socket_label(sock))
    privileged = _privileged()
    me = _invoking_user()
    other_users: list[tuple[int, str]] = []
    for pid, holder in captured.items():
        name = safe(holder.name or "?")
        if pid <= 0:
            refusals.append(Refusal(REFUSED_NO_PID, f"pid {pid} is the kernel's idle task, not a process", pid))
            continue
        if pid == 1:
            refusals.append(
                Refusal(REFUSED_INIT, f"pid 1 ({name}) is init: killing it would bring down the system or container", pid)
            )
            continue
        if pid in guard:
            if pid == os.getpid():
                reason = f"pid {pid} is portmon itself"
                kind = REFUSED_SELF
            else:
                reason = (
                    f"pid {pid} ({name}) is one of portmon's ancestors (its shell, sudo or terminal): "
                    "killing it would end this session"
                )
                kind = REFUSED_ANCESTOR
            refusals.append(Refusal(kind, reason, pid))
            continue
        fresh = _read(pid)
        if fresh is None:
            notes.append(f"pid {pid} ({name}) has exited since the scan")
            continue
        if fresh.create_time is None:
            refusals.append(
                Refusal(
                    REFUSED_UNVERIFIED,
                    f"cannot confirm the identity of pid {pid} ({name}): its start time is not readable; {_sudo_hint(spec)}",
                    pid,
                )
            )
            continue
        if holder.create_time is not None and not same_start(holder.create_time, fresh.create_time):
            notes.append(
                f"pid {pid} now belongs to a different process ({safe(fresh.name or '?')}, started "
                f"{format_start(fresh.create_time)}): the one that held the port has exited; it is left alone"
            )
            continue
        if is_kernel_thread(pid, fresh.ppid, fresh.exe, fresh.exe_known, fresh.cmdline):
            refusals.append(Refusal(REFUSED_KERNEL_THREAD, f"pid {pid} ({name}) is a kernel thread", pid))
            continue
        if not _may_signal(fresh.uids):
            owner = safe(fresh.user or holder.user or "another user")
            refusals.append(
                Refusal(
                    REFUSED_PERMISSION,
                    f"pid {pid} ({name}) belongs to {owner}: permission denied; {_sudo_hint(spec)}",
                    pid,
                )
            )
            continue
        user = fresh.user or holder.user
        if privileged and user and me and user != me:
            other_users.append((pid, safe(user)))
        targets[pid] = Target(
            identity=Identity(pid, holder.create_time if holder.create_time is not None else fresh.create_time),
            name=fresh.name or holder.name,
            user=user,
            exe=fresh.exe,
            cmdline=fresh.cmdline or (),
            status=fresh.status,
            ppid=fresh.ppid,
            sockets=tuple(held_by[pid]),
        )
    if targets or refusals:
        notes.extend(kernel_notes)
    elif kernel_notes:
        # Only kernel-owned sockets are left: that is a refusal with the explanation, not "nothing".
        refusals.extend(Refusal(REFUSED_KERNEL_OWNED, n) for n in kernel_notes)
    if IS_WINDOWS and targets:
        notes.append("on Windows every signal is TerminateProcess, already a hard kill: holders cannot clean up")
    return KillPlan(
        spec=spec,
        label=label,
        targets=tuple(sorted(targets.values(), key=lambda t: t.pid)),
        refusals=tuple(refusals),
        notes=tuple(notes),
        other_users=tuple(other_users),
        before=before,
        sockets=tuple(sockets),
        captured_at=time.time(),
    )


def plan_for_port(snapshot: Snapshot, spec: PortSpec) -> KillPlan:
    """The plan for every socket on the port (exact port; the protocol too when the spec gives one)."""
    on_port = sockets_on_port(snapshot.sockets, spec)
    return plan_kill(on_port, spec)


def plan_for_socket(sock: Socket, snapshot: Snapshot | None = None) -> KillPlan:
    """The plan for the holders of one socket (the TUI's selected row), its port and protocol as context."""
    spec = PortSpec(sock.local_port, sock.proto)
    context = sockets_on_port(snapshot.sockets, spec) if snapshot is not None else [sock]
    if sock not in context:
        context = [sock, *context]
    return plan_kill([sock], spec, context)


def confirmation_lines(plan: KillPlan, sig: int) -> list[str]:
    """What the user confirms: the signal, the count, and any other user's processes (named)."""
    n = len(plan.targets)
    lines = [f"send {signal_name(sig)} to {n} process{'es' if n != 1 else ''} holding port {plan.label}?"]
    if plan.other_users:
        named = ", ".join(f"{user} (pid {pid})" for pid, user in plan.other_users)
        lines.append(f"as root, this signals processes of other users: {named}")
    return lines


# ---------------------------------------------------------------------------------------------
# Executing

_HAVE_PIDFD = IS_LINUX and hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


class _Handle:
    """A live, identity-checked reference to one target: a pidfd on Linux, a psutil.Process elsewhere."""

    def __init__(self, target: Target, proc: psutil.Process, fd: int | None) -> None:
        self.target = target
        self.proc = proc
        self.fd = fd
        self.sent: list[str] = []

    def send(self, sig: int) -> None:
        """Deliver a signal; ProcessLookupError when it is gone, PermissionError when refused."""
        _deliver(self, sig)
        self.sent.append(signal_name(sig))

    def exited(self) -> bool:
        """True when the process has exited (a zombie counts: it holds no sockets any more)."""
        if self.fd is not None:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0)
            except (OSError, ValueError):
                ready = []
            if ready:
                return True
        try:
            if not self.proc.is_running():
                return True
            return self.proc.status() == psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return True
        except psutil.AccessDenied:
            return False

    def status(self) -> str | None:
        """The process's state (psutil spelling), None when unreadable."""
        try:
            return self.proc.status()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return psutil.STATUS_ZOMBIE
        except psutil.AccessDenied:
            return None

    def close(self) -> None:
        """Release the pidfd."""
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def _deliver(handle: _Handle, sig: int) -> None:
    """Send one signal through the handle (patched in tests to fake a refusal)."""
    if handle.fd is not None:
        # The pidfd names exactly the process whose identity was checked: no pid-reuse race.
        signal.pidfd_send_signal(handle.fd, sig)
        return
    if IS_WINDOWS:
        # Windows has no signals to speak of: terminate() and kill() are both TerminateProcess.
        try:
            handle.proc.terminate()
        except psutil.NoSuchProcess:
            raise ProcessLookupError(errno.ESRCH, "no such process") from None
        except psutil.AccessDenied:
            raise PermissionError(errno.EPERM, "access denied") from None
        return
    # Without a pidfd the check and the signal are two steps: re-check as late as possible.
    try:
        still_same = handle.proc.is_running() and same_start(handle.target.identity.create_time, handle.proc.create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        still_same = False
    except psutil.AccessDenied:
        still_same = True
    if not still_same:
        raise ProcessLookupError(errno.ESRCH, "the process has exited")
    os.kill(handle.target.pid, sig)


def _open(target: Target) -> tuple[_Handle | None, TargetResult | None]:
    """Open a handle on the target and confirm its identity; or the reason it will not be signalled."""
    pid = target.pid
    fd: int | None = None
    if _HAVE_PIDFD:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None, TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal")
        except OSError:
            fd = None  # an old kernel (ENOSYS) or a seccomp filter: fall back to the re-checked kill()

    def fail(result: TargetResult) -> tuple[_Handle | None, TargetResult | None]:
        if fd is not None:
            os.close(fd)
        return None, result

    # The start time is read after the pidfd is open: if it still matches, the pidfd is that process.
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
        zombie = proc.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return fail(TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal"))
    except psutil.AccessDenied:
        return fail(
            TargetResult(target, CHANGED, (), f"pid {pid}: cannot confirm its identity (start time unreadable): not signalled")
        )
    if not same_start(target.identity.create_time, created):
        return fail(
            TargetResult(
                target,
                CHANGED,
                (),
                f"pid {pid} now belongs to a different process (started {format_start(created)}): not signalled",
            )
        )
    if zombie:
        return fail(TargetResult(target, GONE, (), f"pid {pid} had already exited: nothing to signal"))
    return _Handle(target, proc, fd), None


def _denied(target: Target) -> TargetResult:
    owner = safe(target.user or "another user")
    return TargetResult(
        target,
        DENIED,
        (),
        f"pid {target.pid}: permission denied, it belongs to {owner}; run portmon with sudo",
    )


def _signal(handle: _Handle, sig: int) -> TargetResult | None:
    """Send ``sig`` (and SIGCONT to a stopped process); a result only when it could not be sent."""
    target = handle.target
    try:
        stopped = handle.status() == psutil.STATUS_STOPPED
        handle.send(sig)
        if stopped and _SIGCONT is not None and sig != _SIGKILL:
            # A stopped process cannot act on SIGTERM (or its handler) until it runs again.
            handle.send(_SIGCONT)
    except ProcessLookupError:
        if handle.sent:
            return None
        return TargetResult(target, GONE, (), f"pid {target.pid} had already exited: nothing to signal")
    except PermissionError:
        return _denied(target)
    return None


def _wait(handles: Sequence[_Handle], timeout: float) -> list[_Handle]:
    """Wait up to ``timeout`` s for the processes to exit; return those still running (bounded, no retries)."""
    deadline = time.monotonic() + timeout
    pending = list(handles)
    while True:
        pending = [h for h in pending if not h.exited()]
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return pending
        fds = [h.fd for h in pending if h.fd is not None]
        step = min(remaining, 0.05)
        if fds and len(fds) == len(pending):
            # A pidfd turns readable when its process exits: wake at once instead of sleeping blind.
            try:
                select.select(fds, [], [], step)
            except (OSError, ValueError):
                time.sleep(step)
        else:
            time.sleep(step)


def _survivor_result(handle: _Handle, sig: int, timeout: float) -> TargetResult:
    target = handle.target
    sent = tuple(handle.sent)
    if handle.status() == psutil.STATUS_DISK_SLEEP:
        return TargetResult(
            target,
            UNINTERRUPTIBLE,
            sent,
            f"pid {target.pid} is in uninterruptible sleep (D state): no signal acts on it until the kernel call "
            f"it waits on returns (often a hung disk or network filesystem)",
        )
    name = signal_name(sig)
    if sig == _SIGKILL:
        detail = f"pid {target.pid} survived SIGKILL for {timeout:g} s (stuck in the kernel)"
    else:
        detail = f"pid {target.pid} ignores {name} (still running after {timeout:g} s)"
    return TargetResult(target, SURVIVED, sent, detail)


def execute(
    plan: KillPlan,
    sig: int = signal.SIGTERM,
    timeout: float = DEFAULT_TIMEOUT,
    rescan: Callable[[], Snapshot] | None = None,
    *,
    force: bool = False,
    settle: float = DEFAULT_SETTLE,
) -> KillOutcome:
    """Signal every target (identity re-checked first), wait up to ``timeout``, then re-scan the port.

    With ``force``, targets that survive ``sig`` get SIGKILL and another ``timeout``. Raises ValueError
    for a plan that is not actionable: refusals are never overridden here.
    """
    if not plan.actionable:
        raise ValueError("; ".join(plan.reasons()) or "nothing to signal")
    results: dict[int, TargetResult] = {}
    handles: list[_Handle] = []
    try:
        for target in plan.targets:
            handle, failed = _open(target)
            if failed is not None:
                results[target.pid] = failed
                continue
            assert handle is not None
            handles.append(handle)
        live: list[_Handle] = []
        for handle in handles:
            failed = _signal(handle, sig)
            if failed is not None:
                results[handle.target.pid] = failed
            else:
                live.append(handle)
        survivors = _wait(live, timeout)
        last_sig = sig
        if survivors and force and sig != _SIGKILL:
            last_sig = _SIGKILL
            killed: list[_Handle] = []
            for handle in survivors:
                failed = _signal(handle, _SIGKILL)
                if failed is not None and failed.result != GONE:
                    results[handle.target.pid] = failed
                else:
                    killed.append(handle)
            survivors = _wait(killed, timeout)
        for handle in live:
            pid = handle.target.pid
            if pid in results:
                continue
            if handle in survivors:
                results[pid] = _survivor_result(handle, last_sig, timeout)
            else:
                via = handle.sent[-1] if handle.sent else signal_name(sig)
                if via == "SIGCONT" and len(handle.sent) > 1:
                    via = handle.sent[-2]
                results[pid] = TargetResult(handle.target, EXITED, tuple(handle.sent), f"pid {pid} exited after {via}")
    finally:
        for handle in handles:
            handle.close()
    ordered = tuple(results[t.pid] for t in plan.targets)
    if rescan is None:
        verdict = _verdict_without_scan(plan, ordered)
    else:
        if settle > 0:
            time.sleep(settle)
        try:
            snap = rescan()
        except Exception as exc:  # noqa: BLE001 - the kill happened; only its check failed
            verdict = Verdict(UNKNOWN, f"port {plan.label}: could not re-scan ({safe(type(exc).__name__)}: {safe(exc)})")
        else:
            verdict = judge(plan, ordered, snap)
    return KillOutcome(plan=plan, signal=sig, results=ordered, verdict=verdict)


def _verdict_without_scan(plan: KillPlan, results: Sequence[TargetResult]) -> Verdict:
    alive = tuple(r.target.pid for r in results if r.alive)
    if alive:
        return Verdict(STILL_HELD, f"port {plan.label} still held by {_held_text(results, alive)}", still_held_by=alive)
    return Verdict(UNKNOWN, f"port {plan.label}: the holders exited (not re-scanned)")


def _reason_for(result: TargetResult | None) -> str:
    if result is None:
        return ""
    if result.result == UNINTERRUPTIBLE:
        return "uninterruptible sleep"
    if result.result == DENIED:
        return f"permission denied, owner {safe(result.target.user or '?')}: run with sudo"
    if result.result == SURVIVED:
        last = next((s for s in reversed(result.signals) if s != "SIGCONT"), "the signal")
        return f"ignores {last}" if last != "SIGKILL" else "survives SIGKILL"
    return ""


def _held_text(results: Sequence[TargetResult], pids: Sequence[int], extra: dict[int, str] | None = None) -> str:
    """``1234 (ignores SIGTERM)``; several pids with one reason share it: ``1, 2, 3 (each ignores SIGTERM)``."""
    by_pid = {r.target.pid: r for r in results}
    whys = {pid: _reason_for(by_pid.get(pid)) or (extra or {}).get(pid, "") for pid in pids}
    ordered = sorted(pids)
    reasons = set(whys.values())
    if len(ordered) > 1 and len(reasons) == 1:
        why = reasons.pop()
        joined = ", ".join(map(str, ordered))
        return f"{joined} (each {why})" if why else joined
    return ", ".join(f"{pid} ({whys[pid]})" if whys[pid] else str(pid) for pid in ordered)


def _parent_of(pid: int) -> NewHolder:
    """Name a new holder and its parent (the supervisor that restarted it, when there is one)."""
    name = ppid = pname = None
    created = None
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = proc.name()
            ppid = proc.ppid()
            created = proc.create_time()
        parent = proc.parent()
        if parent is not None:
            pname = parent.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        pass
    return NewHolder(pid=pid, name=name, parent_pid=ppid, parent_name=pname, create_time=created)


def judge(
    plan: KillPlan,
    results: Sequence[TargetResult],
    after: Snapshot,
    describe: Callable[[int], NewHolder] = _parent_of,
) -> Verdict:
    """The verdict from the re-scan: freed, only TIME_WAIT left, still held (by whom), or re-bound by a new pid."""
    now = sockets_on_port(after.sockets, plan.spec)
    exited = {r.target.pid for r in results if r.result in (EXITED, GONE)}
    targets = {t.pid: t for t in plan.targets}
    old: dict[int, float | None] = {}
    for sock in plan.before:
        for h in sock.holders:
            old.setdefault(h.pid, h.create_time)
    still: list[int] = []
    new: list[int] = []
    started_of: dict[int, float | None] = {}
    hidden = False
    for sock in now:
        if not sock.holders:
            if sock.owner_note not in (OWNER_KERNEL, OWNER_UNSEEN):
                hidden = True
            continue
        for h in sock.holders:
            if h.pid in still or h.pid in new:
                continue
            known = h.pid in old and (
                h.create_time is None or old[h.pid] is None or same_start(old[h.pid], h.create_time)
            )
            if known and not (h.pid in targets and h.pid in exited):
                still.append(h.pid)
            else:
                new.append(h.pid)
                started_of[h.pid] = h.create_time
    label = plan.label
    unseen: list[int] = []
    rebound: list[NewHolder] = []
    for pid in new:
        nh = describe(pid)
        started = nh.create_time if nh.create_time is not None else started_of.get(pid)
        if plan.captured_at and started is not None and started < plan.captured_at - IDENTITY_TOLERANCE:
            # Running before the kill was planned, yet not seen holding the port: a holder the scan missed.
            unseen.append(pid)
        else:
            rebound.append(nh)
    reasons = dict.fromkeys(unseen, "not seen holding it before")
    still.extend(unseen)
    if rebound:
        parts = []
        for nh in rebound:
            text = f"{nh.pid} ({safe(nh.name or '?')})"
            if nh.parent_pid:
                text += f", child of {nh.parent_pid} ({safe(nh.parent_name or '?')})"
            parts.append(text)
        message = f"port {label} re-bound by new pid {'; '.join(parts)}: a supervisor (systemd, Docker, a process manager) restarted it"
        if still:
            message += f"; still held by {_held_text(results, still, reasons)}"
        return Verdict(REBOUND, message, still_held_by=tuple(still), rebound_by=tuple(rebound))
    if still:
        return Verdict(
            STILL_HELD, f"port {label} still held by {_held_text(results, still, reasons)}", still_held_by=tuple(still)
        )
    if hidden:
        return Verdict(STILL_HELD, f"port {label} still held by a process portmon cannot see; root would reveal it")
    if now:
        return Verdict(
            TIME_WAIT_ONLY,
            f"port {label} freed; only TIME_WAIT left (bindable with SO_REUSEADDR; clears within {TIME_WAIT_SECONDS} s)",
        )
    return Verdict(FREED, f"port {label} freed")
