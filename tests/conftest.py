"""Fixtures shared by several test modules."""

from __future__ import annotations

import resource
from typing import Callable, Iterator

import pytest


@pytest.fixture
def fd_room() -> Iterator[Callable[[int], None]]:
    """``fd_room(n)`` raises this process's soft RLIMIT_NOFILE to at least ``n`` open fds (skips the
    test when the hard limit is too low); the limit is put back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def ensure(n: int) -> None:
        if soft < n:
            if hard != resource.RLIM_INFINITY and hard < n:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {n}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))

    yield ensure
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
