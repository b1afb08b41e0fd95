"""``[USER@]HOST[:PORT]`` host specs, from ``--host`` and from a hosts file."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

_NAME_RE = re.compile(r"[A-Za-z0-9_.%-]+")
"""What a host name or address may be made of (``%`` for an IPv6 scope); nothing ssh would read as an option."""
_USER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")


class HostSpecError(ValueError):
    """A host spec that cannot be parsed; str() says which and why."""


class HostSpec(NamedTuple):
    """One remote host as the user named it."""

    label: str
    """The text the user gave (``alice@db1:2222``): what every row and message calls the host."""
    host: str
    user: str | None = None
    port: int | None = None


def parse_host(text: str) -> HostSpec:
    """Parse ``[USER@]HOST[:PORT]``; an IPv6 address with a port is written ``[ADDR]:PORT``."""
    label = text.strip()
    if not label:
        raise HostSpecError("empty host name")
    user: str | None = None
    rest = label
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not _USER_RE.fullmatch(user):
            raise HostSpecError(f"invalid user name in host '{label}'")
    port: int | None = None
    if rest.startswith("["):
        addr, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise HostSpecError(f"invalid host '{label}': expected [ADDRESS]:PORT")
        host, port_text = addr, tail[1:] if tail else None
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host, port_text = rest, None  # a bare IPv6 address, or a name
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
            raise HostSpecError(f"invalid port in host '{label}': expected 1-65535")
        port = int(port_text)
    if not host or host.startswith("-") or not (_NAME_RE.fullmatch(host) or _is_ipv6(host)):
        raise HostSpecError(f"invalid host name in '{label}'")
    return HostSpec(label=label, host=host, user=user, port=port)


def _is_ipv6(text: str) -> bool:
    return ":" in text and all(c in "0123456789abcdefABCDEF:.%" or c.isalnum() for c in text)


def parse_hosts_file(text: str, source: str = "hosts file") -> list[HostSpec]:
    """One host spec per line; blank lines and ``#`` comments are skipped. Errors name the line."""
    specs: list[HostSpec] = []
    for number, line in enumerate(text.splitlines(), 1):
        item = line.partition("#")[0].strip()
        if not item:
            continue
        try:
            specs.append(parse_host(item))
        except HostSpecError as exc:
            raise HostSpecError(f"{source}, line {number}: {exc}") from None
    return specs


def unique(specs: Iterable[HostSpec]) -> list[HostSpec]:
    """The specs in order, each label once."""
    seen: set[str] = set()
    out: list[HostSpec] = []
    for spec in specs:
        if spec.label not in seen:
            seen.add(spec.label)
            out.append(spec)
    return out
