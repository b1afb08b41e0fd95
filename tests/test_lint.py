"""Lint as part of the test command: ``mypy`` (strict, per pyproject) and ``ruff check`` report nothing.

Both run in a subprocess with this interpreter, so they use the versions the ``test`` extras pin.

While the layers are being fixed one package at a time, the whole-tree check is expected to fail
(ENFORCED is False: the tests are xfail, not strict). To check only some files, set
``PORTMON_LINT_PATHS`` to them (space-separated, files or folders): ruff checks just those, mypy
still checks the whole package (strict checking needs every module) but only errors in those
paths count, and the tests are enforced. Set ENFORCED to True once every package is clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ENFORCED = False
"""Whether a lint finding anywhere in the tree fails the suite (True once every package is clean)."""

PATHS = os.environ.get("PORTMON_LINT_PATHS", "").split()
"""Restrict the check to these paths (relative to the checkout); empty means the whole tree."""

_pending = pytest.mark.xfail(
    not ENFORCED and not PATHS,
    reason="lint is enforced once every package is merged clean (set ENFORCED, or PORTMON_LINT_PATHS)",
    strict=False,
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _in_paths(line: str) -> bool:
    target = line.split(":", 1)[0]
    return any(target == p or target.startswith(p.rstrip("/") + "/") for p in PATHS)


def _missing(tool: str) -> bool:
    return _run(tool, "--version").returncode != 0


@_pending
@pytest.mark.skipif(_missing("mypy"), reason="mypy is not installed (pip install -e '.[test]')")
def test_mypy_strict_reports_no_error() -> None:
    result = _run("mypy")
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    if PATHS:
        errors = [line for line in errors if _in_paths(line)]
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    assert not errors, "\n".join(errors)


@_pending
@pytest.mark.skipif(_missing("ruff"), reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_reports_nothing() -> None:
    result = _run("ruff", "check", "--output-format=concise", *(PATHS or ["."]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_path_filter_matches_files_and_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "PATHS", ["portmon/query", "portmon/model.py"])
    assert _in_paths("portmon/query/sorting.py:12: error: x")
    assert _in_paths("portmon/model.py:3: error: x")
    assert not _in_paths("portmon/queryx.py:1: error: x")
    assert not _in_paths("portmon/cli/main.py:1: error: x")
