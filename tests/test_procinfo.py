"""read_process on processes the tests start themselves: fields, parents, identity checks, exits."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from portmon.procinfo import ProcessDetail, read_process


@pytest.fixture
def child() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)", "[@click=app.quit]x"],
        cwd=os.path.dirname(os.path.abspath(__file__)),
        stdout=subprocess.PIPE,
    )
    # Wait until it has started up: while still loading it can be in disk sleep on a busy machine.
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc
    proc.kill()
    proc.wait()


def test_reads_a_child_process(child: subprocess.Popen[bytes]) -> None:
    created = psutil.Process(child.pid).create_time()
    detail = read_process(child.pid, created)
    assert detail.error is None
    assert detail.pid == child.pid
    assert detail.cmdline is not None and detail.cmdline[-1] == "[@click=app.quit]x"
    assert detail.cwd == os.path.dirname(os.path.abspath(__file__))
    assert detail.exe and os.path.basename(detail.exe).startswith("python")
    assert detail.user == psutil.Process().username()
    assert detail.create_time == pytest.approx(created)
    assert detail.ppid == os.getpid()
    assert detail.ancestors[0] == (os.getpid(), psutil.Process().name())
    assert len({pid for pid, _ in detail.ancestors}) == len(detail.ancestors)
    assert detail.rss is not None and detail.rss > 0
    assert detail.threads is not None and detail.threads >= 1
    assert detail.status in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)


def test_cpu_percent_is_unknown_on_the_first_read_then_measured(child: subprocess.Popen[bytes]) -> None:
    first = read_process(child.pid)
    second = read_process(child.pid)
    assert first.cpu_percent is None
    assert second.cpu_percent is not None and second.cpu_percent >= 0.0


def test_a_different_start_time_is_an_identity_mismatch(child: subprocess.Popen[bytes]) -> None:
    created = psutil.Process(child.pid).create_time()
    detail = read_process(child.pid, created - 3600)
    assert detail.error is not None and "different process" in detail.error
    assert detail.name is None and detail.cmdline is None


def test_an_exited_process_is_reported_not_raised() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    detail = read_process(proc.pid)
    assert isinstance(detail, ProcessDetail)
    assert detail.error is not None and "exited" in detail.error


def test_fields_of_another_users_process_degrade_one_by_one() -> None:
    if os.geteuid() == 0:
        pytest.skip("as root every field of every process is readable")
    owned_by_other = next(
        (p.pid for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real != os.getuid()),
        None,
    )
    if owned_by_other is None:
        pytest.skip("no process of another user to read")
    detail = read_process(owned_by_other)
    if detail.error is not None:
        assert "exited" in detail.error or "permitted" in detail.error
        return
    assert detail.name is not None
    assert set(detail.denied) <= {"name", "status", "exe", "cmdline", "cwd", "user", "ppid", "cpu", "memory", "threads"}
    for field in detail.denied:
        attribute = {"cpu": "cpu_percent", "memory": "rss"}.get(field, field)
        assert getattr(detail, attribute) is None
