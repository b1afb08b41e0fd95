"""Packaging metadata: one version source, an SPDX licence with its file, py.typed shipped, Textual as a range."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

import portmon

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_the_version_has_one_source(project: dict[str, Any]) -> None:
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "portmon.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", portmon.__version__)


def test_the_licence_is_an_spdx_expression_with_its_file(project: dict[str, Any]) -> None:
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "the portmon authors" in text
    # The SPDX expression needs setuptools 77.
    requires = project["build-system"]["requires"]
    minimums = [int(m.group(1)) for r in requires if (m := re.fullmatch(r"setuptools>=(\d+)", r))]
    assert minimums and minimums[0] >= 77


def test_py_typed_is_shipped(project: dict[str, Any]) -> None:
    assert (ROOT / "portmon" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["portmon"]


def test_textual_is_a_compatible_range_and_the_tests_pin_it(project: dict[str, Any]) -> None:
    runtime = [d for d in project["project"]["dependencies"] if d.startswith("textual")]
    assert runtime == ["textual>=8.2,<9"]
    # Snapshot SVGs are one release's rendering: the test extras pin that release.
    assert any(re.fullmatch(r"textual==\d+\.\d+\.\d+", d) for d in project["project"]["optional-dependencies"]["test"])


def test_lint_tools_are_in_the_test_extras(project: dict[str, Any]) -> None:
    names = {re.split(r"[<>=!~ ;\[]", d)[0] for d in project["project"]["optional-dependencies"]["test"]}
    assert {"mypy", "ruff", "types-psutil"} <= names
