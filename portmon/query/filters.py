"""The socket filter language shared by the CLI and the live table: parse terms once, match many sockets fast."""

from __future__ import annotations

import re
import socket as _socket
from collections.abc import Callable, Iterable, Sequence

from portmon.model import TCP_STATES, Socket
from portmon.registry import port_range
from portmon.textsafe import visible

Predicate = Callable[[Socket], bool]

PROTOS: tuple[str, ...] = ("tcp", "udp", "tcp4", "tcp6", "udp4", "udp6")
RANGES: tuple[str, ...] = ("system", "user", "dynamic")
STATE_NONE = "NONE"
"""``state:none`` matches sockets without a TCP state, i.e. UDP."""

_MAX_PORT = 65535
_KEY_RE = re.compile(r"[A-Za-z_]+")
_NUMBER_RE = re.compile(r"[0-9]+")
_SEP = "\x00"
"""Joins the fields of a haystack: no typed word contains it, so a word cannot match across two fields."""

# Process names and users, lower case, per Holder object: a scan shares one Holder per process across
# all of that process's sockets, so a few hundred entries serve tens of thousands of sockets. Keyed
# by id() with the holder kept (a reused id is told apart, and cannot happen while it is kept).
_HOLDER_LIMIT = 4096
_holder_text: dict[int, tuple[object, str]] = {}

_LOWER_STATES = {state: state.lower() for state in TCP_STATES}

_ADDR_CACHE_LIMIT = 65536
_addr_values: dict[str, tuple[int, int] | None] = {}

_range_table: list[str] = []


class FilterError(ValueError):
    """A filter term that cannot be parsed; str() is ``invalid filter term '<term>': <reason>``."""

    def __init__(self, term: str, reason: str) -> None:
        super().__init__(f"invalid filter term '{visible(term)}': {reason}")
        self.term = term
        self.reason = reason


class SocketFilter:
    """A parsed filter: every term must match (AND). Equal filters have equal normalized text.

    Immutable. A plain class rather than a dataclass, so ``portmon list`` never imports
    ``dataclasses`` (~8 ms of its start).
    """

    __slots__ = ("text", "_predicates")

    text: str
    """Normalized text: terms separated by one space, quoted where needed, keys in lower case.

    ``parse_filter(f.text)`` gives an equal filter that matches the same sockets.
    """
    _predicates: tuple[Predicate, ...]
    """One per term, cheapest first."""

    def __init__(self, text: str, _predicates: tuple[Predicate, ...] | None = None) -> None:
        # SocketFilter("port:80") must not silently match everything: compile the text when no
        # predicates came with it.
        if _predicates is None:
            parsed = parse_filter(text)
            text, _predicates = parsed.text, parsed._predicates
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_predicates", _predicates)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SocketFilter is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"SocketFilter is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SocketFilter):
            return NotImplemented
        return self.text == other.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"SocketFilter(text={self.text!r})"

    def matches(self, sock: Socket) -> bool:
        """True when the socket satisfies every term."""
        for predicate in self._predicates:
            if not predicate(sock):
                return False
        return True

    def apply(self, sockets: Iterable[Socket]) -> list[Socket]:
        """The sockets that match, in their original order."""
        # Chained filter() objects run the AND in C, each term only on what the cheaper ones kept.
        matching: Iterable[Socket] = sockets
        for predicate in self._predicates:
            matching = filter(predicate, matching)
        return list(matching)

    @property
    def is_empty(self) -> bool:
        """True when the filter has no terms and so matches every socket."""
        return not self._predicates

    def __str__(self) -> str:
        return self.text


def parse_filter(terms: str | Sequence[str]) -> SocketFilter:
    """Parse filter text (split on whitespace, double quotes group) or a sequence of terms (taken verbatim).

    A sequence is what a shell leaves in argv: each item is one term, already unquoted.
    Raises FilterError for a malformed term.
    """
    raw = split_terms(terms) if isinstance(terms, str) else [t.strip() for t in terms]
    compiled = [_compile(term, term) for term in raw if term]
    normalized = " ".join(_quote(text) for text, _, _ in compiled)
    ordered = sorted(compiled, key=lambda c: c[2])  # stable: equal costs keep the user's order
    return SocketFilter(normalized, tuple(predicate for _, predicate, _ in ordered))


def split_terms(text: str) -> list[str]:
    """Split filter text into terms: whitespace separates, ``"..."`` groups, ``\\"`` and ``\\\\`` escape.

    Any other backslash is literal. An unterminated quote raises FilterError.
    """
    terms: list[str] = []
    buf: list[str] = []
    in_term = False
    in_quote = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in '"\\':
            if not in_term:
                in_term, start = True, i
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            if not in_term:
                in_term, start = True, i
            in_quote = not in_quote
        elif ch.isspace() and not in_quote:
            if in_term:
                terms.append("".join(buf))
                buf.clear()
                in_term = False
        else:
            if not in_term:
                in_term, start = True, i
            buf.append(ch)
        i += 1
    if in_quote:
        raise FilterError(text[start:], "unterminated quote")
    if in_term:
        terms.append("".join(buf))
    return terms


def _quote(term: str) -> str:
    """Quote a term so that split_terms gives it back unchanged."""
    if term and not any(c.isspace() or c in '"\\' for c in term):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _compile(term: str, whole: str) -> tuple[str, Predicate, int]:
    """Compile one term into (normalized text, predicate, relative cost); ``whole`` is quoted in errors."""
    if term.startswith("!"):
        inner = term[1:]
        if not inner:
            raise FilterError(whole, "nothing to negate after '!'")
        text, predicate, cost = _compile(inner, whole)
        return "!" + text, _negate(predicate), cost
    colon = term.find(":")
    if colon == 0 and not term.startswith("::"):
        # ":8080" is short for "port:8080"; "::1" is an IPv6 address and stays a bare word.
        predicate, cost = _compile_key("port", term[1:], whole)
        return term, predicate, cost
    if colon > 0 and _KEY_RE.fullmatch(term, 0, colon):
        key = term[:colon].lower()
        if key in _COMPILERS:
            predicate, cost = _compile_key(key, term[colon + 1 :], whole)
            return key + term[colon:], predicate, cost
        # "dead::beef" is an IPv6 address, not an unknown key.
        if term.count(":") < 2:
            raise FilterError(whole, f"unknown key '{visible(key)}' (valid keys: {', '.join(KEYS)})")
    return term, _bare(term.lower()), 3


def _negate(predicate: Predicate) -> Predicate:
    def negated(sock: Socket) -> bool:
        return not predicate(sock)

    return negated


def _compile_key(key: str, value: str, whole: str) -> tuple[Predicate, int]:
    if not value:
        raise FilterError(whole, f"missing a value after '{key}:'")
    parts = value.split(",")
    if not all(parts):
        raise FilterError(whole, "empty item in a comma-separated list")
    compiler, cost = _COMPILERS[key]
    return compiler(parts, whole), cost


# --- bare words -------------------------------------------------------------------------------------


def _owners(sock: Socket) -> str:
    """The holders' pid, name and user, lower case, NUL-separated; cached per Holder object."""
    holders = sock.holders
    if len(holders) != 1:
        return _SEP.join(f"{h.pid}\x00{h.name or ''}\x00{h.user or ''}" for h in holders).lower()
    holder = holders[0]
    entry = _holder_text.get(id(holder))
    if entry is not None and entry[0] is holder:
        return entry[1]
    text = f"{holder.pid}\x00{holder.name or ''}\x00{holder.user or ''}".lower()
    if len(_holder_text) >= _HOLDER_LIMIT:
        _holder_text.clear()
    _holder_text[id(holder)] = (holder, text)
    return text


def _endpoint(addr: str, port: int, family: int) -> str:
    return f"[{addr}]:{port}" if family == 6 else f"{addr}:{port}"


def haystack(sock: Socket) -> str:
    """Every field a bare word may hit, lower case, NUL-separated (the definition bare words follow).

    Proto label, local ``addr:port`` (``[addr]:port`` for IPv6), the remote one, state, local and
    remote service, owner note, and each holder's pid, process name and user.
    """
    if sock.remote_addr is None:
        remote = "" if sock.remote_port is None else str(sock.remote_port)
    elif sock.remote_port is None:
        remote = sock.remote_addr
    else:
        remote = _endpoint(sock.remote_addr, sock.remote_port, sock.family)
    fields = (
        f"{sock.proto}{sock.family}",
        _endpoint(sock.local_addr, sock.local_port, sock.family),
        remote,
        sock.state or "",
        sock.local_service or "",
        sock.remote_service or "",
        sock.owner_note or "",
    )
    return _SEP.join(fields).lower() + _SEP + _owners(sock)


def _bare(word: str) -> Predicate:
    """A case-insensitive substring test against haystack(), without building it when it can be avoided.

    Building the haystack costs about a microsecond a socket; testing the fields one by one, skipping
    those the word cannot be in, costs well under half that, and the live table runs it on every row
    of every refresh.
    """
    if not word:
        return lambda sock: True
    if any(c in word for c in ":[]" + _SEP):
        # Only the addr:port forms (or a field boundary) can hold these: use the real haystack.
        return lambda sock: word in haystack(sock)
    digits_only = word.isdigit()  # else it cannot be inside a port number
    label_sized = len(word) <= 5  # else it cannot be inside a proto label ("tcp4")

    def bare(sock: Socket) -> bool:
        if word in _owners(sock):
            return True
        addr = sock.local_addr
        if word in addr or (sock.family == 6 and word in addr.lower()):
            return True
        raddr = sock.remote_addr
        if raddr is not None and (word in raddr or (sock.family == 6 and word in raddr.lower())):
            return True
        state = sock.state
        if state is not None and word in (_LOWER_STATES.get(state) or state.lower()):
            return True
        text = sock.local_service
        if text and word in text.lower():
            return True
        text = sock.remote_service
        if text and word in text.lower():
            return True
        text = sock.owner_note
        if text and word in text.lower():
            return True
        if digits_only:
            if word in str(sock.local_port):
                return True
            rport = sock.remote_port
            if rport is not None and word in str(rport):
                return True
        return label_sized and word in f"{sock.proto}{sock.family}".lower()

    return bare


def clear_cache() -> None:
    """Drop the cached holder texts and addresses (tests; or to release memory after a huge snapshot)."""
    _holder_text.clear()
    _addr_values.clear()


# --- key:value compilers ----------------------------------------------------------------------------


def _int_ranges(parts: Sequence[str], whole: str, high: int | None, expected: str) -> list[tuple[int, int]]:
    """Parse ``N`` and ``N-M`` items into inclusive (low, high) pairs."""
    ranges: list[tuple[int, int]] = []
    for part in parts:
        first, dash, last = part.partition("-")
        # A length cap too: int() refuses thousands of digits with a ValueError of its own.
        if not _NUMBER_RE.fullmatch(first) or (dash and not _NUMBER_RE.fullmatch(last)) or len(part) > 40:
            raise FilterError(whole, expected)
        low = int(first)
        top = int(last) if dash else low
        if high is not None and (low > high or top > high):
            raise FilterError(whole, expected)
        if low > top:
            raise FilterError(whole, f"range start {low} is greater than its end {top}")
        ranges.append((low, top))
    return ranges


def _int_test(ranges: list[tuple[int, int]]) -> Callable[[int | None], bool]:
    """A membership test for ints; None is never a member."""
    if sum(top - low + 1 for low, top in ranges) <= 4096:
        members = frozenset(n for low, top in ranges for n in range(low, top + 1))
        return members.__contains__
    if len(ranges) == 1:
        low, top = ranges[0]
        return lambda n: n is not None and low <= n <= top
    return lambda n: n is not None and any(low <= n <= top for low, top in ranges)


_PORT_EXPECTED = f"expected a port number 0-{_MAX_PORT}"


def _compile_port(parts: Sequence[str], whole: str) -> Predicate:
    test = _int_test(_int_ranges(parts, whole, _MAX_PORT, _PORT_EXPECTED))
    return lambda sock: test(sock.local_port) or test(sock.remote_port)


def _compile_lport(parts: Sequence[str], whole: str) -> Predicate:
    test = _int_test(_int_ranges(parts, whole, _MAX_PORT, _PORT_EXPECTED))
    return lambda sock: test(sock.local_port)


def _compile_rport(parts: Sequence[str], whole: str) -> Predicate:
    test = _int_test(_int_ranges(parts, whole, _MAX_PORT, _PORT_EXPECTED))
    return lambda sock: test(sock.remote_port)


def _compile_pid(parts: Sequence[str], whole: str) -> Predicate:
    test = _int_test(_int_ranges(parts, whole, None, "expected a process id (a whole number) or a range like 100-200"))

    def pid(sock: Socket) -> bool:
        for holder in sock.holders:
            if test(holder.pid):
                return True
        return False

    return pid


def _compile_proto(parts: Sequence[str], whole: str) -> Predicate:
    wanted: set[tuple[str, int]] = set()
    for part in parts:
        name = part.lower()
        if name not in PROTOS:
            raise FilterError(whole, f"expected one of {', '.join(PROTOS)}")
        families = (int(name[3]),) if len(name) == 4 else (4, 6)
        wanted.update((name[:3], family) for family in families)
    frozen = frozenset(wanted)
    return lambda sock: (sock.proto, sock.family) in frozen


def _state_spelling(name: str) -> str:
    # "time-wait", "time_wait", "TimeWait" and "FIN_WAIT_1" all name one state.
    return name.upper().replace("-", "").replace("_", "")


_STATE_BY_SPELLING: dict[str, str | None] = {_state_spelling(s): s for s in TCP_STATES}
_STATE_BY_SPELLING[STATE_NONE] = None
_STATE_EXPECTED = f"expected a TCP state: {', '.join(TCP_STATES)}, or NONE for sockets without one (UDP)"


def _compile_state(parts: Sequence[str], whole: str) -> Predicate:
    wanted: set[str | None] = set()
    for part in parts:
        spelling = _state_spelling(part)
        if spelling not in _STATE_BY_SPELLING:
            raise FilterError(whole, _STATE_EXPECTED)
        wanted.add(_STATE_BY_SPELLING[spelling])
    frozen = frozenset(wanted)
    return lambda sock: sock.state in frozen


def _substrings(parts: Sequence[str]) -> tuple[str, ...]:
    return tuple(part.lower() for part in parts)


def _contains_any(text: str | None, needles: tuple[str, ...]) -> bool:
    if not text:
        return False
    lowered = text.lower()
    for needle in needles:
        if needle in lowered:
            return True
    return False


def _compile_proc(parts: Sequence[str], whole: str) -> Predicate:
    needles = _substrings(parts)

    def proc(sock: Socket) -> bool:
        for holder in sock.holders:
            if _contains_any(holder.name, needles):
                return True
        return False

    return proc


def _compile_user(parts: Sequence[str], whole: str) -> Predicate:
    needles = _substrings(parts)

    def user(sock: Socket) -> bool:
        for holder in sock.holders:
            if _contains_any(holder.user, needles):
                return True
        return False

    return user


def _compile_service(parts: Sequence[str], whole: str) -> Predicate:
    needles = _substrings(parts)
    return lambda sock: _contains_any(sock.local_service, needles) or _contains_any(sock.remote_service, needles)


def _compile_managed(parts: Sequence[str], whole: str) -> Predicate:
    # Reads /proc (cgroup, environment, parent chain) per main holder, remembered per process: imported
    # only when the key is used.
    from portmon.ownership.view import managed_matcher

    return managed_matcher(parts)


LOCAL_HOST = "local"
"""``host:local`` matches this machine's sockets (those without a host)."""


def _compile_host(parts: Sequence[str], whole: str) -> Predicate:
    # Substrings, as proc: and user: are; "local" names this machine.
    needles = _substrings(parts)
    local = LOCAL_HOST in needles

    def host(sock: Socket) -> bool:
        if sock.host is None:
            return local
        return _contains_any(sock.host, needles)

    return host


NETNS_HOST = "host"
"""``netns:host`` matches sockets of portmon's own network namespace."""


def _compile_netns(parts: Sequence[str], whole: str) -> Predicate:
    # A number is a namespace inode (exact, as ``lsns`` prints it, or ``net:[N]``); "host" is portmon's own
    # namespace; anything else is a substring of the label (``container web``, ``netns blue``), any case.
    inodes: set[int] = set()
    words: list[str] = []
    own = False
    for part in parts:
        text = part.strip().lower()
        if text.startswith("net:[") and text.endswith("]"):
            text = text[5:-1]
        if not text:
            raise FilterError(whole, "netns: needs a namespace inode, 'host', or part of its label")
        if text == NETNS_HOST:
            own = True
        elif _NUMBER_RE.fullmatch(text):
            inodes.add(int(text))
        else:
            words.append(text)
    needles = tuple(words)
    labels: dict[object, bool] = {}

    def netns(sock: Socket) -> bool:
        ref = sock.netns
        if ref is None:
            return own
        if ref.inode in inodes:
            return True
        found = labels.get(ref)
        if found is None:
            found = labels[ref] = bool(needles) and _contains_any(ref.label, needles)
        return found

    return netns


def _ranges_by_port() -> list[str]:
    # One list index per socket instead of a function call; built once, 64 KiB of pointers.
    if not _range_table:
        _range_table.extend(port_range(port) for port in range(_MAX_PORT + 1))
    return _range_table


def _compile_range(parts: Sequence[str], whole: str) -> Predicate:
    wanted = set()
    for part in parts:
        name = part.lower()
        if name not in RANGES:
            raise FilterError(whole, "expected system, user or dynamic")
        wanted.add(name)
    table = _ranges_by_port()
    flags = [name in wanted for name in table]
    last = len(flags) - 1
    return lambda sock: 0 <= sock.local_port <= last and flags[sock.local_port]


def address_value(addr: str | None) -> tuple[int, int] | None:
    """(IP version, integer value) of an address string, IPv4-mapped IPv6 as IPv4; None if not an IP.

    Scope ids (``fe80::1%eth0``) are ignored. Results are cached: the same few addresses repeat.
    """
    if addr is None:
        return None
    try:
        return _addr_values[addr]
    except KeyError:
        pass
    value = _parse_address(addr)
    if len(_addr_values) >= _ADDR_CACHE_LIMIT:
        _addr_values.clear()
    _addr_values[addr] = value
    return value


def _parse_address(addr: str) -> tuple[int, int] | None:
    text = addr.strip("[]").partition("%")[0]
    try:
        return 4, int.from_bytes(_socket.inet_pton(_socket.AF_INET, text), "big")
    except (OSError, ValueError):
        pass
    try:
        value = int.from_bytes(_socket.inet_pton(_socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:  # ::ffff:a.b.c.d
        return 4, value & 0xFFFFFFFF
    return 6, value


def _parse_network(text: str) -> tuple[int, int, int] | None:
    """(version, network value, mask) for an address or CIDR; an IPv4-mapped network becomes IPv4."""
    import ipaddress  # only address terms need it: ~1 ms off every ``portmon list``

    if text.startswith("[") and "]" in text:
        inner, _, rest = text[1:].partition("]")
        text = inner + rest
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    mapped = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(mapped):
        prefix = net.prefixlen - 96
        v4 = ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, prefix))
        return 4, int(v4.network_address), int(v4.netmask)
    return net.version, int(net.network_address), int(net.netmask)


def _compile_addr(parts: Sequence[str], whole: str) -> Predicate:
    nets: list[tuple[int, int, int]] = []
    for part in parts:
        net = _parse_network(part)
        if net is None:
            raise FilterError(whole, "expected an IP address or CIDR network like 10.0.0.0/8 or fe80::/10")
        nets.append(net)
    # The same few addresses recur on thousands of sockets (the host's own, a busy peer's): remember
    # the answer per address string for this filter, within a bound.
    memo: dict[str | None, bool] = {None: False}

    def hit(addr: str | None) -> bool:
        found = memo.get(addr)
        if found is None:
            value = address_value(addr)
            found = value is not None and any(
                value[0] == version and value[1] & mask == network for version, network, mask in nets
            )
            if len(memo) >= _ADDR_CACHE_LIMIT:
                memo.clear()
                memo[None] = False
            memo[addr] = found
        return found

    return lambda sock: hit(sock.local_addr) or hit(sock.remote_addr)


# key -> (compiler of the comma-separated values, relative cost: cheaper terms run first).
_COMPILERS: dict[str, tuple[Callable[[Sequence[str], str], Predicate], int]] = {
    "addr": (_compile_addr, 2),
    "host": (_compile_host, 1),
    "lport": (_compile_lport, 1),
    "managed": (_compile_managed, 4),
    "netns": (_compile_netns, 1),
    "pid": (_compile_pid, 2),
    "port": (_compile_port, 1),
    "proc": (_compile_proc, 2),
    "proto": (_compile_proto, 1),
    "range": (_compile_range, 1),
    "rport": (_compile_rport, 1),
    "service": (_compile_service, 2),
    "state": (_compile_state, 1),
    "user": (_compile_user, 2),
}

KEYS: tuple[str, ...] = tuple(sorted(_COMPILERS))
"""Every ``key:value`` key the language knows, alphabetically (error messages list them)."""
