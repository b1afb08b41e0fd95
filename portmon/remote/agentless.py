"""The agentless fallback: a POSIX shell loop that prints ``ss -tuanpeH`` on the remote host, and its parser."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from portmon.collect.base import ServiceLookup, owner_note
from portmon.model import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    Holder,
    Snapshot,
    Socket,
)
from portmon.registry import parse_services

MARK = "@@portmon"
"""Starts every framing line the script prints; no ss, passwd or services line starts with it."""

STREAM_COMMAND = "_stream"
"""The hidden subcommand of a remote portmon that streams snapshots (see portmon.remote.stream)."""

SCRIPT = f"""\
interval="$1"
if command -v portmon >/dev/null 2>&1 && portmon {STREAM_COMMAND} --probe >/dev/null 2>&1; then
  exec portmon {STREAM_COMMAND} --interval "$interval"
fi
if ! command -v ss >/dev/null 2>&1; then
  echo "{MARK} error neither portmon nor ss (iproute2) is installed"
  exit 3
fi
echo "{MARK} agentless $(id -u)"
echo "{MARK} users"
cut -d: -f1,3 /etc/passwd 2>/dev/null
echo "{MARK} services"
cat /etc/services 2>/dev/null
echo "{MARK} ss"
while :; do
  ss -tuanpeH 2>/dev/null
  echo "{MARK} end"
  sleep "$interval" || exit 0
done
"""
"""What the remote ``sh -s`` runs: the streaming portmon when it is installed there, else an ss loop.

Every block ends with a framing line, so the reader knows a table is whole. When the local
end goes away the next write fails (SIGPIPE) and the loop ends.
"""

_STATES = {
    "LISTEN": LISTEN,
    "ESTAB": ESTABLISHED,
    "SYN-SENT": SYN_SENT,
    "SYN-RECV": SYN_RECV,
    "FIN-WAIT-1": FIN_WAIT1,
    "FIN-WAIT-2": FIN_WAIT2,
    "TIME-WAIT": TIME_WAIT,
    "CLOSE-WAIT": CLOSE_WAIT,
    "LAST-ACK": LAST_ACK,
    "CLOSING": CLOSING,
    "UNCONN": CLOSE,
}
_USER_RE = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)')
_INO_RE = re.compile(r"\bino:(\d+)")
_UID_RE = re.compile(r"\buid:(\d+)")


def split_endpoint(text: str) -> tuple[str, int | None, int] | None:
    """``addr:port`` as ss prints it -> (address, port or None for ``*``, family); None if malformed.

    IPv6 comes bracketed (``[::1]:22``); a bare ``*`` address is the IPv6 wildcard of older ss.
    An IPv4 address's ``%iface`` suffix (a bound device) is dropped, as /proc does.
    """
    addr, colon, port_text = text.rpartition(":")
    if not colon or not addr:
        return None
    if port_text == "*":
        port: int | None = None
    elif port_text.isdigit() and int(port_text) <= 65535:
        port = int(port_text)
    else:
        return None
    if addr.startswith("[") and addr.endswith("]"):
        return addr[1:-1], port, 6
    if addr == "*":
        return "::", port, 6
    if ":" in addr:
        return addr, port, 6
    return addr.partition("%")[0], port, 4


class AgentlessParser:
    """Turns the script's output, line by line, into snapshots of the remote host's sockets.

    ``feed(line)`` returns a Snapshot when a table is complete, else None. Lines that do not
    parse are skipped and counted (``skipped``); the process names are the remote's, untrusted.
    """

    def __init__(
        self,
        host: str,
        services: ServiceLookup | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self._fallback = services
        self._clock = clock
        self._section = ""
        self._lines: list[str] = []
        self._users: dict[int, str] = {}
        self._services: dict[tuple[int, str], str] = {}
        self._privileged = False
        self._holders: dict[tuple[int, str, str | None], Holder] = {}
        self._started: float | None = None
        self.skipped = 0

    def feed(self, line: str) -> Snapshot | None:
        """One line of the script's output (without its newline)."""
        if line.startswith(MARK):
            return self._frame(line[len(MARK) :].strip())
        if self._section == "ss":
            if self._started is None:
                self._started = time.perf_counter()
            self._lines.append(line)
        elif self._section == "users":
            name, _, uid = line.rpartition(":")
            if uid.isdigit() and name:
                self._users.setdefault(int(uid), name)
        elif self._section == "services":
            self._lines.append(line)
        return None

    def _frame(self, word: str) -> Snapshot | None:
        head, _, rest = word.partition(" ")
        if head == "agentless":
            self._privileged = rest.strip() == "0"
        elif head in ("users", "services", "ss"):
            if self._section == "services":
                self._load_services("\n".join(self._lines))
            self._lines = []
            self._section = head
        elif head == "end" and self._section == "ss":
            lines, self._lines = self._lines, []
            started, self._started = self._started, None
            return self.snapshot(lines, started)
        return None

    def _load_services(self, text: str) -> None:
        for entry in parse_services(text, "remote /etc/services").entries:
            self._services.setdefault((entry.port, entry.proto), entry.name)

    def service(self, port: int, proto: str) -> str | None:
        """The remote services file's name for the port, else the local registry's."""
        name = self._services.get((port, proto))
        if name is None and self._fallback is not None:
            name = self._fallback(port, proto)
        return name

    def snapshot(self, lines: list[str], started: float | None = None) -> Snapshot:
        """The snapshot of one ``ss`` table."""
        sockets: list[Socket] = []
        seen: dict[tuple[object, ...], int] = {}
        hidden = 0
        for line in lines:
            sock = self.parse_line(line)
            if sock is None:
                if line.strip():
                    self.skipped += 1
                continue
            if not sock.inode:
                # Without an inode (TIME_WAIT), sockets that share every field are told apart by order.
                base = sock.key
                seq = seen.get(base, 0) + 1
                seen[base] = seq
                sock = sock._replace(seq=seq)
            if sock.owner_note == "hidden":
                hidden += 1
            sockets.append(sock)
        elapsed = 0.0 if started is None else (time.perf_counter() - started) * 1000.0
        warning = None if self._privileged else "remote user is not root: other users' processes are hidden"
        return Snapshot(
            sockets=tuple(sockets),
            taken_at=self._clock(),
            scan_ms=elapsed,
            hidden_owners=hidden,
            warning=warning if hidden else None,
            collector="agentless",
        )

    def parse_line(self, line: str) -> Socket | None:
        """One ``ss -tuanpeH`` line, or None when it is not one."""
        fields = line.split()
        if len(fields) < 6 or fields[0] not in ("tcp", "udp"):
            return None
        proto, state_text = fields[0], fields[1]
        local = split_endpoint(fields[4])
        peer = split_endpoint(fields[5])
        if local is None or peer is None:
            return None
        laddr, lport, family = local
        if lport is None:
            return None
        raddr, rport, _ = peer
        if rport is None:
            remote_addr: str | None = None
        else:
            remote_addr = raddr
        if proto == "tcp":
            state = _STATES.get(state_text)
            if state is None:
                return None
        else:
            state = None
        tail = " ".join(fields[6:])
        ino = _INO_RE.search(tail)
        uid = _UID_RE.search(tail)
        # ss leaves out uid:0; a socket without an inode (TIME_WAIT) has no owner at all.
        user = self._users.get(int(uid.group(1)) if uid else 0) if ino else None
        holders: list[Holder] = []
        pids: set[int] = set()
        for match in _USER_RE.finditer(tail):
            pid = int(match.group(2))
            if pid in pids:
                continue  # the same process through another descriptor
            pids.add(pid)
            name = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
            key = (pid, name, user)
            holder = self._holders.get(key)
            if holder is None:
                holder = self._holders[key] = Holder(pid=pid, name=name, user=user)
            holders.append(holder)
        if len(self._holders) > 65536:
            self._holders.clear()
        return Socket(
            proto,
            family,
            laddr,
            lport,
            remote_addr,
            rport,
            state,
            tuple(holders),
            None if holders else owner_note(state, self._privileged),
            int(ino.group(1)) if ino else 0,
            self.service(lport, proto),
            None if rport is None else self.service(rport, proto),
            0,
            # A listener's Recv-Q and Send-Q are its accept queue and its backlog (ss(8)).
            accept_queue=int(fields[2]) if state == LISTEN and fields[2].isdigit() else None,
            backlog=int(fields[3]) if state == LISTEN and fields[3].isdigit() else None,
            host=self.host,
        )
