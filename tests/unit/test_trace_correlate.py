"""The tracer's correlation, report and file writers on synthetic frames (no root, no kernel)."""
import json
import subprocess
import xml.dom.minidom

import pytest

from netkit.trace import assemble, dissect, pcap, report, svg
from netkit.trace.capture import build_filter, compile_filter, quick_key
from netkit.trace.model import Point, Record, Result, Topology
from required import need

scapy_l2 = pytest.importorskip("scapy.layers.l2")
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402

OUT_MAC, UP_MAC, BR_MAC, WEB_MAC, APP_MAC = ("aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03",
                                             "02:42:ac:11:00:02", "02:42:ac:11:00:03")


def world():
    pts = [
        Point("outside", "eth0", "/run/netns/outside", "outside", peer="host:uplink"),
        Point("host", "uplink", None, "uplink", peer="outside:eth0"),
        Point("host", "netkit0", None, "bridge", bridge="netkit0"),
        Point("host", "vethweb0", None, "veth", bridge="netkit0", peer="web:eth0"),
        Point("web", "eth0", "/run/netns/web", "container", peer="host:vethweb0"),
        Point("host", "vethapp0", None, "veth", bridge="netkit0", peer="app:eth0"),
        Point("app", "eth0", "/run/netns/app", "container", peer="host:vethapp0"),
    ]
    topo = Topology(points=pts, containers={"web": ["web"], "app": ["app"]})
    topo.addresses = {"outside": {"198.18.0.2": "eth0"}, "host": {"198.18.0.1": "uplink", "172.17.0.1": "netkit0"},
                      "web": {"172.17.0.2": "eth0"}, "app": {"172.17.0.3": "eth0"}}
    topo.fdb = {"netkit0": {WEB_MAC: "vethweb0", APP_MAC: "vethapp0"}}
    topo.forwarding = {"host": True}
    return pts, topo


class Trace:
    """Builds records: one packet on several hops, a microsecond apart."""

    def __init__(self, pts):
        self.index = {p.label: i for i, p in enumerate(pts)}
        self.pts = pts
        self.records = []
        self.t = 1_000_000_000_000

    def hop(self, label, out, pkt, gap=1000):
        self.t += gap
        self.records.append(Record(self.t, self.index[label], out, bytes(pkt)))

    def result(self):
        return Result(self.pts, sorted(self.records, key=lambda r: r.ts_ns), 0.0, 1.0, "stop", "tcp",
                      [0] * len(self.pts), [0] * len(self.pts))


def tcp(smac, dmac, src, sport, dst, dport, ttl, flags, seq, ack=0, ipid=1, load=b""):
    return Ether(src=smac, dst=dmac) / IP(src=src, dst=dst, ttl=ttl, id=ipid) / \
        TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / load


def publish_trace(drop_at_veth=False):
    pts, topo = world()
    tr = Trace(pts)
    syn_out = tcp(OUT_MAC, UP_MAC, "198.18.0.2", 40000, "198.18.0.1", 8088, 64, "S", 100, ipid=7)
    syn_in = tcp(BR_MAC, WEB_MAC, "198.18.0.2", 40000, "172.17.0.2", 80, 63, "S", 100, ipid=7)
    tr.hop("outside:eth0", True, syn_out)
    tr.hop("host:uplink", False, syn_out)
    tr.hop("host:netkit0", True, syn_in)
    tr.hop("host:vethweb0", True, syn_in)
    if drop_at_veth:
        return tr, topo
    tr.hop("web:eth0", False, syn_in)
    sa_in = tcp(WEB_MAC, BR_MAC, "172.17.0.2", 80, "198.18.0.2", 40000, 64, "SA", 500, 101, ipid=0)
    sa_out = tcp(UP_MAC, OUT_MAC, "198.18.0.1", 8088, "198.18.0.2", 40000, 63, "SA", 500, 101, ipid=0)
    tr.hop("web:eth0", True, sa_in, gap=20000)
    tr.hop("host:vethweb0", False, sa_in)
    tr.hop("host:netkit0", False, sa_in)
    tr.hop("host:uplink", True, sa_out)
    tr.hop("outside:eth0", False, sa_out)
    return tr, topo


CONNTRACK = [{"proto": "tcp", "original": {"src": "198.18.0.2", "sport": 40000, "dst": "198.18.0.1", "dport": 8088},
              "reply": {"src": "172.17.0.2", "sport": 80, "dst": "198.18.0.2", "dport": 40000},
              "status": ["SEEN_REPLY", "ASSURED", "DST_NAT"], "state": "ESTABLISHED", "timeout": 100},
             {"proto": "udp", "original": {"src": "10.0.0.1", "sport": 1, "dst": "10.0.0.2", "dport": 2},
              "reply": {"src": "10.0.0.2", "sport": 2, "dst": "10.0.0.1", "dport": 1},
              "status": [], "state": None, "timeout": 10}]


def test_publish_dnat_path_reply_and_conntrack():
    tr, topo = publish_trace()
    rep = assemble.build_report(tr.result(), topo, CONNTRACK)
    assert len(rep["flows"]) == 1
    flow = rep["flows"][0]
    assert flow["path"] == "outside:eth0 → host:uplink →[DNAT]→ netkit0 → veth[web] → web:eth0"
    assert flow["reply_path"] == "web:eth0 → host:veth[web] → netkit0 →[un-DNAT]→ uplink → outside:eth0"
    assert flow["nat"][0] == "DNAT 198.18.0.1:8088 → 172.17.0.2:80"
    assert flow["nat"][1].startswith("reverse DNAT 172.17.0.2:80 → 198.18.0.1:8088")
    assert (flow["from"], flow["to"]) == ("outside", "web")
    syn, synack = flow["packets"]
    assert [h["point"] for h in syn["hops"]] == ["outside:eth0", "host:uplink", "host:netkit0", "host:vethweb0", "web:eth0"]
    assert syn["direction"] == "original" and synack["direction"] == "reply"
    assert syn["delivered"] and synack["delivered"] and not rep["drops"]
    changes = syn["hops"][2]["changes"]
    assert "DNAT 198.18.0.1:8088 → 172.17.0.2:80" in changes
    assert "routed by host: uplink → netkit0, TTL 64→63" in changes
    assert syn["hops"][3]["changes"] == ["bridge netkit0 forwarded it to veth[web]: dst MAC 02:42:ac:11:00:02 learnt there"]
    assert (syn["hops"][3]["name"], syn["hops"][3]["detail"]) == ("host:veth[web]", "vethweb0")
    assert [e["proto"] for e in flow["conntrack"]] == ["tcp"]
    assert syn["hops"][1]["dt_us"] == 1.0


def test_drop_is_reported_where_the_packet_stopped():
    tr, topo = publish_trace(drop_at_veth=True)
    rep = assemble.build_report(tr.result(), topo)
    (drop,) = rep["drops"]
    assert drop["where"] == "host:vethweb0"
    assert drop["reason"] == "lost" and drop["text"] == "sent by host:vethweb0 but never seen on web:eth0"
    assert rep["flows"][0]["packets"][0]["delivered"] is False


def test_masquerade_outbound_and_forwarding_drop():
    pts, topo = world()
    tr = Trace(pts)
    syn_c = tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "198.18.0.2", 8080, 64, "S", 1, ipid=3)
    syn_u = tcp(UP_MAC, OUT_MAC, "198.18.0.1", 5000, "198.18.0.2", 8080, 63, "S", 1, ipid=3)
    for label, out, pkt in [("app:eth0", True, syn_c), ("host:vethapp0", False, syn_c), ("host:netkit0", False, syn_c),
                            ("host:uplink", True, syn_u), ("outside:eth0", False, syn_u)]:
        tr.hop(label, out, pkt)
    sa_o = tcp(OUT_MAC, UP_MAC, "198.18.0.2", 8080, "198.18.0.1", 5000, 64, "SA", 9, 2, ipid=0)
    sa_c = tcp(BR_MAC, APP_MAC, "198.18.0.2", 8080, "172.17.0.3", 5000, 63, "SA", 9, 2, ipid=0)
    for label, out, pkt in [("outside:eth0", True, sa_o), ("host:uplink", False, sa_o), ("host:netkit0", True, sa_c),
                            ("host:vethapp0", True, sa_c), ("app:eth0", False, sa_c)]:
        tr.hop(label, out, pkt)
    # a second connection whose SYN the host never forwards
    lost = tcp(APP_MAC, BR_MAC, "172.17.0.3", 5001, "198.18.0.2", 8080, 64, "S", 77, ipid=4)
    for label, out in [("app:eth0", True), ("host:vethapp0", False), ("host:netkit0", False)]:
        tr.hop(label, out, lost)
    topo.forwarding = {"host": False}
    rep = assemble.build_report(tr.result(), topo)
    first, second = rep["flows"]
    assert first["path"] == "app:eth0 → host:veth[app] → netkit0 →[MASQUERADE]→ uplink → outside:eth0"
    assert first["nat"][0] == "SNAT (MASQUERADE) 172.17.0.3 → 198.18.0.1"
    assert "un-SNAT" in first["reply_path"]
    assert not [d for d in rep["drops"] if d["flow"] == 1]
    (drop,) = rep["drops"]
    assert drop["flow"] == 2 and drop["where"] == "host:netkit0"
    assert drop["reason"] == "ip_forward" and drop["setting"] == "ip_forward off"
    assert drop["text"].startswith("dropped in host after netkit0: IPv4 forwarding is off in host (net.ipv4.ip_forward=0)")


def test_arp_flood_and_learning_on_a_bridge():
    pts, topo = world()
    tr = Trace(pts)
    req = Ether(src=APP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=APP_MAC, psrc="172.17.0.3", pdst="172.17.0.2")
    rep_ = Ether(src=WEB_MAC, dst=APP_MAC) / ARP(op=2, hwsrc=WEB_MAC, psrc="172.17.0.2", hwdst=APP_MAC, pdst="172.17.0.3")
    for label, out in [("app:eth0", True), ("host:vethapp0", False), ("host:netkit0", False),
                       ("host:vethweb0", True), ("web:eth0", False)]:
        tr.hop(label, out, req)
    for label, out in [("web:eth0", True), ("host:vethweb0", False), ("host:vethapp0", True), ("app:eth0", False)]:
        tr.hop(label, out, rep_)
    rep = assemble.build_report(tr.result(), topo)
    (flow,) = rep["flows"]
    request, reply = flow["packets"]
    assert request["info"] == "ARP who-has 172.17.0.2 tell 172.17.0.3"
    by_point = {h["point"]: h["changes"] for h in request["hops"]}
    assert by_point["host:vethapp0"] == ["bridge netkit0 learns src MAC 02:42:ac:11:00:03 on veth[app]"]
    assert by_point["host:netkit0"] == ["bridge netkit0 passed a copy of the broadcast up to the host stack"]
    assert by_point["host:vethweb0"] == ["bridge netkit0 flooded it (broadcast) to veth[web]"]
    assert request["hops"][3]["from_point"] == "host:vethapp0"  # the flood follows the ingress, not the copy
    assert reply["direction"] == "reply" and reply["delivered"]
    assert flow["path"] == "app:eth0 → host:veth[app] → netkit0 → veth[web] → web:eth0"
    assert not rep["drops"]


def test_same_identity_later_or_on_the_same_hop_is_a_new_packet():
    pts, topo = world()
    tr = Trace(pts)
    syn = tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "172.17.0.2", 80, 64, "S", 1, ipid=9)
    tr.hop("app:eth0", True, syn)
    tr.hop("host:vethapp0", False, syn)
    tr.hop("app:eth0", True, syn, gap=2_000_000_000)  # a retransmission 2 s later
    rep = assemble.build_report(tr.result(), topo)
    assert [len(p["hops"]) for p in rep["flows"][0]["packets"]] == [2, 1]


def test_udp_and_quick_key_ignore_nat_fields():
    a = Ether() / IP(src="172.17.0.2", dst="198.18.0.2", id=5, ttl=64) / UDP(sport=1, dport=2) / b"payload"
    b = Ether(src="aa:bb:cc:dd:ee:ff") / IP(src="198.18.0.1", dst="198.18.0.2", id=5, ttl=63) / UDP(sport=1, dport=2) / b"payload"
    assert dissect.dissect(bytes(a)).key() == dissect.dissect(bytes(b)).key()
    assert quick_key(bytes(a)) == quick_key(bytes(b))
    c = Ether() / IP(src="172.17.0.2", dst="198.18.0.2", id=5) / UDP(sport=1, dport=2) / b"other"
    assert quick_key(bytes(a)) != quick_key(bytes(c))


def test_filters():
    assert build_filter() == ""
    assert build_filter("tcp", [8088, 80]) == "tcp and (port 80 or port 8088)"
    assert build_filter(None, [53]).startswith("((port 53) or icmp")
    assert build_filter("arp", None, "host 1.2.3.4") == "arp and (host 1.2.3.4)"
    for expr in ["tcp and (port 80 or port 8088)", build_filter(None, [53]), "arp", "icmp"]:
        code = compile_filter(expr)
        assert code and len(code) % 8 == 0
    from netkit.errors import UserError

    with pytest.raises(UserError, match="bad capture filter"):
        compile_filter("tcp port banana")
    with pytest.raises(UserError, match="unknown protocol"):
        build_filter("sctp")
    with pytest.raises(UserError, match="--port makes no sense"):
        build_filter("arp", [80])


def test_renderers_and_pcap_files(tmp_path):
    tr, topo = publish_trace()
    result = tr.result()
    rep = assemble.build_report(result, topo, CONNTRACK)
    text = report.to_text(rep)
    assert "DNAT 198.18.0.1:8088 → 172.17.0.2:80" in text
    assert "outside:eth0 → host:uplink →[DNAT]→ netkit0 → veth[web] → web:eth0" in text
    assert "\x1b[" not in text and "Drops: none" in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert json.loads(report.to_json(rep))["flows"][0]["nat"] == rep["flows"][0]["nat"]
    picture = svg.to_svg(rep)
    doc = xml.dom.minidom.parseString(picture)
    heads = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.getAttribute("text-anchor") == "middle"]
    assert heads[:3] == ["outside host", "eth0", "host"]  # namespace boxes with their lanes inside
    assert "veth[web]" in heads and "container web" in heads
    assert 'marker-end="url(#nat)"' in picture  # the NAT hops are marked
    assert not svg.layout(rep).overflows() and not svg.layout(rep, brief=True).overflows()
    files = pcap.write(result, str(tmp_path)) + [pcap.write_pcapng(result, str(tmp_path), rep)]
    names = sorted(p.split("/")[-1] for p in files)
    assert "outside-eth0.pcap" in names and "merged.pcap" in names and "merged.pcapng" in names
    from scapy.utils import rdpcap

    merged = rdpcap(str(tmp_path / "merged.pcap"))
    assert len(merged) == len(result.records)
    assert [bytes(p) for p in merged] == [r.data for r in result.records]
    assert len(rdpcap(str(tmp_path / "web-eth0.pcap"))) == 2
    ng = rdpcap(str(tmp_path / "merged.pcapng"))
    assert len(ng) == len(result.records)
    # one interface block per hop, and each packet's hop, direction and NAT as its comment
    assert [p.sniffed_on for p in ng[:5]] == ["outside:eth0", "host:uplink", "host:netkit0", "host:vethweb0", "web:eth0"]
    assert ng[2].comment.decode().startswith("flow 1 #1 TCP [S] seq=100 | hop 3/5 host:netkit0 out | DNAT 198.18.0.1:8088")
    assert "hop 4/5 host:veth[web] (vethweb0) out" in ng[3].comment.decode()
    need("tcpdump")
    out = subprocess.run(["tcpdump", "-n", "-r", str(tmp_path / "merged.pcapng")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.count("\n") == len(result.records)


def test_fast_dissector_agrees_with_scapy():
    from scapy.layers.inet import ICMP
    from scapy.packet import Padding

    packets = [
        tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "198.18.0.2", 8080, 64, "S", 1, ipid=3),
        tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "198.18.0.2", 8080, 64, "PA", 1, 99, load=b"GET / HTTP/1.0\r\n"),
        tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "198.18.0.2", 8080, 64, "FA", 5, 6),
        tcp(APP_MAC, BR_MAC, "172.17.0.3", 5000, "198.18.0.2", 8080, 64, "R", 5),
        Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=53, dport=5353) / (b"x" * 300),
        Ether() / IP(src="1.2.3.4", dst="5.6.7.8", id=77) / ICMP(type=8, id=42, seq=3) / b"ping",
        Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2) / b"ab" / Padding(b"\0" * 10),
        Ether(src=APP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=APP_MAC, psrc="172.17.0.3", pdst="172.17.0.2"),
        Ether(src=WEB_MAC, dst=APP_MAC) / ARP(op=2, hwsrc=WEB_MAC, psrc="172.17.0.2", pdst="172.17.0.3"),
        Ether() / IP(options=b"\x01\x01\x01\x00") / UDP() / b"with IP options",
    ]
    for pkt in packets:
        raw = bytes(pkt)
        fast = dissect.fast_dissect(raw)
        assert fast is not None, pkt.summary()
        assert fast == dissect.scapy_dissect(raw), pkt.summary()
    # What the fast path leaves to Scapy: ICMP errors, fragments, IPv6.
    from scapy.layers.inet6 import IPv6

    error = Ether() / IP(src="5.6.7.8", dst="1.2.3.4") / ICMP(type=3, code=3) / IP(src="1.2.3.4", dst="5.6.7.8") / UDP(sport=1, dport=2)
    for pkt in [error, Ether() / IP(flags="MF") / UDP(), Ether() / IPv6() / UDP()]:
        assert dissect.fast_dissect(bytes(pkt)) is None
    inner = dissect.dissect(bytes(error)).inner
    assert inner == ("udp", "1.2.3.4", 1, "5.6.7.8", 2)


def test_rule_counters_from_every_backend_and_the_rule_matcher():
    from netkit.kernel import rulecounters
    from netkit.trace import drops

    legacy = """*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [3:180]
:NETKIT-FORWARD - [0:0]
[5:300] -A FORWARD -j NETKIT-FORWARD
[2:120] -A NETKIT-FORWARD -i br-q -o br-q -j DROP
COMMIT
"""
    before = rulecounters.parse_save_counters(legacy, "iptables-legacy")
    after = rulecounters.parse_save_counters(legacy.replace("[2:120] -A NETKIT", "[4:240] -A NETKIT")
                                             .replace("[3:180]", "[4:240]"), "iptables-legacy")
    moved = {(c.chain, c.rule): d for c, d in rulecounters.moved(before, after)}
    assert moved == {("NETKIT-FORWARD", "-A NETKIT-FORWARD -i br-q -o br-q -j DROP"): 2, ("FORWARD", "policy DROP"): 1}
    assert [c.verdict for c in after] == ["ACCEPT", "DROP", "JUMP", "DROP"]
    nft = """table ip netkit {
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "br-q" oifname "br-q" counter packets 7 bytes 420 drop # handle 4
		ct state established counter packets 1 bytes 60 accept # handle 5
	}
}
table ip filter {
	chain FORWARD {
		counter packets 9 bytes 1 drop # handle 2
	}
}
"""
    rules = rulecounters.parse_nft(nft, {"ip filter"})
    assert [(r.table, r.chain, r.rule, r.verdict, r.packets) for r in rules] == [
        ("ip netkit", "forward", 'iifname "br-q" oifname "br-q" drop', "DROP", 7),
        ("ip netkit", "forward", "ct state established accept", "ACCEPT", 1)]
    match = drops.xt_may_match
    assert match("-A X -i br-q -o br-q -j DROP", "1.1.1.1", "2.2.2.2", "tcp", 1, 2, {"veth1", "br-q"}, None)
    assert not match("-A X -i br-z -o br-z -j DROP", "1.1.1.1", "2.2.2.2", "tcp", 1, 2, {"veth1", "br-q"}, None)
    assert not match("-d 172.17.0.2/32 ! -i netkit0 -j DROP", "1.1.1.1", "172.17.0.3", "tcp", 1, 2, {"uplink"}, None)
    assert match("-d 172.17.0.2/32 ! -i netkit0 -j DROP", "1.1.1.1", "172.17.0.2", "tcp", 1, 2, {"uplink"}, None)
    assert not match("-p tcp -m tcp --dport 80 -j DROP", "1.1.1.1", "2.2.2.2", "tcp", 1, 81, None, None)
