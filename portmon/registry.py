"""Service names for (port, protocol) pairs: user files, the system services database, a built-in table."""

from __future__ import annotations

import csv
import os
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from portmon.textsafe import echo, one_line

PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp"})
"""Transport protocols a registry entry may name; any other protocol makes the line malformed."""

FORMAT_SERVICES = "services"
FORMAT_IANA_CSV = "iana-csv"

BUILTIN_SOURCE = "builtin"

ServiceLookup = Callable[[int, str], "str | None"]
"""What collectors take: ``services(port, proto) -> name or None`` (``Registry.lookup`` is one)."""

# Larger than any real services file (the full IANA CSV is about 2 MB); stops a multi-gigabyte
# log given by mistake from eating memory.
MAX_FILE_BYTES = 32 * 1024 * 1024

MAX_ENTRIES = 100_000
"""Entries read from one file: what bounds the work, since a short IANA row such as ``0-65535`` names
65,536 ports. The full IANA registry expands to about 15,000 entries, /etc/services to a few hundred."""

# IANA rows with these descriptions mark unallocated space, not services (RFC 6335 section 8.1).
_NOT_SERVICES = frozenset({"unassigned", "reserved"})

_IANA_NAME = "service name"
_IANA_PORT = "port number"
_IANA_PROTO = "transport protocol"
_IANA_DESC = "description"

_BOM = b"\xef\xbb\xbf"


def port_range(port: int) -> str:
    """The RFC 6335 range of ``port``: "system" (0-1023), "user" (1024-49151) or "dynamic" (49152-65535).

    Raises ValueError for a number outside 0..65535.
    """
    if port < 0 or port > 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    if port <= 1023:
        return "system"
    if port <= 49151:
        return "user"
    return "dynamic"


class ServiceEntry(NamedTuple):
    """One registered service name for one port and protocol. Name and description are untrusted text."""

    name: str
    port: int
    proto: str
    """Lower case: "tcp", "udp", "sctp" or "dccp"."""
    aliases: tuple[str, ...] = ()
    description: str | None = None
    """The services(5) trailing comment or the IANA description, when there is one."""
    source: str = ""
    """Where the entry came from: a file path or "builtin"."""


class ParseResult(NamedTuple):
    """Every well-formed entry of one file, in file order (duplicates kept), and the malformed-line count."""

    entries: tuple[ServiceEntry, ...]
    skipped: int
    format: str
    """FORMAT_SERVICES ("services") or FORMAT_IANA_CSV ("iana-csv")."""
    truncated: bool = False
    """True when the file held more than the entry limit it was parsed with: the rest was not read."""


def _parse_port(text: str) -> int | None:
    """A decimal port 0..65535, or None. Only ASCII digits: int() would also take "²", "+1" or " 1"."""
    if not text or len(text) > 5 or not (text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if port <= 65535 else None


def _services_lines(lines: Sequence[str], bad: frozenset[int], source: str, limit: int = MAX_ENTRIES) -> ParseResult:
    entries: list[ServiceEntry] = []
    skipped = 0
    for index, line in enumerate(lines):
        data, _, comment = line.partition("#")
        fields = data.split()
        if not fields:
            continue  # blank or comment-only
        if index in bad or len(fields) < 2:
            skipped += 1
            continue
        port_text, slash, proto = fields[1].partition("/")
        port = _parse_port(port_text)
        proto = proto.lower()
        if port is None or not slash or proto not in PROTOCOLS:
            skipped += 1
            continue
        if len(entries) >= limit:
            return ParseResult(tuple(entries), skipped, FORMAT_SERVICES, truncated=True)
        entries.append(
            ServiceEntry(
                fields[0],
                port,
                proto,
                tuple(fields[2:]),
                comment.strip() or None,
                source,
            )
        )
    return ParseResult(tuple(entries), skipped, FORMAT_SERVICES)


def _split_text(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines() would also break at \x0b, \x1c, U+2028 and friends,
    # which a services line or a quoted CSV description may legitimately contain.
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse_services(text: str, source: str = "", limit: int = MAX_ENTRIES) -> ParseResult:
    """Parse a services(5) file: ``name port/proto [aliases...] [# comment]``.

    Blank lines and comments are ignored. A line with a bad port, a port above 65535, no
    protocol or a protocol other than tcp/udp/sctp/dccp is skipped and counted. At most
    ``limit`` entries are read (``truncated`` says when there were more).
    """
    return _services_lines(_split_text(text), frozenset(), source, limit)


def _iana_header(row: Sequence[str]) -> dict[str, int] | None:
    """Column positions when ``row`` is the IANA registry's CSV header, else None."""
    columns: dict[str, int] = {}
    for i, cell in enumerate(row):
        columns.setdefault(cell.strip().casefold(), i)
    if _IANA_NAME in columns and _IANA_PORT in columns and _IANA_PROTO in columns:
        return columns
    return None


def _parse_port_range(text: str) -> range | None:
    """ "80" or "6000-6063" as a range of ports, or None when malformed."""
    first, dash, last = text.partition("-")
    low = _parse_port(first.strip())
    high = _parse_port(last.strip()) if dash else low
    if low is None or high is None or high < low:
        return None
    return range(low, high + 1)


def _iana_lines(lines: Sequence[str], bad: frozenset[int], source: str, limit: int = MAX_ENTRIES) -> ParseResult:
    entries: list[ServiceEntry] = []
    skipped = 0

    # The csv module needs the line ends back to keep newlines inside quoted fields.
    reader = csv.reader(line + "\n" for line in lines)
    columns: dict[str, int] | None = None
    name_i = port_i = proto_i = 0
    desc_i: int | None = None
    needed = 0
    consumed = 0  # physical lines read before the current record
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # Over-long field and the like. The reader resumes at the next line.
            skipped += 1
            consumed = reader.line_num
            continue
        first_line, consumed = consumed, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            columns = _iana_header(row)
            if columns is None:
                # Lines before the header (none in IANA's export) are not entries.
                if not row[0].lstrip().startswith("#"):
                    skipped += 1
                continue
            name_i, port_i, proto_i = columns[_IANA_NAME], columns[_IANA_PORT], columns[_IANA_PROTO]
            desc_i = columns.get(_IANA_DESC)
            needed = max(name_i, port_i, proto_i) + 1
            continue
        if not bad.isdisjoint(range(first_line, consumed)):
            skipped += 1
            continue
        if len(row) < needed:
            skipped += 1
            continue
        name = row[name_i].strip()
        description = row[desc_i].strip() if desc_i is not None and desc_i < len(row) else ""
        port_text = row[port_i].strip()
        # Unassigned/reserved space and names registered without a port (DNS-SD names)
        # are regular rows of the registry, not errors.
        if not name or not port_text or description.casefold() in _NOT_SERVICES:
            continue
        ports = _parse_port_range(port_text)
        proto = row[proto_i].strip().lower()
        if ports is None or proto not in PROTOCOLS:
            skipped += 1
            continue
        desc = description or None
        room = limit - len(entries)
        entries.extend(ServiceEntry(name, port, proto, (), desc, source) for port in ports[:room])
        if len(ports) > room:
            return ParseResult(tuple(entries), skipped, FORMAT_IANA_CSV, truncated=True)
    return ParseResult(tuple(entries), skipped, FORMAT_IANA_CSV)


def parse_iana_csv(text: str, source: str = "", limit: int = MAX_ENTRIES) -> ParseResult:
    """Parse IANA's "Service Name and Transport Protocol Port Number Registry" CSV export.

    Columns are found by their header names. A port range ("6000-6063") gives every port in it
    the name. Rows without a service name or port, and "Unassigned"/"Reserved" rows, are skipped
    without being counted; rows with a bad port or protocol are skipped and counted. At most
    ``limit`` entries are made, ranges included (``truncated`` says when there were more).
    """
    return _iana_lines(_split_text(text), frozenset(), source, limit)


def _detect(lines: Sequence[str]) -> str:
    """The format of a file from its first line that is neither blank nor a comment."""
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "," not in stripped:
            return FORMAT_SERVICES  # the IANA header has four columns
        try:
            header = next(csv.reader([stripped]))
        except csv.Error:
            return FORMAT_SERVICES
        return FORMAT_IANA_CSV if _iana_header(header) is not None else FORMAT_SERVICES
    return FORMAT_SERVICES


def _decode_lines(data: bytes) -> tuple[list[str], frozenset[int]]:
    """Split ``data`` into UTF-8 lines; return them and the indexes of lines that did not decode.

    A line that does not decode is kept with U+FFFD for the bad bytes so that CSV quoting stays
    balanced; the parsers skip and count it. In a services file only the part before "#" must
    decode: a Latin-1 comment spoils nothing.
    """
    try:
        return _split_text(data.decode("utf-8")), frozenset()
    except UnicodeDecodeError:
        pass
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    if raw and raw[0].startswith(_BOM):
        raw[0] = raw[0][len(_BOM) :]
    lines: list[str] = []
    bad: set[int] = set()
    for index, chunk in enumerate(raw):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(chunk.decode("utf-8", "replace"))
            bad.add(index)
    return lines, frozenset(bad)


def parse_bytes(data: bytes, source: str = "", limit: int = MAX_ENTRIES) -> ParseResult:
    """Parse a services(5) file or an IANA CSV export, telling them apart by content.

    Decoding is UTF-8 (a leading BOM is allowed), line by line: a line that does not decode
    is skipped and counted and the rest of the file still loads. At most ``limit`` entries.
    """
    lines, bad = _decode_lines(data)
    if _detect(lines) == FORMAT_IANA_CSV:
        return _iana_lines(lines, bad, source, limit)
    if bad:
        # A services line may carry anything in its comment; only the data part must decode.
        bad = frozenset(i for i in bad if "\ufffd" in lines[i].partition("#")[0])
    return _services_lines(lines, bad, source, limit)


class Registry:
    """Service names by (port, protocol); the first entry given for a pair wins.

    ``registry.lookup`` (or the registry itself) is a plain ``services(port, proto)`` callable.
    """

    __slots__ = ("_entries", "warnings", "skipped", "sources")

    warnings: tuple[str, ...]
    """Problems that did not stop loading, such as missing files."""
    skipped: int
    """Malformed lines over all files."""
    sources: tuple[str, ...]
    """What was loaded, in precedence order: file paths and "builtin"."""

    def __init__(
        self,
        entries: Iterable[ServiceEntry] = (),
        *,
        warnings: Sequence[str] = (),
        skipped: int = 0,
        sources: Sequence[str] = (),
    ) -> None:
        """Index ``entries``, given in precedence order (first wins)."""
        table: dict[tuple[int, str], ServiceEntry] = {}
        for entry in entries:
            key = (entry.port, entry.proto)
            if key not in table:
                table[key] = entry
        self._entries = table
        self.warnings = tuple(warnings)
        self.skipped = skipped
        self.sources = tuple(sources)

    def lookup(self, port: int, proto: str) -> str | None:
        """The service name for ``port`` over ``proto`` ("tcp", "udp", ... in lower case), or None."""
        entry = self._entries.get((port, proto))
        return None if entry is None else entry.name

    __call__ = lookup

    def port_names(self, proto: str) -> dict[int, str]:
        """Every port that has a name over ``proto``, with that name: ``lookup`` for all ports at once.

        A collector fills its name memo from it: then a port missing from the memo has no name,
        and the thousands of distinct client ports of a busy host cost no lookup each.
        """
        return {port: entry.name for (port, p), entry in self._entries.items() if p == proto}

    def entry(self, port: int, proto: str) -> ServiceEntry | None:
        """The whole entry (aliases, description, source) for ``port`` over ``proto``, or None."""
        return self._entries.get((port, proto))

    def ports_named(self, name: str, proto: str | None = None) -> list[tuple[int, str]]:
        """Every (port, protocol) whose service is called ``name`` (or has it as an alias), by port.

        Case-insensitive, as services(5) names are. ``proto`` keeps one protocol. Only pairs whose
        name this registry would give (the first entry for the pair) count.
        """
        wanted = name.casefold()
        found = {
            key
            for key, entry in self._entries.items()
            if (proto is None or key[1] == proto)
            and (entry.name.casefold() == wanted or any(a.casefold() == wanted for a in entry.aliases))
        }
        return sorted(found)

    def service_for(self, port: int, proto: str | None) -> str | None:
        """Like lookup; with ``proto`` None, the tcp name, else the udp name."""
        if proto is not None:
            return self.lookup(port, proto)
        return self.lookup(port, "tcp") or self.lookup(port, "udp")

    def __len__(self) -> int:
        """How many (port, protocol) pairs have a name."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({len(self._entries)} entries, sources={self.sources!r}, skipped={self.skipped})"


def system_services_path() -> str:
    """/etc/services, or %SystemRoot%\\System32\\drivers\\etc\\services on Windows."""
    if sys.platform == "win32":
        import ntpath

        root = os.environ.get("SYSTEMROOT") or r"C:\Windows"
        return ntpath.join(root, "System32", "drivers", "etc", "services")
    return "/etc/services"


def _read(path: str, what: str) -> tuple[bytes | None, str | None]:
    """The bytes of ``path``, or None and a warning.

    Only a regular file is read. The file is opened without blocking (a FIFO or a terminal
    would otherwise hang every command until someone writes to it) and refused when fstat
    says it is anything else, before a single byte is read.
    """
    shown = echo(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None, f"{what} {shown} not found; skipped"
    except IsADirectoryError:
        return None, f"{what} {shown} is a directory; skipped"
    except PermissionError:
        return None, f"{what} {shown} is not readable (permission denied); skipped"
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, f"{what} {shown} could not be read ({one_line(reason)}); skipped"
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None, f"{what} {shown} is a directory; skipped"
        if not stat.S_ISREG(mode):
            return None, f"{what} {shown} is not a regular file ({_file_kind(mode)}); skipped"
        if os.fstat(fd).st_size > MAX_FILE_BYTES:
            return None, f"{what} {shown} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; skipped"
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"{what} {shown} could not be read ({one_line(exc.strerror or str(exc))}); skipped"
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, f"{what} {shown} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; skipped"
    return data, None


def _file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, kind in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


def load_registry(
    paths: Sequence[str] = (),
    *,
    system: bool = True,
    builtin: bool = True,
    system_path: str | None = None,
) -> Registry:
    """Load a registry: ``paths`` in the order given, then the system database, then BUILTIN.

    Earlier sources win, and within a file the first entry for a (port, protocol) wins. A
    missing or unreadable file becomes a warning on the registry, never an exception.
    """
    entries: list[ServiceEntry] = []
    warnings: list[str] = []
    sources: list[str] = []
    skipped = 0
    files = [(path, "registry file", True) for path in paths]
    if system:
        system_file = system_path if system_path is not None else system_services_path()
        files.append((system_file, "system services file", False))
    for path, what, user in files:
        data, warning = _read(path, what)
        if data is None:
            warnings.append(warning or f"{what} {echo(path)} skipped")
            continue
        result = parse_bytes(data, path)
        entries.extend(result.entries)
        skipped += result.skipped
        sources.append(path)
        if user and result.skipped:
            # The user named this file, so tell them; a stock system file is not theirs to fix.
            n = result.skipped
            warnings.append(f"{what} {echo(path)}: {n} malformed line{'s' if n != 1 else ''} skipped")
        if result.truncated:
            warnings.append(
                f"{what} {echo(path)}: more than {MAX_ENTRIES:,} service entries (port ranges count each "
                "port); the rest were not read"
            )
    if builtin:
        entries.extend(BUILTIN)
        sources.append(BUILTIN_SOURCE)
    return Registry(entries, warnings=warnings, skipped=skipped, sources=sources)


def _builtin(port: int, name: str, description: str, protos: Sequence[str] = ("tcp",)) -> list[ServiceEntry]:
    return [ServiceEntry(name, port, proto, (), description, BUILTIN_SOURCE) for proto in protos]


# Ports a developer meets on localhost every day that /etc/services lacks or names after
# some long-gone product (IANA's 3000 is "hbci", 8000 "irdmi", 5000 "commplex-main").
# It comes last, so the system file and the user's files override it. Databases and brokers
# appear here too because minimal containers often have no /etc/services at all. UDP only
# where the service really speaks UDP. Kept small on purpose: this is not a port database.
BUILTIN: tuple[ServiceEntry, ...] = tuple(
    entry
    for entries in (
        _builtin(1883, "mqtt", "MQTT broker (Mosquitto)"),
        _builtin(2375, "docker", "Docker daemon API (plain)"),
        _builtin(2376, "docker-s", "Docker daemon API (TLS)"),
        _builtin(2379, "etcd-client", "etcd client API"),
        _builtin(2380, "etcd-server", "etcd peer traffic"),
        _builtin(3000, "dev-server", "Node.js / Rails / Grafana development server"),
        _builtin(3306, "mysql", "MySQL / MariaDB"),
        _builtin(3478, "stun", "STUN / TURN (WebRTC)", ("tcp", "udp")),
        _builtin(4200, "angular", "Angular dev server (ng serve)"),
        _builtin(4222, "nats", "NATS client port"),
        _builtin(4317, "otlp-grpc", "OpenTelemetry collector (gRPC)"),
        _builtin(4318, "otlp-http", "OpenTelemetry collector (HTTP)"),
        _builtin(5000, "flask", "Flask / Python dev server (also macOS AirPlay)"),
        _builtin(5005, "jdwp", "Java debugger (JDWP)"),
        _builtin(5173, "vite", "Vite dev server"),
        _builtin(5432, "postgresql", "PostgreSQL"),
        _builtin(5601, "kibana", "Kibana"),
        _builtin(5672, "amqp", "AMQP (RabbitMQ)"),
        _builtin(6379, "redis", "Redis"),
        _builtin(6443, "kube-apiserver", "Kubernetes API server"),
        _builtin(8000, "http-alt", "HTTP alternate (Django, python -m http.server)"),
        _builtin(8080, "http-alt", "HTTP alternate / proxy"),
        _builtin(8125, "statsd", "StatsD metrics", ("udp",)),
        _builtin(8443, "https-alt", "HTTPS alternate"),
        _builtin(8888, "jupyter", "Jupyter notebook server"),
        _builtin(9090, "prometheus", "Prometheus"),
        _builtin(9092, "kafka", "Apache Kafka broker"),
        _builtin(9200, "elasticsearch", "Elasticsearch / OpenSearch HTTP API"),
        _builtin(9229, "node-inspector", "Node.js inspector (--inspect)"),
        _builtin(11211, "memcached", "memcached", ("tcp", "udp")),
        _builtin(15672, "rabbitmq-mgmt", "RabbitMQ management UI"),
        _builtin(27017, "mongodb", "MongoDB"),
    )
    for entry in entries
)
