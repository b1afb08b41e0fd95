"""``portmon top``: samples from a scripted collector with an injected clock, and the command on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from portmon.cli.top import human_rate, sample_record, sample_text, samples
from portmon.collect.fake import ScriptedCollector
from portmon.model import ESTABLISHED, Holder, Snapshot, Socket
from portmon.output import RECORD_KEYS
from portmon.query.filters import parse_filter

ROOT = Path(__file__).resolve().parent.parent
WEB = Holder(pid=10, name="web", user="www")
EVIL = Holder(pid=66, name="\x1b[31mevil\x07", user="x\ny")


def conn(cookie: int, sent: int, received: int, port: int = 8080, holder: Holder = WEB) -> Socket:
    return Socket(
        "tcp", 4, "127.0.0.1", port, "127.0.0.1", 50000 + cookie, ESTABLISHED, (holder,),
        bytes_sent=sent, bytes_received=received, rtt_ms=0.2, retransmits=0, cookie=cookie,
    )  # fmt: skip


def snap(*sockets: Socket) -> Snapshot:
    return Snapshot(sockets=sockets, taken_at=1_700_000_000.0)


class FakeClock:
    """A clock that moves only when ``sleep`` is called (and by ``scan_cost`` per reading)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_samples_give_rates_over_the_clocks_interval_busiest_first() -> None:
    collector = ScriptedCollector(
        [
            snap(conn(1, 0, 0), conn(2, 0, 0, 9090)),
            snap(conn(1, 1000, 0), conn(2, 0, 4000, 9090)),
            snap(conn(1, 1500, 0), conn(2, 0, 4000, 9090)),
        ]
    )
    clock = FakeClock()
    it = samples(collector, 2.0, clock=clock, sleep=clock.sleep)
    first = next(it)
    assert [(r.socket.cookie, r.tx_bps, r.rx_bps) for r in first.connections] == [(2, 0.0, 2000.0), (1, 500.0, 0.0)]
    assert [(p.pid, p.tx_bps, p.rx_bps, p.connections) for p in first.processes] == [(10, 500.0, 2000.0, 2)]
    second = next(it)
    assert [(r.socket.cookie, r.tx_bps) for r in second.connections] == [(1, 250.0), (2, 0.0)]
    assert clock.slept == [2.0, 2.0]


def test_the_filter_picks_connections_and_processes_sum_only_those() -> None:
    collector = ScriptedCollector(
        [snap(conn(1, 0, 0), conn(2, 0, 0, 9090)), snap(conn(1, 100, 0), conn(2, 300, 0, 9090))]
    )
    clock = FakeClock()
    sample = next(samples(collector, 1.0, parse_filter([":9090"]), clock=clock, sleep=clock.sleep))
    assert [r.socket.cookie for r in sample.connections] == [2]
    assert [(p.pid, p.tx_bps, p.connections) for p in sample.processes] == [(10, 300.0, 1)]


def test_a_sample_record_has_the_list_keys_plus_rates() -> None:
    collector = ScriptedCollector([snap(conn(1, 0, 0)), snap(conn(1, 10, 20))])
    clock = FakeClock()
    record = sample_record(next(samples(collector, 1.0, clock=clock, sleep=clock.sleep)))
    assert list(record) == ["time", "connections", "processes"]
    assert list(record["connections"][0]) == [*RECORD_KEYS, "tx_bps", "rx_bps"]
    assert record["processes"] == [
        {"pid": 10, "process": "web", "user": "www", "tx_bps": 10.0, "rx_bps": 20.0, "connections": 1}
    ]
    assert record["time"].startswith("2023-11-")


def test_text_makes_untrusted_names_visible() -> None:
    collector = ScriptedCollector([snap(conn(1, 0, 0, holder=EVIL)), snap(conn(1, 2_500_000, 0, holder=EVIL))])
    clock = FakeClock()
    text = sample_text(next(samples(collector, 1.0, clock=clock, sleep=clock.sleep)), 20)
    assert "\x1b" not in text and "\x07" not in text
    assert "2.5M" in text and "evil" in text


@pytest.mark.parametrize(
    ("bps", "text"), [(0.0, "0"), (999.4, "999"), (1500.0, "1.5K"), (2e6, "2.0M"), (3.2e9, "3.2G")]
)
def test_human_rate(bps: float, text: str) -> None:
    assert human_rate(bps) == text


def _portmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "portmon", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )


def test_bad_count_is_one_line_and_exit_2() -> None:
    res = _portmon("top", "--count", "0")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tcp_info counters come from Linux sock_diag")
def test_top_json_shows_a_busy_loopback_connection() -> None:
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()

        def pump() -> None:
            chunk = b"x" * 65536
            while not stop.is_set():
                client.sendall(chunk)
                server.recv(1 << 20)

        worker = threading.Thread(target=pump, daemon=True)
        worker.start()
        try:
            res = _portmon("top", f":{port}", "--json", "--count", "2", "--interval", "0.3")
        finally:
            stop.set()
            worker.join()
            client.close()
            server.close()
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    samples_seen = [json.loads(line) for line in lines]
    mine = [c for s in samples_seen for c in s["connections"] if c["local_port"] == port or c["remote_port"] == port]
    assert mine and all(c["pid"] == os.getpid() for c in mine)
    assert max(c["tx_bps"] + c["rx_bps"] for c in mine) > 0
    assert all(p["pid"] == os.getpid() for s in samples_seen for p in s["processes"])
