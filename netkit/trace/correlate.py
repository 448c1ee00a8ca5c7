"""Correlation: the same packet found on every hop by what NAT does not change, packets grouped
into flows (an ICMP error joins the flow it is about), and for each hop the hop it follows from
(a veth's peer, a bridge port's bridge). Works on Records and Frames only: no I/O, no wording.
"""
from __future__ import annotations

from netkit.trace.model import Frame, Hop, Record

PORTS = ("veth", "vxlan")  # bridge ports: a container's veth, an overlay network's VXLAN device
SPLIT_GAP_NS = 1_000_000_000  # the same identity a second later is a new packet (a retransmit)


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

def flows(records: list[Record], frames: list[Frame]) -> list[list[list[int]]]:
    """Flows in order of first sighting; each a list of packets; each a list of record indices."""
    groups = group_packets(records, frames)
    uf = _Union()
    for g in groups:
        keys = [k for i in g for k in _flow_keys(frames[i])]
        for k in keys[1:]:
            uf.union(keys[0], k)
    by_root: dict = {}
    for g in groups:
        by_root.setdefault(uf.find(_flow_keys(frames[g[0]])[0]), []).append(g)
    return sorted(by_root.values(), key=lambda gs: records[gs[0][0]].ts_ns)


def predecessor(hops: list[Hop], i: int) -> int | None:
    """Which earlier hop this one follows from (a broadcast fans out, so not always i-1)."""
    h = hops[i]
    for j in range(i - 1, -1, -1):  # across a veth pair: the peer's opposite direction
        if h.point.peer == hops[j].point.label and hops[j].outgoing != h.outgoing:
            return j
    same = [j for j in range(i - 1, -1, -1) if hops[j].point.netns == h.point.netns]
    if h.point.bridge and h.outgoing and h.point.role in PORTS:
        # A bridge port sends what came in on another port or what the bridge device sent.
        for j in same:
            p = hops[j].point
            if p.bridge == h.point.bridge and ((p.role in PORTS and not hops[j].outgoing) or
                                                (p.role == "bridge" and hops[j].outgoing)):
                return j
    if h.point.role == "bridge" and not h.outgoing:
        for j in same:
            if hops[j].point.bridge == h.point.bridge and hops[j].point.role in PORTS and not hops[j].outgoing:
                return j
    return same[0] if same else (i - 1 if i else None)
