"""Prometheus metrics: the collector over scripted snapshots, the HTTP endpoint scraped and parsed with
prometheus_client's own parser, the textfile, the loopback rule, and (when installed) a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from portmon.collect.fake import ScriptedCollector, demo_snapshot, demo_snapshot_after
from portmon.export.metrics import MetricsState, Poller, SnapshotMetrics
from portmon.export.server import is_loopback, metrics_registry, parse_listen_address
from portmon.model import LISTEN, Holder, Snapshot, Socket

ROOT = Path(__file__).resolve().parent.parent
LISTENER = "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); " \
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"  # fmt: skip


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of an exposition, by sample name (``_total``, ``_bucket`` ... included)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def scrape(state: MetricsState) -> dict[str, list[tuple[dict[str, str], float]]]:
    return samples(generate_latest(metrics_registry(state)).decode())


def test_metrics_of_two_polls_name_listeners_count_states_and_events() -> None:
    first, second = demo_snapshot(), demo_snapshot_after()
    state = MetricsState()
    poller = Poller(ScriptedCollector([first, second, RuntimeError("netlink went away")]), state, interval=1)
    poller.poll_once()
    poller.poll_once()
    got = scrape(state)
    info = got["portmon_listening_socket_info"]
    listening = {(s.proto, str(s.family), s.local_addr, str(s.local_port)) for s in second.sockets if s.listening}
    assert {(d["proto"], d["family"], d["address"], d["port"]) for d, _ in info} == listening
    assert all(v == 1 for _, v in info) and all(d["host"] == "" for d, _ in info)
    assert not any("pid" in d or "remote_port" in d for d, _ in info)  # bounded labels only
    counts = {(d["proto"], d["state"]): v for d, v in got["portmon_sockets"]}
    assert counts[("tcp", "listen")] == sum(1 for s in second.sockets if s.proto == "tcp" and s.state == LISTEN)
    assert counts[("udp", "none")] == sum(1 for s in second.sockets if s.proto == "udp")
    assert sum(counts.values()) == len(second.sockets)
    events = {d["event"]: v for d, v in got["portmon_events_total"]}
    assert events["open"] > 0 and events["close"] > 0  # demo_snapshot_after opens and closes sockets
    assert got["portmon_scan_duration_seconds_count"] == [({}, 2.0)]
    assert got["portmon_scan_errors_total"] == [({}, 0.0)]
    assert got["portmon_sockets_hidden_owner"] == [({}, float(second.hidden_owners))]
    poller.poll_once()  # fails: the last good sockets stay, the error is counted
    got = scrape(state)
    assert got["portmon_scan_errors_total"] == [({}, 1.0)]
    assert len(got["portmon_listening_socket_info"]) == len(info)


def test_a_scrape_never_scans_and_reuses_the_poll_s_families() -> None:
    collector = ScriptedCollector([demo_snapshot()])
    state = MetricsState()
    Poller(collector, state, interval=1).poll_once()
    metrics = SnapshotMetrics(state)
    first = list(metrics.collect())
    for _ in range(5):
        assert list(metrics.collect()) == first
        assert all(a is b for a, b in zip(metrics.collect(), first, strict=True))
    assert collector.calls == 1


def test_hostile_names_stay_labels_and_remote_hosts_get_a_host_label() -> None:
    evil = Holder(1, 'a"b\\c\nd}{', "root")
    snap = Snapshot(
        sockets=(
            Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, holders=(evil,), inode=1),
            Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, holders=(evil,), inode=2, host="db1"),
        ),
        taken_at=1.0,
    )
    state = MetricsState()
    state.record(snap, [])
    info = scrape(state)["portmon_listening_socket_info"]
    assert sorted((d["host"], d["process"]) for d, _ in info) == [("", evil.name), ("db1", evil.name)]


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("9842", "127.0.0.1", 9842), (":0", "127.0.0.1", 0), ("[::1]:9100", "::1", 9100), ("0.0.0.0:80", "0.0.0.0", 80)],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    assert tuple(parse_listen_address(text)) == (host, port)


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.10")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.1")


def portmon(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "portmon", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


@pytest.fixture
def listener() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", LISTENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(10)


@pytest.fixture
def served() -> Iterator[str]:
    """``portmon serve --metrics 127.0.0.1:0``: the scrape URL it prints."""
    proc = portmon("serve", "--metrics", "127.0.0.1:0", "--interval", "0.5")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving metrics on http://127.0.0.1:" in line, line
        yield line.split(" on ", 1)[1].split(";")[0].strip()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def _wait_for(check: object, seconds: float = 120) -> object:
    deadline = time.monotonic() + seconds
    while True:
        value = check()  # type: ignore[operator]
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_the_endpoint_serves_this_machine_s_listeners(served: str, listener: int) -> None:
    def seen() -> list[dict[str, str]]:
        info = samples(_get(served)).get("portmon_listening_socket_info", [])
        return [d for d, _ in info if d["port"] == str(listener) and d["address"] == "127.0.0.1"]

    rows = _wait_for(seen)
    assert rows and rows[0]["proto"] == "tcp" and rows[0]["process"].startswith("python")  # type: ignore[index]
    openmetrics = urllib.request.Request(served, headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(openmetrics, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert r.read().decode().endswith("# EOF\n")


def test_a_non_loopback_address_needs_expose() -> None:
    proc = portmon("serve", "--metrics", "0.0.0.0:0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--expose" in err and len(err.splitlines()) == 1


def test_expose_serves_beyond_loopback_and_says_so() -> None:
    proc = portmon("serve", "--metrics", "0.0.0.0:0", "--expose", "--interval", "5")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving metrics on http://0.0.0.0:" in line and "not loopback" in line
        port = int(line.split("http://0.0.0.0:", 1)[1].split("/", 1)[0])
        assert "portmon_sockets" in _get(f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_textfile_once_is_written_whole(tmp_path: Path, listener: int) -> None:
    path = tmp_path / "portmon.prom"
    proc = portmon("serve", "--textfile", str(path), "--once")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    got = samples(path.read_text())
    assert any(d["port"] == str(listener) for d, _ in got["portmon_listening_socket_info"])
    assert [p.name for p in tmp_path.iterdir()] == ["portmon.prom"]  # the temporary file was renamed


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (Debian: apt-get install prometheus)")
def test_a_real_prometheus_scrapes_the_endpoint(served: str, listener: int, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    target = urllib.parse.urlsplit(served).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: portmon\n    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    proc = None
    for _ in range(10):  # a port picked free may be taken before prometheus binds it
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            web = f"127.0.0.1:{s.getsockname()[1]}"
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address={web}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stderr is not None
        ready = False
        for line in proc.stderr:
            if "Server is ready to receive web requests" in line:
                ready = True
                break
        if ready:
            break
        proc.wait(30)
        proc = None
    assert proc is not None, "prometheus did not start"
    try:
        import threading

        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        query = urllib.parse.quote(f'portmon_listening_socket_info{{port="{listener}"}}')

        def result() -> list[dict[str, object]]:
            try:
                doc = json.loads(_get(f"http://{web}/api/v1/query?query={query}"))
            except OSError:
                return []
            return list(doc["data"]["result"])

        found = _wait_for(result)
        assert found, "prometheus never stored the listener's series"
        metric = found[0]["metric"]  # type: ignore[index]
        assert metric["job"] == "portmon" and metric["address"] == "127.0.0.1" and metric["proto"] == "tcp"
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_endpoint_renders_once_per_poll_whatever_the_scrape_rate() -> None:
    from portmon.export.server import ListenAddress, MetricsServer

    state = MetricsState()
    poller = Poller(ScriptedCollector([demo_snapshot(), demo_snapshot_after()]), state, interval=1)
    poller.poll_once()
    renders = []
    registry = metrics_registry(state)
    original = registry.collect

    def counting_collect():  # type: ignore[no-untyped-def]
        renders.append(1)
        return original()

    registry.collect = counting_collect  # type: ignore[method-assign]
    server = MetricsServer(ListenAddress("127.0.0.1", 0), registry, lambda: state.generation)
    try:
        first = _get(server.url)
        assert all(_get(server.url) == first for _ in range(5)) and len(renders) == 1
        openmetrics = urllib.request.Request(server.url, headers={"Accept": "application/openmetrics-text"})
        with urllib.request.urlopen(openmetrics, timeout=30) as r:
            assert r.read().decode().endswith("# EOF\n")
        assert len(renders) == 2  # another format is another answer
        poller.poll_once()
        assert _get(server.url) != first and len(renders) == 3  # the next poll's answer
    finally:
        server.close()


def test_listener_queues_where_the_collector_reads_them() -> None:
    listener = Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, inode=1, accept_queue=3, backlog=128)
    twin = listener._replace(inode=2, accept_queue=1)  # SO_REUSEPORT: one series, summed
    unread = Socket("tcp", 4, "0.0.0.0", 81, state=LISTEN, inode=3)
    state = MetricsState()
    state.record(Snapshot(sockets=(listener, twin, unread), taken_at=1.0), [])
    got = scrape(state)
    assert [(d["port"], v) for d, v in got["portmon_listener_accept_queue"]] == [("80", 4.0)]
    assert [(d["port"], v) for d, v in got["portmon_listener_backlog"]] == [("80", 256.0)]
