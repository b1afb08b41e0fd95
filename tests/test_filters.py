"""Tests for the filter language: every key, ranges, negation, quoting, bare words and every error."""

from __future__ import annotations

import pytest

from portmon.model import ESTABLISHED, LISTEN, OWNER_KERNEL, TIME_WAIT, Holder, Socket
from portmon.query import filters
from portmon.query.filters import FilterError, SocketFilter, parse_filter, split_terms


def sock(
    proto: str = "tcp",
    family: int = 4,
    local: str = "127.0.0.1",
    lport: int = 8080,
    remote: str | None = None,
    rport: int | None = None,
    state: str | None = LISTEN,
    holders: tuple[Holder, ...] = (),
    lservice: str | None = None,
    rservice: str | None = None,
    owner_note: str | None = None,
    seq: int = 0,
) -> Socket:
    """A hand-built socket with sensible defaults (a TCP listener on 127.0.0.1:8080)."""
    return Socket(
        proto=proto,
        family=family,
        local_addr=local,
        local_port=lport,
        remote_addr=remote,
        remote_port=rport,
        state=state,
        holders=holders,
        owner_note=owner_note,
        local_service=lservice,
        remote_service=rservice,
        seq=seq,
    )


NGINX = Holder(pid=1200, name="nginx", user="www-data")
WORKER = Holder(pid=1201, name="nginx-worker", user="www-data")
PY = Holder(pid=4321, name="My App.py", user="Alice")
SSHD = Holder(pid=77, name="sshd", user="root")

WEB = sock(lport=80, lservice="http", holders=(NGINX, WORKER), local="0.0.0.0")
WEB6 = sock(family=6, local="::", lport=443, lservice="https", holders=(NGINX,))
CONN = sock(
    local="10.0.0.5", lport=22, remote="10.1.2.3", rport=51000, state=ESTABLISHED, holders=(SSHD,), lservice="ssh"
)
CLIENT = sock(
    local="192.168.7.50",
    lport=40000,
    remote="93.184.216.34",
    rport=443,
    state=ESTABLISHED,
    holders=(PY,),
    rservice="https",
)
WAIT = sock(lport=8080, remote="127.0.0.1", rport=50123, state=TIME_WAIT, owner_note=OWNER_KERNEL)
RESOLVED = Holder(9, "systemd-resolved", "systemd-resolve")
DNS = sock(proto="udp", local="127.0.0.53", lport=53, state=None, lservice="domain", holders=(RESOLVED,))
UDP6 = sock(
    proto="udp", family=6, local="fe80::1%eth0", lport=5353, state=None, holders=(Holder(10, "avahi", "avahi"),)
)
MAPPED = sock(
    family=6, local="::ffff:192.168.1.10", lport=9000, remote="::ffff:192.168.1.20", rport=60000, state=ESTABLISHED
)
LOOP6 = sock(family=6, local="::1", lport=631, state=LISTEN, holders=(Holder(500, "cupsd", "root"),))
ALL = (WEB, WEB6, CONN, CLIENT, WAIT, DNS, UDP6, MAPPED, LOOP6)


def hits(text: str | list[str]) -> list[Socket]:
    """The sockets of ALL that the filter keeps, checked to agree with matches()."""
    flt = parse_filter(text)
    kept = flt.apply(ALL)
    assert kept == [s for s in ALL if flt.matches(s)]
    assert flt.apply(list(ALL)) == kept  # a list (not cached) gives the same answer as the tuple
    return kept


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    filters.clear_cache()


# --- empty filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", [], ["", "  "], '""'])
def test_empty_filter_matches_everything(text: str | list[str]) -> None:
    flt = parse_filter(text)
    assert flt.is_empty
    assert flt.apply(ALL) == list(ALL)
    assert flt.text == ""


def test_non_empty_filter_is_not_empty() -> None:
    assert not parse_filter("port:80").is_empty
    assert not parse_filter("nginx").is_empty


# --- port, lport, rport -----------------------------------------------------------------------------


def test_port_matches_local_or_remote() -> None:
    assert hits("port:443") == [WEB6, CLIENT]
    assert hits("port:22") == [CONN]
    assert hits("port:51000") == [CONN]


def test_colon_shorthand_is_port() -> None:
    assert hits(":443") == hits("port:443") == [WEB6, CLIENT]
    assert hits("!:443") == [s for s in ALL if s not in (WEB6, CLIENT)]


def test_lport_and_rport() -> None:
    assert hits("lport:443") == [WEB6]
    assert hits("rport:443") == [CLIENT]
    assert hits("rport:22") == []


def test_port_range_inclusive() -> None:
    assert hits("lport:22-80") == [WEB, CONN, DNS]
    assert hits("lport:53-53") == [DNS]
    assert hits("port:50000-52000") == [CONN, WAIT]


def test_port_lists_and_wide_ranges() -> None:
    assert hits("lport:22,53") == [CONN, DNS]
    assert hits("lport:0-65535") == list(ALL)
    assert hits("lport:1-21,9000-10000") == [MAPPED]


# --- proto, state -----------------------------------------------------------------------------------


def test_proto() -> None:
    assert hits("proto:udp") == [DNS, UDP6]
    assert hits("proto:tcp6") == [WEB6, MAPPED, LOOP6]
    assert hits("proto:udp4") == [DNS]
    assert hits("proto:UDP6") == [UDP6]
    assert hits("proto:tcp") == [WEB, WEB6, CONN, CLIENT, WAIT, MAPPED, LOOP6]


@pytest.mark.parametrize("spelling", ["state:LISTEN", "state:listen", "state:Listen"])
def test_state_is_case_insensitive(spelling: str) -> None:
    assert hits(spelling) == [WEB, WEB6, LOOP6]


@pytest.mark.parametrize("spelling", ["state:TIME_WAIT", "state:time-wait", "state:timewait"])
def test_state_spellings(spelling: str) -> None:
    assert hits(spelling) == [WAIT]


def test_state_none_is_udp() -> None:
    assert hits("state:none") == [DNS, UDP6]


def test_state_list() -> None:
    assert hits("state:established,time_wait") == [CONN, CLIENT, WAIT, MAPPED]


# --- pid, proc, user, service -----------------------------------------------------------------------


def test_pid_any_holder() -> None:
    assert hits("pid:1201") == [WEB]  # the second holder counts too
    assert hits("pid:1200") == [WEB, WEB6]
    assert hits("pid:1-100") == [CONN, DNS, UDP6]
    assert hits("pid:999999") == []


def test_proc_substring_any_holder_case_insensitive() -> None:
    assert hits("proc:worker") == [WEB]
    assert hits("proc:NGINX") == [WEB, WEB6]
    assert hits("proc:app.py") == [CLIENT]
    assert hits("proc:nobody") == []


def test_user_substring_case_insensitive() -> None:
    assert hits("user:alice") == [CLIENT]
    assert hits("user:WWW") == [WEB, WEB6]
    assert hits("user:systemd") == [DNS]


def test_service_local_or_remote() -> None:
    assert hits("service:https") == [WEB6, CLIENT]
    assert hits("service:HTTP") == [WEB, WEB6, CLIENT]
    assert hits("service:domain") == [DNS]


def test_range() -> None:
    assert hits("range:system") == [WEB, WEB6, CONN, DNS, LOOP6]
    assert hits("range:user") == [CLIENT, WAIT, UDP6, MAPPED]
    assert hits("range:dynamic") == []
    assert hits("range:USER,dynamic") == [CLIENT, WAIT, UDP6, MAPPED]


def test_range_dynamic() -> None:
    high = sock(lport=60000)
    flt = parse_filter("range:dynamic")
    assert flt.matches(high)
    assert not flt.matches(sock(lport=49151))


# --- addr -------------------------------------------------------------------------------------------


def test_addr_exact_local_or_remote() -> None:
    assert hits("addr:10.1.2.3") == [CONN]
    assert hits("addr:127.0.0.1") == [WAIT]  # the listener on 127.0.0.1:8080 is WAIT's local end


def test_addr_cidr() -> None:
    assert hits("addr:127.0.0.0/8") == [WAIT, DNS]
    assert hits("addr:10.0.0.0/8") == [CONN]
    assert hits("addr:0.0.0.0/0") == [WEB, CONN, CLIENT, WAIT, DNS, MAPPED]


def test_addr_ipv6() -> None:
    assert hits("addr:::1") == [LOOP6]
    assert hits("addr:[::1]") == [LOOP6]
    assert hits("addr:fe80::/10") == [UDP6]  # the scope id on the socket's address is ignored


def test_addr_ipv4_mapped_matches_both_ways() -> None:
    assert hits("addr:192.168.1.20") == [MAPPED]
    assert hits("addr:192.168.1.0/24") == [MAPPED]
    assert hits("addr:::ffff:192.168.1.10") == [MAPPED]
    assert hits("addr:::ffff:192.168.1.0/120") == [MAPPED]
    assert hits("addr:::ffff:192.168.0.0/112") == [CLIENT, MAPPED]
    plain = sock(local="192.168.1.10")
    assert parse_filter("addr:::ffff:192.168.1.10").matches(plain)


def test_addr_list() -> None:
    assert hits("addr:10.1.2.3,::1") == [CONN, LOOP6]


def test_addr_does_not_match_non_ip_text() -> None:
    odd = sock(local="*")
    assert not parse_filter("addr:0.0.0.0/0").matches(odd)
    assert not parse_filter("addr:::/0").matches(odd)


# --- bare words -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("nginx", [WEB, WEB6]),  # process name
        ("worker", [WEB]),  # second holder's name
        ("www-data", [WEB, WEB6]),  # user
        ("alice", [CLIENT]),  # user, case-insensitive
        ("10.1.2.3", [CONN]),  # remote address
        ("127.0.0.53", [DNS]),  # local address
        ("127.0.0.1:8080", [WAIT]),  # addr:port form
        ("[::1]:631", [LOOP6]),  # bracketed IPv6 addr:port form
        ("::1", [UDP6, LOOP6]),  # bare IPv6 address, not a key (and a substring of fe80::1)
        ("fe80::1", [UDP6]),
        ("51000", [CONN]),  # remote port
        ("domain", [DNS]),  # local service
        ("https", [WEB6, CLIENT]),  # local or remote service
        ("time_wait", [WAIT]),  # state, case-insensitive
        ("udp6", [UDP6]),  # proto label
        ("4321", [CLIENT]),  # pid
        ("kernel", [WAIT]),  # the owner note of a kernel-owned socket
    ],
)
def test_bare_word_hits_each_field(word: str, expected: list[Socket]) -> None:
    assert hits(word) == expected


def test_bare_word_case_insensitive() -> None:
    assert hits("NGINX") == hits("nginx") == [WEB, WEB6]
    assert hits("ESTABLISHED") == [CONN, CLIENT, MAPPED]
    assert hits("My") == [CLIENT]


def test_bare_word_does_not_match_absent_fields() -> None:
    # No missing field renders as "None".
    assert hits("none") == []


def test_bare_word_does_not_match_across_fields() -> None:
    # WEB6's proto label "tcp6" is followed by its local endpoint; no word spans the two.
    assert hits("tcp6[") == []
    assert hits("nginxwww") == []


def test_bare_word_substring_of_port() -> None:
    assert hits("808") == [WAIT]


def test_quoted_term_with_space() -> None:
    assert hits('"my app"') == [CLIENT]
    assert hits('proc:"my app"') == [CLIENT]
    assert hits('"my app" alice') == [CLIENT]
    assert hits("my app") == [CLIENT]  # two words, both in "My App.py"
    assert hits('"app my"') == []  # one phrase, not in any field
    assert hits("my app.py") == [CLIENT]


def test_sequence_terms_are_taken_verbatim() -> None:
    assert hits(["my app"]) == [CLIENT]
    assert hits(["proc:my app", "port:443"]) == [CLIENT]
    assert parse_filter(["my app"]).text == '"my app"'


# --- AND, negation ----------------------------------------------------------------------------------


def test_terms_are_anded() -> None:
    assert hits("nginx port:443") == [WEB6]
    assert hits("proto:tcp state:established rport:443") == [CLIENT]
    assert hits("nginx ssh") == []


def test_negation_of_key_value() -> None:
    assert hits("!proto:tcp") == [DNS, UDP6]
    assert hits("!state:listen !proto:udp") == [CONN, CLIENT, WAIT, MAPPED]
    assert hits("!addr:127.0.0.0/8 proto:udp") == [UDP6]


def test_negation_of_bare_word() -> None:
    assert hits("!nginx !udp") == [CONN, CLIENT, WAIT, MAPPED, LOOP6]
    assert hits("!!nginx") == hits("nginx")


def test_negated_word_with_predicates() -> None:
    assert hits("state:listen !nginx") == [LOOP6]
    assert hits("!https proto:tcp6") == [MAPPED, LOOP6]


# --- normalized text --------------------------------------------------------------------------------


def test_text_is_normalized_and_round_trips() -> None:
    flt = parse_filter('  PORT:80    "my app"  !State:LISTEN x\\"y  ')
    assert flt.text == 'port:80 "my app" !state:LISTEN "x\\"y"'
    again = parse_filter(flt.text)
    assert again == flt
    assert again.apply(ALL) == flt.apply(ALL)


def test_filters_compare_by_text() -> None:
    assert parse_filter("port:80  nginx") == parse_filter(["port:80", "nginx"])
    assert parse_filter("port:80") != parse_filter("port:81")
    assert hash(parse_filter("port:80")) == hash(parse_filter("port:80"))


def test_constructing_from_text_compiles_it() -> None:
    flt = SocketFilter("lport:443")
    assert flt.apply(ALL) == [WEB6]
    assert not flt.is_empty
    with pytest.raises(FilterError):
        SocketFilter("port:x")


def test_split_terms() -> None:
    assert split_terms('a "b c" d') == ["a", "b c", "d"]
    assert split_terms('proc:"x y"z') == ["proc:x yz"]
    assert split_terms('"a \\" b"') == ['a " b']
    assert split_terms("a\\b") == ["a\\b"]  # a backslash before anything but a quote is literal
    assert split_terms('""') == [""]
    assert split_terms("\t a \n") == ["a"]


# --- errors -----------------------------------------------------------------------------------------

ADDR_EXPECTED = "expected an IP address or CIDR network like 10.0.0.0/8 or fe80::/10"



@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port:abc", "invalid filter term 'port:abc': expected a port number 0-65535"),
        ("port:99999", "invalid filter term 'port:99999': expected a port number 0-65535"),
        ("lport:-1", "invalid filter term 'lport:-1': expected a port number 0-65535"),
        ("rport:1-70000", "invalid filter term 'rport:1-70000': expected a port number 0-65535"),
        ("port:9000-8000", "invalid filter term 'port:9000-8000': range start 9000 is greater than its end 8000"),
        ("port:", "invalid filter term 'port:': missing a value after 'port:'"),
        ("port:80,", "invalid filter term 'port:80,': empty item in a comma-separated list"),
        (":abc", "invalid filter term ':abc': expected a port number 0-65535"),
        ("addr:1.2.3.4/99", "invalid filter term 'addr:1.2.3.4/99': " + ADDR_EXPECTED),
        ("addr:example.com", "invalid filter term 'addr:example.com': " + ADDR_EXPECTED),
        ("proto:icmp", "invalid filter term 'proto:icmp': expected one of tcp, udp, tcp4, tcp6, udp4, udp6"),
        ("range:huge", "invalid filter term 'range:huge': expected system, user or dynamic"),
        ("pid:x", "invalid filter term 'pid:x': expected a process id (a whole number) or a range like 100-200"),
        ("pid:-5", "invalid filter term 'pid:-5': expected a process id (a whole number) or a range like 100-200"),
        (
            "nosuchkey:1",
            "invalid filter term 'nosuchkey:1': unknown key 'nosuchkey' "
            "(valid keys: addr, host, lport, managed, netns, pid, port, proc, proto, range, rport, service, state, "
            "user)",
        ),
        ("!", "invalid filter term '!': nothing to negate after '!'"),
        ('"my app', "invalid filter term '\"my app': unterminated quote"),
        ('ok "my app', "invalid filter term '\"my app': unterminated quote"),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("text", ["port:" + "9" * 5000, "pid:1-" + "9" * 5000])
def test_huge_numbers_are_filter_errors(text: str) -> None:
    with pytest.raises(FilterError, match="^invalid filter term '(port|pid):"):
        parse_filter(text)


def test_lists_of_names() -> None:
    assert hits("proc:sshd,avahi") == [CONN, UDP6]
    assert hits("user:root,alice") == [CONN, CLIENT, LOOP6]
    assert hits("service:ssh,domain") == [CONN, DNS]


def test_state_error_lists_every_state() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter("state:nosuch")
    message = str(caught.value)
    assert message.startswith("invalid filter term 'state:nosuch': expected a TCP state: LISTEN, ESTABLISHED, ")
    for state in ("SYN_SENT", "TIME_WAIT", "CLOSE_WAIT", "NEW_SYN_RECV", "NONE"):
        assert state in message


def test_error_names_the_whole_negated_term() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter("nginx !port:abc")
    assert str(caught.value) == "invalid filter term '!port:abc': expected a port number 0-65535"
    assert caught.value.term == "!port:abc"
    assert caught.value.reason == "expected a port number 0-65535"


def test_error_term_is_made_visible() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(["port:\x1b[31m"])
    assert "\x1b" not in str(caught.value)
    assert "\\x1b" in str(caught.value)


def test_unknown_key_with_one_colon_but_ipv6_like_words_are_bare() -> None:
    with pytest.raises(FilterError):
        parse_filter("dead:beef")
    assert hits("dead::beef") == []  # two colons: an IPv6 address, searched as a word


# --- bare words follow haystack() exactly -----------------------------------------------------------


def test_haystack_lists_every_field() -> None:
    text = filters.haystack(CLIENT)
    assert text.split("\x00") == [
        "tcp4",
        "192.168.7.50:40000",
        "93.184.216.34:443",
        "established",
        "",
        "https",
        "",
        "4321",
        "my app.py",
        "alice",
    ]
    assert filters.haystack(LOOP6).split("\x00")[:3] == ["tcp6", "[::1]:631", ""]
    assert filters.haystack(WEB).split("\x00")[-6:] == ["1200", "nginx", "www-data", "1201", "nginx-worker", "www-data"]


def _words_from(text: str) -> set[str]:
    """Every substring of length 1-6 of a haystack, plus a few that span fields or miss."""
    out = {text[i : i + n] for n in range(1, 7) for i in range(len(text) - n + 1)}
    return out | {"zzz", "tcp4\x00", "53\x00domain", "[::1]", "1]:6", "::", "a:b::"}


def test_bare_word_predicate_agrees_with_haystack() -> None:
    odd = sock(
        proto="udp", family=6, local="FE80::AB", lport=7, remote="2001:DB8::1", rport=9, state="WEIRD_STATE",
        holders=(Holder(5, None, None),), lservice="X11", rservice="Pop3", owner_note="Hidden",
    )
    bare_port = sock(remote=None, rport=4242, state=None)
    for candidate in ALL + (odd, bare_port):
        text = filters.haystack(candidate)
        for word in _words_from(text) | _words_from(filters.haystack(WEB)):
            if not word.strip() or '"' in word or "\\" in word:
                continue
            expected = word.lower() in text
            assert filters._bare(word.lower())(candidate) is expected, (word, candidate)


def test_holder_text_cache_is_per_holder_object() -> None:
    first = sock(holders=(Holder(1, "alpha", "u"),))
    assert parse_filter("alpha").matches(first)
    second = sock(holders=(Holder(1, "beta", "u"),))
    assert parse_filter("beta").matches(second)
    assert not parse_filter("alpha").matches(second)


def test_keys_constant() -> None:
    assert filters.KEYS == (
        "addr", "host", "lport", "managed", "netns", "pid", "port", "proc", "proto", "range", "rport", "service",
        "state", "user",
    )  # fmt: skip
