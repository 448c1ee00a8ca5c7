"""Unit tests for netkit.portspec: Docker's -p/--expose syntax, `docker port` lines, port picking."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netkit.errors import UserError
from netkit.portspec import (
    PortSpec,
    ephemeral_range,
    format_mapping,
    parse_expose,
    parse_port_spec,
)

# (spec, host_ip, family, host_ports, container_ports, proto, pairs, pick_range)
VALID = [
    ("80", "", 4, None, (80, 80), "tcp", [(None, 80)], None),
    ("8088:80", "", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("127.0.0.1:8088:80", "127.0.0.1", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("127.0.0.1::80", "127.0.0.1", 4, None, (80, 80), "tcp", [(None, 80)], None),
    ("8000-8001:80-81", "", 4, (8000, 8001), (80, 81), "tcp", [(8000, 80), (8001, 81)], None),
    ("80-81", "", 4, None, (80, 81), "tcp", [(None, 80), (None, 81)], None),
    ("8000-8010:80", "", 4, (8000, 8010), (80, 80), "tcp", [(None, 80)], (8000, 8010)),
    ("127.0.0.1:8000-8010:80/udp", "127.0.0.1", 4, (8000, 8010), (80, 80), "udp", [(None, 80)], (8000, 8010)),
    ("127.0.0.1::80-82", "127.0.0.1", 4, None, (80, 82), "tcp", [(None, 80), (None, 81), (None, 82)], None),
    ("8088:80/udp", "", 4, (8088, 8088), (80, 80), "udp", [(8088, 80)], None),
    ("8088:80/tcp", "", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("8088:80/sctp", "", 4, (8088, 8088), (80, 80), "sctp", [(8088, 80)], None),
    ("8088:80/UDP", "", 4, (8088, 8088), (80, 80), "udp", [(8088, 80)], None),
    ("80/Sctp", "", 4, None, (80, 80), "sctp", [(None, 80)], None),
    ("[::1]:8088:80", "::1", 6, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("[::]::80", "::", 6, None, (80, 80), "tcp", [(None, 80)], None),
    ("[2001:DB8:0:0::1]:53:53/udp", "2001:db8::1", 6, (53, 53), (53, 53), "udp", [(53, 53)], None),
    ("[127.0.0.1]:8088:80", "127.0.0.1", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("0.0.0.0:8088:80", "0.0.0.0", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
    ("8000-8000:80", "", 4, (8000, 8000), (80, 80), "tcp", [(8000, 80)], None),
    ("1:65535", "", 4, (1, 1), (65535, 65535), "tcp", [(1, 65535)], None),
    ("08088:080", "", 4, (8088, 8088), (80, 80), "tcp", [(8088, 80)], None),
]


@pytest.mark.parametrize("text,host_ip,family,host_ports,container_ports,proto,pairs,pick", VALID)
def test_valid_forms(text, host_ip, family, host_ports, container_ports, proto, pairs, pick):
    spec = parse_port_spec(text)
    assert spec == PortSpec(host_ip, family, host_ports, container_ports, proto)
    assert spec.pairs() == pairs
    assert spec.pick_range == pick
    assert parse_port_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("80", "80/tcp"),
        ("8088:80", "8088:80/tcp"),
        ("127.0.0.1:8088:80", "127.0.0.1:8088:80/tcp"),
        ("127.0.0.1::80", "127.0.0.1::80/tcp"),
        ("8000-8001:80-81/UDP", "8000-8001:80-81/udp"),
        ("[::1]:8088:80", "[::1]:8088:80/tcp"),
        ("[::]::80/sctp", "[::]::80/sctp"),
        ("[127.0.0.1]:8088:80", "127.0.0.1:8088:80/tcp"),
        ("8000-8000:80-80", "8000:80/tcp"),
    ],
)
def test_canonical_text(text, canonical):
    assert str(parse_port_spec(text)) == canonical


# (spec, a fragment the message must contain)
INVALID = [
    ("8088:", "container port missing"),
    (":80", "empty host port"),
    ("80:abc", "'abc' is not a port number"),
    ("70000", "out of range"),
    ("8088:70000", "out of range"),
    ("0-5:80", "host port 0 is out of range"),
    ("0", "out of range"),
    ("90-80", "reversed"),
    ("8000:90-80", "reversed"),
    ("8000-8002:80-81", "3 ports"),
    ("8000:80-81", "single host port"),
    ("80/icmp", "unknown protocol 'icmp'"),
    ("80/", "empty protocol"),
    ("/udp", "port missing"),
    ("80/udp/tcp", "more than one '/'"),
    ("8088/udp:80", "protocol goes after the container port"),
    ("", "empty"),
    ("   ", "empty"),
    ("80 ", "whitespace"),
    ("80:80\n", "whitespace"),
    ("1:2:3:4", "too many ':'"),
    ("1.2.3.4:1:2:3", "too many ':'"),
    ("::80", "empty IP"),
    (":8088:80", "empty IP"),
    ("300.1.1.1:80:80", "not a valid IPv4 address"),
    ("1.2.3:80:80", "not a valid IPv4 address"),
    ("localhost:8088:80", "IP addresses only"),
    ("myhost::80", "IP addresses only"),
    ("[myhost]:8088:80", "IP addresses only"),
    ("::1:8088:80", "brackets"),
    ("fe80::1", "brackets"),
    ("::1::80", "brackets"),
    ("1.2.3.4:80", "without a host port"),
    ("[::1:80:80", "closing ']'"),
    ("[::1]80:80", "expected ':' after ']'"),
    ("[::1]:80", "after [IP]"),
    ("[::1]:1:2:3", "after [IP]"),
    ("[]:80:80", "empty IP"),
    ("[::g]:80:80", "not a valid IP address"),
    ("[fe80::1%eth0]:80:80", "scope ids"),
    ("80:[::1]:80", "brackets go around"),
    ("-80", "not a port number"),
    ("80-", "not a port number"),
    ("80-81-82", "not a port number"),
    ("+80", "not a port number"),
    ("٨٠", "not a port number"),  # non-ASCII digits that int() would accept
    ("1_000", "not a port number"),
    ("99999999999999999999", "out of range"),
    ("1.2.3.4::", "container port missing"),
]


@pytest.mark.parametrize("text,fragment", INVALID)
def test_invalid_forms(text, fragment):
    with pytest.raises(UserError) as info:
        parse_port_spec(text)
    msg = str(info.value)
    assert msg.startswith(f"invalid port spec {text!r}: ")
    assert fragment in msg
    assert "\n" not in msg
    assert info.value.exit_code == 2


def test_error_message_example_from_docs():
    with pytest.raises(UserError) as info:
        parse_port_spec("8088:")
    assert str(info.value) == (
        "invalid port spec '8088:': host port given but container port missing; "
        "use HOSTPORT:CONTAINERPORT like 8088:80"
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("80", ((80, 80), "tcp")),
        ("80/udp", ((80, 80), "udp")),
        ("8000-8010/udp", ((8000, 8010), "udp")),
        ("53/SCTP", ((53, 53), "sctp")),
    ],
)
def test_parse_expose(text, expected):
    assert parse_expose(text) == expected


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "empty"),
        ("8080:80", "--expose takes container ports only"),
        ("80/icmp", "unknown protocol"),
        ("0", "out of range"),
        ("90-80", "reversed"),
        ("abc", "not a port number"),
    ],
)
def test_parse_expose_errors(text, fragment):
    with pytest.raises(UserError) as info:
        parse_expose(text)
    msg = str(info.value)
    assert msg.startswith(f"invalid expose spec {text!r}: ")
    assert fragment in msg


@pytest.mark.parametrize(
    "args,expected",
    [
        ((80, "tcp", "", 8088), "80/tcp -> 0.0.0.0:8088"),
        ((80, "tcp", "0.0.0.0", 8088), "80/tcp -> 0.0.0.0:8088"),
        ((53, "udp", "127.0.0.1", 5353), "53/udp -> 127.0.0.1:5353"),
        ((80, "tcp", "::1", 8088), "80/tcp -> [::1]:8088"),
        ((80, "tcp", "::", 32768), "80/tcp -> [::]:32768"),
    ],
)
def test_format_mapping(args, expected):
    assert format_mapping(*args) == expected


def test_ephemeral_range_reads_file(tmp_path):
    f = tmp_path / "range"
    f.write_text("40000\t50000\n")
    assert ephemeral_range(str(f)) == (40000, 50000)


@pytest.mark.parametrize("content", ["", "garbage", "1 2 3", "50000 40000", "0 100", "1 70000", "\xff\xfe"])
def test_ephemeral_range_falls_back_on_bad_content(tmp_path, content):
    f = tmp_path / "range"
    f.write_bytes(content.encode("latin-1"))
    assert ephemeral_range(str(f)) == (32768, 60999)


def test_ephemeral_range_falls_back_when_missing(tmp_path):
    assert ephemeral_range(str(tmp_path / "nope")) == (32768, 60999)


def test_ephemeral_range_default_path_is_sane():
    lo, hi = ephemeral_range()
    assert 1 <= lo <= hi <= 65535


# --- property: any valid spec round-trips through its canonical text ---------

ports = st.integers(1, 65535)


@st.composite
def port_ranges(draw, length=None):
    if length is None:
        lo = draw(ports)
        hi = draw(st.integers(lo, min(lo + 50, 65535)))
        return lo, hi
    lo = draw(st.integers(1, 65536 - length))
    return lo, lo + length - 1


def fmt_range(r, force_range=False):
    return f"{r[0]}-{r[1]}" if force_range or r[0] != r[1] else str(r[0])


@st.composite
def valid_specs(draw):
    """(text, expected PortSpec) for a generated valid -p argument."""
    container = draw(port_ranges())
    clen = container[1] - container[0] + 1
    host_kind = draw(st.sampled_from(["none", "paired", "pick"] if clen == 1 else ["none", "paired"]))
    if host_kind == "none":
        host = None
    elif host_kind == "paired":
        host = draw(port_ranges(length=clen))
    else:
        host = draw(port_ranges())
    ip_kind = draw(st.sampled_from(["", "v4", "v6"]))
    if ip_kind == "v4":
        addr = draw(st.ip_addresses(v=4))
        ip_text, host_ip, family = str(addr), str(addr), 4
    elif ip_kind == "v6":
        addr = draw(st.ip_addresses(v=6))
        ip_text, host_ip, family = f"[{addr.exploded if draw(st.booleans()) else addr}]", str(addr), 6
    else:
        ip_text, host_ip, family = "", "", 4
    proto = draw(st.sampled_from(["tcp", "udp", "sctp"]))
    proto_text = draw(st.sampled_from(["", f"/{proto}", f"/{proto.upper()}"])) if proto == "tcp" else f"/{draw(st.sampled_from([proto, proto.upper(), proto.title()]))}"

    cont_text = fmt_range(container, force_range=draw(st.booleans())) + proto_text
    host_text = "" if host is None else fmt_range(host, force_range=draw(st.booleans()))
    if ip_text:
        text = f"{ip_text}:{host_text}:{cont_text}"
    elif host is not None:
        text = f"{host_text}:{cont_text}"
    else:
        text = cont_text
    return text, PortSpec(host_ip, family, host, container, proto)


@given(valid_specs())
def test_round_trip(case):
    text, expected = case
    spec = parse_port_spec(text)
    assert spec == expected
    assert parse_port_spec(str(spec)) == spec
    assert str(parse_port_spec(str(spec))) == str(spec)


@given(valid_specs())
def test_pairs_follow_docker_semantics(case):
    _, spec = case
    pairs = spec.pairs()
    clo, chi = spec.container_ports
    assert [c for _, c in pairs] == list(range(clo, chi + 1))
    if spec.pick_range is not None:
        assert clo == chi and pairs == [(None, clo)]
        assert spec.pick_range == spec.host_ports
    elif spec.host_ports is None:
        assert all(h is None for h, _ in pairs)
    else:
        assert [h for h, _ in pairs] == list(range(spec.host_ports[0], spec.host_ports[1] + 1))


@given(st.text(max_size=30) | st.text(alphabet="0123456789:-/[].afptcud", max_size=30))
def test_arbitrary_text_never_crashes(text):
    try:
        spec = parse_port_spec(text)
    except UserError as err:
        assert "\n" not in str(err)
        assert str(err).startswith(f"invalid port spec {text!r}: ")
    else:
        assert parse_port_spec(str(spec)) == spec
        assert spec.proto in ("tcp", "udp", "sctp")
        assert spec.host_family in (4, 6)
        if spec.host_ip:
            assert ipaddress.ip_address(spec.host_ip).version == spec.host_family
