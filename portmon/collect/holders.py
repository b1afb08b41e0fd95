"""Name, user and start time of a socket's holder, read from /proc as psutil would give them (without psutil)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from portmon.model import Holder

HolderInfo = Callable[[int, float], Holder]
"""``holder_info(pid, start_seconds_since_boot) -> Holder``: name and user of a process."""

_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def program_name(cmdline: str) -> str:
    """The program's base name from a /proc/PID/cmdline text, split as psutil splits it ("" if empty)."""
    if not cmdline:
        return ""
    sep = "\x00" if cmdline.endswith("\x00") else " "
    if cmdline.endswith(sep):
        cmdline = cmdline[:-1]
    args = cmdline.split(sep)
    # A NUL-terminated command line whose arguments are separated by spaces (setproctitle).
    if sep == "\x00" and len(args) == 1 and " " in cmdline:
        args = cmdline.split(" ")
    return os.path.basename(args[0])


def clock_ticks() -> int:
    """Clock ticks per second, the unit of a start time in /proc/PID/stat."""
    return os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcessDetails:
    """Reads holders' details from /proc, with a uid -> user name memo and the boot time read once."""

    def __init__(self, procfs: str = "/proc") -> None:
        self._procfs = procfs
        self.clock_ticks = clock_ticks()
        self._users: dict[int, str] = {}
        """uid -> user name (cleared by ``forget_users``)."""
        self._boot_time: float | None = None

    def info(self) -> HolderInfo:
        """The reader for this procfs root: ``native_holder`` on the real /proc, else ``procfs_holder``."""
        return self.native_holder if self._procfs == "/proc" else self.procfs_holder

    def forget_users(self) -> None:
        """Drop the user name memo (a user may have been renamed or removed)."""
        self._users = {}

    def native_holder(self, pid: int, started: float) -> Holder:
        """Name, user and start time of a process from /proc, as psutil gives them, without psutil.

        (Importing psutil is ~13 ms of a one-shot ``list``.) The name is the kernel's, cut to 15
        characters, unless the command line's program name begins with it; the user is the real
        uid's name (its number when it has none); the start time is /proc/PID/stat's in seconds
        since the epoch. A process we cannot read, or that is not the one we met, gets pid only.
        """
        base = f"/proc/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read()
            close = stat.rindex(b")")
            ticks = int(stat[close + 2 :].split(None, 20)[19])
        except (OSError, ValueError, IndexError):
            return Holder(pid=pid)
        if ticks / self.clock_ticks != started:
            return Holder(pid=pid)  # the pid was reused since we listed it: say nothing
        created = started + self.boot_time()
        name = stat[stat.find(b"(") + 1 : close].decode(_FS_ENCODING, _FS_ERRORS)
        if len(name) >= 15:
            # Text mode, as psutil reads it (newlines are translated).
            try:
                with open(f"{base}/cmdline", encoding=_FS_ENCODING, errors=_FS_ERRORS) as f:
                    cmdline = f.read()
            except PermissionError:
                cmdline = ""
            except OSError:
                return Holder(pid=pid, create_time=created)  # gone since
            program = program_name(cmdline)
            if program.startswith(name):
                name = program
        return Holder(pid=pid, name=name, user=self._user(base), create_time=created)

    def _user(self, base: str) -> str | None:
        """The name of the real uid in ``base``/status (None when unreadable)."""
        try:
            with open(f"{base}/status", "rb") as f:
                status = f.read()
            at = status.index(b"\nUid:\t") + 6
            uid = int(status[at : status.index(b"\t", at)])
        except (OSError, ValueError):
            return None
        user = self._users.get(uid)
        if user is None:
            import pwd

            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)
            self._users[uid] = user
        return user

    def boot_time(self) -> float:
        """Boot time in seconds since the epoch (``btime`` in /proc/stat), read once."""
        if self._boot_time is None:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime"):
                        self._boot_time = float(line.split()[1])
                        break
                else:
                    raise OSError("no btime line in /proc/stat")
        return self._boot_time

    def procfs_holder(self, pid: int, started: float) -> Holder:
        """Name from /proc/PID/stat under an injected procfs root (tests); no user lookup."""
        try:
            with open(f"{self._procfs}/{pid}/stat", "rb") as f:
                data = f.read()
            name: str | None = data[data.index(b"(") + 1 : data.rindex(b")")].decode("utf-8", "replace")
        except (OSError, ValueError):
            name = None
        return Holder(pid=pid, name=name, create_time=started)
