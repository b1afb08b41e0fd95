"""``portmon baseline save|check FILE``: the listening surface as JSON, and whether it is the same now."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from portmon.cli.context import CommandFailed, Context, UsageError

# What run() needs is imported there: this module is imported to build the parser for every command.


def add_parser(subs: Any) -> tuple[str, Any]:
    """Register ``baseline`` and return its runner."""
    p = subs.add_parser(
        "baseline",
        help="save the listening sockets as a baseline, or check that they are still the same",
        description="'save FILE' writes what listens now (protocol, family, address, port, process, user, exe, "
        "manager; no pids or times, so it is stable across restarts) as JSON. 'check FILE' compares now "
        "against it: exit 0 when the same, 1 with the added, removed and changed listeners, 2 when the file is "
        "missing or broken. Made for CI and for 'did this deploy open a port?'.",
    )
    p.add_argument("action", choices=("save", "check"), help="save a baseline, or check against one")
    p.add_argument("file", metavar="FILE", help="the baseline file (JSON)")
    p.add_argument("terms", nargs="*", metavar="FILTER",
                   help="save: only matching listeners (kept in the file; check uses the file's filter)")
    p.add_argument("--json", action="store_true", help="check: one JSON object with added, removed and changed")
    return "baseline", run


def run(ctx: Context) -> int:
    """Save (exit 0) or check (exit 0 same, 1 different, 2 missing or broken file)."""
    from portmon.history import baseline
    from portmon.query.filters import FilterError, parse_filter

    args: argparse.Namespace = ctx.args
    path = Path(args.file)
    try:
        if args.action == "save":
            flt = parse_filter(list(args.terms))
        else:
            if args.terms:
                raise UsageError("check takes no filter: it uses the one saved in the baseline")
            saved, text = baseline.load(path)
            flt = parse_filter(text)
    except FilterError as exc:
        raise UsageError(str(exc)) from None
    except baseline.BaselineError as exc:
        raise CommandFailed(str(exc), 2) from None
    now = baseline.records(flt.apply(ctx.scan().sockets))
    if args.action == "save":
        try:
            baseline.save(path, now, flt.text)
        except baseline.BaselineError as exc:
            raise CommandFailed(str(exc), 2) from None
        n = len(now)
        ctx.stderr.write(f"portmon: saved {n} listener{'s' if n != 1 else ''} to {path}\n")
        return 0
    diff = baseline.compare(saved, now)
    same = not any(diff.values())
    if args.json:
        from portmon.output import to_json

        ctx.stdout.write(to_json({"same": same, **diff}) + "\n")
    else:
        ctx.stdout.write(_text(diff) if not same else f"same as {path}: {len(now)} listeners\n")
    return 0 if same else 1


def _label(rec: dict[str, Any]) -> str:
    from portmon.output import endpoint
    from portmon.textsafe import safe

    return f"{rec['proto']}{rec['family']} {safe(endpoint(rec['address'], rec['port'], rec['family']))}"


def _owner(rec: dict[str, Any]) -> str:
    from portmon.textsafe import safe

    parts = [safe(rec.get("process") or "?", 32), f"user {safe(rec.get('user') or '?', 32)}"]
    if rec.get("exe"):
        parts.append(f"exe {safe(rec['exe'], 120)}")
    if rec.get("manager"):
        parts.append(f"manager {safe(rec['manager'], 64)}")
    return "  ".join(parts)


def _text(diff: dict[str, list[dict[str, Any]]]) -> str:
    lines: list[str] = []
    for rec in diff["added"]:
        lines.append(f"added    {_label(rec)}  {_owner(rec)}")
    for rec in diff["removed"]:
        lines.append(f"removed  {_label(rec)}  {_owner(rec)}")
    for rec in diff["changed"]:
        was = "; ".join(_owner(r) for r in rec["before"])
        now = "; ".join(_owner(r) for r in rec["after"])
        lines.append(f"changed  {_label(rec)}  was {was}  now {now}")
    return "\n".join(lines) + "\n"
