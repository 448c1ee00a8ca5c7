"""Issue 15: the tracer follows a flow across hosts. A container on h1 pings one on h2 over an
overlay network while `netkit trace capture c1 c2` runs on h1 (c2 is a container of h2): every hop
on both hosts, the VXLAN encapsulation on the underlay (outer addresses, UDP 4789, VNI), which host
encapsulated and decapsulated, and the reply's way back, from real packets; then a drop on the far
host, diagnosed with h2's own firewall counters. One world of hosts (test_multihost's fixture) for
all the checks.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from netkit import multihost as mh
from required import need
from test_multihost import NETKIT, World, world  # noqa: F401 - `world` is the fixture
from waiting import first_line

pytestmark = [pytest.mark.root, pytest.mark.multihost]


def trace_on_h1(*args) -> subprocess.Popen:
    proc = subprocess.Popen(NETKIT + ["sandbox", "on", "h1", "--"] + NETKIT + ["trace", "capture", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = first_line(proc.stderr, what="trace capture to say it is capturing")
    assert "capturing on" in line, line + proc.stderr.read()
    return proc


def test_trace_follows_a_ping_across_hosts_through_vxlan(world: World):
    need("ping", "iptables")
    world.on("h1", NETKIT + ["network", "create", "--driver", "overlay", "ov", "--subnet", "10.60.0.0/24"])
    world.on("h1", NETKIT + ["container", "create", "c1", "--net", "ov", "--ip", "10.60.0.10"])
    world.on("h2", NETKIT + ["container", "create", "c2", "--net", "ov", "--ip", "10.60.0.20"])
    vni = json.loads(world.on("h1", NETKIT + ["network", "inspect", "--netkit", "ov"]).stdout)["vni"]
    assert world.pings("h1", "c1", ["10.60.0.20"]) == []  # the data plane is up before the trace

    svg = os.path.join(mh.HOSTS_DIR, "overlay-trace.svg")
    proc = trace_on_h1("c1", "c2", "--proto", "icmp", "--count", "2", "--json", "--svg", svg)
    world.host_sh("h1", "ip netns exec c1 ping -c1 -W3 10.60.0.20")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rep = json.loads(out)

    assert rep["hosts"] == {"h1": {"address": mh.host_address(1), "local": True},
                            "h2": {"address": mh.host_address(2), "local": False}}
    labels = [p["point"] for p in rep["points"]]
    for want in ("c1:eth0", f"h1:vxlan{vni}", "h1:uplink", "h2:uplink", f"h2:vxlan{vni}", "c2:eth0"):
        assert want in labels, labels
    [flow] = rep["flows"]
    assert (flow["from"], flow["to"]) == ("c1", "c2")
    request, reply = flow["packets"]
    assert (request["direction"], reply["direction"]) == ("original", "reply")
    assert request["delivered"] and reply["delivered"] and not rep["drops"]

    # The request, hop by hop on both hosts; outer headers exactly on the underlay hops.
    hops = [(h["point"].split(":")[0], h["role"], h["direction"]) for h in request["hops"]]
    assert hops == [("c1", "container", "out"), ("h1", "veth", "in"), ("h1", "vxlan", "out"),
                    ("h1", "uplink", "out"), ("h2", "uplink", "in"), ("h2", "vxlan", "in"),
                    ("h2", "veth", "out"), ("c2", "container", "in")], hops
    for h in request["hops"]:
        assert (h["src"], h["dst"], h["proto"]) == ("10.60.0.10", "10.60.0.20", "icmp")  # the inner packet
        if h["role"] == "uplink":
            o = h["outer"]
            assert (o["src"], o["dst"], o["dport"], o["vni"]) == (mh.host_address(1), mh.host_address(2), 4789, vni)
        else:
            assert h["outer"] is None, h
    assert request["tunnel"]["encapsulated_by"] == "h1" and request["tunnel"]["decapsulated_by"] == "h2"
    assert reply["tunnel"]["encapsulated_by"] == "h2" and reply["tunnel"]["decapsulated_by"] == "h1"
    assert (reply["tunnel"]["outer_src"], reply["tunnel"]["vni"]) == (mh.host_address(2), vni)
    assert reply["hops"][0]["point"] == "c2:eth0" and reply["hops"][-1]["point"] == "c1:eth0"
    changes = [c for h in request["hops"] for c in h["changes"]]
    assert any(c.startswith(f"encapsulated by h1 (its VXLAN device vxlan{vni}, VNI {vni})") for c in changes), changes
    assert any(c.startswith(f"decapsulated by h2 (vxlan{vni})") for c in changes), changes
    assert any(c.startswith(f"bridge ovbr{vni} forwarded it to vxlan{vni}") for c in changes), changes
    assert f"→[VXLAN {vni}]→" in flow["path"] and "→[decap]→" in flow["path"]
    # br_netfilter tracks the bridged flow on both hosts: each host's entry, tagged with it
    assert {e["host"] for e in flow["conntrack"]} == {"h1", "h2"}, flow["conntrack"]

    with open(svg) as fh:
        picture = fh.read()
    assert f"host h2 ({mh.host_address(2)})" in picture and "VXLAN-encapsulated" in picture

    # A drop on the far host: located after h2's VXLAN device, the rule read from h2's firewall.
    world.host_sh("h2", "iptables -I FORWARD -p icmp -j DROP")
    proc = trace_on_h1("c1", "c2", "--proto", "icmp", "--count", "1", "--json")
    world.host_sh("h1", "ip netns exec c1 ping -c1 -W1 10.60.0.20", check=False)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [drop] = json.loads(out)["drops"]
    assert drop["where"] == f"h2:vxlan{vni}" and drop["reason"] == "rule", drop
    assert drop["rule"]["rule"] == "-A FORWARD -p icmp -j DROP" and drop["text"].startswith(f"dropped in h2 after vxlan{vni}")

    # A name on no host: one line, exit 2, nothing captured.
    bad = world.on("h1", NETKIT + ["trace", "capture", "c1", "nosuch", "--count", "1"], check=False)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "container 'nosuch' not found on any host of this sandbox" in bad.stderr
