"""Command-line redaction: secrets are replaced by ``***`` before a command line is stored or printed.

Covered: options named like a secret with their value (``--password=x``, ``--api-key x``,
``--db-password x``), ``name=value`` pairs whose name looks secret (``token=x``, ``DB_PASSWORD=x``,
``AWS_SECRET_ACCESS_KEY=x``, also inside an argument such as ``sh -c "TOKEN=x run"`` or a URL's
query), MySQL-style ``-pSECRET``, credentials in URLs (``scheme://user:secret@host``) and
``Authorization:`` header values. Redaction errs on the side of hiding: ``-p8080`` becomes ``-p***``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MASK = "***"

_SECRET_WORD = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|"
    r"client[-_]?secret|auth|credentials?|session[-_]?key|signature|cookie)"
)
# --password, --db-password, --api_key, --token, --auth-token ... (the whole option name).
_SECRET_OPTION = re.compile(rf"^--?[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_.-]*$", re.IGNORECASE)
# name=value where the name looks secret, anywhere in an argument (env assignments, query strings).
_SECRET_PAIR = re.compile(rf"((?:^|(?<=[\s?&;,\"'({{]))-*[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_.-]*=)"
                          r"(\"[^\"]*\"|'[^']*'|[^\s&;,\"']+)", re.IGNORECASE)
# "--secret value" inside one argument (a shell command given to sh -c).
_SECRET_OPTION_INLINE = re.compile(rf"((?:^|(?<=\s))--?[A-Za-z0-9_.-]*{_SECRET_WORD}[A-Za-z0-9_.-]*\s+)"
                                   r"(\"[^\"]*\"|'[^']*'|[^\s\"'-][^\s]*)", re.IGNORECASE)
# scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):([^/\s@]*)@")
_AUTH_HEADER = re.compile(r"((?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|digest)\s+)?)\S+", re.IGNORECASE)
_SHORT_P = re.compile(r"^-p(.+)$")


def redact_text(text: str) -> str:
    """One argument (or any text) with every secret it contains masked."""
    if "=" in text:
        text = _SECRET_PAIR.sub(rf"\1{MASK}", text)
    if ":" in text:
        text = _URL_CREDENTIALS.sub(rf"\1:{MASK}@", text)
        text = _AUTH_HEADER.sub(rf"\1{MASK}", text)
    if " " in text:
        text = _SECRET_OPTION_INLINE.sub(rf"\1{MASK}", text)
    return text


def redact_cmdline(argv: Sequence[str]) -> tuple[str, ...]:
    """A command line with secrets masked: each argument's own secrets, and the value after a secret option."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            mask_next = False
            if not arg.startswith("-"):
                out.append(MASK)
                continue
        if _SHORT_P.match(arg):
            out.append("-p" + MASK)
            continue
        if _SECRET_OPTION.match(arg):
            # "--password" alone: the secret is the next argument.
            mask_next = True
            out.append(arg)
            continue
        out.append(redact_text(arg))
    return tuple(out)
