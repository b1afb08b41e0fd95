"""The history package sits below the command line and the UI: importing it loads neither, nor Textual or Rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "portmon" / "history"
MODULES = sorted(f"portmon.history.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def test_the_package_has_its_modules() -> None:
    assert {"portmon.history.recorder", "portmon.history.queries", "portmon.history.store"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_history_imports_no_cli_ui_textual_or_rich(module: str) -> None:
    probe = f"import {module}, sys; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert module in loaded
    above = {m for m in loaded if m.startswith(("portmon.cli", "portmon.ui")) or m.split(".")[0] in ("textual", "rich")}
    assert not above
