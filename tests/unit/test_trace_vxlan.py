"""The tracer across hosts, without a kernel: a VXLAN frame is dissected as the frame it carries
(outer headers beside it), correlates with that frame's other hops, and the report says which host
encapsulated and decapsulated it; the underlay's capture filter selects on the inner frame."""
import pytest

from netkit.trace import assemble, dissect, report
from netkit.trace.capture import build_filter, compile_filter, quick_key, tunnel_filter
from netkit.trace.model import Point, Record, Result, Topology

pytest.importorskip("scapy.layers.l2")
from scapy.layers.inet import ICMP, IP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

C1_MAC, C2_MAC = "02:42:0a:32:00:02", "02:42:0a:32:00:03"
U1_MAC, U2_MAC = "aa:00:00:00:01:01", "aa:00:00:00:02:01"
H1, H2, VNI = "198.18.1.11", "198.18.1.12", 4096


def inner(src_mac, dst_mac, src, dst, itype, seq):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, id=seq) / ICMP(type=itype, id=7, seq=seq) / (b"x" * 16)


def outer(frame, src, dst, src_mac, dst_mac):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, id=99) / UDP(sport=40000, dport=4789) / \
        VXLAN(vni=VNI, flags=0x08) / frame


def test_vxlan_frame_is_its_inner_frame_with_outer_headers():
    req = inner(C1_MAC, C2_MAC, "10.50.0.2", "10.50.0.3", 8, 1)
    wrapped = bytes(outer(req, H1, H2, U1_MAC, U2_MAC))
    f, plain = dissect.dissect(wrapped), dissect.dissect(bytes(req))
    assert f.outer == {"src_mac": U1_MAC, "dst_mac": U2_MAC, "src": H1, "dst": H2, "sport": 40000, "dport": 4789,
                       "ttl": 64, "ip_id": 99, "length": len(wrapped), "vni": VNI}
    assert (f.key(), f.tuple(), f.info()) == (plain.key(), plain.tuple(), plain.info())
    assert plain.outer is None
    assert quick_key(wrapped) == quick_key(bytes(req))  # --count counts it once
    # Plain UDP to another port, or to 4789 without the VNI flag, is not a tunnel.
    assert dissect.vxlan_split(bytes(Ether() / IP() / UDP(dport=4790) / VXLAN(vni=1) / req)) is None
    assert dissect.vxlan_split(bytes(Ether() / IP() / UDP(dport=4789) / (b"\x00" * 8) / req)) is None


def test_tunnel_filter_compiles_for_every_protocol_and_port():
    for proto, ports in ((None, None), ("icmp", None), ("arp", None), ("tcp", [80]), ("udp", [53, 5353]), (None, [80])):
        build_filter(proto, ports)
        expr = tunnel_filter(proto, ports)
        assert expr.startswith("udp dst port 4789")
        assert compile_filter(expr)


def cross_host_trace(reach_h2=True):
    pts = [Point("c1", "eth0", "/run/netns/c1", "container", peer="h1:vc1"),
           Point("h1", "vc1", None, "veth", bridge="ovbr4096", peer="c1:eth0", owner="c1"),
           Point("h1", "ovbr4096", None, "bridge", bridge="ovbr4096"),
           Point("h1", "vxlan4096", None, "vxlan", bridge="ovbr4096"),
           Point("h1", "uplink", None, "uplink"),
           Point("h2", "uplink", "/proc/9/ns/net", "uplink"),
           Point("h2", "vxlan4096", "/proc/9/ns/net", "vxlan", bridge="ovbr4096"),
           Point("h2", "ovbr4096", "/proc/9/ns/net", "bridge", bridge="ovbr4096"),
           Point("h2", "vc2", "/proc/9/ns/net", "veth", bridge="ovbr4096", peer="c2:eth0", owner="c2"),
           Point("c2", "eth0", "/proc/9/root/run/netns/c2", "container", peer="h2:vc2")]
    topo = Topology(points=pts, containers={"c1": ["c1"], "c2": ["c2"]},
                    hosts={"h1": {"address": H1, "local": True}, "h2": {"address": H2, "local": False}})
    topo.addresses = {"c1": {"10.50.0.2": "eth0"}, "c2": {"10.50.0.3": "eth0"}, "h1": {H1: "uplink"},
                      "h2": {H2: "uplink"}}
    topo.fdb = {"ovbr4096": {C2_MAC: "vxlan4096"}, "h2:ovbr4096": {C2_MAC: "vc2"}}
    idx = {p.label: i for i, p in enumerate(pts)}
    req = inner(C1_MAC, C2_MAC, "10.50.0.2", "10.50.0.3", 8, 1)
    rep = inner(C2_MAC, C1_MAC, "10.50.0.3", "10.50.0.2", 0, 1)
    t = 10 ** 12
    hops = [("c1:eth0", True, req), ("h1:vc1", False, req), ("h1:vxlan4096", True, req),
            ("h1:uplink", True, outer(req, H1, H2, U1_MAC, U2_MAC))]
    if reach_h2:
        hops += [("h2:uplink", False, outer(req, H1, H2, U1_MAC, U2_MAC)), ("h2:vxlan4096", False, req),
                 ("h2:vc2", True, req), ("c2:eth0", False, req),
                 ("c2:eth0", True, rep), ("h2:vc2", False, rep), ("h2:vxlan4096", True, rep),
                 ("h2:uplink", True, outer(rep, H2, H1, U2_MAC, U1_MAC)),
                 ("h1:uplink", False, outer(rep, H2, H1, U2_MAC, U1_MAC)), ("h1:vxlan4096", False, rep),
                 ("h1:vc1", True, rep), ("c1:eth0", False, rep)]
    records = []
    for label, out, pkt in hops:
        t += 1000
        records.append(Record(t, idx[label], out, bytes(pkt)))
    result = Result(pts, records, 0.0, 1.0, "stop", "icmp", [0] * len(pts), [0] * len(pts))
    return assemble.build_report(result, topo)


def test_report_names_the_hosts_that_wrapped_and_unwrapped_each_way():
    rep = cross_host_trace()
    [flow] = rep["flows"]
    req, reply = flow["packets"]
    assert req["delivered"] and reply["delivered"] and not rep["drops"]
    assert req["tunnel"] == {"vni": VNI, "outer_src": H1, "outer_dst": H2, "outer_sport": 40000, "outer_dport": 4789,
                             "encapsulated_by": "h1", "decapsulated_by": "h2"}
    assert (reply["tunnel"]["encapsulated_by"], reply["tunnel"]["decapsulated_by"]) == ("h2", "h1")
    assert flow["path"] == ("c1:eth0 → h1:veth[c1] → vxlan4096 →[VXLAN 4096]→ uplink → h2:uplink →[decap]→ "
                            "vxlan4096 → veth[c2] → c2:eth0")
    changes = {h["point"]: h["changes"] for h in req["hops"]}
    assert changes["h1:vxlan4096"] == ["bridge ovbr4096 forwarded it to vxlan4096: dst MAC "
                                       f"{C2_MAC} learnt there"]
    assert changes["h1:uplink"][0].startswith("encapsulated by h1 (its VXLAN device vxlan4096, VNI 4096) into UDP "
                                              f"{H1}:40000 → {H2}:4789")
    assert changes["h2:uplink"][0].startswith("crossed the underlay from h1 to h2")
    assert changes["h2:vxlan4096"][0].startswith(f"decapsulated by h2 (vxlan4096): VNI 4096 from {H1}")
    # h2's bridge is looked up as h2's, not h1's (both are ovbr4096)
    assert changes["h2:vc2"] == [f"bridge ovbr4096 forwarded it to veth[c2]: dst MAC {C2_MAC} learnt there"]
    text = report.to_text(rep)
    assert f"tunnel     VXLAN VNI 4096: encapsulated by h1, {H1} → {H2}:4789" in text
    assert f"outer VXLAN VNI 4096 · UDP {H1}:40000 → {H2}:4789" in text


def test_lost_on_the_underlay_is_a_drop_when_the_far_uplink_is_traced():
    rep = cross_host_trace(reach_h2=False)
    [drop] = rep["drops"]
    assert drop["where"] == "h1:uplink"
    assert drop["text"] == (f"sent by h1:uplink over the underlay to h2 ({H2}, VXLAN VNI {VNI}) but never seen "
                            "on h2:uplink")
