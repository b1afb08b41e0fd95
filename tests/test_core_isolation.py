"""The core and the one-shot commands never import Textual or Rich (fast start, headless use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for p in (ROOT / "portmon").rglob("*.py")
    if p.stem not in ("__init__", "__main__") and "ui" not in p.relative_to(ROOT).parts
)
"""Every module outside ``portmon.ui``: the model, collection, query, actions and the command line."""


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_modules_are_found() -> None:
    for name in (
        "portmon.model",
        "portmon.registry",
        "portmon.collect.base",
        "portmon.collect.procfs",
        "portmon.query.filters",
        "portmon.query.sorting",
        "portmon.query.diff",
        "portmon.actions.kill.execute",
        "portmon.cli.main",
    ):
        assert name in CORE


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_neither_textual_nor_rich(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert module in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich")}


def test_list_and_who_run_without_textual() -> None:
    code = (
        "import sys, io\n"
        "from portmon.cli.main import main\n"
        "main(['list', '--json'], stdout=io.StringIO(), stderr=io.StringIO())\n"
        "main(['who', '1', '--json'], stdout=io.StringIO(), stderr=io.StringIO())\n"
    )
    loaded = _loaded_after(code)
    assert "portmon.cli.list" in loaded and "portmon.cli.who" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("textual", "rich")}
