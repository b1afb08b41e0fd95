"""Untrusted text is made visible and harmless before it reaches a terminal."""

from __future__ import annotations

import pytest

from portmon.textsafe import safe, truncate, visible


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\x9bb", "a\\x9bb"),
        ("tab\there", "tab\\there"),
        ("line\nbreak\r", "line\\nbreak\\r"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bom\ufeff", "bom\\ufeff"),
        ("lone\udc80surrogate", "lone\\udc80surrogate"),
        ("del\x7f", "del\\x7f"),
    ],
)
def test_control_and_invisible_characters_become_escapes(raw: str, shown: str) -> None:
    assert visible(raw) == shown


@pytest.mark.parametrize("text", ["nginx", "python3.11", "[/]evil", "[@click=app.quit]x", "名前", "café", "a b"])
def test_printable_text_is_kept(text: str) -> None:
    assert visible(text) == text


def test_result_has_no_terminal_control_characters() -> None:
    hostile = "".join(chr(c) for c in range(0, 0xA0)) + "\u202e\u2066\u200d\u2028"
    out = visible(hostile)
    assert all(ch == " " or ch.isprintable() for ch in out)
    assert "\x1b" not in out and "\x9b" not in out
    out.encode("utf-8")  # no lone surrogates survive


def test_truncate_and_safe() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    assert truncate("abc", 0) == ""
    assert safe(None) == ""
    assert safe("\x1bxyz", 3) == "\\x…"
    assert len(safe("x" * 1_000_000, 50)) == 50


def test_echo_quotes_escapes_and_keeps_one_line() -> None:
    from portmon.textsafe import echo

    assert echo("8080") == "'8080'"
    assert echo("a\nb\x1b[31m") == "'a\\nb\\x1b[31m'"
    assert "\n" not in echo("x\r\n" * 10) and "\x1b" not in echo("\x1b]0;pwned\x07")


def test_echo_cuts_long_input_and_says_how_long_it_was() -> None:
    from portmon.textsafe import ECHO_WIDTH, echo

    shown = echo("9" * 5000)
    assert shown == "'" + "9" * (ECHO_WIDTH - 1) + "…' (5000 characters)"
    assert echo("9" * 5, width=3) == "'99…' (5 characters)"


def test_one_line_escapes_a_whole_message() -> None:
    from portmon.textsafe import one_line

    assert one_line("bad\nthing\x07") == "bad\\nthing\\x07"
    assert len(one_line("y" * 1000)) == 400
