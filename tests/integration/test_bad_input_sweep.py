"""Issue 16, bad input: 150+ invalid requests across the commands and the config file. Each is
refused with one line (`netkit: ...`), exit 2 (1 where the environment is at fault), no
traceback, and kernel and state stay exactly as they were (tests/integration/nettools.snapshot).
"""
from __future__ import annotations

import json
import os

import pytest

from nettools import snapshot

pytestmark = pytest.mark.root

NL = "x\n"  # a name with a trailing newline

# (arguments, expected exit code, a part of the one line)
NETWORK = [
    (["network", "create", "x", "--subnet", s], 2, m) for s, m in [
        ("198.18.0.0/24", "overlaps"), ("198.18.0.0/15", "overlaps"), ("128.0.0.0/1", ""),
        ("198.18.0.128/25", "overlaps"), ("0.0.0.0/0", ""), ("127.0.0.0/8", "loopback"), ("127.0.0.0/24", "loopback"),
        ("224.0.0.0/24", "multicast"), ("239.1.0.0/16", "multicast"), ("255.255.255.0/24", ""),
        ("240.0.0.0/8", ""), ("169.254.0.0/16", ""), ("0.0.0.0/8", ""), ("10.0.0.0/7", ""),
        ("172.20.0.0/16", "overlaps"), ("172.20.0.0/25", "overlaps"), ("172.20.0.64/26", "overlaps"),
        ("172.0.0.0/8", "overlaps"), ("172.21.0.0/33", "invalid subnet"), ("172.21.0.0/-1", "invalid subnet"),
        ("172.21.0.1/24", "host bits"), ("banana", "invalid subnet"), ("", ""), ("172.21.0.0/24\n", ""),
        ("fd00::/64", ""), ("172.21.0.0/255.255.0.255", ""), ("1.2.3.4.5/24", "invalid subnet"),
        ("172.21.0.0/31", ""), ("172.21.0.0/32", ""),
    ]
] + [
    (["network", "create", "x", "--subnet", "172.21.0.0/24", "--gateway", g], 2, "gateway") for g in
    ["172.22.0.1", "172.21.0.0", "172.21.0.255", "banana", "172.21.0.256", "", "172.21.0.1\n", "::1"]
] + [
    (["network", "create", "x", "--subnet", "172.21.0.0/24", "--ip-range", r], 2, "ip-range") for r in
    ["172.21.1.0/25", "172.20.0.0/24", "172.21.0.0/23", "banana", "172.21.0.1/25", "172.21.0.0/33"]
] + [
    (["network", "create", n], 2, "") for n in
    [NL, "app", "bridge", "host", "none", "default", "x y z", "bad/name", "bad name", "", "x-\n",
     ".", "..", "a" * 300, "x\t", "x;rm", "ü" * 8, "x\x00y"[:1] + "\x01"]
] + [
    (["network", "create", "x", "--bridge", b], 2, "") for b in
    ["br-way-too-long-name", "", "bad/if", "br x", "br\n", "lo", "uplink", "br-app", "."]
] + [
    (["network", "create", "x", "--mtu", m], 2, "MTU") for m in ["0", "-1", "67", "65536", "100000"]
] + [
    (["network", "create", "x", "--driver", d], 2, "driver") for d in ["overlay2", "", "macvlan\n", "null0"]
] + [
    (["network", "rm", "app"], 2, "still has containers"), (["network", "rm", "nope"], 2, "not found"),
    (["network", "rm", NL], 2, ""), (["network", "inspect", "nope"], 2, "not found"),
    (["network", "connect", "nope", "web"], 2, "not found"), (["network", "connect", "app", "nope"], 2, "not found"),
    (["network", "connect", "app", "web"], 2, "already connected"),
    (["network", "connect", "n2", "web", "--ip", "172.20.0.5"], 2, "outside"),
    (["network", "connect", "n2", "web", "--ip", "172.23.0.1"], 2, "gateway"),
    (["network", "connect", "n2", "web", "--ip", "172.23.0.255"], 2, ""),
    (["network", "connect", "n2", "web", "--ip", "banana"], 2, ""),
    (["network", "connect", "n2", "web", "--alias", NL], 2, ""),
    (["network", "connect", "n2", "web", "--alias", "bad alias"], 2, ""),
    (["network", "disconnect", "app", "side"], 2, ""), (["network", "disconnect", "n2", "web"], 2, ""),
    (["network", "disconnect", "nope", "web"], 2, "not found"),
]

CONTAINER = [
    (["container", "create", n, "--net", "app"], 2, "") for n in
    [NL, "web", "bad name", "", "x y", "bad/name", "a" * 300, "x\t", "ü\n"]
] + [
    (["container", "create", "x", "--net", "app", "--ip", ip], 2, "") for ip in
    ["10.0.0.5", "172.20.0.1", "172.20.0.10", "172.20.0.255", "172.20.0.0", "300.1.1.1", "banana", "",
     "172.20.0.5\n", "172.20.0.5/24", "::1", "127.0.0.1"]
] + [
    (["container", "create", "x", "--net", "app", "--mac", mac], 2, "") for mac in
    ["02:42:ac:14:00:0a", "01:00:5e:00:00:01", "zz", "", "02:42:ac:14:00:0b\n", "ff:ff:ff:ff:ff:ff",
     "00:00:00:00:00:00", "02:42:ac:14:00", "02:42:ac:14:00:0b:0c", "02-42-ac-14-00-0b", "BRIDGE_MAC"]
] + [
    (["container", "create", "x", "--net", net], 2, "") for net in
    ["nope", "container:x", "container:ghost", "container:", NL, "container:web\n", "overlay:x"]
] + [
    (["container", "create", "x", "--net", "app", "-p", p], 2, "") for p in
    ["8080:80", "0.0.0.0:8080:80", "70000:80", "8080:0", "8080:70000", "0:80/tcp", "-1:80", "8080:80/icmp",
     "a:b", "1.2.3.4.5:80:80", ":::", "8080:80:90:100", "8080-8070:80", "8080-8082:80-81", "", "80/tcp/udp",
     "198.18.0.99:9090:80", "8080:80\n", "65536", "1-70000:1-70000"]
] + [
    (["container", "create", "x", "--net", "app", opt, val], 2, "") for opt, val in [
        ("--network-alias", NL), ("--network-alias", "bad alias"), ("--network-alias", ""),
        ("--hostname", "bad_host!"), ("--hostname", NL), ("--hostname", "a" * 300), ("--hostname", ""),
        ("--dns", "banana"), ("--dns", "1.2.3.4\n"), ("--dns", "300.0.0.1"), ("--dns", ""),
        ("--dns-search", "a b"), ("--dns-search", "x\nnameserver 6.6.6.6"), ("--dns-option", "ndots:2\nx"),
        ("--add-host", "nohost"), ("--add-host", "h:banana"), ("--add-host", "h:1.2.3.4\nevil"),
        ("--add-host", ":1.2.3.4"), ("--link", "ghost"), ("--link", "web:bad alias"), ("--link", NL),
        ("--expose", "70000"), ("--expose", "abc"), ("--expose", "80-70"),
    ]
] + [
    (["container", "create", "x", "--net", "none", "--ip", "172.20.0.5"], 2, "need a bridge network"),
    (["container", "create", "x", "--net", "host", "-p", "80:80"], 2, ""),
    (["container", "rm", "ghost"], 2, "not found"), (["container", "rm", "web"], 2, "shares"),
    (["container", "rm", NL], 2, ""), (["container", "inspect", "ghost"], 2, "not found"),
    (["exec", "ghost", "--", "true"], 2, "not found"),
]

PUBLISH = [
    (["publish", spec, "web"], 2, "") for spec in
    ["8080:80", "8080:81", "0.0.0.0:8080:80", "127.0.0.1:8080:80", "70000:80", "8080:0", "0:0", "a:b", "",
     "80/sctpx", "8080:80\n", "1.2.3.4.5:1:1", "8090-8080:80", "8090-8092:80-81", "5:80:", "198.18.0.99:9091:80"]
] + [
    (["publish", "9000:80", c], 2, "") for c in ["ghost", NL, "side", "off"]
] + [
    (["unpublish", spec, c], 2, "") for spec, c in
    [("9999:80", "web"), ("8080:80", "ghost"), ("banana", "web"), ("70000:80", "web"), ("8080:80", "side")]
] + [
    (["port", "ghost"], 2, "not found"), (["port", "web", "banana"], 2, ""), (["port", "web", "99999"], 2, ""),
]

BRIDGE = [
    (["bridge", "create", n], 2, "") for n in ["br-this-is-too-long", "uplink", "bad/if", "", NL, "br-app", "lo"]
] + [
    (["bridge", "create", "bx", "--cidr", c], 2, "") for c in ["172.20.0.200/25", "banana", "10.0.0.1/33", "x\n"]
] + [
    (["bridge", "rm", "nope"], 2, "not found"), (["bridge", "rm", "br-app"], 2, "belongs"),
    (["bridge", "rm", "uplink"], 2, "not a bridge"), (["bridge", "macs", "nope"], 2, "not found"),
    (["attach", "--pid", "999999", "--network", "app"], 2, ""), (["attach", "--pid", "SELF", "--network", "app"], 2, ""),
    (["attach", "--pid", "1", "--network", "nope"], 2, ""),
]

CASES = NETWORK + CONTAINER + PUBLISH + BRIDGE

CONFIG = [
    ({"mtu": "big"}, "mtu"), ({"mtu": 10}, "mtu"), ({"mtu": True}, "mtu"), ({"colour": 1}, "unknown key"),
    ({"bip": "10.0.0.0/33"}, "bip"), ({"bip": 5}, "bip"), ({"bip": "127.0.0.1/8"}, ""), ({"dns": [5]}, "dns"),
    ({"dns": "1.1.1.1"}, "dns"), ({"dns": ["banana"]}, "dns"), ({"dns": ["1.1.1.1\n"]}, "dns"),
    ({"dns_search": ["a\nnameserver 6.6.6.6"]}, "dns_search"), ({"dns_search": [5]}, "dns_search"),
    ({"icc": "yes"}, "icc"), ({"iptables": 1}, "iptables"), ({"ip_forward": "no"}, "ip_forward"),
    ({"ip_masq": None}, "ip_masq"), ({"bridge": "br-way-too-long-name"}, "bridge"), ({"bridge": 5}, "bridge"),
    ({"default_address_pools": "x"}, "default_address_pools"),
    ({"default_address_pools": [{"base": "10.0.0.0/8"}]}, "default_address_pools"),
    ({"default_address_pools": [{"base": "banana", "size": 24}]}, "default_address_pools"),
    ({"default_address_pools": [{"base": "10.0.0.0/8", "size": 40}]}, "default_address_pools"),
    ({"firewall_backend": "pf"}, "firewall_backend"), ({"cluster_store": "http://"}, "cluster"),
]
RAW_CONFIG = [("{nope", "not valid JSON"), ("[1, 2]", ""), (b"\xff\xfe{}", ""), ("[" * 5000 + "]" * 5000, ""),
              ('{"mtu": 1500, "mtu": 1400, "bip": ', "")]


@pytest.fixture
def world(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "n2", "--subnet", "172.23.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "--ip", "172.20.0.10", "-p", "8080:80")
    sandbox.netkit("container", "create", "side", "--net", "container:web")
    sandbox.netkit("container", "create", "off", "--net", "none")
    return sandbox


def _one_line_refusal(r, code: int, part: str) -> str | None:
    lines = r.stderr.strip().splitlines()
    if "Traceback" in r.stderr or r.returncode != code or len(lines) != 1 or not lines[0].startswith("netkit: ") \
            or part not in lines[0]:
        return f"exit {r.returncode}: {r.stderr.strip()!r}"
    return None


def test_bad_inputs_are_refused_in_one_line_and_change_nothing(world):
    bridge_mac = world.sh("cat /sys/class/net/br-app/address").stdout.strip()
    before = snapshot(world)
    failures = []
    for i, (args, code, part) in enumerate(CASES):
        args = [str(os.getpid()) if a == "SELF" else bridge_mac if a == "BRIDGE_MAC" else a for a in args]
        problem = _one_line_refusal(world.netkit(*args, check=False), code, part)
        if problem:
            failures.append(f"{args!r}: {problem}")
        if i % 40 == 39 and snapshot(world) != before:
            failures.append(f"the world changed by case {i}: {args!r} or one of the 39 before it")
            before = snapshot(world)
    assert snapshot(world) == before
    assert not failures, f"{len(failures)} of {len(CASES)} bad inputs not refused properly:\n" + "\n".join(failures)
    assert len(CASES) + len(CONFIG) + len(RAW_CONFIG) >= 150
    print(f"{len(CASES)} command cases and {len(CONFIG) + len(RAW_CONFIG)} config cases refused")


def test_bad_config_values_are_refused_in_one_line_and_change_nothing(world):
    path = os.environ["NETKIT_CONFIG"]
    before = snapshot(world)
    failures = []
    for content, part in [(json.dumps(c), p) for c, p in CONFIG] + RAW_CONFIG:
        with open(path, "wb") as fh:
            fh.write(content if isinstance(content, bytes) else content.encode())
        r = world.netkit("container", "create", "cfg", check=False)
        problem = _one_line_refusal(r, 2, part)
        if problem:
            failures.append(f"{content[:60]!r}: {problem}")
    os.remove(path)
    assert snapshot(world) == before
    assert not failures, "\n".join(failures)
