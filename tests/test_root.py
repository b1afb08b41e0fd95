"""portmon as root: Textual's environment switches are dropped, the palette writes no files, and a kill
of another user's process names that user before anything is signalled."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import portmon_env
from ptyterm import HAVE_PTY, Terminal
from textual.app import App, ComposeResult
from textual.widgets import Static

from portmon.collect.choose import default_collector
from portmon.collect.fake import ScriptedCollector, demo_process, demo_snapshot
from portmon.model import Socket
from portmon.ui.app import PortmonApp
from portmon.ui.monitor import MonitorScreen
from portmon.ui.view import COLUMN_TITLES

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: what is checked is what portmon does as root")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the real collector's kill checks (Linux)")

HOSTILE_ENV = {
    "TEXTUAL_PRESS": "space,l",
    "TEXTUAL_DEBUG": "1",
    "TEXTUAL": "devtools,debug",
}
"""Switches that would drive the app or change what it does; file-writing ones are added per test."""


# -- environment ----------------------------------------------------------------------------------------

_ORDER_PROBE = textwrap.dedent(
    """
    import io, os, sys
    os.geteuid = lambda: 0  # what matters is what portmon does when it believes it is root
    os.environ.update({env!r})
    seen = []

    class Spy:
        # Records the environment at the moment Textual is first imported, then stops the run there.
        def find_spec(self, name, path=None, target=None):
            if name == "textual" and not seen:
                seen.append(sorted(k for k in os.environ if k.startswith("TEXTUAL")))
                raise ImportError("stopped by the test")
            return None

    sys.meta_path.insert(0, Spy())

    class Tty(io.StringIO):
        def isatty(self):
            return True

    sys.stdin = Tty()
    from portmon.cli.main import main
    try:
        main({argv!r}, stdout=Tty(), stderr=Tty())  # the live monitor needs all three on a terminal
    except ImportError as exc:
        assert "stopped by the test" in str(exc), exc
    print(seen[0] if seen else "textual never imported")
    print(sorted(k for k in os.environ if k.startswith("KEEP_")))
    """
)


@pytest.mark.parametrize("argv", [[], ["--interval", "2"]], ids=["bare", "with-options"])
def test_textual_switches_are_gone_before_textual_is_imported(argv: list[str]) -> None:
    env = {**HOSTILE_ENV, "TEXTUAL_LOG": "/nonexistent/log", "TEXTUAL_DRIVER": "nope:Nope", "KEEP_ME": "1"}
    probe = _ORDER_PROBE.format(env=env, argv=argv)
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=portmon_env(), capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    textual_env, kept = res.stdout.splitlines()
    assert textual_env == "[]", f"Textual was imported with {textual_env} still set"
    assert kept == "['KEEP_ME']", "only Textual's switches are dropped"


@pytest.mark.parametrize(
    "argv", [["kill", "1", "--dry-run"], ["why", "1"], ["who", "1"], ["list", ":1"]], ids=lambda a: a[0]
)
def test_the_one_shot_commands_never_import_textual(argv: list[str]) -> None:
    # "sudo portmon kill 8080" is the usual root path: it must not load Textual at all, scrubbed or not.
    probe = _ORDER_PROBE.format(env=HOSTILE_ENV, argv=argv)
    res = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=portmon_env(), capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "textual never imported"


def test_a_user_keeps_their_own_textual_switches() -> None:
    # Not root: the environment is the user's own, and e.g. TEXTUAL_THEME is theirs to set.
    code = (
        "import os\n"
        "os.geteuid = lambda: 1000\n"
        "os.environ['TEXTUAL_THEME'] = 'nord'\n"
        "from portmon.cli.main import _scrub_environment_for_root\n"
        "_scrub_environment_for_root()\n"
        "print(os.environ.get('TEXTUAL_THEME'))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=portmon_env(), capture_output=True, text=True, timeout=60
    )
    assert res.stdout.strip() == "nord", res.stderr


@needs_root
@pytest.mark.skipif(not HAVE_PTY, reason="needs a POSIX pseudo-terminal")
def test_sudo_e_portmon_cannot_be_driven_by_the_callers_environment(tmp_path: Path) -> None:
    marker = tmp_path / "driver-imported"
    (tmp_path / "evil_driver.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom textual.drivers.linux_driver import LinuxDriver as Driver\n"
    )
    env = portmon_env(
        {
            **HOSTILE_ENV,
            "TERM": "xterm-256color",
            "TEXTUAL_DRIVER": "evil_driver:Driver",
            "TEXTUAL_LOG": str(tmp_path / "textual.log"),
            "TEXTUAL_SCREENSHOT": "0",
            "TEXTUAL_SCREENSHOT_LOCATION": str(tmp_path),
            "TEXTUAL_SCREENSHOT_FILENAME": "shot.svg",
        }
    )
    env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{tmp_path}"
    term = Terminal(["--interval", "0.5"], env)
    try:
        term.wait_for(lambda s: "sockets" in s.text and "Quit" in s.text, "the first frame")
        # Our own key, after any the environment could have pressed at start: its effect shows.
        term.send("i")
        screen = term.wait_for(lambda s: "sort: local port ▼" in s.text, "the inverted sort")
        assert "PAUSED" not in screen.text and "listening only" not in screen.text, "TEXTUAL_PRESS pressed keys"
        term.send("q")
        assert term.proc.wait(30) == 0
    finally:
        term.close()
    assert not marker.exists(), "TEXTUAL_DRIVER made portmon import a module of the caller's choosing"
    assert not (tmp_path / "textual.log").exists(), "TEXTUAL_LOG made root write a file"
    assert not list(tmp_path.glob("*.svg")), "TEXTUAL_SCREENSHOT made root write a file"


# -- the command palette ---------------------------------------------------------------------------------

TEXTUAL_COMMANDS_ALLOWED = {"Theme", "Quit", "Keys", "Maximize", "Minimize"}
"""Textual's own palette commands that portmon may pass on: none writes a file. A Textual upgrade that
adds one fails this test until it is reviewed."""


def _run(app: PortmonApp, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            await body(pilot, app.monitor)

    asyncio.run(main())


def test_the_palette_offers_only_portmons_actions_and_safe_textual_commands() -> None:
    app = PortmonApp(ScriptedCollector([demo_snapshot()]), poll=False, process_reader=demo_process)

    async def body(pilot, screen: MonitorScreen) -> None:  # type: ignore[no-untyped-def]
        commands = list(app.get_system_commands(screen))
        own = {b.tooltip or b.description for b in MonitorScreen.BINDINGS if not b.action.startswith("app.")}  # type: ignore[union-attr]
        own |= {f"Sort by {title}" for title in COLUMN_TITLES.values()}  # the palette's sort commands
        textual = {c.title for c in commands} - own
        assert textual <= TEXTUAL_COMMANDS_ALLOWED, f"unexpected palette commands: {textual - TEXTUAL_COMMANDS_ALLOWED}"
        for command in commands:
            words = f"{command.title} {command.help}".lower()
            for word in ("screenshot", "save", "export", "write", "file"):
                assert word not in words, f"{command.title!r} mentions {word!r}"

    _run(app, body)


def test_asking_the_palette_for_a_screenshot_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Textual saves screenshots to the downloads folder (or the working directory): point both here.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("textual.app.user_downloads_path", lambda: tmp_path)
    app = PortmonApp(ScriptedCollector([demo_snapshot()]), poll=False, process_reader=demo_process)

    async def body(pilot, screen: MonitorScreen) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.5)
        while app.screen is not screen:  # whatever the top hit opened, close it
            await pilot.press("escape")
            await pilot.pause(0.1)
        assert app.is_running

    _run(app, body)
    assert list(tmp_path.iterdir()) == [], "the palette wrote a file"


# -- killing another user's process ------------------------------------------------------------------------

_LISTENER = (
    "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


class OtherUsersListener:
    """A loopback listener run as ``nobody`` (this test is root, so it may start and stop it)."""

    def __init__(self) -> None:
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        self.proc = subprocess.Popen(
            [python, "-c", _LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, user="nobody"
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"the listener did not start: {line!r}")
        self.port = int(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def nobodys_listener() -> Iterator[OtherUsersListener]:
    try:
        listener = OtherUsersListener()
    except (OSError, RuntimeError, KeyError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot start a process as nobody: {exc}")
    try:
        yield listener
    finally:
        listener.close()


def _socket_on(port: int) -> tuple[Socket, object]:
    snapshot = default_collector().scan()
    sock = next((s for s in snapshot.sockets if s.local_port == port and s.holders), None)
    assert sock is not None, f"port {port} not found with its holder"
    return sock, snapshot


@needs_root
@linux_only
def test_the_kill_dialog_names_the_other_user_before_anything_is_signalled(
    nobodys_listener: OtherUsersListener,
) -> None:
    from portmon.ui.killmodal import KillModal

    sock, snapshot = _socket_on(nobodys_listener.port)
    assert sock.user == "nobody"
    modal = KillModal(sock, snapshot)  # type: ignore[arg-type]

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("behind the dialog")

        def on_mount(self) -> None:
            self.push_screen(modal)

    async def main() -> str | None:
        async with Host().run_test(size=(140, 45)) as pilot:
            await pilot.pause()
            status = modal.status_line
            await pilot.press("escape")
            return status

    status = asyncio.run(main())
    assert status is not None
    pid = nobodys_listener.proc.pid
    assert f"as root, this signals processes of other users: nobody (pid {pid})" in status
    assert nobodys_listener.proc.poll() is None, "cancelling signalled the process"


@needs_root
@linux_only
def test_the_kill_command_names_the_other_user(nobodys_listener: OtherUsersListener) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "portmon", "kill", str(nobodys_listener.port), "--dry-run"],
        cwd=ROOT,
        env=portmon_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    pid = nobodys_listener.proc.pid
    assert f"warning: as root, this signals processes of other users: nobody (pid {pid})" in res.stdout
    assert nobodys_listener.proc.poll() is None
