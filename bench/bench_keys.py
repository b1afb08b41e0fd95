"""Key latency of the live monitor in a real terminal at 10,000 sockets: from the key written to the pty
until the screen shows what the key does.

It starts 10,000 real loopback sockets held by one process (bench/loopback.py), runs ``python -m
portmon`` on a pseudo-terminal (tests/ptyterm.py: 160x45, the real collector, a 1 s refresh, with a
fresh $XDG_CONFIG_HOME and no history), and for each key writes it to the terminal and polls the
output every millisecond until the screen shows the expected change:

- End / Home: the last row (the highest local port) / the first row is on screen;
- Page down / Page up: the table's first row changed / is back to the one before;
- ``>`` / ``<``: the status line names the new sort column;
- a filter: ``/`` then ``state:listen`` typed at once, until the status line shows the filter and
  fewer sockets than in all (and again, until cleared with escape, the full table: Textual waits
  its ESCDELAY, 100 ms, for more of a key sequence before it takes a lone escape as the key);
- ``d`` on a row of the process holding the 10,000 sockets: the detail pane's "PID  N" (the list of its
  sockets, computed for the same frame, may be below the pane's fold).

Each key is measured ``--repeat`` times (median and worst are printed, with the median CPU time
portmon's threads used over the same span, from /proc: a figure less at the mercy of a busy host).
The refresh keeps running, so some presses meet a scan in progress, as a user's do. Targets:
under 50 ms for navigation and sorting, under 150 ms for a filter applied at 10k (the detail pane
is held to the navigation target).

    python bench/bench_keys.py [--sockets 10000] [--repeat 7] [--interval 1] [--root CHECKOUT]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loopback import LoopbackLoad  # noqa: E402
from ptyterm import HAVE_PTY, Screen, Terminal  # noqa: E402

NAVIGATION_MS = 50.0
FILTER_MS = 150.0
SIZE = (160, 45)
TABLE_TOP = 2
"""Screen row of the table's first data row (0: filter bar, 1: the column titles)."""
START_TIMEOUT = 60.0
KEY_TIMEOUT = 10.0

END, HOME, PAGE_DOWN, PAGE_UP, ESCAPE = "\x1b[F", "\x1b[H", "\x1b[6~", "\x1b[5~", "\x1b"


ESCAPE_WAIT_MS = float(os.environ.get("ESCDELAY", "100"))
"""How long Textual waits after a lone escape byte for the rest of a key sequence (its ESCDELAY) before
taking it as the escape key: part of the escape figure that no work in portmon can save."""
ESCAPE_NAME = f"filter cleared (escape, {ESCAPE_WAIT_MS:.0f} ms of it ESCDELAY)"


class Timeout(Exception):
    """The screen never showed what a key should have done."""


class Display:
    """The terminal's screen, fed from its output so that an escape sequence cut between two reads
    is kept whole (tests/ptyterm.Screen parses each chunk on its own)."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.grid = Screen(*SIZE)
        self.upto = 0
        self.tail = b""

    def update(self) -> Screen:
        raw = self.term.raw
        chunk = bytes(raw[self.upto :])
        self.upto += len(chunk)
        data = self.tail + chunk
        cut = _complete_upto(data)
        self.tail = data[cut:]
        if cut:
            self.grid.feed(data[:cut].decode("utf-8", "replace"))
        return self.grid


def _complete_upto(data: bytes) -> int:
    """How much of ``data`` ends on a boundary: not inside an escape sequence nor a UTF-8 character."""
    esc = data.rfind(b"\x1b", max(0, len(data) - 64))
    if esc >= 0:
        rest = data[esc + 1 :]
        if not rest:
            return esc
        if rest[:1] == b"[":
            if not any(0x40 <= b <= 0x7E for b in rest[1:]):
                return esc
        elif rest[:1] == b"]" and b"\x07" not in rest:
            return esc
    cut = len(data)
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                cut = len(data) - back
            break
        if byte < 0x80:
            break
    return cut


_DISPLAYS: dict[int, Display] = {}


def screen_of(term: Terminal) -> Screen:
    """The screen as painted so far."""
    display = _DISPLAYS.setdefault(id(term), Display(term))
    return display.update()


def wait(term: Terminal, what: Callable[[Screen], bool], timeout: float, description: str) -> float:
    """Seconds until ``what`` holds for the screen, polling every millisecond (the predicate only on new output).

    The time is when the output that satisfied it was first seen, so parsing it here does not count.
    """
    start = time.perf_counter()
    seen = -1
    while True:
        size = len(term.raw)
        if size != seen:
            arrived = time.perf_counter()
            seen = size
            if what(screen_of(term)):
                return arrived - start
        elapsed = time.perf_counter() - start
        if elapsed > timeout or term.proc.poll() is not None:
            raise Timeout(f"{description}: not seen after {elapsed:.1f} s; the screen:\n{screen_of(term).text}")
        time.sleep(0.001)


def cpu_ns(pid: int) -> int:
    """CPU time portmon's threads have run so far, in ns (/proc/PID/task/*/schedstat; 0 where unreadable)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


CPU: dict[str, list[float]] = {}
"""Per measured key: portmon's CPU ms from the key to the expected screen (all its threads)."""


def press(term: Terminal, key: str, what: Callable[[Screen], bool], description: str) -> float:
    """Milliseconds from writing ``key`` to the screen satisfying ``what`` (its CPU cost goes to CPU[description])."""
    screen_of(term)  # everything painted so far is the "before"
    before = cpu_ns(term.proc.pid)
    term.send(key)
    elapsed = wait(term, what, KEY_TIMEOUT, description) * 1000
    CPU.setdefault(description, []).append((cpu_ns(term.proc.pid) - before) / 1e6)
    return elapsed


def settle(term: Terminal, quiet: float = 0.15, timeout: float = 5.0) -> None:
    """Wait until the terminal has been quiet for ``quiet`` seconds (a frame finished), or ``timeout``."""
    deadline = time.monotonic() + timeout
    size, since = len(term.raw), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        if len(term.raw) != size:
            size, since = len(term.raw), time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    screen_of(term)


def first_row(screen: Screen) -> str:
    row: str = screen.line(TABLE_TOP)
    return row


def status_text(screen: Screen) -> str:
    """The bottom rows (status line and footer)."""
    return "\n".join(screen.line(r) for r in range(screen.rows - 4, screen.rows))


def counts(screen: Screen) -> tuple[int, int] | None:
    """(shown, total) from the status line's "shown/total sockets"."""
    match = re.search(r"(\d+)/(\d+) sockets", status_text(screen))
    return (int(match.group(1)), int(match.group(2))) if match else None


def report(name: str, samples: list[float], target: float, cpu: list[float]) -> bool:
    median, worst = statistics.median(samples), max(samples)
    ok = median < target
    cpu_text = f"  portmon CPU {statistics.median(cpu):6.1f} ms" if cpu else ""
    print(f"  {name:<48} median {median:6.1f} ms  worst {worst:6.1f} ms  target < {target:.0f} ms  "
          f"{'ok  ' if ok else 'OVER'}{cpu_text}  (n={len(samples)})")
    return ok


def measure(term: Terminal, load: LoopbackLoad, repeat: int) -> dict[str, tuple[list[float], float, str]]:
    results: dict[str, tuple[list[float], float, str]] = {}
    last = [""]

    def press_as(key: str, what: Callable[[Screen], bool], description: str) -> float:
        last[0] = description
        return press(term, key, what, description)

    def add(name: str, value: float, target: float) -> None:
        results.setdefault(name, ([], target, last[0]))[0].append(value)

    for _ in range(repeat):
        top = first_row(screen_of(term))

        def at_top(s: Screen, top: str = top) -> bool:
            return first_row(s) == top

        def not_at_top(s: Screen, top: str = top) -> bool:
            return first_row(s) != top

        add("End (last row)", press_as(END, lambda s: not_at_top(s) and _last_page(s), "End"), NAVIGATION_MS)
        settle(term)
        add("Home (first row)", press_as(HOME, at_top, "Home"), NAVIGATION_MS)
        settle(term)
        add("Page down", press_as(PAGE_DOWN, not_at_top, "Page down"), NAVIGATION_MS)
        settle(term)
        add("Page up", press_as(PAGE_UP, at_top, "Page up"), NAVIGATION_MS)
        settle(term)
        add("> (sort by next column)", press_as(">", lambda s: "sort: local service" in status_text(s), ">"),
            NAVIGATION_MS)
        settle(term)
        add("< (sort by previous column)", press_as("<", lambda s: "sort: local port" in status_text(s), "<"),
            NAVIGATION_MS)
        settle(term)
        # The filter: "/" focuses the box, then the text arrives as fast typing does.
        term.send("/")
        settle(term)

        def filtered(s: Screen) -> bool:
            c = counts(s)
            return "filter: state:listen" in status_text(s) and c is not None and c[0] < c[1]

        # Typed a key at a time, each once the box shows the one before (a fast typist); the figure is
        # the last key's, until the filtered table (10k rows filtered, sorted and painted).
        text = "state:listen"
        for i in range(1, len(text)):

            def echoed(s: Screen, typed: str = text[:i]) -> bool:
                # After the "portmon" label: the box's text (its placeholder starts with "/ to filter").
                return s.line(0).partition("portmon")[2].lstrip().startswith(typed)

            add("  (each key echoed in the filter box)", press_as(text[i - 1], echoed, "typing"), FILTER_MS)
        add("filter state:listen (last key typed)", press_as(text[-1], filtered, "filter"), FILTER_MS)
        settle(term)

        def cleared(s: Screen) -> bool:
            c = counts(s)
            return "filter:" not in status_text(s) and c is not None and c[0] == c[1]

        add(ESCAPE_NAME, press_as(ESCAPE, cleared, "filter cleared"), FILTER_MS)
        settle(term)
        term.send(HOME)
        settle(term)
    # "d" on a row of the process that holds the 10,000 sockets: the table filtered to it first.
    pid = load.pids[0]
    term.send("/")
    settle(term)
    term.send(f"pid:{pid}\r")
    wait(term, lambda s: f"filter: pid:{pid}" in status_text(s), KEY_TIMEOUT, "pid filter")
    settle(term)
    # The pane's process section names the pid ("PID  N", beside the table's right edge) as soon as
    # it opens, before the process is read; the list of held sockets may be below the pane's fold.
    shown = re.compile(rf"▏ PID +{pid}\b")

    def detail_open(s: Screen) -> bool:
        return shown.search(s.text) is not None

    for _ in range(repeat):
        add(f"d (detail of pid holding {load.sockets})", press_as("d", detail_open, "d"), NAVIGATION_MS)
        settle(term)
        term.send("d")  # close it again
        wait(term, lambda s: not detail_open(s), KEY_TIMEOUT, "detail closed")
        settle(term)
    return results


def _last_page(screen: Screen) -> bool:
    """The table shows its end: the first row on screen is among the last rows (by local port) of the host.

    The threshold is the 200th-highest local port of a scan taken at the start: the last page holds
    about 40 rows, so its first row is above it even if some sockets came and went since.
    """
    numbers = [int(f) for f in first_row(screen).split()[:6] if f.isdigit()]
    return bool(numbers) and numbers[0] >= _LAST_PAGE_PORT[0]


_LAST_PAGE_PORT = [0]


def ptyterm_root() -> str:
    """The checkout whose portmon runs on the pty."""
    import ptyterm

    return str(ptyterm.ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="portmon's refresh interval (3600: keys without scans running beside them)")
    parser.add_argument("--root", help="measure the portmon of this checkout (default: this one), for before and after")
    args = parser.parse_args(argv)
    if args.root is not None:
        import ptyterm

        if not os.path.exists(os.path.join(args.root, "portmon", "__main__.py")):
            print(f"bench_keys: no portmon package under {args.root}", file=sys.stderr)
            return 2
        ptyterm.ROOT = os.path.abspath(args.root)  # ``python -m portmon`` imports from its cwd first
    if not HAVE_PTY:
        print("bench_keys: needs a POSIX pseudo-terminal", file=sys.stderr)
        return 2
    from portmon.collect.choose import default_collector

    print(f"bench_keys: starting {args.sockets} loopback sockets...", flush=True)
    load = LoopbackLoad(args.sockets).start()
    term: Terminal | None = None
    config = tempfile.mkdtemp(prefix="bench-keys-")
    try:
        ports = sorted(s.local_port for s in default_collector().scan().sockets if s.local_port is not None)
        _LAST_PAGE_PORT[0] = ports[-200]
        env = dict(os.environ, XDG_CONFIG_HOME=config, TERM="xterm-256color", COLORTERM="truecolor")
        env.pop("NO_COLOR", None)
        env = {k: v for k, v in env.items() if not k.startswith("TEXTUAL")}
        term = Terminal(["--no-history", "--interval", str(args.interval)], env, SIZE)
        wait(term, lambda s: (c := counts(s)) is not None and c[1] >= args.sockets, START_TIMEOUT, "first frame")
        settle(term, quiet=0.5)
        total = counts(screen_of(term))
        print(f"portmon measured: {ptyterm_root()}")
        print(f"portmon at {SIZE[0]}x{SIZE[1]} on a pty, {total[1] if total else '?'} sockets "
              f"({load.sockets} held by pid {load.pids[0]}), refresh every {args.interval:g} s; ms from key to screen:")
        print(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start)")
        results = measure(term, load, args.repeat)
        verdicts = [report(name, samples, target, CPU.get(key, [])) for name, (samples, target, key) in results.items()]
        ok = all(verdicts)
        print(f"  {'all medians within their targets' if ok else f'{verdicts.count(False)} over target'} "
              f"(load average {os.getloadavg()[0]:.1f} at the end)")
        return 0 if ok else 1
    except Timeout as exc:
        print(f"bench_keys: {exc}", file=sys.stderr)
        return 1
    finally:
        if term is not None:
            term.close()
        load.stop()
        shutil.rmtree(config, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
