"""The topology view matches veth pairs by ifindex/iflink and draws every object it was given."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from netkit import topology_view
from netkit.model import Container, Endpoint, Network, PortMapping


def _link(name, idx, iflink, kind=None, master=None, addrs=(), mac="02:00:00:00:00:01"):
    return {"ifname": name, "ifindex": idx, "iflink": iflink, "peer_netns": True, "kind": kind, "slave_kind": None,
            "master": master, "mtu": 1500, "mac": mac, "up": True, "addrs": list(addrs)}


INV = {
    "host": {"links": [_link("lo", 1, 1), _link("netkit0", 4, 4, "bridge", addrs=["172.17.0.1/16"]),
                       _link("veth1111111", 7, 2, "veth", "netkit0"),
                       _link("veth2222222", 8, 2, "veth", "netkit0"),  # peer gone: a stray
                       _link("uplink", 2, 2, "veth", addrs=["198.18.0.1/24"])],
             "default_via": None},
    "netns": {
        "web": {"links": [_link("lo", 1, 1), _link("eth0", 2, 7, "veth", addrs=["172.17.0.2/16"])],
                "default_via": "172.17.0.1"},
        "outside": {"links": [_link("lo", 1, 1), _link("eth0", 2, 2, "veth", addrs=["198.18.0.2/24"])],
                    "default_via": None},
        "box": {"links": [_link("lo", 1, 1)], "default_via": None},
    },
}
NETS = [Network("bridge", "n1", "netkit0", "172.17.0.0/16", "172.17.0.1", default=True)]
CTS = [Container("web", "c1", "bridge", "/run/netns/web", hostname="web",
                 endpoints=[Endpoint("web", "bridge", "eth0", "veth1111111", "172.17.0.2", 16, "172.17.0.1",
                                     "02:42:ac:11:00:02")],
                 ports=[PortMapping("web", "tcp", "0.0.0.0", 8080, 80)]),
       Container("box", "c2", "none", "/run/netns/box"),
       Container("side", "c3", "container", "/run/netns/web", shares="web")]


def test_pairs_are_matched_both_ways_and_strays_are_shown():
    scene = topology_view.build(INV, NETS, CTS, {"web": ["198.18.0.2"]})
    ports = {p.host.ifname: p.peer for p in scene.bridges[0].ports}
    assert ports["veth1111111"].netns == "web" and ports["veth1111111"].ifname == "eth0"
    assert ports["veth2222222"] is None  # iflink 2 exists in web, but its iflink is 7, not 8
    assert scene.links[0].peer.netns == "outside"
    text = topology_view.render_text(scene)
    assert "port veth1111111 (ifindex 7, iflink 2) <=veth=> eth0 (ifindex 2, iflink 7) in netns web" in text
    assert "veth2222222 (ifindex 8, iflink 2) <=veth=> (peer not found)" in text
    assert "DNAT tcp 0.0.0.0:8080 → 172.17.0.2:80 (container web)" in text
    assert "MASQUERADE 172.17.0.0/16 leaving by any interface but netkit0" in text
    assert "shared by side" in text and "box: container box, none mode" in text


def test_svg_is_well_formed_and_names_everything():
    svg = topology_view.render_svg(topology_view.build(INV, NETS, CTS, {}))
    root = ET.fromstring(svg)
    words = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for expected in ("netkit0", "veth1111111", "eth0@if7", "uplink", "outside", "box", "DNAT", "MASQUERADE",
                     "veth2222222: peer not found"):
        assert expected in words, expected
