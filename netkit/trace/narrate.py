"""Narration: what happened between two hops written out for a student (DNAT, SNAT/MASQUERADE,
the reverse translations, bridge flooding, forwarding and learning, hairpin, routing), the
names of hops (container and role first, veth name second) and the one-line path of a packet.
No I/O: reads only the Topology and the Hops.
"""
from __future__ import annotations

from netkit.trace.model import Hop, Point, Topology


def endpoint(ip, port) -> str:
    return f"{ip}:{port}" if port is not None else str(ip)


def hop_name(p: Point, topo: Topology | None = None) -> str:
    """A hop as a student reads it: `web:eth0`, `host:veth[web]`, `host:netkit0`, `outside:eth0`.
    The veth's own name (veth1a2b3c4) is secondary: see hop_detail()."""
    if p.role == "veth":
        owner = p.owner or (p.peer.split(":")[0] if p.peer else None)
        if owner and topo is not None and topo.containers.get(owner):
            owner = ",".join(topo.containers[owner])
        return f"{p.netns}:veth[{owner}]" if owner else p.label
    return p.label


def hop_detail(p: Point) -> str:
    """The secondary name of a hop (the veth's kernel name), '' when the name says it all."""
    return p.ifname if p.role == "veth" else ""


class Names:
    """Who is behind an address, a MAC, a netns: for flow titles and bridge notes."""

    def __init__(self, topo: Topology):
        self.topo = topo
        self.owner_ns: dict[str, str] = {}
        for ns, addrs in topo.addresses.items():
            for ip in addrs:
                if not ip.startswith("127."):  # every netns has its own: see ns_of()
                    self.owner_ns.setdefault(ip, ns)
        self.traced_ns = {p.netns for p in topo.points}
        self.labels = {p.label for p in topo.points}

    def uplinks_traced(self, ns: str) -> bool:
        return any(p.role == "uplink" and p.netns == ns for p in self.topo.points) or not self.topo.is_host(ns)

    def ns_of(self, ip: str | None, near: str | None = None) -> str | None:
        if ip and ip.startswith("127.") and near:
            return near  # loopback addresses belong to whichever netns the packet is in
        return self.owner_ns.get(ip or "")

    def who(self, ns: str | None) -> str:
        if ns is None:
            return "?"
        names = self.topo.containers.get(ns)
        if names and not self.topo.is_host(ns):
            return ",".join(names)
        return ns


def describe(prev: Hop, hop: Hop, reply: bool, topo: Topology, learnt_said: set) -> list:
    """What happened between two hops, written out."""
    out = []
    pf, f = prev.frame, hop.frame
    if pf.kind == "ipv4" and f.kind == "ipv4":
        if (pf.dst, pf.dport) != (f.dst, f.dport):
            a, b = endpoint(pf.dst, pf.dport), endpoint(f.dst, f.dport)
            if pf.dport == f.dport:
                a, b = pf.dst, f.dst
            if reply:
                out.append(("un-SNAT", f"reverse SNAT {a} → {b} (reply to a translated flow, by conntrack)"))
            else:
                out.append(("DNAT", f"DNAT {a} → {b}"))
        if (pf.src, pf.sport) != (f.src, f.sport):
            a, b = (pf.src, f.src) if pf.sport == f.sport else (endpoint(pf.src, pf.sport), endpoint(f.src, f.sport))
            if reply:
                out.append(("un-DNAT", f"reverse DNAT {endpoint(pf.src, pf.sport)} → {endpoint(f.src, f.sport)} "
                                       "(reply translated back, by conntrack)"))
            else:
                own = topo.addresses.get(hop.point.netns, {})
                masq = own.get(f.src) == hop.point.ifname
                tag = "MASQUERADE" if masq else "SNAT"
                out.append((tag, f"SNAT (MASQUERADE) {a} → {b}" if masq else f"SNAT {a} → {b}"))
    p, q = prev.point, hop.point
    out += _tunnel_change(prev, hop)
    qn = hop_name(q, topo).split(":", 1)[1]
    if p.netns == q.netns and p.label != q.label:
        if q.role in ("veth", "vxlan") and q.bridge and hop.outgoing and p.bridge == q.bridge:
            learnt = topo.learnt(q, f.dst_mac)
            if f.broadcast:
                out.append(("", f"bridge {q.bridge} flooded it (broadcast) to {qn}"))
            else:
                why = f": dst MAC {f.dst_mac} learnt there" if learnt == q.ifname else ""
                out.append(("", f"bridge {q.bridge} forwarded it to {qn}{why}"))
        elif q.role == "bridge" and not hop.outgoing and p.bridge == q.ifname:
            what = "a copy of the broadcast" if f.broadcast else "it (dst MAC is the bridge's own)"
            out.append(("", f"bridge {q.ifname} passed {what} up to the {q.netns} stack"))
        elif pf.ttl is not None and f.ttl is not None and f.ttl < pf.ttl:
            out.append(("", f"routed by {q.netns}: {hop_name(p, topo).split(':', 1)[1]} → {qn}, "
                            f"TTL {pf.ttl}→{f.ttl}"))
    elif p.label == q.label and prev.outgoing != hop.outgoing and q.bridge:
        if f.broadcast:
            out.append(("echo", f"hairpin: bridge {q.bridge} floods a broadcast back out {qn} too, the port it "
                                "came in on (netkit turns hairpin mode on so that a container can reach its own "
                                "published port); the sender ignores its own frame"))
        else:
            out.append(("", f"hairpin: bridge {q.bridge} sent it back out {qn}, the port it came in on"))
    elif p.peer == q.label and prev.outgoing and not hop.outgoing and prev.changes and \
            any(t == "echo" for t, _ in prev.changes):
        out.append(("echo", f"{hop_name(q, topo).split(':')[0]} receives its own broadcast back and ignores it"))
    if q.role == "veth" and q.bridge and not hop.outgoing and f.src_mac:
        learnt = topo.learnt(q, f.src_mac)
        if learnt == q.ifname and (q.bridge, f.src_mac) not in learnt_said:
            learnt_said.add((q.bridge, f.src_mac))
            out.append(("", f"bridge {q.bridge} learns src MAC {f.src_mac} on {qn}"))
    if f.src_mac != pf.src_mac and prev.point.label != hop.point.label and f.kind != "arp" and p.netns == q.netns \
            and not out:
        out.append(("", f"L2 rewritten: {pf.src_mac} → {f.src_mac}"))
    return out


NAT_TAGS = ("DNAT", "SNAT", "MASQUERADE", "un-SNAT", "un-DNAT")
TUNNEL_TAGS = ("encap", "decap")


def _tunnel_change(prev: Hop, hop: Hop) -> list:
    """VXLAN: the host that wrapped the frame (outer headers appear), the underlay crossed
    between two hosts, the host that unwrapped it (outer headers gone)."""
    po, o = prev.frame.outer, hop.frame.outer
    p, q = prev.point, hop.point
    if o and not po:
        dev = f"its VXLAN device {p.ifname}" if p.role == "vxlan" and p.netns == q.netns else "its VXLAN device"
        return [("encap", f"encapsulated by {q.netns} ({dev}, VNI {o['vni']}) into UDP {o['src']}:{o['sport']} → "
                          f"{o['dst']}:{o['dport']}; the inner frame is carried unchanged")]
    if po and not o:
        return [("decap", f"decapsulated by {q.netns} ({q.ifname if q.role == 'vxlan' else 'its VXLAN device'}): "
                          f"VNI {po['vni']} from {po['src']}, the inner frame goes on into the overlay bridge")]
    if po and o and p.netns != q.netns:
        return [("", f"crossed the underlay from {p.netns} to {q.netns}: {o['src']} → {o['dst']} "
                     f"(UDP {o['dport']}, VNI {o['vni']})")]
    return []


def path_line(hops: list[Hop], topo: Topology | None = None) -> str:
    """`a:eth0 → host:veth[a] → netkit0 →[MASQUERADE]→ uplink → outside:eth0` (echoes left out)."""
    parts, last_ns = [], None
    hops = [h for h in hops if not is_echo(h)]
    for i, h in enumerate(hops):
        full = hop_name(h.point, topo)
        name = full.split(":", 1)[1] if h.point.netns == last_ns else full
        if i:
            tags = [t for t, _ in h.changes if t in NAT_TAGS]
            tags += [f"VXLAN {h.frame.outer['vni']}" if t == "encap" else "decap"
                     for t, _ in h.changes if t in TUNNEL_TAGS]
            parts.append(f" →[{','.join(tags)}]→ " if tags else " → ")
        parts.append(name)
        last_ns = h.point.netns
    return "".join(parts)


def is_echo(h: Hop) -> bool:
    """A hairpin echo of a broadcast (or its arrival back at the sender): shown, not a path step."""
    return any(t == "echo" for t, _ in h.changes)
