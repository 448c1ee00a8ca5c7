"""From raw frames to a report: dissect with Scapy (after the capture), find the same packet
on every hop by what NAT does not change, group packets into flows, write out what changed
between hops (DNAT, SNAT/MASQUERADE, bridge forwarding, routing), attach the kernel's conntrack
entry, and mark packets that stopped half-way as dropped.

The report is a plain dict with stable field names: `--json` prints it, and the text and SVG
renderers draw only from it.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from netkit.trace.capture import Point, Result
from netkit.trace.path import Topology

REPORT_VERSION = 1
BROADCAST = "ff:ff:ff:ff:ff:ff"
SPLIT_GAP_NS = 1_000_000_000  # the same identity a second later is a new packet (a retransmit)


# ---- dissection -----------------------------------------------------------------------------

@dataclass
class Frame:
    src_mac: str = ""
    dst_mac: str = ""
    kind: str = "other"  # arp | ipv4 | other
    proto: str = ""  # tcp | udp | icmp | arp | ip<N> | ethertype 0x....
    src: str | None = None  # IPv4 (ARP: sender IP)
    dst: str | None = None  # IPv4 (ARP: target IP)
    sport: int | None = None
    dport: int | None = None
    ttl: int | None = None
    ip_id: int | None = None
    flags: str = ""  # TCP flags as Scapy writes them: S, SA, A, PA, FA, R ...
    seq: int | None = None
    ack: int | None = None
    arp_op: str | None = None  # who-has | is-at
    arp_hwsrc: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    inner: tuple | None = None  # ICMP error: (proto, src, sport, dst, dport) of the packet it is about
    length: int = 0
    payload_len: int = 0
    payload_crc: int = 0

    @property
    def broadcast(self) -> bool:
        return self.dst_mac == BROADCAST or bool(int(self.dst_mac[:2] or "0", 16) & 1)

    def key(self):
        """The packet's identity on every hop: fields neither NAT nor routing rewrite."""
        if self.kind == "arp":
            return ("arp", self.arp_op, self.arp_hwsrc, self.src, self.dst)
        if self.kind == "ipv4":
            if self.proto == "tcp":
                return ("tcp", self.ip_id, self.seq, self.ack, self.flags, self.payload_len, self.payload_crc)
            if self.proto == "icmp":
                # The echo id is left out: MASQUERADE may rewrite it like a port.
                return ("icmp", self.ip_id, self.icmp_type, self.icmp_code, self.icmp_seq, self.payload_crc)
            return (self.proto, self.ip_id, self.payload_len, self.payload_crc)
        return ("other", self.proto, self.length, self.payload_crc)

    def tuple(self):
        """(proto, src, sport, dst, dport) of this hop; ICMP echo uses its id as both ports."""
        return (self.proto, self.src, self.sport, self.dst, self.dport)

    def info(self) -> str:
        """One short human description of the packet (the same on every hop)."""
        if self.kind == "arp":
            if self.arp_op == "who-has":
                return f"ARP who-has {self.dst} tell {self.src}"
            return f"ARP {self.src} is-at {self.arp_hwsrc}"
        if self.proto == "tcp":
            text = f"TCP [{self.flags}] seq={self.seq}"
            if "A" in self.flags:
                text += f" ack={self.ack}"
            if self.payload_len:
                text += f" len={self.payload_len}"
            return text
        if self.proto == "udp":
            return f"UDP len={self.payload_len}"
        if self.proto == "icmp":
            names = {0: "echo-reply", 8: "echo-request", 3: "unreachable", 11: "time-exceeded"}
            text = f"ICMP {names.get(self.icmp_type, self.icmp_type)}"
            if self.icmp_type in (0, 8):
                text += f" id={self.icmp_id} seq={self.icmp_seq}"
            elif self.icmp_type == 3:
                codes = {0: "net", 1: "host", 3: "port", 13: "admin-prohibited"}
                text += f" ({codes.get(self.icmp_code, self.icmp_code)})"
            return text
        return self.proto or "frame"


def endpoint(ip, port) -> str:
    return f"{ip}:{port}" if port is not None else str(ip)


_TCP_FLAGS = "FSRPAUECN"  # Scapy's letters, lowest bit first


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def fast_dissect(data: bytes) -> Frame | None:
    """The plain cases (Ethernet + ARP, or IPv4 + TCP/UDP/ICMP echo) read with slicing: ~20x
    faster than Scapy, which a 10k-packet trace needs. None for anything else; dissect() then
    asks Scapy. Tests check that both give the same Frame."""
    n = len(data)
    if n < 14:
        return None
    etype = data[12:14]
    f = Frame(src_mac=_mac(data[6:12]), dst_mac=_mac(data[0:6]), length=n)
    if etype == b"\x08\x06":
        if n < 42 or data[14:20] != b"\x00\x01\x08\x00\x06\x04" or data[20] != 0:
            return None
        op = data[21]
        if op not in (1, 2):
            return None
        f.kind = f.proto = "arp"
        f.arp_op = "who-has" if op == 1 else "is-at"
        f.arp_hwsrc, f.src, f.dst = _mac(data[22:28]), _ip(data[28:32]), _ip(data[38:42])
        return f
    if etype != b"\x08\x00" or n < 34 or data[14] >> 4 != 4:
        return None
    ihl = (data[14] & 0x0F) * 4
    total = int.from_bytes(data[16:18], "big")
    if ihl < 20 or n < 14 + ihl or total < ihl or int.from_bytes(data[20:22], "big") & 0x1FFF or data[20] & 0x20:
        return None  # fragments (and odd headers) go to Scapy
    end = min(n, 14 + total)
    f.kind = "ipv4"
    f.src, f.dst, f.ttl = _ip(data[26:30]), _ip(data[30:34]), data[22]
    f.ip_id = int.from_bytes(data[18:20], "big")
    proto, l4 = data[23], 14 + ihl
    if proto == 6 and end >= l4 + 20:
        doff = (data[l4 + 12] >> 4) * 4
        if doff < 20 or end < l4 + doff:
            return None
        bits = ((data[l4 + 12] & 1) << 8) | data[l4 + 13]
        f.proto = "tcp"
        f.sport, f.dport = int.from_bytes(data[l4:l4 + 2], "big"), int.from_bytes(data[l4 + 2:l4 + 4], "big")
        f.seq, f.ack = int.from_bytes(data[l4 + 4:l4 + 8], "big"), int.from_bytes(data[l4 + 8:l4 + 12], "big")
        f.flags = "".join(c for i, c in enumerate(_TCP_FLAGS) if bits >> i & 1)
        body = data[l4 + doff:end]
    elif proto == 17 and end >= l4 + 8:
        f.proto = "udp"
        f.sport, f.dport = int.from_bytes(data[l4:l4 + 2], "big"), int.from_bytes(data[l4 + 2:l4 + 4], "big")
        body = data[l4 + 8:end]
    elif proto == 1 and end >= l4 + 8 and data[l4] in (0, 8):
        f.proto, f.icmp_type, f.icmp_code = "icmp", data[l4], data[l4 + 1]
        f.icmp_id, f.icmp_seq = int.from_bytes(data[l4 + 4:l4 + 6], "big"), int.from_bytes(data[l4 + 6:l4 + 8], "big")
        f.sport = f.dport = f.icmp_id
        body = data[l4 + 8:end]
    else:
        return None
    f.payload_len, f.payload_crc = len(body), zlib.crc32(body)
    return f


def dissect(data: bytes) -> Frame:
    """One frame reduced to the fields the report uses: the fast path, else Scapy."""
    return fast_dissect(data) or scapy_dissect(data)


def scapy_dissect(data: bytes) -> Frame:
    """Scapy's view of one frame, reduced to the fields the report uses."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
    from scapy.layers.l2 import ARP, Ether

    f = Frame(length=len(data))
    try:
        pkt = Ether(data)
    except Exception:  # noqa: BLE001 - a frame Scapy cannot read is still reported as a frame
        f.payload_crc = zlib.crc32(data)
        return f
    f.src_mac, f.dst_mac = pkt.src, pkt.dst
    if ARP in pkt:
        a = pkt[ARP]
        f.kind, f.proto = "arp", "arp"
        f.src, f.dst, f.arp_hwsrc = a.psrc, a.pdst, a.hwsrc
        f.arp_op = {1: "who-has", 2: "is-at"}.get(a.op, str(a.op))
        return f
    if IP not in pkt:
        from scapy.layers.inet6 import IPv6

        f.payload_crc = zlib.crc32(data[14:])
        if IPv6 in pkt:
            # Shown for what it is, never correlated further: netkit's networks are IPv4.
            v6 = pkt[IPv6]
            f.src, f.dst = v6.src, v6.dst
            f.proto = {58: "icmp6", 6: "tcp6", 17: "udp6"}.get(v6.nh, f"ipv6 nh {v6.nh}")
            return f
        f.proto = f"ethertype 0x{pkt.type:04x}" if hasattr(pkt, "type") else "frame"
        return f
    ip = pkt[IP]
    end = 14 + ip.len if ip.len else len(data)
    l4 = 14 + ip.ihl * 4
    f.kind = "ipv4"
    f.src, f.dst, f.ttl, f.ip_id = ip.src, ip.dst, ip.ttl, ip.id
    if TCP in ip and not isinstance(ip[TCP], TCPerror):
        t = ip[TCP]
        f.proto, f.sport, f.dport = "tcp", t.sport, t.dport
        f.flags, f.seq, f.ack = str(t.flags), t.seq, t.ack
        body = data[l4 + t.dataofs * 4:end]
    elif UDP in ip and not isinstance(ip[UDP], UDPerror):
        u = ip[UDP]
        f.proto, f.sport, f.dport = "udp", u.sport, u.dport
        body = data[l4 + 8:end]
    elif ICMP in ip:
        c = ip[ICMP]
        f.proto, f.icmp_type, f.icmp_code = "icmp", c.type, c.code
        if c.type in (0, 8):
            f.icmp_id, f.icmp_seq = c.id, c.seq
            f.sport = f.dport = c.id
            body = data[l4 + 8:end]
        else:
            body = b""
            if IPerror in c:
                e = c[IPerror]
                inner = e.getlayer(TCPerror) or e.getlayer(UDPerror)
                proto = "tcp" if isinstance(inner, TCPerror) else "udp" if inner is not None else f"ip{e.proto}"
                f.inner = (proto, e.src, inner.sport if inner is not None else None,
                           e.dst, inner.dport if inner is not None else None)
    else:
        f.proto = f"ip{ip.proto}"
        body = data[l4:end]
    f.payload_len, f.payload_crc = len(body), zlib.crc32(body)
    return f


# ---- grouping -------------------------------------------------------------------------------

@dataclass
class Hop:
    t_ns: int
    point: Point
    outgoing: bool
    frame: Frame
    changes: list = field(default_factory=list)  # [(tag, text)]; tag '' for a plain note
    pred: int | None = None  # index of the hop this one follows from

    @property
    def direction(self) -> str:
        return "out" if self.outgoing else "in"


def group_packets(records, frames: list[Frame]) -> list[list[int]]:
    """Indices of records that are one packet on its several hops, each group time-ordered."""
    open_groups: dict = {}  # key -> (group, seen (point, dir) pairs, last ts)
    groups: list[list[int]] = []
    for i, r in enumerate(records):
        key = frames[i].key()
        slot = (r.point, r.outgoing)
        cur = open_groups.get(key)
        if cur is None or slot in cur[1] or r.ts_ns - cur[2] > SPLIT_GAP_NS:
            cur = ([], set(), r.ts_ns)
            groups.append(cur[0])
        cur[0].append(i)
        cur[1].add(slot)
        open_groups[key] = (cur[0], cur[1], r.ts_ns)
    return groups


def _canon(t) -> tuple:
    proto, src, sport, dst, dport = t
    a, b = (str(src), sport or 0), (str(dst), dport or 0)
    return (proto,) + ((a, b) if a <= b else (b, a))


class _Union:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _flow_keys(frame: Frame) -> list:
    if frame.kind == "arp":
        return [("arp",) + tuple(sorted((frame.src or "", frame.dst or "")))]
    if frame.kind == "ipv4":
        keys = [_canon(frame.tuple())]
        if frame.inner:
            keys.append(_canon(frame.inner))
        return keys
    return [("other", frame.proto)]


# ---- the report -----------------------------------------------------------------------------

class _Names:
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
        return any(p.role == "uplink" and p.netns == ns for p in self.topo.points) or ns != "host"

    def ns_of(self, ip: str | None, near: str | None = None) -> str | None:
        if ip and ip.startswith("127.") and near:
            return near  # loopback addresses belong to whichever netns the packet is in
        return self.owner_ns.get(ip or "")

    def who(self, ns: str | None) -> str:
        if ns is None:
            return "?"
        names = self.topo.containers.get(ns)
        if names and ns != "host":
            return ",".join(names)
        return ns


def _predecessor(hops: list[Hop], i: int) -> int | None:
    """Which earlier hop this one follows from (a broadcast fans out, so not always i-1)."""
    h = hops[i]
    for j in range(i - 1, -1, -1):  # across a veth pair: the peer's opposite direction
        if h.point.peer == hops[j].point.label and hops[j].outgoing != h.outgoing:
            return j
    same = [j for j in range(i - 1, -1, -1) if hops[j].point.netns == h.point.netns]
    if h.point.bridge and h.outgoing and h.point.role == "veth":
        # A bridge port sends what came in on another port or what the bridge device sent.
        for j in same:
            p = hops[j].point
            if p.bridge == h.point.bridge and ((p.role == "veth" and not hops[j].outgoing) or
                                                (p.role == "bridge" and hops[j].outgoing)):
                return j
    if h.point.role == "bridge" and not h.outgoing:
        for j in same:
            if hops[j].point.bridge == h.point.bridge and hops[j].point.role == "veth" and not hops[j].outgoing:
                return j
    return same[0] if same else (i - 1 if i else None)


def _describe(prev: Hop, hop: Hop, reply: bool, topo: Topology, learnt_said: set) -> list:
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
    if p.netns == q.netns and p.label != q.label:
        if q.role == "veth" and q.bridge and hop.outgoing and p.bridge == q.bridge:
            learnt = topo.fdb.get(q.bridge, {}).get(f.dst_mac)
            if f.broadcast:
                out.append(("", f"bridge {q.bridge} flooded it (broadcast) to port {q.ifname}"))
            else:
                why = f": dst MAC {f.dst_mac} learnt on {learnt}" if learnt == q.ifname else ""
                out.append(("", f"bridge {q.bridge} forwarded to port {q.ifname}{why}"))
        elif q.role == "bridge" and not hop.outgoing and p.bridge == q.ifname:
            what = "a copy of the broadcast" if f.broadcast else "it (dst MAC is the bridge's own)"
            out.append(("", f"bridge {q.ifname} passed {what} up to the {q.netns} stack"))
        elif pf.ttl is not None and f.ttl is not None and f.ttl < pf.ttl:
            out.append(("", f"routed by {q.netns}: {p.ifname} → {q.ifname}, TTL {pf.ttl}→{f.ttl}"))
    elif p.label == q.label and prev.outgoing != hop.outgoing and q.bridge:
        how = "flooded" if f.broadcast else "sent"
        out.append(("", f"bridge {q.bridge} {how} it back out the port it came in on (hairpin mode)"))
    if q.role == "veth" and q.bridge and not hop.outgoing and f.src_mac:
        learnt = topo.fdb.get(q.bridge, {}).get(f.src_mac)
        if learnt == q.ifname and (q.bridge, f.src_mac) not in learnt_said:
            learnt_said.add((q.bridge, f.src_mac))
            out.append(("", f"bridge {q.bridge} learns src MAC {f.src_mac} on port {q.ifname}"))
    if f.src_mac != pf.src_mac and prev.point.label != hop.point.label and f.kind != "arp" and p.netns == q.netns \
            and not out:
        out.append(("", f"L2 rewritten: {pf.src_mac} → {f.src_mac}"))
    return out


def _path_line(hops: list[Hop]) -> str:
    parts, last_ns = [], None
    for i, h in enumerate(hops):
        name = h.point.ifname if h.point.netns == last_ns else h.point.label
        if i:
            tags = [t for t, _ in h.changes if t]
            parts.append(f" →[{','.join(tags)}]→ " if tags else " → ")
        parts.append(name)
        last_ns = h.point.netns
    return "".join(parts)


def _drop(hops: list[Hop], names: _Names) -> tuple[bool, str | None, str | None]:
    """(delivered, drop reason, note) for a unicast packet from its last hop."""
    last = hops[-1]
    f = last.frame
    if f.broadcast or f.kind == "other":
        return True, None, None
    owner = names.ns_of(f.dst, near=last.point.netns)
    if not last.outgoing and owner == last.point.netns:
        return True, None, None
    if last.outgoing:
        if last.point.peer and last.point.peer in names.labels:
            return False, f"sent by {last.point.label} but never seen on {last.point.peer}", None
        return True, None, f"left the traced path via {last.point.label}"
    if owner and owner not in names.traced_ns:
        return True, None, f"left the traced path toward {names.who(owner)} (not traced)"
    if owner is None and not names.uplinks_traced(last.point.netns):
        return True, None, f"left the traced path at {last.point.label} (its way out is not traced)"
    where = f"{last.point.netns} after {last.point.ifname}"
    hint = ""
    if names.topo.forwarding.get(last.point.netns) is False:
        hint = f" (IPv4 forwarding is off in {last.point.netns}: net.ipv4.ip_forward=0)"
    if owner and owner in names.traced_ns:
        return False, f"dropped in {where}: never seen on its way to {f.dst} ({names.who(owner)}){hint}", None
    return False, f"dropped in {where}: not delivered there and not sent on over any traced interface{hint}", None


def _hop_dict(h: Hop, t0: int, prev_t: int | None, pred: Hop | None) -> dict:
    f = h.frame
    return {
        "from_point": pred.point.label if pred is not None else None,
        "t_us": round((h.t_ns - t0) / 1000, 3),
        "dt_us": round((h.t_ns - prev_t) / 1000, 3) if prev_t is not None else 0.0,
        "point": h.point.label, "netns": h.point.netns, "interface": h.point.ifname, "role": h.point.role,
        "direction": h.direction, "src_mac": f.src_mac, "dst_mac": f.dst_mac, "proto": f.proto,
        "src": f.src, "dst": f.dst, "sport": f.sport, "dport": f.dport, "ttl": f.ttl, "ip_id": f.ip_id,
        "flags": f.flags or None, "info": f.info(),
        "changes": [text for _, text in h.changes], "nat": [t for t, _ in h.changes if t],
    }


def _tuple_dict(t) -> dict:
    return {"src": t.saddr, "dst": t.daddr, "sport": t.sport, "dport": t.dport}


def read_conntrack() -> list[dict]:
    """The calling thread's netns conntrack table, read-only, as plain dicts ([] if unavailable)."""
    try:
        from pyroute2 import Conntrack

        entries = []
        with Conntrack() as ct:
            for e in ct.dump_entries():
                o, r = e.tuple_orig, e.tuple_reply
                proto = {6: "tcp", 17: "udp", 1: "icmp"}.get(o.proto, str(o.proto))
                entries.append({
                    "proto": proto, "original": _tuple_dict(o), "reply": _tuple_dict(r),
                    "status": [s for s in e.status_name().split(",") if s],
                    "state": e.protoinfo.state_name() if e.protoinfo is not None else None,
                    "timeout": e.timeout,
                })
        return entries
    except Exception:  # noqa: BLE001 - no conntrack in this netns (never loaded): nothing to show
        return []


def _conntrack_for(entries: list[dict], tuples: set) -> list[dict]:
    found = []
    for e in entries:
        for side in ("original", "reply"):
            t = e[side]
            if e["proto"] == "icmp":
                key = ("icmp", t["src"], t["dst"])
                if any((x[0], x[1], x[3]) == key for x in tuples):
                    found.append(e)
                    break
            elif (e["proto"], t["src"], t["sport"], t["dst"], t["dport"]) in tuples:
                found.append(e)
                break
    return found


def build_report(result: Result, topo: Topology, conntrack: list[dict] | None = None) -> dict:
    """The report (`--json` prints it as is). Top-level keys: version, capture {started,
    duration_s, stopped_by, filter, frames, lost}, points [{point, netns, interface, role, frames,
    lost}], flows [{id, proto, title, client, server, from, to, path, reply_path, nat [text],
    conntrack [{proto, original, reply, status, state, timeout}], packets [{n, direction, info,
    path, delivered, drop, note, hops [{t_us, dt_us, from_point, point, netns, interface, role,
    direction, src_mac, dst_mac, proto, src, dst, sport, dport, ttl, ip_id, flags, info,
    changes [text], nat [tag]}]}]}], drops [{flow, packet, info, where, reason}], notes."""
    cache: dict = {}  # the two ends of a veth pair see the very same bytes: dissect once
    frames = []
    for r in result.records:
        f = cache.get(r.data)
        if f is None:
            f = cache[r.data] = dissect(r.data)
        frames.append(f)
    groups = group_packets(result.records, frames)
    names = _Names(topo)
    uf = _Union()
    for g in groups:
        keys = [k for i in g for k in _flow_keys(frames[i])]
        for k in keys[1:]:
            uf.union(keys[0], k)
    flows: dict = {}
    for g in groups:
        root = uf.find(_flow_keys(frames[g[0]])[0])
        flows.setdefault(root, []).append(g)
    t0 = result.records[0].ts_ns if result.records else 0
    learnt_said: set = set()
    out_flows, drops = [], []
    ordered = sorted(flows.values(), key=lambda gs: result.records[gs[0][0]].ts_ns)
    for fid, gs in enumerate(ordered, 1):
        first = frames[gs[0][0]]
        original = {frames[i].tuple() for i in gs[0]}
        tuples: set = set()
        packets, nat_lines = [], []
        path = reply_path = None
        for n, g in enumerate(gs, 1):
            hops = [Hop(result.records[i].ts_ns, result.points[result.records[i].point],
                        result.records[i].outgoing, frames[i]) for i in g]
            reply = not any(frames[i].tuple() in original for i in g)
            for i in range(1, len(hops)):
                j = _predecessor(hops, i)
                hops[i].pred = j
                if j is not None:
                    hops[i].changes = _describe(hops[j], hops[i], reply, topo, learnt_said)
            if hops[0].point.role == "veth" and not hops[0].outgoing:
                hops[0].changes = _describe(hops[0], hops[0], reply, topo, learnt_said)
            for h in hops:
                if h.frame.kind == "ipv4":
                    tuples.add(h.frame.tuple())
                for tag, text in h.changes:
                    if tag and text not in nat_lines:
                        nat_lines.append(text)
            delivered, reason, note = _drop(hops, names)
            line = _path_line(hops)
            if path is None and not reply:
                path = line
            if reply_path is None and reply:
                reply_path = line
            prev_t = None
            hop_dicts = []
            for h in hops:
                hop_dicts.append(_hop_dict(h, t0, prev_t, hops[h.pred] if h.pred is not None else None))
                prev_t = h.t_ns
            packets.append({"n": n, "direction": "reply" if reply else "original", "info": hops[0].frame.info(),
                            "path": line, "delivered": delivered, "drop": reason, "note": note, "hops": hop_dicts})
            if reason:
                drops.append({"flow": fid, "packet": n, "info": hops[0].frame.info(), "where": hops[-1].point.label,
                              "reason": reason})
        src_ns = names.ns_of(first.src, near=result.points[result.records[gs[0][0]].point].netns)
        last = result.records[gs[0][-1]]
        dst_ns = names.ns_of(frames[gs[0][-1]].dst, near=result.points[last.point].netns)
        if first.kind == "arp":
            title = f"ARP {first.src} ↔ {first.dst}"
        elif first.kind == "ipv4":
            title = f"{first.proto.upper()} {endpoint(first.src, first.sport)} → {endpoint(first.dst, first.dport)}"
        else:
            title = first.proto
        out_flows.append({
            "id": fid, "proto": first.proto, "title": title,
            "client": endpoint(first.src, first.sport) if first.src else None,
            "server": endpoint(first.dst, first.dport) if first.dst else None,
            "from": names.who(src_ns), "to": names.who(dst_ns),
            "path": path or reply_path or "", "reply_path": reply_path if path else None,
            "nat": nat_lines, "conntrack": _conntrack_for(conntrack or [], tuples),
            "packets": packets,
        })
    return {
        "version": REPORT_VERSION,
        "capture": {
            "started": round(result.started, 6), "duration_s": round(result.duration, 3),
            "stopped_by": result.stopped_by, "filter": result.filter or None,
            "frames": len(result.records), "lost": sum(result.lost),
        },
        "points": [{"point": p.label, "netns": p.netns, "interface": p.ifname, "role": p.role,
                    "frames": result.frames[i] if result.frames else 0, "lost": result.lost[i] if result.lost else 0}
                   for i, p in enumerate(result.points)],
        "flows": out_flows,
        "drops": drops,
        "notes": list(topo.notes),
    }
