"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from listener_child import CHILD, ListenerChild
from ownership_procs import Tree


@pytest.fixture(autouse=True)
def private_xdg_homes(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every portmon it starts) gets empty XDG config, state, data and cache homes.

    The live monitor writes the theme and sort chosen in it back to the config file and records
    history to $XDG_STATE_HOME/portmon/history.sqlite3: without this, a test pressing a sort key would
    write the host's ~/.config/portmon/config.toml, and every test that starts the monitor would add
    its (hostile-named) test processes to the user's own history. Tests of these files set their own.
    """
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path_factory.mktemp(name.lower().replace("_", "-"))))


@pytest.fixture(autouse=True)
def host_namespace_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every portmon a test runs keeps to the test's own network namespace (PORTMON_NETNS=host).

    As root portmon also lists every other namespace's sockets: on a host running containers (or a
    benchmark load inside ``unshare -n``) a test's ephemeral port can be bound there too, and its
    output gains a line about that namespace. Tests marked ``all_namespaces`` (the namespace
    tests) see the default.
    """
    if request.node.get_closest_marker("all_namespaces") is None:
        monkeypatch.setenv("PORTMON_NETNS", "host")
    else:
        monkeypatch.delenv("PORTMON_NETNS", raising=False)


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


@pytest.fixture(scope="session")
def child_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The listener program (CHILD) as a file, so a child's command line stays short and readable."""
    path = tmp_path_factory.mktemp("listener") / "listener.py"
    path.write_text(CHILD)
    return path


@pytest.fixture
def spawn_script(child_script: Path) -> Path | None:
    """The script file ``spawn`` runs; a module that wants ``python -c CHILD`` instead overrides this
    fixture to return None."""
    return child_script


@pytest.fixture
def spawn(spawn_script: Path | None) -> Iterator[Callable[..., ListenerChild]]:
    """``spawn(*opts, **kw)`` starts a ``ListenerChild`` (kw as its constructor's; ``script`` defaults to
    ``spawn_script``) and raises RuntimeError when it does not start; every child is stopped afterwards."""
    children: list[ListenerChild] = []

    def start(*opts: str, **kw: Any) -> ListenerChild:
        kw.setdefault("script", spawn_script)
        child = ListenerChild(*opts, **kw)
        children.append(child)
        return child.require()

    yield start
    for child in children:
        child.stop()


@pytest.fixture
def record_file() -> Iterator[Path]:
    """An empty file a child started with ``record=PATH`` writes the signal names it gets into."""
    fd, name = tempfile.mkstemp(prefix="portmon-kill-")
    os.close(fd)
    os.chmod(name, 0o666)  # a child running as another user writes here too
    yield Path(name)
    os.unlink(name)


@pytest.fixture
def trees() -> Iterator[list[Tree]]:
    """Process trees a test starts (``trees.append(Tree(...))``): each one's process group is killed afterwards."""
    started: list[Tree] = []
    yield started
    for tree in started:
        tree.stop()
