"""Lint as part of the test command: ``mypy`` (strict, per pyproject) and ``ruff check`` report nothing.

Both run in a subprocess with this interpreter, so they use the versions the ``test`` extras pin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _missing(tool: str) -> bool:
    return _run(tool, "--version").returncode != 0


@pytest.mark.skipif(_missing("mypy"), reason="mypy is not installed (pip install -e '.[test]')")
def test_mypy_strict_reports_no_error() -> None:
    result = _run("mypy")
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(_missing("ruff"), reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_reports_nothing() -> None:
    result = _run("ruff", "check", "--output-format=concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr
