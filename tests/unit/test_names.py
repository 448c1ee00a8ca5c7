"""netkit.names: Docker-style hosts/resolv.conf text and the validation of what goes in it."""

import pytest

from netkit.errors import UserError
from netkit.names import (
    parse_add_host,
    qualified,
    render_hosts,
    render_resolv,
    upstream_servers,
    validate_dns_server,
    validate_hostname,
)

HOST_RESOLV = """\
# managed by someone
nameserver 127.0.0.53
nameserver 10.1.2.3
nameserver ::1
nameserver fd00::53
search corp.example lab.example
options edns0 trust-ad
"""


# -- hosts -------------------------------------------------------------------------------------

def test_hosts_layout_matches_docker():
    text = render_hosts(
        "web1",
        [("172.18.0.2", ["web", "frontend"])],
        ["db:10.0.0.5", "v6:[fd00::5]"],
        [("172.17.0.9", "cache", "redis1")],
    )
    assert text == (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        "10.0.0.5\tdb\n"
        "fd00::5\tv6\n"
        "172.17.0.9\tcache redis1\n"
        "172.18.0.2\tweb1 web frontend\n"
    )


def test_hosts_without_addresses_has_only_localhost_lines():
    text = render_hosts("h", [], [], [])
    assert text.splitlines()[0] == "127.0.0.1\tlocalhost"
    assert len(text.splitlines()) == 6


def test_hosts_rejects_bad_extra_host():
    with pytest.raises(UserError, match='"db:10.0.0.999"'):
        render_hosts("h", [], ["db:10.0.0.999"], [])


# -- --add-host ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("db:10.0.0.5", ("db", "10.0.0.5")),
        ("v6:[::1]", ("v6", "::1")),
        ("v6:::1", ("v6", "::1")),
        ("v6:fd00:0::5", ("v6", "fd00::5")),
        ("db=10.0.0.5", ("db", "10.0.0.5")),
        ("my-db.corp.example:192.0.2.1", ("my-db.corp.example", "192.0.2.1")),
    ],
)
def test_parse_add_host(text, expected):
    assert parse_add_host(text) == expected


def test_host_gateway_is_accepted_and_rendered_as_the_given_address():
    # Issue 17: Docker's `--add-host db:host-gateway` (it was refused before netkit had the setting)
    assert parse_add_host("db:host-gateway") == ("db", "host-gateway")
    assert parse_add_host("db=host-gateway") == ("db", "host-gateway")
    text = render_hosts("h", [], ["db:host-gateway", "x:10.0.0.5"], [], host_gateway="172.20.0.1")
    assert "172.20.0.1\tdb\n10.0.0.5\tx\n" in text
    # no address to give: a comment, never a line with a wrong address
    orphan = render_hosts("h", [], ["db:host-gateway"], [], host_gateway=None)
    assert "\tdb" not in orphan and "# db: host-gateway" in orphan


def test_qualified_names_add_name_dot_network():
    table = {"web": ["172.20.0.2"], "frontend": ["172.20.0.2"], "db": ["172.20.0.3", "172.20.0.4"]}
    out = qualified(table, "App")
    assert out == {**table, "web.app": ["172.20.0.2"], "frontend.app": ["172.20.0.2"],
                   "db.app": ["172.20.0.3", "172.20.0.4"]}
    assert table == {"web": ["172.20.0.2"], "frontend": ["172.20.0.2"], "db": ["172.20.0.3", "172.20.0.4"]}


@pytest.mark.parametrize(
    "text, quoted",
    [
        ("db", '"db"'),  # no separator
        ("db:10.0.0.999", '"10.0.0.999"'),  # bad IP
        ("db:", '""'),  # empty IP
        (":10.0.0.5", '""'),  # empty name
        ("-db:10.0.0.5", '"-db"'),  # bad hostname
        ("db_1:10.0.0.5", '"db_1"'),
    ],
)
def test_parse_add_host_errors(text, quoted):
    with pytest.raises(UserError) as exc:
        parse_add_host(text)
    msg = str(exc.value)
    assert f'"{text}"' in msg and quoted in msg
    assert "\n" not in msg


# -- hostname / dns server --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "web", "web-1", "a.b.c", "A1", "x" * 63, ".".join(["a" * 63] * 3) + ".abc"])
def test_valid_hostnames(name):
    assert validate_hostname(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "a-", "a..b", "a.", ".a", "a_b", "a b", "x" * 64, ".".join(["a" * 63] * 4), "wéb", "a:b"],
)
def test_invalid_hostnames(name):
    with pytest.raises(UserError) as exc:
        validate_hostname(name)
    assert f'"{name}"' in str(exc.value)


def test_dns_server_validation():
    assert validate_dns_server("10.0.0.1") == "10.0.0.1"
    assert validate_dns_server("FD00:0::1") == "fd00::1"
    for bad in ["10.0.0", "dns.example", "", "10.0.0.1:53"]:
        with pytest.raises(UserError) as exc:
            validate_dns_server(bad)
        assert f'"{bad}"' in str(exc.value)


# -- resolv.conf --------------------------------------------------------------------------------

def _lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_upstreams_drop_loopback():
    assert upstream_servers(HOST_RESOLV) == ["10.1.2.3", "fd00::53"]
    assert upstream_servers("nameserver 127.0.0.53\nnameserver 127.1.2.3\n") == []


def test_resolv_keeps_host_servers_minus_loopback_and_host_search_options():
    assert _lines(render_resolv(HOST_RESOLV, [], [], [], None)) == [
        "nameserver 10.1.2.3",
        "nameserver fd00::53",
        "search corp.example lab.example",
        "options edns0 trust-ad",
    ]


def test_resolv_only_loopback_host_servers_gives_no_nameserver_and_no_public_fallback():
    text = render_resolv("nameserver 127.0.0.53\noptions edns0\n", [], [], [], None)
    assert "nameserver" not in "\n".join(_lines(text))
    assert "8.8.8.8" not in text and "8.8.4.4" not in text
    assert any(line.startswith("#") and "loopback" in line for line in text.splitlines())


def test_resolv_given_dns_search_options_replace_hosts():
    text = render_resolv(HOST_RESOLV, ["192.0.2.53"], ["svc.local"], ["ndots:2", "timeout:1"], None)
    assert _lines(text) == ["nameserver 192.0.2.53", "search svc.local", "options ndots:2 timeout:1"]


def test_resolv_with_network_dns_uses_it_alone():
    text = render_resolv(HOST_RESOLV, ["192.0.2.53"], [], [], "172.18.0.1")
    assert [line for line in _lines(text) if line.startswith("nameserver")] == ["nameserver 172.18.0.1"]
    # host search kept; Docker's ndots:0 added for the embedded resolver
    assert "search corp.example lab.example" in _lines(text)
    assert "options ndots:0" in _lines(text)
    # where the embedded server forwards to is recorded in a comment
    assert "# ExtServers: [192.0.2.53]" in text.splitlines()


def test_resolv_network_dns_respects_user_ndots():
    text = render_resolv("", [], [], ["ndots:3"], "172.18.0.1")
    assert _lines(text) == ["nameserver 172.18.0.1", "options ndots:3"]


def test_resolv_empty_host_file():
    text = render_resolv("", [], [], [], None)
    assert _lines(text) == []
