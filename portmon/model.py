"""Immutable socket, holder and snapshot values shared by every part of portmon.

They are named tuples, not dataclasses: building one is ~0.25 µs against ~1.3 µs for a frozen
slots dataclass (a cold scan builds one Socket per socket, 10,000 of them in ``portmon list``),
and ``portmon list`` then never imports ``dataclasses`` (with ``inspect``, ~8 ms of its start).
``._replace(**changes)`` gives a changed copy. Equality and hashing are the tuple's.
"""

from __future__ import annotations

from typing import NamedTuple

# TCP states, spelled as psutil's CONN_* constants spell them.
LISTEN = "LISTEN"
ESTABLISHED = "ESTABLISHED"
SYN_SENT = "SYN_SENT"
SYN_RECV = "SYN_RECV"
FIN_WAIT1 = "FIN_WAIT1"
FIN_WAIT2 = "FIN_WAIT2"
TIME_WAIT = "TIME_WAIT"
CLOSE = "CLOSE"
CLOSE_WAIT = "CLOSE_WAIT"
LAST_ACK = "LAST_ACK"
CLOSING = "CLOSING"
NEW_SYN_RECV = "NEW_SYN_RECV"

TCP_STATES: tuple[str, ...] = (
    LISTEN,
    ESTABLISHED,
    SYN_SENT,
    SYN_RECV,
    FIN_WAIT1,
    FIN_WAIT2,
    TIME_WAIT,
    CLOSE,
    CLOSE_WAIT,
    LAST_ACK,
    CLOSING,
    NEW_SYN_RECV,
)

# Why a socket has no holders.
OWNER_KERNEL = "kernel"
"""No process holds the socket: the kernel keeps it (TIME_WAIT, orphaned FIN_WAIT2, ...)."""
OWNER_HIDDEN = "hidden"
"""A process holds the socket but portmon may not see which (another user's; run as root)."""

OWNER_UNSEEN = "unseen"
"""Running as root, yet no process in view holds it: its owner lives in another PID namespace (a container)."""

OWNER_NOTES = {
    OWNER_KERNEL: "kernel-owned: no process holds it; it clears by itself",
    OWNER_HIDDEN: "owner hidden: another user's process; run as root to see it",
    OWNER_UNSEEN: (
        "no visible process holds it: its owner is outside portmon's view (another container's PID namespace)"
    ),
}

# States in which a socket normally has no process any more: TIME_WAIT always; the closing
# states too when portmon can see every process (then an ownerless one is an orphan of a close).
KERNEL_STATES = frozenset({TIME_WAIT})
ORPHAN_STATES = frozenset({TIME_WAIT, FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK, CLOSE})

SocketKey = tuple[str, int, str, int, str, int, int]
"""Stable identity of a socket across snapshots (see :attr:`Socket.key`)."""


class Holder(NamedTuple):
    """One process that holds a socket open."""

    pid: int
    name: str | None = None
    user: str | None = None
    create_time: float | None = None
    """Process start time (seconds since the epoch): with the pid, the process's identity."""


class NetnsRef(NamedTuple):
    """A network namespace other than portmon's own: its nsfs inode and, where known, what it belongs to.

    ``str()`` gives ``net:[4026532283] container web``: the form ``readlink /proc/PID/ns/net`` prints, then
    the label. The label (an ``ip netns`` name, a container or unit) is untrusted text.
    """

    inode: int
    """The nsfs inode: what ``lsns`` and ``ip netns identify`` print as the namespace's id."""
    label: str | None = None
    """``netns NAME`` for ``ip netns`` names, else the container or unit of a process in it; None if unknown."""

    def __str__(self) -> str:
        return f"net:[{self.inode}] {self.label}" if self.label else f"net:[{self.inode}]"


class Socket(NamedTuple):
    """One TCP or UDP socket as the kernel reports it."""

    proto: str
    """"tcp" or "udp"."""
    family: int
    """4 or 6."""
    local_addr: str
    local_port: int
    remote_addr: str | None = None
    remote_port: int | None = None
    state: str | None = None
    """TCP state (psutil spelling); None for UDP."""
    holders: tuple[Holder, ...] = ()
    """Every process holding the socket, the one psutil names first, the rest by pid."""
    owner_note: str | None = None
    """OWNER_KERNEL or OWNER_HIDDEN when there are no holders."""
    inode: int = 0
    """Kernel socket inode where known (Linux), else 0."""
    local_service: str | None = None
    remote_service: str | None = None
    seq: int = 0
    """Disambiguates sockets that share every other key field (SO_REUSEPORT) when the inode is unknown."""
    # Traffic and health, from the kernel's tcp_info (Linux sock_diag); None where there is none:
    # UDP, TIME_WAIT and request sockets, the psutil collector, the /proc/net fallback.
    bytes_sent: int | None = None
    """TCP bytes sent and acknowledged by the peer (tcpi_bytes_acked)."""
    bytes_received: int | None = None
    """TCP bytes received (tcpi_bytes_received)."""
    rtt_ms: float | None = None
    """Smoothed round-trip time in milliseconds (tcpi_rtt)."""
    retransmits: int | None = None
    """Segments retransmitted over the connection's life (tcpi_total_retrans)."""
    accept_queue: int | None = None
    """LISTEN sockets: connections waiting for accept()."""
    backlog: int | None = None
    """LISTEN sockets: the most that may wait (listen()'s backlog, capped by somaxconn)."""
    cookie: int | None = None
    """The kernel's socket cookie (Linux sock_diag): unique per socket, never reused while the host is up."""
    host: str | None = None
    """The remote host the socket lives on, as the user named it (``--host``); None for this machine."""
    netns: NetnsRef | None = None
    """The network namespace the socket lives in; None for portmon's own (the host's, usually)."""

    @property
    def key(self) -> SocketKey:
        """A value that stays the same for this socket across refreshes (and differs between hosts and network
        namespaces: a TIME_WAIT socket has no inode, and two namespaces can hold the same endpoints)."""
        proto = self.proto if self.host is None else f"{self.proto}@{self.host}"
        if self.netns is not None:
            proto = f"{proto}%{self.netns.inode}"
        return (
            proto,
            self.family,
            self.local_addr,
            self.local_port,
            self.remote_addr or "",
            self.remote_port if self.remote_port is not None else -1,
            self.inode or -self.seq,
        )

    @property
    def proto_label(self) -> str:
        """"tcp4", "udp6", ..."""
        return f"{self.proto}{self.family}"

    @property
    def pid(self) -> int | None:
        """The primary holder's pid, or None."""
        return self.holders[0].pid if self.holders else None

    @property
    def process(self) -> str | None:
        """The primary holder's process name, or None."""
        return self.holders[0].name if self.holders else None

    @property
    def user(self) -> str | None:
        """The primary holder's user, or None."""
        return self.holders[0].user if self.holders else None

    @property
    def accept_queue_full(self) -> bool:
        """A LISTEN socket whose accept queue is over its backlog: the server is not accepting."""
        return self.accept_queue is not None and self.backlog is not None and self.accept_queue > self.backlog

    @property
    def listening(self) -> bool:
        """TCP LISTEN, or a UDP socket with no remote end (bound, waiting for datagrams)."""
        if self.proto == "tcp":
            return self.state == LISTEN
        return self.remote_port is None


TRAFFIC_FIELDS = ("bytes_sent", "bytes_received", "rtt_ms", "retransmits", "accept_queue", "backlog", "cookie")
"""Socket's traffic and health fields, in order: contiguous, so a collector can set them in one step."""


class Snapshot(NamedTuple):
    """Everything one scan saw, at one moment."""

    sockets: tuple[Socket, ...]
    taken_at: float
    """Wall-clock time of the scan (seconds since the epoch)."""
    scan_ms: float = 0.0
    """How long the scan took."""
    hidden_owners: int = 0
    """Sockets whose owner portmon could not see for lack of privilege."""
    warning: str | None = None
    """A partial-result note, e.g. "only your own processes are shown (access denied)"."""
    error: str | None = None
    """Set when the scan failed; the snapshot then repeats the last good sockets."""
    collector: str = ""
    """Which collector produced it ("procfs", "psutil", "fake", ...)."""
    extra: tuple[tuple[str, str], ...] = ()
    """Free-form (name, value) notes for the status line and benchmarks."""

    @property
    def hidden_note(self) -> str | None:
        """The user-facing line about hidden owners, or None when nothing is hidden."""
        if not self.hidden_owners:
            return None
        n = self.hidden_owners
        return f"{n} socket{'s' if n != 1 else ''} with unknown owner; run as root to see them"
