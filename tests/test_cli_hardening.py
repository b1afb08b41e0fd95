"""Issues 13 and 14 on the command line: unusable streams, bounded numbers, escaped echoes, port arguments,
``who``'s summary and command lines, ``list --sort``. In-process over scripted scans where the host does not
matter; real processes where the streams themselves are the point."""

from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from portmon.cli import main as cli
from portmon.cli import who as who_command
from portmon.collect.fake import ScriptedCollector
from portmon.model import LISTEN, TIME_WAIT, Holder, Snapshot, Socket
from portmon.registry import Registry, ServiceEntry

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_268_800.0

NGINX = Holder(101, "nginx", "www", 1000.0)
WORKER = Holder(102, "nginx", "www", 1001.0)
PY = Holder(4121, "python3", "alice", 1002.0)

REGISTRY = Registry(
    [
        ServiceEntry("http-alt", 8080, "tcp", ("webcache",)),
        ServiceEntry("http-alt", 8008, "tcp"),
        ServiceEntry("ssh", 22, "tcp"),
        ServiceEntry("ssh", 22, "udp"),
        ServiceEntry("mdns", 5353, "udp"),
    ]
)


def listener(port: int, *holders: Holder, proto: str = "tcp", inode: int = 0) -> Socket:
    return Socket(
        proto, 4, "0.0.0.0", port, state=LISTEN if proto == "tcp" else None, holders=holders, inode=inode or port
    )


def remnant(port: int, peer: int) -> Socket:
    return Socket("tcp", 4, "127.0.0.1", port, "127.0.0.1", peer, TIME_WAIT, (), "kernel")


class Fake:
    """Scripted scans and a fixed registry for in-process runs of ``main``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *sockets: Socket) -> None:
        collector = ScriptedCollector([Snapshot(sockets=tuple(sockets), taken_at=T0, collector="fake")])
        monkeypatch.setattr(cli.Context, "collector", lambda self: collector)
        monkeypatch.setattr(cli.Context, "registry", lambda self: REGISTRY)
        self.commands: dict[int, Sequence[str]] = {}
        monkeypatch.setattr(who_command, "_read_command_line", lambda h: self.commands.get(h.pid))

    def run(self, *argv: str, stdout: Any = None) -> tuple[int, str, str]:
        out = stdout if stdout is not None else io.StringIO()
        err = io.StringIO()
        code = cli.main(list(argv), stdout=out, stderr=err)
        return code, out.getvalue() if isinstance(out, io.StringIO) else "", err.getvalue()


# -- port arguments (issue 14) ---------------------------------------------------------------------


def test_who_accepts_colon_ports_names_and_several_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch, listener(8080, NGINX, WORKER), listener(22, PY), listener(443, PY))
    code, out, _ = fake.run("who", ":8080", "--json")
    assert code == 0 and json.loads(out)["port"] == 8080
    code, out, _ = fake.run("who", "http-alt", "--json")
    docs = json.loads(out)
    assert code == 0 and [(d["port"], d["proto"]) for d in docs] == [(8008, "tcp"), (8080, "tcp")]
    assert {h["pid"] for h in docs[1]["holders"]} == {101, 102} and docs[0]["holders"] == []
    code, out, _ = fake.run("who", "ssh", "--json")
    assert code == 0 and (json.loads(out)["port"], json.loads(out)["proto"]) == (22, None)
    code, out, _ = fake.run("who", "80", "443")
    assert code == 0  # one of the two is held
    assert out.startswith("80 ") and "\n\n443 " in out and "nobody holds this port" in out
    code, _, _ = fake.run("who", "80", "81")
    assert code == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["who", "nosuchservice"], "invalid port 'nosuchservice': not a number, and no service of that name"),
        (["who", "ssh/icmp"], "the protocol must be tcp or udp"),
        (["who", "9" * 5000], "(5000 characters)"),
        (["who", "0"], "port 0 means 'any free port'"),
        (["why", "0"], "port 0 means 'any free port'"),
        (["kill", "0"], "port 0 means 'any free port'"),
        (["who", "80\x1b[2J\n"], "'80\\x1b[2J\\n'"),
        (["who", "80", "--bogus\x07"], "unrecognized arguments: '--bogus\\x07' (see 'portmon who --help')"),
    ],
)
def test_bad_port_arguments_are_one_escaped_line_pointing_at_the_commands_help(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], needle: str
) -> None:
    fake = Fake(monkeypatch)
    code, out, err = fake.run(*argv)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert needle in line and f"(see 'portmon {argv[0]} --help')" in line
    assert line.isprintable() and len(line) < 600


# -- who: one line for kernel-owned remnants, each holder's command line (issue 14) ----------------


def test_who_sums_up_kernel_owned_remnants_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    remnants = [remnant(8080, 40000 + i) for i in range(305)]
    fake = Fake(monkeypatch, listener(8080, NGINX), *remnants)
    code, out, _ = fake.run("who", "8080")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4  # title, header, the listener, the summary
    assert lines[-1] == (
        "and 305 closed connections (TIME_WAIT), kernel-owned: no process holds them; they clear by themselves"
    )
    fake = Fake(monkeypatch, *remnants[:2])
    code, out, _ = fake.run("who", "8080")
    assert code == 1
    assert out.splitlines()[1:] == [
        "no process holds this port: only 2 closed connections (TIME_WAIT), kernel-owned: no process holds them; "
        "they clear by themselves"
    ]


def test_who_shows_each_holders_command_line_cut_to_the_width(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch, listener(8080, NGINX, WORKER))
    fake.commands = {101: ["nginx:", "master", "process", "/usr/sbin/nginx", "-g", "daemon off;\x1b[31m"]}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

        def fileno(self) -> int:
            raise OSError("no descriptor")

    code, out, _ = fake.run("who", "8080")
    assert code == 0
    assert "nginx: master process /usr/sbin/nginx -g daemon off;\\x1b[31m" in out and "\x1b" not in out
    assert out.splitlines()[1].split()[-1] == "COMMAND"
    # On a terminal the command line takes what the other columns leave of its width.
    monkeypatch.setattr(who_command.os, "get_terminal_size", lambda fd: os.terminal_size((90, 24)))
    monkeypatch.setattr(Terminal, "fileno", lambda self: 1)
    terminal = Terminal()
    assert fake.run("who", "8080", stdout=terminal)[0] == 0
    rows = terminal.getvalue().splitlines()[1:]
    assert max(len(r) for r in rows) <= 90 and rows[1].endswith("…")


# -- list --sort (issue 14) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "pids"),
    [
        (["--sort", "pid"], [101, 102, 4121]),
        (["--sort", "PID"], [101, 102, 4121]),
        (["--sort", "Pid", "--reverse"], [4121, 102, 101]),
        (["--sort", "-pid"], [4121, 102, 101]),
        (["--sort=-pid"], [4121, 102, 101]),
        (["--sort", "-pid", "-r"], [101, 102, 4121]),
        (["--sort", "PORT"], [4121, 102, 101]),
        (["--sort", "local address"], [101, 102, 4121]),
    ],
)
def test_list_sort_takes_any_case_header_titles_and_descending(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], pids: list[int]
) -> None:
    socks = [
        Socket("tcp", 4, "10.0.0.1", 9000, state=LISTEN, holders=(NGINX,), inode=1),
        Socket("tcp", 4, "10.0.0.2", 8000, state=LISTEN, holders=(WORKER,), inode=2),
        Socket("tcp", 4, "10.0.0.3", 7000, state=LISTEN, holders=(PY,), inode=3),
    ]
    code, out, err = Fake(monkeypatch, *socks).run("list", "--json", *argv)
    assert code == 0, err
    assert [r["pid"] for r in json.loads(out)] == pids


def test_an_unknown_sort_column_names_what_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = Fake(monkeypatch).run("list", "--sort", "bogus")
    assert code == 2
    assert "unknown sort column 'bogus'" in err and "RPORT" in err and "(see 'portmon list --help')" in err


# -- unusable streams (issue 13.5) -----------------------------------------------------------------


class BrokenPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_keeps_the_commands_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch, listener(8080, NGINX))
    assert fake.run("who", "9090", stdout=BrokenPipe())[0] == 1  # nobody holds it, whoever reads
    assert fake.run("who", "8080", stdout=BrokenPipe())[0] == 0
    code, _, err = fake.run("list", stdout=BrokenPipe())
    assert code == 0 and err == ""


def test_output_that_cannot_be_written_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    class Full(io.StringIO):
        def flush(self) -> None:
            raise OSError(28, "No space left on device")

    code, _, err = Fake(monkeypatch, listener(8080, NGINX)).run("who", "8080", stdout=Full())
    assert code == 2
    assert err == "portmon: cannot write the output: No space left on device\n"


def _portmon(*args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "portmon", *args], capture_output=kw.pop("capture", True),
                          cwd=ROOT, env=env, timeout=120, **kw)  # fmt: skip


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["list"], ["list", "--json"], ["who", "1"]])
def test_stdout_on_a_full_disk(argv: list[str]) -> None:
    with open("/dev/full", "w") as full:
        res = _portmon(*argv, stdout=full, stderr=subprocess.PIPE, capture=False, stdin=subprocess.DEVNULL)
    err = res.stderr.decode()
    assert res.returncode == 2
    assert err.splitlines()[-1] == "portmon: cannot write the output: No space left on device"
    assert "Traceback" not in err and "Exception ignored" not in err


def _shell(redirect: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m portmon ARGV`` started by sh with ``redirect`` applied (``>&-`` closes stdout)."""
    script = f'exec "$0" -m portmon "$@" {redirect}'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["sh", "-c", script, sys.executable, *argv], capture_output=True, cwd=ROOT, env=env,
                          timeout=120)  # fmt: skip


@pytest.mark.parametrize("argv", [["list"], ["who", "1"], []])
def test_stdout_closed(argv: list[str]) -> None:
    res = _shell(">&- </dev/null", *argv)
    assert res.returncode == 2
    assert res.stderr.decode() == "portmon: standard output is closed: there is nowhere to write the answer\n"


def test_stdin_closed_without_a_command_prints_the_list() -> None:
    res = _shell("<&-")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == b"PROTO" and res.stderr == b""


NAMED_CHILD = textwrap.dedent(
    """
    import socket, sys
    with open("/proc/self/comm", "wb") as f:
        f.write("café…".encode())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print(s.getsockname()[1], flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def cafe() -> Iterator[int]:
    """A listener whose process name an ASCII terminal cannot show."""
    proc = subprocess.Popen([sys.executable, "-c", NAMED_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())
    yield port
    proc.stdin.close()
    proc.wait(30)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names the child through /proc/self/comm")
@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_encoding_that_cannot_carry_a_name(cafe: int, encoding: str) -> None:
    for argv in (["who", str(cafe)], ["list", f":{cafe}"]):
        res = _portmon(*argv, env={"PYTHONIOENCODING": encoding}, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stderr
        assert b"Traceback" not in res.stderr
        out = res.stdout.decode(encoding)
        assert "caf\\xe9" in out or "café" in out
        assert "\\u2026" in out  # the name's ellipsis, as an escape: the encoding has no such character


# -- never a blind TUI (issue 13.7) ----------------------------------------------------------------


def test_no_live_monitor_when_stderr_is_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    Fake(monkeypatch, listener(8080, NGINX))
    monkeypatch.setattr(sys, "stdin", Terminal())

    def blind(ctx: object) -> int:
        raise AssertionError("the live monitor started with nothing to draw on")

    monkeypatch.setattr(cli, "run_live", blind)
    out, err = Terminal(), io.StringIO()  # stdin and stdout are terminals; stderr (Textual's) is a file
    assert cli.main([], stdout=out, stderr=err) == 0
    assert out.getvalue().split()[0] == "PROTO" and "8080" in out.getvalue()
    started: list[object] = []
    monkeypatch.setattr(cli, "run_live", lambda ctx: started.append(ctx) or 0)
    assert cli.main([], stdout=Terminal(), stderr=Terminal()) == 0
    assert len(started) == 1


# -- the registry's echoes are escaped too (issue 13.4) -------------------------------------------


def test_registry_warnings_are_escaped_single_lines(tmp_path: Path) -> None:
    res = _portmon("--registry", str(tmp_path / "no\x1b]0;x\x07pe\nfile"), "who", "1", stdin=subprocess.DEVNULL)
    warnings = [line for line in res.stderr.decode().splitlines() if "warning" in line]
    assert len(warnings) == 1 and "\\x1b]0;x\\x07pe\\nfile" in warnings[0] and "\x1b" not in warnings[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_registry_does_not_block_the_command(tmp_path: Path) -> None:
    fifo = tmp_path / "services"
    os.mkfifo(fifo)
    res = _portmon("--registry", str(fifo), "who", "1", stdin=subprocess.DEVNULL)
    assert res.returncode in (0, 1)
    assert b"is not a regular file (a named pipe); skipped" in res.stderr


def test_a_signal_or_timeout_value_is_echoed_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(monkeypatch)
    code, _, err = fake.run("kill", "8080", "--timeout", "1e999")
    assert code == 2 and "greater than 0 up to 86400" in err and "(see 'portmon kill --help')" in err
    code, _, err = fake.run("kill", "8080", "--signal", "TERM\x1b[2J")
    assert code == 2 and "\x1b" not in err and len(err.splitlines()) == 1


def test_a_port_this_test_holds_is_found_by_name_through_a_registry_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        services = tmp_path / "services"
        services.write_text(f"portmon-test {port}/tcp\n")
        res = _portmon("--registry", str(services), "who", "portmon-test", "--json", stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["port"] == port and doc["service"] == "portmon-test"
    assert {h["pid"] for h in doc["holders"]} == {os.getpid()}


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_portmon_with_stderr_redirected_prints_the_list_on_a_real_terminal(tmp_path: Path) -> None:
    # stdin and stdout on a terminal, stderr (where Textual would draw) in a file: no invisible monitor.
    primary, secondary = os.openpty()
    log = tmp_path / "stderr"
    try:
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "portmon"],
                stdin=secondary,
                stdout=secondary,
                stderr=err,
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm-256color"),
            )
        os.close(secondary)
        secondary = -1
        chunks: list[bytes] = []
        deadline = time.monotonic() + 60  # a safety net for the failure case, never a measured time
        code = None
        while code is None and time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunks.append(os.read(primary, 65536))
                except OSError:  # EIO: the child closed the terminal
                    pass
            code = proc.poll()
        if code is None:
            proc.kill()
            proc.wait()
            pytest.fail("portmon kept running with its screen in a file")
        while select.select([primary], [], [], 0)[0]:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    shown = b"".join(chunks).decode(errors="replace")
    assert code == 0, log.read_text()
    assert shown.split()[0] == "PROTO" and "\x1b[?1049h" not in shown  # the list, no alternate screen
    assert "Traceback" not in log.read_text()
