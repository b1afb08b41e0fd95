"""The suite never writes the user's own portmon files: every default path points into pytest's temp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portmon.config import config_path
from portmon.history.store import default_db_path


def test_default_history_and_config_paths_are_private_to_the_test(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp().resolve()
    for path in (default_db_path(os.environ), Path(config_path())):
        resolved = path.resolve()
        assert base in resolved.parents, f"{resolved} is outside the test's temp dirs"
