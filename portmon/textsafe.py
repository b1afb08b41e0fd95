"""Make untrusted text (process names, command lines, paths) safe to print: no control sequences, no tricks."""

from __future__ import annotations

import functools
import re
import unicodedata

# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates, zero-width and other invisible format
# characters, line/paragraph separators, and lone surrogates (which cannot be encoded).
# Compiled on first use: most runs of the one-shot commands only meet printable ASCII.
_UNSAFE_CLASS = (
    "["
    "\x00-\x1f\x7f-\x9f"
    "\u00ad"
    "\u061c"
    "\u180e"
    "\u200b-\u200f"
    "\u2028-\u202e"
    "\u2060-\u206f"
    "\ufeff"
    "\ufff9-\ufffb"
    "\ud800-\udfff"
    "]"
)


@functools.cache
def _unsafe() -> re.Pattern[str]:
    return re.compile(_UNSAFE_CLASS)


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def visible(text: str) -> str:
    """Return text with every control or invisible character replaced by a visible escape (``\\x1b``).

    Printable text, including non-Latin scripts, is kept as it is. The result contains no
    character that a terminal interprets, so it can be written raw or put in a widget.
    """
    if text.isprintable() and text.isascii():
        return text
    out = _unsafe().sub(_escape, text)
    # Anything else Unicode calls a control/format/surrogate/unassigned-private is shown too.
    if not out.isprintable():
        out = "".join(
            c if c == " " or c.isprintable() or unicodedata.category(c)[0] not in "CZ" else f"\\u{ord(c):04x}"
            for c in out
        )
    return out


def truncate(text: str, width: int, ellipsis: str = "…") -> str:
    """Cut text to at most ``width`` characters, ending with an ellipsis when cut."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: max(0, width - len(ellipsis))] + ellipsis


def safe(text: object, width: int | None = None) -> str:
    """``visible(str(text))``, truncated to ``width`` characters when given; None becomes ""."""
    if text is None:
        return ""
    out = visible(str(text))
    if width is not None:
        out = truncate(out, width)
    return out


ECHO_WIDTH = 120
"""Characters of user input an error or warning line repeats before cutting it."""


def echo(value: object, width: int = ECHO_WIDTH) -> str:
    """User input as an error or warning quotes it: ``'8o8o'``, on one line, escaped and cut.

    Every user-facing repetition of what the user typed or named (a port argument, an option's
    value, a registry path, argparse's "unrecognized arguments") goes through this one helper:
    control characters and newlines become visible escapes, and text longer than ``width`` is cut,
    with its full length said (``'1111…' (5000 characters)``).
    """
    raw = str(value)
    text = visible(raw)
    if len(text) <= width:
        return f"'{text}'"
    return f"'{truncate(text, width)}' ({len(raw)} characters)"


def one_line(message: str, width: int = 400) -> str:
    """A whole message made safe for one terminal line: control characters escaped, cut to ``width``."""
    return truncate(visible(message), width)
