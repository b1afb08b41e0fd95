"""Settings from the config file (``$XDG_CONFIG_HOME/portmon/config.toml``), with where each value came from.

The file is TOML, read with the standard library (``tomllib``; ``tomli`` on Python 3.10)::

    interval = 2            # seconds between refreshes (0.1 to 3600)
    sort = "-pid"           # a column id or header title; a leading '-' sorts descending
    listening = true        # listening sockets only
    ignore = ["port:5353"]  # filter expressions: a socket matching any of them is left out
    theme = "textual-dark"
    columns = ["proto", "local_addr", "local_port", "state", "pid", "process"]
    reverse_dns = false

Command-line flags win over the file, the file over the defaults. The live monitor writes back the
theme and sort chosen in it (:func:`remember`: a line-level update that keeps every other line).
A file that is not valid TOML, or a value of the wrong kind, is a ConfigError naming the file and
the line; an unknown key is a warning. Values that need a higher layer to check (a sort column, a
filter term) are checked where they are used.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from portmon.textsafe import echo, one_line

DEFAULT = "default"
COMMAND_LINE = "command line"

INTERVAL_MIN = 0.1
INTERVAL_MAX = 3600.0
MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few lines: anything bigger is not one."""


class ConfigError(Exception):
    """A config file that cannot be used: str() is one line naming the file (and the line, when known)."""


class Setting(NamedTuple):
    """One effective setting and where it came from: DEFAULT, COMMAND_LINE or ``config file '<path>'``."""

    value: Any
    source: str


def _interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (INTERVAL_MIN <= value <= INTERVAL_MAX):
        raise ValueError(f"expected a number of seconds from {INTERVAL_MIN:g} to {INTERVAL_MAX:g}")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("expected a string or a list of strings")
    return tuple(value)


SETTINGS: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "interval": (1.0, _interval, "seconds between refreshes of the live monitor and watch"),
    "sort": ("local_port", _text, "sort column (leading '-': descending) of list and the live monitor (remembered)"),
    "listening": (False, _flag, "show only listening sockets (list and the live monitor)"),
    "ignore": ((), _texts, "filter expressions; a socket matching any of them is left out (list, watch, live)"),
    "theme": ("textual-dark", _text, "the live monitor's theme (remembered when changed there)"),
    "columns": ((), _texts, "the live monitor's visible columns (empty: all)"),
    "reverse_dns": (False, _flag, "show host names for remote addresses (live monitor)"),
    "history": (True, _flag, "record listening sockets into the history database while the live monitor runs"),
    "grace": (3.0, _interval, "seconds a kill (kill, the live monitor's dialog) waits for a re-bind when a manager "
              "is expected to restart the holder"),
}
"""name -> (default, check, what it does). A check returns the value or raises ValueError with the reason."""


class Config:
    """Every setting's effective value and source, the file that was read, and warnings about it."""

    def __init__(self, path: str, found: bool, settings: dict[str, Setting], warnings: list[str]) -> None:
        self.path = path
        self.found = found
        self.settings = settings
        self.warnings = warnings

    def __getitem__(self, name: str) -> Any:
        return self.settings[name].value

    def source(self, name: str) -> str:
        """Where the setting ``name`` came from."""
        return self.settings[name].source

    def override(self, name: str, value: Any) -> None:
        """A command-line flag's value, which wins over the file (None: the flag was not given)."""
        if value is not None:
            self.settings[name] = Setting(value, COMMAND_LINE)


def config_path(env: Mapping[str, str] | None = None) -> str:
    """``$XDG_CONFIG_HOME/portmon/config.toml``, ``~/.config/portmon/config.toml`` without it (or when relative)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    if not base or not os.path.isabs(base):
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return os.path.join(base, "portmon", "config.toml")


def defaults(path: str = "") -> Config:
    """Every setting at its default."""
    return Config(path, False, {name: Setting(d, DEFAULT) for name, (d, _, _) in SETTINGS.items()}, [])


def load_config(path: str | None = None) -> Config:
    """The settings from ``path`` (default ``config_path()``) over the defaults; no file means the defaults.

    Raises ConfigError (one line: file, line, reason) for a file that cannot be read or used.
    """
    path = config_path() if path is None else path
    config = defaults(path)
    where = f"config file {echo(path)}"
    data = _read(path, where)
    if data is None:
        return config
    config.found = True
    text = data.decode("utf-8", "replace")
    # Imported only when there is a file (deferred import): most runs have none, and the TOML parser
    # costs 7-50 ms of every command on a busy 2-core host (``python -X importtime``, seven runs).
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _error_line(str(exc))
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "not valid TOML"
        raise ConfigError(f"{where}{_at(line)}: {one_line(reason)}") from None
    source = f"config file {echo(path)}"
    for key, value in table.items():
        spec = SETTINGS.get(key)
        if spec is None:
            known = ", ".join(SETTINGS)
            config.warnings.append(f"{where}{_at(_key_line(text, key))}: unknown setting {echo(key)} ignored ({known})")
            continue
        try:
            config.settings[key] = Setting(spec[1](value), source)
        except ValueError as exc:
            raise ConfigError(f"{where}{_at(_key_line(text, key))}: {key}: {exc}, got {echo(value, 60)}") from None
    return config


def _read(path: str, where: str) -> bytes | None:
    """The file's bytes; None when there is no file. Only a regular file, opened without blocking."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{where}: cannot be read ({one_line(reason)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES // 1024} KiB, so not a config file")
        with os.fdopen(fd, "rb") as handle:
            fd = -1
            return handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({one_line(exc.strerror or str(exc))})") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _at(line: int | None) -> str:
    return f", line {line}" if line else ""


def _error_line(message: str) -> int | None:
    match = re.search(r"at line (\d+)", message)
    return int(match.group(1)) if match else None


def _key_line(text: str, key: str) -> int | None:
    """The line where ``key`` is set (first match), for messages."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.split("\n"), start=1):
        if pattern.match(line):
            return number
    return None


def remember(path: str, values: Mapping[str, str]) -> bool:
    """Set top-level string settings (``theme``, ``sort``) in the file at ``path``; True when it changed.

    A line-level update, never a rewrite: each ``key = ...`` line (the first, above any ``[table]``)
    gets its new value with its indentation and trailing comment kept; a key without one is added
    above the first table. Every other line stays as it was. The file (and its directory) is created
    when missing; a symlink is followed, so the file it points to is the one updated. The new text is
    written to a temporary file beside it and renamed over it, so a crash leaves the old file or the
    new one, never half of either. Raises ConfigError when the result would not be valid TOML (the
    file is then left alone), OSError when it cannot be written.
    """
    target = os.path.realpath(path)
    data = _read(target, f"config file {echo(path)}")
    try:
        text = "" if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {echo(path)}: not updated, it is not UTF-8 text") from None
    updated = _set_lines(text, values)
    if updated == text:
        return False
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        tomllib.loads(updated)
    except tomllib.TOMLDecodeError as exc:
        reason = one_line(str(exc))
        raise ConfigError(f"config file {echo(path)}: not updated, the result would not be TOML ({reason})") from None
    _write_atomically(target, updated.encode("utf-8"), existed=data is not None)
    return True


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string."""
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


# key = value [# comment]: the value is a string (either quoting), or a bare token up to a comment.
_VALUE = r"(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^#\s]+)"


def _set_lines(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each top-level ``key = ...`` line's value replaced, or the line added."""
    lines = text.split("\n")
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    missing: list[str] = []
    for key, value in values.items():
        pattern = re.compile(rf"^(\s*[\"']?{re.escape(key)}[\"']?\s*=\s*){_VALUE}(.*)$")
        for i in range(first_table):
            match = pattern.match(lines[i])
            if match:
                lines[i] = match.group(1) + _toml_string(value) + match.group(3)
                break
        else:
            missing.append(f"{key} = {_toml_string(value)}")
    if missing:
        # Above the first table (a key below a [table] header would belong to that table); a file
        # without a table gets them at its end, before the newline that ends it.
        at = first_table
        if first_table == len(lines):
            at = len(lines) - 1 if lines and lines[-1] == "" else len(lines)
        lines[at:at] = missing
        if lines[-1] != "":
            lines.append("")
    return "\n".join(lines)


def _write_atomically(target: str, data: bytes, existed: bool) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same directory and a rename.

    The file keeps its permissions (a new one gets 0600 under a 0700 directory). As root, a file in
    someone else's directory (``sudo -E`` keeps their $HOME) stays theirs: it gets its owner back.
    """
    import tempfile

    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(target) if existed else None
    fd, temp = tempfile.mkstemp(prefix=".config.toml.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if st is not None:
            os.chmod(temp, st.st_mode & 0o7777)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            owner = st if st is not None else os.stat(directory)
            os.chown(temp, owner.st_uid, owner.st_gid)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
