"""A throwaway OpenSSH server on 127.0.0.1 for the remote-host tests: its own host key, user key and client config."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
SSH_KEYGEN = shutil.which("ssh-keygen")
SSH = shutil.which("ssh")
MISSING = (
    None
    if SSHD and SSH_KEYGEN and SSH
    else "needs OpenSSH (sshd, ssh, ssh-keygen): apt-get install openssh-server openssh-client"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> str:
    assert SSH_KEYGEN is not None
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, capture_output=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(f"{path}.pub").read_text().strip()


class Sshd:
    """sshd -D on 127.0.0.1 with keys made for it; ``ssh_command`` is a PORTMON_SSH_COMMAND that reaches it.

    ``path`` is the PATH remote commands get (SetEnv): with or without a portmon on it picks the
    remote mode. Stop it with ``stop()``; it ends its own children when it exits.
    """

    def __init__(self, directory: Path, path: str) -> None:
        assert SSHD is not None and SSH is not None
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        host_key = directory / "host_key"
        user_key = directory / "user_key"
        host_pub = _keygen(host_key)
        (directory / "authorized_keys").write_text(_keygen(user_key) + "\n")
        self.user = getpass.getuser()
        if os.geteuid() == 0:
            # Root sshd needs its privilege-separation directory (the ssh service makes it at boot).
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None
        for _ in range(20):  # a port picked free may be taken before sshd binds it: try another
            self.port = _free_port()
            config = directory / "sshd_config"
            config.write_text(
                f"ListenAddress 127.0.0.1:{self.port}\n"
                f"HostKey {host_key}\n"
                "PidFile none\n"
                f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
                "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
                f"SetEnv PATH={path}\n"
                "LogLevel INFO\n"
            )
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
            assert proc.stderr is not None
            deadline = time.monotonic() + 20
            ok = False
            while time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
                if "Server listening" in line:
                    ok = True
                    break
            if ok:
                self.proc = proc
                break
            proc.kill()
            proc.wait()
        if self.proc is None:
            raise RuntimeError("sshd did not start")
        # Drain sshd's log so it never blocks on a full pipe.
        import threading

        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        (directory / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        client = directory / "ssh_config"
        client.write_text(
            "Host *\n"
            f"  IdentityFile {user_key}\n"
            "  IdentitiesOnly yes\n"
            "  IdentityAgent none\n"
            f"  UserKnownHostsFile {directory / 'known_hosts'}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n"
        )
        self.ssh_command = f"{SSH} -F {client}"

    @property
    def host(self) -> str:
        """The --host spec reaching this server."""
        return f"{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop sshd and the sessions it forked (a client's master connection may outlive the test)."""
        if self.proc is not None and self.proc.poll() is None:
            import psutil

            try:
                sessions = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                sessions = []
            for child in sessions:  # this sshd's own children, by pid
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
