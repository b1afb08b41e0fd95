"""Where the live monitor's time goes: a py-spy profile (raw collapsed stacks) summed by stage of the refresh.

Each sampled stack is charged to the innermost portmon frame it holds, mapped to a stage: reading
and decoding the socket tables, resolving owners (fd walks, process identities), building the
Socket values, the derive step (filter, sort, diff, marks), the event store, and the UI (applying
rows, rendering; the Textual and Rich code under a portmon frame counts for that frame). Stacks
with no portmon frame (Textual's compositor and event loop, asyncio, the terminal driver) form a
stage of their own. Samples are split by thread too. py-spy records only running threads unless
``--idle`` was given, so the shares are of CPU-active samples.

    py-spy record --pid PID --duration 30 --rate 200 --format raw --threads --output prof.txt
    python bench/profile_summary.py prof.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

OWNER_FUNCS = frozenset({
    "_refresh_processes", "_identity", "_drop", "_hold", "_unhold", "_open_fd_dir", "_walk_full", "_set_fd",
    "_read_fds", "_walk_diff", "_probe", "_reread", "_probe_parents", "_search", "_holders_of",
    "_holders_of_pids", "_holder", "_native_holder", "_user", "_boot", "_procfs_holder", "_present",
    "start_cold_walk", "_fd_counts_work",
})
BUILD_FUNCS = frozenset({"_build", "_with_holders", "_number_duplicates", "_service", "_service_memo"})

IDLE_LEAVES = frozenset({"select", "wait", "sleep", "poll", "_wait_for_tstate_lock", "acquire", "read", "epoll"})
"""Leaf functions that wait (py-spy's idle detection misses some waits that release the GIL)."""

STAGES = (
    "tables: read and decode",
    "owners: fd walks and process identity",
    "sockets: build values (procfs)",
    "scan: other procfs code",
    "derive: diff for the change marks",
    "derive: filter, sort, column widths",
    "derive again on the UI thread (mark tick, view change)",
    "events: event stream diff and store",
    "UI: table apply and render",
    "UI: status, detail, other portmon.ui",
    "Textual/Rich/asyncio (compositor, driver), no portmon frame below the app",
    "other portmon",
)

CONTEXTS = (
    (("EventStream.feed", "EventLog."), 7),
    (("MonitorScreen._tick", "MonitorScreen._rederive", "MonitorScreen._set_spec"), 6),
    (("advance_marks",), 4),
    (("derive_view",), 5),
)
"""Stages known from a caller anywhere in the stack, checked before the innermost frame."""


def stage_of(frames: list[tuple[str, str]]) -> str:
    """The stage of one stack (frames root first, as (function, file))."""
    names = [f for f, _ in frames]
    for markers, stage in CONTEXTS:
        if any(name.startswith(markers) or any(m in name for m in markers) for name in names):
            return STAGES[stage]
    for qualified, path in reversed(frames):
        if "portmon/" not in path:
            continue
        func = qualified.split(".<locals>")[0].rsplit(".", 1)[-1]
        tail = path[path.rindex("portmon/") :]
        if tail.startswith(("portmon/collect/tables.py", "portmon/collect/tablecache.py")):
            return STAGES[0]
        if tail.startswith(("portmon/collect/fdwalk.py", "portmon/collect/owners.py", "portmon/collect/holders.py")):
            return STAGES[1]
        if tail.startswith("portmon/collect/sockets.py"):
            return STAGES[1] if func in ("holders_of", "_holders_of_pids", "_holder") else STAGES[2]
        if tail.startswith("portmon/collect/procfs.py"):
            if func in OWNER_FUNCS:
                return STAGES[1]
            if func in BUILD_FUNCS:
                return STAGES[2]
            if func in ("_read_table", "_spans"):
                return STAGES[0]
            return STAGES[3]
        if tail.startswith(("portmon/query/filters.py", "portmon/query/sorting.py", "portmon/query/diff.py",
                            "portmon/ui/view.py")):
            return STAGES[5]
        if tail.startswith(("portmon/query/events.py", "portmon/ui/eventlog.py")):
            return STAGES[7]
        if tail.startswith(("portmon/ui/sockettable.py", "portmon/ui/monitor.py")):
            return STAGES[8]
        if tail.startswith("portmon/ui/app.py"):
            return STAGES[10]
        if tail.startswith("portmon/ui/"):
            return STAGES[9]
        if tail.startswith(("portmon/model.py", "portmon/registry.py", "portmon/textsafe.py", "portmon/collect/")):
            continue  # helpers: charge the caller's stage
        return STAGES[11]
    return STAGES[10] if frames else STAGES[11]


def _is_portmon(path: str) -> bool:
    return "portmon/" in path


def _short(path: str) -> str:
    return path[path.rindex("portmon/") :] if "portmon/" in path else path.rsplit("/", 2)[-1]


def parse(path: Path) -> list[tuple[list[str], int]]:
    """(frames root first, count) per line of a py-spy raw (collapsed) file."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((stack.split(";"), int(count)))
    return out


def summarise(path: Path, top: int) -> str:
    """The summary as text."""
    stacks = parse(path)
    total = sum(c for _, c in stacks)
    if not total:
        return f"{path}: no samples"
    stages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    by_thread_stage: Counter[tuple[str, str]] = Counter()
    waiting = 0
    for frames, count in stacks:
        parsed: list[tuple[str, str]] = []
        thread = "?"
        for f in frames:
            m = _FRAME.match(f)
            if m is None or not m.group("file"):
                if f.startswith(("thread", "process")) or "0x" in f:
                    thread = f if f.startswith("thread") else thread
                    if f.startswith("process"):
                        continue
                    continue
                parsed.append((f, ""))
                continue
            parsed.append((m.group("func"), m.group("file")))
        if parsed and parsed[-1][1] and not _is_portmon(parsed[-1][1]) and (
            parsed[-1][0].rsplit(".", 1)[-1] in IDLE_LEAVES
        ):
            waiting += count
            continue
        stage = stage_of(parsed)
        stages[stage] += count
        innermost = next((f"{fn} ({_short(fl)})" for fn, fl in reversed(parsed) if _is_portmon(fl)), None)
        if innermost:
            inner[f"{thread.split(':')[-1].strip()}: {innermost}"] += count
        threads[thread] += count
        by_thread_stage[(thread, stage)] += count
        if parsed:
            func, file = parsed[-1]
            selfs[f"{func} ({_short(file)})"] += count
    total -= waiting
    if not total:
        return f"{path}: only waiting samples"
    lines = [f"{path}: {total} active samples ({waiting} more in waits such as select() left out)"]
    lines.append("\nby stage (a known caller in the stack, else the innermost portmon frame):")
    for stage in STAGES:
        if stages[stage]:
            lines.append(f"  {100.0 * stages[stage] / total:5.1f} %  {stage}")
    lines.append("\nby thread:")
    for thread, n in threads.most_common():
        lines.append(f"  {100.0 * n / total:5.1f} %  {thread}")
        for stage in STAGES:
            k = by_thread_stage[(thread, stage)]
            if k and 100.0 * k / total >= 0.5:
                lines.append(f"        {100.0 * k / total:5.1f} %  {stage}")
    lines.append(f"\ntop {top} innermost portmon functions (their time with what they call outside portmon):")
    for name, n in inner.most_common(top):
        lines.append(f"  {100.0 * n / total:5.1f} %  {name}")
    lines.append(f"\ntop {top} leaf functions (self time):")
    for name, n in selfs.most_common(top):
        lines.append(f"  {100.0 * n / total:5.1f} %  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy --format raw output files")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    for path in args.profiles:
        try:
            print(summarise(path, args.top))
        except OSError as exc:
            print(f"{path}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
