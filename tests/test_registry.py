"""Tests for portmon.registry: parsing both file formats, precedence, warnings and port ranges."""

from __future__ import annotations

import csv
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from portmon import registry
from portmon.registry import (
    BUILTIN,
    ParseResult,
    Registry,
    ServiceEntry,
    load_registry,
    parse_bytes,
    parse_iana_csv,
    parse_services,
    port_range,
    system_services_path,
)

DATA = Path(__file__).parent / "data" / "registry"


def fixture(name: str) -> str:
    return str(DATA / name)


def parse_fixture(name: str) -> ParseResult:
    return parse_bytes((DATA / name).read_bytes(), fixture(name))


def by_key(result: ParseResult) -> dict[tuple[int, str], ServiceEntry]:
    """First entry per (port, proto), as a registry would keep it."""
    table: dict[tuple[int, str], ServiceEntry] = {}
    for e in result.entries:
        table.setdefault((e.port, e.proto), e)
    return table


# port_range


@pytest.mark.parametrize(
    ("port", "expected"),
    [(0, "system"), (1023, "system"), (1024, "user"), (49151, "user"), (49152, "dynamic"), (65535, "dynamic")],
)
def test_port_range_boundaries(port: int, expected: str) -> None:
    assert port_range(port) == expected


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_range_rejects_out_of_range(port: int) -> None:
    with pytest.raises(ValueError):
        port_range(port)


# services(5) format


def test_services_basic_fields_aliases_and_comments() -> None:
    result = parse_fixture("basic.services")
    assert result.format == "services"
    assert result.skipped == 0
    table = by_key(result)
    assert table[(22, "tcp")] == ServiceEntry(
        "ssh", 22, "tcp", (), "SSH Remote Login Protocol", fixture("basic.services")
    )
    assert table[(9, "tcp")].aliases == ("sink", "null")
    assert table[(9, "tcp")].description is None
    assert table[(5432, "tcp")].aliases == ("postgres",)
    assert table[(5432, "tcp")].description == "PostgreSQL Database"
    assert table[(1, "tcp")].name == "tcpmux"  # tabs between every field
    assert table[(9904, "tcp")].name == "indented"
    assert table[(9905, "tcp")].name == "last-line-no-newline"
    assert table[(9903, "tcp")].name == "upper-proto"  # protocol case is normalised
    assert table[(9900, "sctp")].name == "sctp-svc"
    assert table[(9901, "dccp")].name == "dccp-svc"
    assert (9902, "tcp") not in table and table[(9902, "udp")].name == "udp-only"
    # Comments and blank lines give no entries: 18 service lines in the file.
    assert len(result.entries) == 18


def test_services_keeps_duplicates_in_file_order() -> None:
    names = [e.name for e in parse_fixture("basic.services").entries if (e.port, e.proto) == (80, "tcp")]
    assert names == ["http", "www-again"]


def test_parse_services_text_and_crlf() -> None:
    result = parse_services("ssh\t22/tcp\r\n\r\n# c\r\ndomain 53/udp  dns # Domain\r\n", "s")
    assert [(e.name, e.port, e.proto, e.aliases, e.description, e.source) for e in result.entries] == [
        ("ssh", 22, "tcp", (), None, "s"),
        ("domain", 53, "udp", ("dns",), "Domain", "s"),
    ]
    assert result.skipped == 0


def test_services_malformed_lines_are_counted_and_the_rest_loads() -> None:
    result = parse_fixture("malformed.services")
    assert result.format == "services"
    # badport, toobig (70000), noproto, noproto2 ("102/"), unknown (ddp), onlyname,
    # the undecodable line, negative, plus and superscript digit.
    assert result.skipped == 10
    assert [e.name for e in result.entries] == ["good-before", "latin1-comment", "good-after"]
    assert [e.port for e in result.entries] == [100, 105, 106]


@pytest.mark.parametrize(
    "line",
    ["bad abc/tcp", "big 70000/tcp", "noproto 101", "noproto 101/", "unknown 1/ddp", "alone", "neg -1/tcp"],
)
def test_each_malformed_services_line_counts_once(line: str) -> None:
    result = parse_services(f"before 1/tcp\n{line}\nafter 2/tcp\n")
    assert result.skipped == 1
    assert [e.name for e in result.entries] == ["before", "after"]


def test_services_port_boundaries() -> None:
    result = parse_services("zero 0/tcp\ntop 65535/udp\nover 65536/tcp\n")
    assert [(e.name, e.port) for e in result.entries] == [("zero", 0), ("top", 65535)]
    assert result.skipped == 1


def test_undecodable_line_in_services_bytes() -> None:
    data = b"a 1/tcp\nb\xff 2/tcp\nc 3/tcp\n"
    result = parse_bytes(data)
    assert [e.name for e in result.entries] == ["a", "c"]
    assert result.skipped == 1


def test_bom_at_start_is_accepted() -> None:
    result = parse_bytes(b"\xef\xbb\xbfssh 22/tcp\n")
    assert result.skipped == 0
    assert result.entries[0].name == "ssh"
    # Also on the per-line path, when another line does not decode.
    result = parse_bytes(b"\xef\xbb\xbfssh 22/tcp\nbad\xff 1/tcp\n")
    assert result.entries[0].name == "ssh"
    assert result.skipped == 1


def test_untrusted_names_are_stored_as_they_are() -> None:
    result = parse_bytes(b"\x1b[31mevil 4444/tcp [/] # \x1b]0;title\x07\n")
    entry = result.entries[0]
    assert entry.name == "\x1b[31mevil"
    assert entry.aliases == ("[/]",)
    assert entry.description == "\x1b]0;title\x07"


# IANA CSV format


def test_iana_csv_entries() -> None:
    result = parse_fixture("iana.csv")
    assert result.format == "iana-csv"
    table = by_key(result)
    src = fixture("iana.csv")
    assert table[(1, "tcp")] == ServiceEntry("tcpmux", 1, "tcp", (), "TCP Port Service Multiplexer", src)
    assert table[(22, "tcp")].name == "ssh" and table[(22, "udp")].name == "ssh"
    assert table[(9, "dccp")].name == "discard"
    assert table[(3868, "sctp")].name == "diameter"
    assert table[(80, "tcp")].name == "http"  # quoted fields; the first name for 80/tcp wins
    assert table[(600, "tcp")].description == 'says "hi", with a comma'
    assert table[(65535, "udp")].name == "high"


def test_iana_csv_multiline_quoted_description() -> None:
    table = by_key(parse_fixture("iana.csv"))
    assert table[(512, "tcp")].name == "exec"
    assert table[(512, "tcp")].description == (
        "remote process execution;\nauthentication performed using\npasswords and UNIX login names"
    )
    # The row after the multi-line field is parsed as its own row.
    assert table[(512, "udp")].name == "biff"


def test_iana_csv_port_ranges() -> None:
    result = parse_fixture("iana.csv")
    x11 = [e for e in result.entries if e.name == "x11"]
    assert len(x11) == 2 * 64
    assert {e.port for e in x11 if e.proto == "tcp"} == set(range(6000, 6064))
    assert {e.port for e in x11 if e.proto == "udp"} == set(range(6000, 6064))


def test_iana_csv_unassigned_reserved_and_empty_names_are_not_entries_nor_errors() -> None:
    result = parse_fixture("iana.csv")
    ports = {e.port for e in result.entries}
    assert not ports & {0, 2, 3, 601, 602, 6064, 6065}
    assert "xmpp" not in {e.name for e in result.entries}
    # Only the six malformed rows count: 8x, 70000, no protocol, ddp, 5010-5005, 65530-65536.
    assert result.skipped == 6
    assert not {e.name for e in result.entries} & {"badport", "toobig", "noproto", "ddp-thing", "backwards"}
    assert "overrange" not in {e.name for e in result.entries}


@pytest.mark.parametrize(
    "row",
    [
        "bad,8x,tcp,d",
        "big,70000,tcp,d",
        "noproto,4000,,d",
        "odd,4001,ddp,d",
        "back,10-5,tcp,d",
        "short,4002",
    ],
)
def test_each_malformed_csv_row_counts_once(row: str) -> None:
    text = f"Service Name,Port Number,Transport Protocol,Description\nok,1,tcp,d\n{row}\nok2,2,udp,d\n"
    result = parse_iana_csv(text)
    assert result.skipped == 1
    assert [e.name for e in result.entries] == ["ok", "ok2"]


def test_iana_csv_columns_found_by_header_name() -> None:
    text = "Description,Transport Protocol,Extra,Port Number,Service Name\nA web,TCP,x,80,http\n"
    result = parse_iana_csv(text)
    assert result.entries == (ServiceEntry("http", 80, "tcp", (), "A web", ""),)


def test_iana_csv_undecodable_lines_skip_their_record_only() -> None:
    result = parse_fixture("iana-bad-bytes.csv")
    assert result.format == "iana-csv"  # the BOM does not hide the header
    # One record spans three lines, one of them undecodable; another record is one bad line.
    assert result.skipped == 2
    assert [(e.name, e.port) for e in result.entries] == [("ok-before", 7001), ("ok-after", 7004)]
    assert result.entries[1].description == 'still "loads"'


def test_iana_csv_oversized_field_is_counted_and_parsing_resumes() -> None:
    text = "Service Name,Port Number,Transport Protocol,Description\nbig,1,tcp," + "x" * 200 + "\nok,2,tcp,d\n"
    old = csv.field_size_limit(100)
    try:
        result = parse_iana_csv(text)
    finally:
        csv.field_size_limit(old)
    assert result.skipped == 1
    assert [e.name for e in result.entries] == ["ok"]


# Format detection


def test_format_is_detected_from_content_not_name(tmp_path: Path) -> None:
    csv_named_services = tmp_path / "services"
    shutil.copy(DATA / "iana.csv", csv_named_services)
    services_named_csv = tmp_path / "ports.csv"
    shutil.copy(DATA / "basic.services", services_named_csv)
    assert parse_bytes(csv_named_services.read_bytes()).format == "iana-csv"
    assert parse_bytes(services_named_csv.read_bytes()).format == "services"
    reg = load_registry([str(csv_named_services), str(services_named_csv)], system=False, builtin=False)
    assert reg.lookup(6010, "udp") == "x11"  # only the CSV parser expands ranges
    assert reg.lookup(9, "tcp") == "discard"  # only in the services file
    assert reg.skipped == 6


def test_detection_skips_leading_comments_and_blank_lines() -> None:
    data = b"# exported by hand\n\nService Name,Port Number,Transport Protocol,Description\nx,1,tcp,d\n"
    result = parse_bytes(data)
    assert result.format == "iana-csv"
    assert [e.name for e in result.entries] == ["x"]
    assert result.skipped == 0


def test_empty_input_is_an_empty_services_file() -> None:
    assert parse_bytes(b"") == ParseResult((), 0, "services")


# Registry and precedence


def test_precedence_user_files_then_system_then_builtin() -> None:
    reg = load_registry(
        [fixture("user1.services"), fixture("user2.services")], system_path=fixture("system.services")
    )
    assert reg.lookup(22, "tcp") == "user-ssh"  # first user file beats the second and the system
    assert reg.lookup(8080, "tcp") == "user-proxy"
    assert reg.lookup(9999, "tcp") == "user2-only"
    assert reg.lookup(3000, "tcp") == "user2-hbci"  # second user file beats the system file
    assert reg.lookup(7777, "tcp") == "sys-only"
    assert reg.lookup(5173, "tcp") == "vite"  # only the built-in table has it
    assert reg.sources == (
        fixture("user1.services"),
        fixture("user2.services"),
        fixture("system.services"),
        "builtin",
    )
    ssh = reg.entry(22, "tcp")
    assert ssh is not None and ssh.source == fixture("user1.services")
    assert reg.warnings == ()
    assert reg.skipped == 0


def test_system_file_beats_builtin() -> None:
    reg = load_registry(system_path=fixture("system.services"))
    assert reg.lookup(3000, "tcp") == "hbci"
    without_system = load_registry(system=False)
    assert without_system.lookup(3000, "tcp") == "dev-server"
    assert without_system.sources == ("builtin",)


def test_first_entry_in_file_wins() -> None:
    reg = load_registry([fixture("basic.services")], system=False, builtin=False)
    assert reg.lookup(80, "tcp") == "http"
    assert reg.entry(80, "tcp") == ServiceEntry(
        "http", 80, "tcp", ("www",), "WorldWideWeb HTTP", fixture("basic.services")
    )


def test_registry_first_given_wins() -> None:
    reg = Registry([ServiceEntry("a", 1, "tcp"), ServiceEntry("b", 1, "tcp"), ServiceEntry("c", 1, "udp")])
    assert reg.lookup(1, "tcp") == "a"
    assert reg.lookup(1, "udp") == "c"
    assert len(reg) == 2


def test_lookup_per_protocol() -> None:
    reg = load_registry([fixture("basic.services")], system=False, builtin=False)
    assert reg.lookup(512, "tcp") == "exec"
    assert reg.lookup(512, "udp") == "biff"
    assert reg.lookup(512, "sctp") is None
    assert reg.lookup(12345, "tcp") is None
    assert reg.entry(12345, "tcp") is None


def test_service_for_with_and_without_protocol() -> None:
    reg = load_registry([fixture("basic.services")], system=False, builtin=False)
    assert reg.service_for(512, None) == "exec"  # tcp first
    assert reg.service_for(512, "udp") == "biff"
    assert reg.service_for(9902, None) == "udp-only"  # no tcp name: the udp one
    assert reg.service_for(9900, None) is None  # sctp only
    assert reg.service_for(9900, "sctp") == "sctp-svc"
    assert reg.service_for(12345, None) is None


def test_lookup_is_a_plain_callable() -> None:
    reg = load_registry([fixture("basic.services")], system=False, builtin=False)

    def collect(services: Callable[[int, str], str | None]) -> list[str | None]:
        return [services(22, "tcp"), services(53, "udp"), services(1, "udp")]

    assert collect(reg.lookup) == ["ssh", "domain", None]
    assert collect(reg) == ["ssh", "domain", None]


def test_skipped_is_summed_over_files_and_user_files_get_a_warning() -> None:
    reg = load_registry(
        [fixture("malformed.services"), fixture("iana.csv")], system_path=fixture("system.services")
    )
    assert reg.skipped == 10 + 6
    assert reg.warnings == (
        f"registry file '{fixture('malformed.services')}': 10 malformed lines skipped",
        f"registry file '{fixture('iana.csv')}': 6 malformed lines skipped",
    )
    assert reg.lookup(106, "tcp") == "good-after"


def test_malformed_system_file_counts_but_does_not_warn() -> None:
    # A stock /etc/services (Debian's has AppleTalk "ddp" lines) is not the user's to fix.
    reg = load_registry(system_path=fixture("malformed.services"), builtin=False)
    assert reg.skipped == 10
    assert reg.warnings == ()
    assert reg.lookup(100, "tcp") == "good-before"


def test_missing_file_is_a_warning_not_an_exception(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.services")
    reg = load_registry([missing, fixture("user1.services")], system_path=str(tmp_path / "no-system"))
    assert reg.warnings == (
        f"registry file '{missing}' not found; skipped",
        f"system services file '{tmp_path / 'no-system'}' not found; skipped",
    )
    assert reg.sources == (fixture("user1.services"), "builtin")
    assert reg.lookup(22, "tcp") == "user-ssh"
    assert reg.lookup(6379, "tcp") == "redis"


def test_directory_is_a_warning(tmp_path: Path) -> None:
    reg = load_registry([str(tmp_path)], system=False, builtin=False)
    assert len(reg.warnings) == 1
    assert reg.warnings[0].startswith(f"registry file '{tmp_path}'")
    assert reg.warnings[0].endswith("; skipped")
    assert reg.sources == ()
    assert len(reg) == 0


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads any file; needs POSIX modes")
def test_unreadable_file_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "secret.services"
    path.write_text("x 1/tcp\n")
    path.chmod(0)
    try:
        reg = load_registry([str(path)], system=False, builtin=False)
    finally:
        path.chmod(0o600)
    assert reg.warnings == (f"registry file '{path}' is not readable (permission denied); skipped",)
    assert reg.lookup(1, "tcp") is None


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PermissionError(13, "Permission denied"), "is not readable (permission denied); skipped"),
        (OSError(5, "Input/output error"), "could not be read (Input/output error); skipped"),
    ],
)
def test_read_errors_are_warnings(monkeypatch: pytest.MonkeyPatch, error: OSError, message: str) -> None:
    # Injected, because root can read a chmod 000 file and I/O errors cannot be made on demand.
    def failing_open(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(registry.os, "open", failing_open)
    reg = load_registry(["some.services"], system=False)
    assert reg.warnings == (f"registry file 'some.services' {message}",)
    assert reg.sources == ("builtin",)


def test_oversized_file_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "MAX_FILE_BYTES", 10)
    path = tmp_path / "big.services"
    path.write_text("service 1/tcp\n")
    reg = load_registry([str(path)], system=False, builtin=False)
    assert reg.warnings == (f"registry file '{path}' is larger than 0 MiB; skipped",)
    assert reg.lookup(1, "tcp") is None


# Built-in table and the system file


def test_builtin_table_is_small_unique_and_valid() -> None:
    assert 30 <= len(BUILTIN) <= 40
    keys = [(e.port, e.proto) for e in BUILTIN]
    assert len(keys) == len(set(keys))
    for e in BUILTIN:
        assert e.proto in ("tcp", "udp")
        assert e.source == "builtin"
        assert e.name and e.description
        port_range(e.port)
    reg = load_registry(system=False)
    expected = {
        3000: "dev-server", 5173: "vite", 8000: "http-alt", 8080: "http-alt", 5432: "postgresql",
        6379: "redis", 27017: "mongodb", 9200: "elasticsearch", 8888: "jupyter", 4200: "angular",
        3306: "mysql", 11211: "memcached", 9092: "kafka", 5672: "amqp", 9090: "prometheus",
        6443: "kube-apiserver", 2375: "docker", 2376: "docker-s", 9229: "node-inspector", 5000: "flask",
    }  # fmt: skip
    assert {port: reg.lookup(port, "tcp") for port in expected} == expected
    assert reg.lookup(11211, "udp") == "memcached"


def test_system_services_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert system_services_path() == "/etc/services"
    monkeypatch.setattr(sys, "platform", "win32")
    # Windows environment names are case-insensitive; os.environ spells them in upper case there.
    monkeypatch.setenv("SYSTEMROOT", r"D:\Win")
    assert system_services_path() == r"D:\Win\System32\drivers\etc\services"


@pytest.mark.skipif(not os.path.isfile(system_services_path()), reason="no system services file on this machine")
def test_real_system_services_file() -> None:
    reg = load_registry(builtin=False)
    assert reg.sources == (system_services_path(),)
    assert reg.lookup(22, "tcp") == "ssh"
    assert reg.service_for(22, None) == "ssh"


# Bounds: work is bounded by entries, and only regular files are read


def test_ranges_are_bounded_by_entries_not_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A 2 KB CSV whose rows each name every port: the file is read up to MAX_ENTRIES entries, no further.
    rows = ["Service Name,Port Number,Transport Protocol,Description"]
    rows += [f"svc{i},0-65535,tcp,every port" for i in range(100)]
    path = tmp_path / "ranges.csv"
    path.write_text("\n".join(rows) + "\n")
    assert path.stat().st_size < 4096
    monkeypatch.setattr(registry, "MAX_ENTRIES", 70_000)
    reg = load_registry([str(path)], system=False, builtin=False)
    assert len(reg) == 65536
    assert reg.lookup(0, "tcp") == "svc0" and reg.lookup(65535, "tcp") == "svc0"
    assert len(reg.warnings) == 1
    assert "more than 70,000 service entries" in reg.warnings[0] and str(path) in reg.warnings[0]


def test_parsers_stop_at_their_limit() -> None:
    text = "Service Name,Port Number,Transport Protocol\na,1-10,tcp\nb,20,tcp\n"
    assert parse_iana_csv(text, limit=5) == parse_iana_csv(text, limit=5)._replace(truncated=True)
    assert [e.port for e in parse_iana_csv(text, limit=5).entries] == [1, 2, 3, 4, 5]
    assert not parse_iana_csv(text, limit=11).truncated and len(parse_iana_csv(text, limit=11).entries) == 11
    services = "a 1/tcp\nb 2/tcp\n# a comment\n"
    assert not parse_services(services, limit=2).truncated
    limited = parse_services(services, limit=1)
    assert limited.truncated and [e.name for e in limited.entries] == ["a"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    # Nobody ever writes to this FIFO: a blocking open would hang the test (and every command) forever.
    fifo = tmp_path / "services.fifo"
    os.mkfifo(fifo)
    reg = load_registry([str(fifo)], system=False)
    assert reg.warnings == (f"registry file '{fifo}' is not a regular file (a named pipe); skipped",)
    assert reg.sources == ("builtin",)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused() -> None:
    reg = load_registry(["/dev/zero"], system=False, builtin=False)
    assert reg.warnings == ("registry file '/dev/zero' is not a regular file (a character device); skipped",)


def test_a_hostile_path_is_echoed_escaped_on_one_line() -> None:
    reg = load_registry(["no\x1b[31mfile\nhere" + "x" * 500], system=False, builtin=False)
    (warning,) = reg.warnings
    assert "\x1b" not in warning and "\n" not in warning
    assert "'no\\x1b[31mfile\\nhere" in warning and "(516 characters)" in warning


def test_ports_named_finds_every_port_of_a_name_and_its_aliases() -> None:
    reg = Registry(
        [
            ServiceEntry("ssh", 22, "tcp"),
            ServiceEntry("ssh", 22, "udp"),
            ServiceEntry("http-alt", 8080, "tcp", ("webcache",)),
            ServiceEntry("HTTP-ALT", 8008, "tcp"),
            ServiceEntry("other", 8080, "tcp"),  # 8080/tcp is http-alt's: first wins
            ServiceEntry("other", 9, "udp"),
        ]
    )
    assert reg.ports_named("ssh") == [(22, "tcp"), (22, "udp")]
    assert reg.ports_named("SSH", "udp") == [(22, "udp")]
    assert reg.ports_named("http-alt") == [(8008, "tcp"), (8080, "tcp")]
    assert reg.ports_named("webcache") == [(8080, "tcp")]
    assert reg.ports_named("other") == [(9, "udp")]
    assert reg.ports_named("nothing") == []
