"""IPAM without root: pools, layouts, allocation, static checks."""
from ipaddress import IPv4Address, ip_network

import pytest
from hypothesis import given, strategies as st

from netkit import ipam
from netkit.errors import Conflict, UserError


def test_default_pools_follow_docker():
    subnets = [str(s) for s in ipam.candidate_pools(ipam.DEFAULT_POOLS)]
    assert subnets[:3] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]
    assert subnets[14] == "172.31.0.0/16" and subnets[15] == "192.168.0.0/20" and subnets[-1] == "192.168.240.0/20"


def test_pick_skips_routes_and_networks():
    taken = [ip_network("172.17.0.0/16"), ip_network("172.18.5.0/24")]
    assert str(ipam.pick_free_subnet(ipam.DEFAULT_POOLS, taken)) == "172.19.0.0/16"
    everything = [ip_network("172.16.0.0/12"), ip_network("192.168.0.0/16")]
    with pytest.raises(Conflict, match="all default address pools are in use"):
        ipam.pick_free_subnet(ipam.DEFAULT_POOLS, everything)


@pytest.mark.parametrize("text,message", [
    ("172.20.0.0", "prefix length is missing"), ("172.20.0.1/24", "did you mean 172.20.0.0/24"),
    ("nonsense", "use CIDR notation"), ("fd00::/64", "IPv6"),
    ("127.0.0.0/8", "loopback"), ("127.5.0.0/24", "loopback"), ("224.0.0.0/24", "multicast"),
    ("255.255.255.0/24", "reserved"), ("0.0.0.0/8", "this network"), ("169.254.0.0/24", "link-local"),
    ("128.0.0.0/1", "large part of IPv4"), ("10.0.0.0/7", "large part of IPv4"),
    ("172.20.0.0/24\n", "use CIDR notation"),
])
def test_parse_subnet_errors(text, message):
    with pytest.raises(UserError, match=message):
        ipam.parse_subnet(text)


def test_layout_defaults_and_checks():
    net = ipam.parse_subnet("10.0.0.0/24")
    layout = ipam.plan_layout(net, None, None)
    assert layout.gateway == IPv4Address("10.0.0.1") and layout.ip_range is None
    with pytest.raises(UserError, match="not a usable address"):
        ipam.plan_layout(net, "10.0.0.255", None)
    with pytest.raises(UserError, match="not inside subnet"):
        ipam.plan_layout(net, None, "10.0.1.0/25")
    with pytest.raises(UserError, match="too small"):
        ipam.plan_layout(ipam.parse_subnet("10.0.0.0/31"), None, None)


def test_allocation_is_lowest_free_and_respects_range():
    layout = ipam.plan_layout(ipam.parse_subnet("10.0.0.0/24"), None, None)
    assert ipam.allocate(layout, set()) == IPv4Address("10.0.0.2")
    assert ipam.allocate(layout, {IPv4Address("10.0.0.2")}) == IPv4Address("10.0.0.3")
    ranged = ipam.plan_layout(ipam.parse_subnet("10.0.0.0/24"), None, "10.0.0.128/25")
    assert ipam.allocate(ranged, set()) == IPv4Address("10.0.0.128")
    tiny = ipam.plan_layout(ipam.parse_subnet("10.0.0.0/30"), None, None)
    with pytest.raises(Conflict, match="no free address left"):
        ipam.allocate(tiny, {IPv4Address("10.0.0.2")})


@given(st.sets(st.integers(min_value=2, max_value=254), max_size=200))
def test_allocation_never_hands_out_a_used_or_reserved_address(used_octets):
    layout = ipam.plan_layout(ipam.parse_subnet("10.0.0.0/24"), None, None)
    used = {IPv4Address(f"10.0.0.{o}") for o in used_octets}
    try:
        ip = ipam.allocate(layout, used)
    except Conflict:
        assert len(used) == 253
        return
    assert ip not in used and ip not in (IPv4Address("10.0.0.0"), IPv4Address("10.0.0.1"), IPv4Address("10.0.0.255"))
    assert all(IPv4Address(f"10.0.0.{o}") in used for o in range(2, int(ip) - int(IPv4Address("10.0.0.0"))))


def test_static_checks_name_the_holder():
    layout = ipam.plan_layout(ipam.parse_subnet("10.0.0.0/24"), None, None)
    with pytest.raises(Conflict, match="in use by container 'web'"):
        ipam.check_static(layout, IPv4Address("10.0.0.5"), {IPv4Address("10.0.0.5"): "web"})
    with pytest.raises(UserError, match="outside"):
        ipam.check_static(layout, IPv4Address("10.0.1.5"), {})
    with pytest.raises(UserError, match="gateway"):
        ipam.check_static(layout, IPv4Address("10.0.0.1"), {})


def test_overlap_names_the_other_network():
    with pytest.raises(Conflict, match="overlaps 10.0.0.0/16 of network 'big'"):
        ipam.check_overlap(ipam.parse_subnet("10.0.5.0/24"), {"big": ip_network("10.0.0.0/16")})


def test_host_routes_reads_proc_format(tmp_path):
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    assert ipam.host_routes(str(route)) == [ip_network("192.168.0.0/24")]
