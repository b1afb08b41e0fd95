"""The ssh command line: the system's OpenSSH client (or ``PORTMON_SSH_COMMAND``), batch mode, one master per host."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from portmon.remote.hosts import HostSpec

SSH_COMMAND_ENV = "PORTMON_SSH_COMMAND"
"""Replaces ``ssh`` (split as a shell would), as ``GIT_SSH_COMMAND`` does for git."""

CONNECT_TIMEOUT = 10
"""Seconds ssh may take to connect before it gives up (its ConnectTimeout)."""


class SshError(Exception):
    """The ssh command could not be set up (bad PORTMON_SSH_COMMAND, no ssh installed)."""


class RemoteResult(NamedTuple):
    """What one remote command gave back."""

    code: int
    stdout: str
    stderr: str


def base_command(env: Mapping[str, str] | None = None) -> list[str]:
    """``ssh``, or PORTMON_SSH_COMMAND split into words."""
    environ = os.environ if env is None else env
    override = environ.get(SSH_COMMAND_ENV, "").strip()
    if override:
        try:
            words = shlex.split(override)
        except ValueError as exc:
            raise SshError(f"cannot split {SSH_COMMAND_ENV}: {exc}") from None
        if not words:
            raise SshError(f"{SSH_COMMAND_ENV} is empty")
        return words
    if shutil.which("ssh") is None:
        raise SshError("no 'ssh' command found: install the OpenSSH client or set " + SSH_COMMAND_ENV)
    return ["ssh"]


class Ssh:
    """Builds the ssh command for a host: batch mode (never a password prompt), a shared master per host.

    The first connection to a host becomes the master (ControlMaster=auto) and the others (a
    kill, a why) ride on it without a new handshake. The control sockets live in a private
    directory removed by ``close()``; masters left behind end ``ControlPersist`` seconds after
    their last client.
    """

    def __init__(self, env: Mapping[str, str] | None = None, control_persist: int = 60) -> None:
        self.command = base_command(env)
        self._control_dir: str | None = None
        self.control_persist = control_persist

    def control_dir(self) -> str:
        """The private directory of the control sockets (created on first use, mode 0700)."""
        if self._control_dir is None:
            # Short: a unix socket path is limited to ~104 bytes, and %C adds 40.
            self._control_dir = tempfile.mkdtemp(prefix="pm-ssh-")
        return self._control_dir

    def argv(self, spec: HostSpec, remote: Sequence[str]) -> list[str]:
        """The full command line running ``remote`` (words for the remote shell) on ``spec``'s host."""
        options = [
            "-T",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.control_dir()}/%C",
            "-o", f"ControlPersist={self.control_persist}",
        ]  # fmt: skip
        if spec.port is not None:
            options += ["-p", str(spec.port)]
        if spec.user is not None:
            options += ["-l", spec.user]
        return [*self.command, *options, spec.host, *remote]

    def run(self, spec: HostSpec, remote: Sequence[str], timeout: float, stdin: str = "") -> RemoteResult:
        """Run one command on the host and wait for it (at most ``timeout`` seconds, then TimeoutError)."""
        # Remote words are quoted: ssh joins them with spaces for the remote shell.
        argv = self.argv(spec, [shlex.join(remote)] if remote else [])
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{spec.label}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise SshError(f"cannot run {self.command[0]}: {exc.strerror or exc}") from None
        return RemoteResult(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        """Ask every master still running to exit, and remove the control directory."""
        directory, self._control_dir = self._control_dir, None
        if directory is None:
            return
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        for name in names:
            # Only sockets a master made: a command that never connected is never run again here.
            try:
                control = os.path.join(directory, name)
                subprocess.run(
                    [*self.command, "-o", "BatchMode=yes", "-S", control, "-O", "exit", "portmon"],
                    capture_output=True,
                    timeout=5,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                pass  # the master ends by itself ControlPersist seconds after its last client
        shutil.rmtree(directory, ignore_errors=True)


def last_error_line(stderr: str) -> str | None:
    """The last non-empty line of ssh's stderr (its reason for failing), or None."""
    for line in reversed(stderr.splitlines()):
        if line.strip():
            return line.strip()
    return None
