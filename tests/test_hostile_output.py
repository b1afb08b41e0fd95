"""The one-shot commands print a hostile process's name and command line escaped: no raw control character
in ``list``, ``who``, ``watch``, ``why`` or ``kill --dry-run`` output, as text, CSV or JSON, and long
command lines cut with an ellipsis."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import (
    COMM,
    COMM_VISIBLE,
    HOSTILE_ARGS,
    LINUX,
    RAW_CHARACTERS,
    RAW_SEQUENCES,
    VISIBLE_FORMS,
    HostileChild,
    portmon_env,
)

pytestmark = pytest.mark.skipif(not LINUX, reason="names the hostile child through /proc/self/comm (Linux)")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileChild]:
    c = HostileChild(tmp_path_factory.mktemp("hostile"))
    try:
        yield c
    finally:
        c.close()


def portmon(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args],
        capture_output=True,
        cwd=ROOT,
        env=portmon_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def assert_terminal_safe(data: bytes, what: str) -> str:
    """The output is UTF-8 with no control, format, surrogate or separator character but the newline."""
    text = data.decode("utf-8")  # strict: a raw byte that is not UTF-8 fails here
    for seq in RAW_SEQUENCES:
        assert seq not in text, f"{what}: raw {seq!r}"
    for ch in RAW_CHARACTERS:
        assert ch not in text, f"{what}: raw {ch!r}"
    for i, ch in enumerate(text):
        if ch == "\n":
            continue
        category = unicodedata.category(ch)
        assert category[0] != "C" and category not in ("Zl", "Zp"), f"{what}: raw {ch!r} ({category}) at {i}"
    return text


def cut_lines(text: str, marker: str) -> list[str]:
    return [line for line in text.splitlines() if marker in line]


def test_list_as_a_table_and_csv(child: HostileChild) -> None:
    res = portmon("list", f":{child.port}")
    assert res.returncode == 0, res.stderr
    text = assert_terminal_safe(res.stdout, "list")
    (row,) = [line for line in text.splitlines() if str(child.port) in line]
    # The process column is cut to its width, with an ellipsis, after the escaping.
    assert COMM_VISIBLE[:20] in row and "…" in row
    res = portmon("list", f":{child.port}", "--csv")
    text = assert_terminal_safe(res.stdout, "list --csv")
    assert COMM_VISIBLE in text


def test_list_json_is_ascii_and_keeps_the_exact_name(child: HostileChild) -> None:
    res = portmon("list", f":{child.port}", "--json")
    assert res.returncode == 0, res.stderr
    assert_terminal_safe(res.stdout, "list --json")
    assert res.stdout.isascii()
    (record,) = json.loads(res.stdout)
    assert record["process"] == COMM and record["pid"] == child.pid


def test_who(child: HostileChild) -> None:
    res = portmon("who", str(child.port))
    assert res.returncode == 0, res.stderr
    text = assert_terminal_safe(res.stdout, "who")
    assert COMM_VISIBLE in text
    res = portmon("who", str(child.port), "--json")
    assert_terminal_safe(res.stdout, "who --json")
    assert [h["process"] for h in json.loads(res.stdout)["holders"]] == [COMM]


def _command_line(text: str, prefix: str) -> str:
    (line,) = [line for line in text.splitlines() if line.lstrip().startswith(prefix)]
    return line


def test_kill_dry_run_shows_the_command_line_escaped_and_cut(child: HostileChild) -> None:
    res = portmon("kill", str(child.port), "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    text = assert_terminal_safe(res.stdout, "kill --dry-run")
    cmd = _command_line(text, "cmd ")
    # The first hostile arguments fit before the cut; the megabyte does not.
    for form in VISIBLE_FORMS[:5]:
        assert form in cmd
    assert cmd.endswith("…") and len(cmd) < 400
    assert child.proc.poll() is None, "a dry run signalled the child"
    res = portmon("kill", str(child.port), "--dry-run", "--json")
    assert_terminal_safe(res.stdout, "kill --dry-run --json")
    (target,) = json.loads(res.stdout)["targets"]
    assert target["name"] == COMM
    assert all(arg in target["cmdline"] for arg in HOSTILE_ARGS), "JSON keeps the exact arguments"


def test_why_explains_the_busy_port_escaped_and_cut(child: HostileChild) -> None:
    res = portmon("why", str(child.port))
    text = assert_terminal_safe(res.stdout, "why")
    assert COMM_VISIBLE in text
    cmd = _command_line(text, "cmd ")
    assert VISIBLE_FORMS[0] in cmd and cmd.endswith("…") and len(cmd) < 400
    res = portmon("why", str(child.port), "--json")
    assert_terminal_safe(res.stdout, "why --json")
    doc = json.loads(res.stdout)
    assert doc["free"] is False and [h["process"] for h in doc["holders"]] == [COMM]
    assert_terminal_safe(res.stderr, "why stderr")


class Watch:
    """``portmon watch`` running, its output lines read on a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "portmon", "watch", "--interval", "0.1", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=portmon_env(),
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.errors: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.errors), daemon=True).start()

    @staticmethod
    def _pump(stream: object, into: queue.Queue[bytes | None]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.put(line)
        into.put(None)

    def wait_line(
        self, source: queue.Queue[bytes | None], needle: bytes, timeout: float = 30.0
    ) -> tuple[bytes, list[bytes]]:
        """The first line containing ``needle``, and every line read up to it."""
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = source.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"watch printed no line with {needle!r} in {timeout} s; saw {seen[-5:]!r}")
            if line is None:
                pytest.fail(f"watch ended before printing {needle!r}; saw {seen[-5:]!r}")
            seen.append(line)
            if needle in line:
                return line, seen

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            # Kill it before closing the pipes: a close would wait for the reader threads forever.
            self.proc.kill()
            self.proc.wait(5)
            raise
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_watch_reports_the_hostile_listener_escaped(tmp_path: Path, as_json: bool) -> None:
    watch = Watch(*(["--json"] if as_json else []))
    try:
        watch.wait_line(watch.errors, b"watching")
        c = HostileChild(tmp_path)
        try:
            needle = f":{c.port}".encode() if not as_json else f'"local_port": {c.port}'.encode()
            opened, seen = watch.wait_line(watch.lines, needle)
        finally:
            c.close()
        needle = f":{c.port}".encode() if not as_json else f'"local_port": {c.port}'.encode()
        closed, more = watch.wait_line(watch.lines, needle)
    finally:
        code = watch.stop()
    assert code == 0
    for line in seen + more:
        assert_terminal_safe(line, "watch")
    if as_json:
        events = [json.loads(opened), json.loads(closed)]
        assert [e["event"] for e in events] == ["open", "close"]
        assert events[0]["process"] == COMM
    else:
        text = opened.decode()
        assert " open " in text and COMM_VISIBLE in text
        assert " close" in closed.decode()


def test_hostile_service_names_from_a_registry_file(tmp_path: Path) -> None:
    # Registry files are text from elsewhere too (a package, a download): their names are escaped alike.
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        b.bind(("127.0.0.1", 0))
        b.listen()
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        services = tmp_path / "hostile.services"
        services.write_text(f"evil\x1b]0;X\x07[bold]svc {pa}/tcp\n", encoding="utf-8")
        iana = tmp_path / "hostile.csv"
        iana.write_text(
            "Service Name,Port Number,Transport Protocol,Description\n"
            f'"e\x1b[2Jvil\u202e[/]",{pb},tcp,"desc \x1b]52;c;AA\x07 [@click=app.quit]x"\n',
            encoding="utf-8",
        )
        registry = ["--registry", str(services), "--registry", str(iana)]
        for args in (["list", f":{pa}"], ["list", f":{pb}"], ["who", str(pa)], ["who", str(pb)], ["why", str(pb)]):
            res = portmon(*registry, *args)
            assert_terminal_safe(res.stdout, " ".join(args))
            assert_terminal_safe(res.stderr, " ".join(args) + " (stderr)")
        assert "evil\\x1b]0;X\\x07[bold]svc" in portmon(*registry, "who", str(pa)).stdout.decode()
        assert "e\\x1b[2Jvil\\u202e[/]" in portmon(*registry, "who", str(pb)).stdout.decode()
