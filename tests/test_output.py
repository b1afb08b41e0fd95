"""``list --json``'s direct writer gives exactly the text of json.dumps over the socket records."""

from __future__ import annotations

import json

from portmon.model import ESTABLISHED, LISTEN, TIME_WAIT, Holder, Socket
from portmon.output import JSON_CHUNK, RECORD_KEYS, iter_sockets_json, socket_record, sockets_json, to_json

NGINX = Holder(pid=101, name="nginx", user="www-data", create_time=1.0)
WORKER = Holder(pid=102, name="nginx", user="www-data", create_time=2.0)
HOSTILE = Holder(pid=4242, name='"\\é\x1b[31m\u2028\U0001f600\x00</script>', user="ü\tser\n", create_time=3.0)
NAMELESS = Holder(pid=7)


def sample() -> list[Socket]:
    shared = (NGINX, WORKER)
    return [
        Socket("tcp", 4, "0.0.0.0", 80, state=LISTEN, holders=shared, inode=1, local_service="http"),
        Socket("tcp", 4, "127.0.0.1", 80, "127.0.0.1", 50000, ESTABLISHED, shared, inode=2, local_service="http"),
        Socket("tcp", 6, "::1", 65535, "::ffff:127.0.0.1", 1023, TIME_WAIT, (), "kernel", remote_service='s"v\\c'),
        Socket("udp", 6, "fe80::1%eth0", 0, holders=(HOSTILE,), inode=3, local_service="dömäin\x7f"),
        Socket("udp", 4, "127.0.0.1", 1024, "127.0.0.1", 49152, holders=(NAMELESS,), remote_service="x" * 300),
        Socket("tcp", 4, "127.0.0.1", 49151, state="UNKNOWN_0D", owner_note="hidden"),
    ]


def test_same_text_as_json_dumps_of_the_records() -> None:
    sockets = sample()
    assert sockets_json(sockets) == to_json([socket_record(s) for s in sockets])


def test_same_text_for_each_socket_alone_and_for_none() -> None:
    for s in sample():
        assert sockets_json([s]) == to_json([socket_record(s)])
    assert sockets_json([]) == "[]"


def test_same_text_over_several_pieces_with_parts_shared_and_not() -> None:
    base = sample()
    sockets = []
    for i in range(2 * JSON_CHUNK + 7):
        s = base[i % len(base)]
        # Every third socket gets an equal but distinct holders tuple, and ports move across ranges.
        holders = tuple(h._replace() for h in s.holders) if i % 3 == 0 else s.holders
        rport = None if s.remote_port is None else (s.remote_port + 37 * i) % 65536
        sockets.append(s._replace(local_port=(s.local_port + 131 * i) % 65536, remote_port=rport, holders=holders))
    pieces = list(iter_sockets_json(sockets))
    assert len(pieces) == 2 + 3  # "[", three pieces of records, "]"
    assert "".join(pieces) == to_json([socket_record(s) for s in sockets])


def test_records_parse_back_with_every_key_in_order() -> None:
    sockets = sample()
    records = json.loads(sockets_json(sockets))
    assert [list(r) for r in records] == [list(RECORD_KEYS)] * len(sockets)
    hostile = records[3]
    assert hostile["process"] == HOSTILE.name and hostile["user"] == HOSTILE.user
    assert hostile["pid"] == 4242 and hostile["local_range"] == "system" and hostile["remote_port"] is None
    assert records[1]["pid"] == 101  # a shared socket names its first holder
    assert records[2]["pid"] is None and records[2]["local_range"] == "dynamic"
    assert records[4]["process"] is None and records[4]["remote_port"] == 49152


def test_output_is_ascii_with_controls_escaped() -> None:
    text = sockets_json(sample())
    assert text.isascii()
    assert not any(ord(c) < 0x20 for c in text)


def test_table_rows_name_each_owner_and_each_reason_for_none() -> None:
    from portmon.output import TABLE_HEADERS, sockets_table

    lines = sockets_table(sample()).splitlines()
    assert lines[0].split() == [w for h in TABLE_HEADERS for w in h.split()]
    by_port = {line.split()[2]: line for line in lines[1:]}
    assert by_port["49151"].endswith("(hidden)")  # no holders, hidden: not the kernel note of the row before
    assert by_port["65535"].endswith("(kernel)")
    hostile = by_port["0"].split()
    assert hostile[-3] == "4242" and hostile[-1] == "ü\\tser\\n"  # escaped, never raw control characters
    assert hostile[-2].startswith('"\\é\\x1b[31m') and "\x1b" not in by_port["0"]
    # Numbers right-aligned, text left-aligned, no trailing blanks.
    assert all(line == line.rstrip() for line in lines)
    assert lines[1].index("80") + 2 == lines[3].index("65535") + 5


def test_format_table_gives_the_plain_padding_text() -> None:
    from portmon.collect.fake import synthetic_snapshot
    from portmon.output import TABLE_HEADERS, format_table, format_table_plain, table_rows

    for sockets in (sample(), list(synthetic_snapshot(2000, seed=3).sockets), sample()[:1]):
        rows = table_rows(sockets)
        assert format_table(TABLE_HEADERS, rows) == format_table_plain(TABLE_HEADERS, rows)
    assert format_table(("A", "B"), []) == format_table_plain(("A", "B"), []) == "A  B"
    rows = [("1", "x"), ("22", "")]
    assert format_table(("N", "NAME"), rows) == format_table_plain(("N", "NAME"), rows) == " N  NAME\n 1  x\n22"


def test_table_rows_never_carry_control_characters() -> None:
    from portmon.output import table_rows

    for row in table_rows(sample()):
        for cell in row:
            assert cell.isprintable(), cell


def _extra(sock: Socket) -> dict[str, object]:
    # Shaped like ownership's holders and manager keys: nested lists and dicts, untrusted text, null.
    holders = sock.holders
    return {
        "holders": [{"pid": h.pid, "process": h.name, "user": h.user, "role": "main" if i == 0 else "worker"}
                    for i, h in enumerate(holders)],
        "manager": {"kind": "systemd-unit", "name": f"{holders[0].name}\u2028.service", "details": {"a": [1, None]}}
        if holders else None,
    }


def test_same_text_with_extra_keys_as_json_dumps() -> None:
    sockets = sample()
    assert sockets_json(sockets, _extra) == to_json([socket_record(s, extra=_extra) for s in sockets])
    records = json.loads(sockets_json(sockets, _extra))
    assert [list(r) for r in records] == [[*RECORD_KEYS, "holders", "manager"]] * len(sockets)
    assert [h["pid"] for h in records[0]["holders"]] == [101, 102] and records[2]["manager"] is None


def test_csv_has_a_pids_column_in_holder_order() -> None:
    from portmon.output import CSV_KEYS, sockets_csv

    lines = sockets_csv(sample()).splitlines()
    assert lines[0].split(",") == list(CSV_KEYS) and CSV_KEYS[-1] == "pids"
    assert lines[1].endswith(",101 102") and lines[3].endswith(",")


def test_same_text_with_traffic_counters() -> None:
    counted = [
        s._replace(bytes_sent=123456789012, bytes_received=0, rtt_ms=0.031, retransmits=2, cookie=99)
        if s.state == ESTABLISHED
        else s._replace(accept_queue=129, backlog=128)
        if s.state == LISTEN
        else s._replace(rtt_ms=1e-06)
        for s in sample()
    ]
    assert sockets_json(counted) == to_json([socket_record(s) for s in counted])
    records = json.loads(sockets_json(counted))
    listeners = {(r["accept_queue"], r["backlog"]) for r in records if r["state"] == LISTEN}
    assert listeners == {(129, 128)}
    traffic = ["bytes_sent", "bytes_received", "rtt_ms", "retransmits", "accept_queue", "backlog"]
    assert all(list(r)[-8:-2] == traffic and list(r)[-2:] == ["host", "netns"] for r in records)


def test_same_text_with_traffic_counters_and_extra_keys() -> None:
    counted = [s._replace(bytes_sent=5, rtt_ms=0.25) if s.state == ESTABLISHED else s for s in sample()]
    counted[0] = counted[0]._replace(host="db1")
    assert sockets_json(counted, _extra) == to_json([socket_record(s, extra=_extra) for s in counted])
    records = json.loads(sockets_json(counted, _extra))
    assert all(list(r)[-4:] == ["host", "netns", "holders", "manager"] for r in records)
