"""From captured frames to the report: dissect (dissect.py), correlate (correlate.py), narrate
(narrate.py), diagnose drops (drops.py), attach the conntrack entries; then write it all out as
a plain dict with stable field names. `--json` prints that dict; the text and SVG renderers
draw only from it. No I/O: kernel facts come in through the Topology, the conntrack list and
the drop Evidence.
"""
from __future__ import annotations

from netkit.trace import correlate, drops, narrate
from netkit.trace.dissect import dissect
from netkit.trace.model import Hop, Result, Topology
from netkit.trace.narrate import Names, endpoint, hop_detail, hop_name, is_echo

REPORT_VERSION = 2


def _fate(hops: list[Hop], names: Names) -> tuple[bool, str | None, str | None]:
    """(delivered, where-it-stopped text, note) for a unicast packet from its last hop."""
    last = hops[-1]
    f = last.frame
    if f.broadcast or f.kind == "other":
        return True, None, None
    owner = names.ns_of(f.dst, near=last.point.netns)
    if not last.outgoing and owner == last.point.netns:
        return True, None, None
    if last.outgoing:
        lost = _lost_on_underlay(last, names)
        if lost:
            return False, lost, None
        if last.point.peer and last.point.peer in names.labels:
            return False, f"sent by {last.point.label} but never seen on {last.point.peer}", None
        return True, None, f"left the traced path via {last.point.label}"
    if owner and owner not in names.traced_ns:
        return True, None, f"left the traced path toward {names.who(owner)} (not traced)"
    if owner is None and not names.uplinks_traced(last.point.netns):
        return True, None, f"left the traced path at {last.point.label} (its way out is not traced)"
    where = f"{last.point.netns} after {hop_name(last.point, names.topo).split(':', 1)[1]}"
    if owner and owner in names.traced_ns:
        return False, f"dropped in {where}: never seen on its way to {f.dst} ({names.who(owner)})", None
    return False, f"dropped in {where}: not delivered there and not sent on over any traced interface", None


def _lost_on_underlay(last: Hop, names: Names) -> str | None:
    """An encapsulated frame sent toward a host whose uplink is traced, and never seen there."""
    o = last.frame.outer
    if not o:
        return None
    host = next((n for n, h in names.topo.hosts.items() if h.get("address") == o["dst"]), None)
    if host and f"{host}:uplink" in names.labels:
        return (f"sent by {last.point.label} over the underlay to {host} ({o['dst']}, VXLAN VNI {o['vni']}) "
                f"but never seen on {host}:uplink")
    return None


def _hop_dict(h: Hop, t0: int, prev_t: int | None, pred: Hop | None, topo: Topology) -> dict:
    f = h.frame
    icmp = f.proto == "icmp"
    return {
        "from_point": pred.point.label if pred is not None else None,
        "frame": h.record + 1,  # its number in merged.pcap(ng)
        "t_us": round((h.t_ns - t0) / 1000, 3),
        "dt_us": round((h.t_ns - prev_t) / 1000, 3) if prev_t is not None else 0.0,
        "point": h.point.label, "name": hop_name(h.point, topo), "detail": hop_detail(h.point),
        "netns": h.point.netns, "interface": h.point.ifname, "role": h.point.role,
        "direction": h.direction, "src_mac": f.src_mac, "dst_mac": f.dst_mac, "proto": f.proto,
        "src": f.src, "dst": f.dst, "sport": None if icmp else f.sport, "dport": None if icmp else f.dport,
        "icmp": {"type": f.icmp_type, "code": f.icmp_code, "id": f.icmp_id, "seq": f.icmp_seq} if icmp else None,
        "ttl": f.ttl, "ip_id": f.ip_id, "length": f.length,
        "flags": f.flags or None, "info": f.info(), "echo": is_echo(h),
        "changes": [text for _, text in h.changes], "nat": [t for t, _ in h.changes if t in narrate.NAT_TAGS],
        "outer": dict(f.outer) if f.outer else None,
    }


def _tunnel(hops: list[Hop]) -> dict | None:
    """A packet's crossing of a VXLAN tunnel: VNI, outer addresses, the host that encapsulated it
    (where the outer headers first appear) and the one that decapsulated it (the host of the
    first hop after the last encapsulated one; None when that side was not traced)."""
    enc = [i for i, h in enumerate(hops) if h.frame.outer]
    if not enc:
        return None
    o = hops[enc[0]].frame.outer
    after = enc[-1] + 1
    return {"vni": o["vni"], "outer_src": o["src"], "outer_dst": o["dst"], "outer_sport": o["sport"],
            "outer_dport": o["dport"], "encapsulated_by": hops[enc[0]].point.netns,
            "decapsulated_by": hops[after].point.netns if after < len(hops) else None}


def tunnel_text(t: dict) -> str:
    decap = t["decapsulated_by"] or "? (not traced)"
    return (f"VXLAN VNI {t['vni']}: encapsulated by {t['encapsulated_by']}, {t['outer_src']} → "
            f"{t['outer_dst']}:{t['outer_dport']} over the underlay, decapsulated by {decap}")


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


def build_report(result: Result, topo: Topology, conntrack: list[dict] | None = None,
                 evidence: drops.Evidence | None = None) -> dict:
    """The report (`--json` prints it as is). Top-level keys: version, capture {started,
    duration_s, stopped_by, filter, frames, lost}, points [{point, name, detail, netns, interface,
    role, frames, lost}], flows [{id, proto, title, client, server, from, to, path, reply_path,
    nat [text], notes [text], conntrack [{proto, original, reply, status, state, timeout, host (across
    hosts: whose table)}], packets [{n, direction, info, path, delivered,
    drop {reason, text, where, setting, rule {backend, table, chain, rule, verdict, packets},
    evidence}, note, hops [{t_us, dt_us, from_point, point, name, detail, netns, interface, role,
    direction, src_mac, dst_mac, proto, src, dst, sport, dport, icmp {type, code, id, seq}, ttl,
    ip_id, length, flags, info, echo, changes [text], nat [tag], outer {src_mac, dst_mac, src, dst,
    sport, dport, ttl, ip_id, length, vni} | null}], tunnel {vni, outer_src, outer_dst, outer_sport,
    outer_dport, encapsulated_by, decapsulated_by} | null}], tunnels [text]}], drops [{flow, packet,
    info, where, reason, text, setting, rule}], notes, containers {netns: [names]}, hosts {netns:
    {address, local}} (a trace across hosts; else empty)."""
    evidence = evidence or drops.Evidence()
    cache: dict = {}  # the two ends of a veth pair see the very same bytes: dissect once
    frames = []
    for r in result.records:
        f = cache.get(r.data)
        if f is None:
            f = cache[r.data] = dissect(r.data)
        frames.append(f)
    names = Names(topo)
    t0 = result.records[0].ts_ns if result.records else 0
    learnt_said: set = set()
    out_flows, drop_list = [], []
    for fid, gs in enumerate(correlate.flows(result.records, frames), 1):
        first = frames[gs[0][0]]
        original = {frames[i].tuple() for i in gs[0]}
        tuples: set = set()
        nat_lines: list[str] = []
        path = reply_path = None
        all_hops, replies = [], []
        for g in gs:
            hops = [Hop(result.records[i].ts_ns, result.points[result.records[i].point],
                        result.records[i].outgoing, frames[i], record=i) for i in g]
            reply = not any(frames[i].tuple() in original for i in g)
            for i in range(1, len(hops)):
                j = correlate.predecessor(hops, i)
                hops[i].pred = j
                if j is not None:
                    hops[i].changes = narrate.describe(hops[j], hops[i], reply, topo, learnt_said)
            if hops[0].point.role == "veth" and not hops[0].outgoing:
                hops[0].changes = narrate.describe(hops[0], hops[0], reply, topo, learnt_said)
            all_hops.append(hops)
            replies.append(reply)
        packets = []
        tunnels: list[str] = []
        flow_notes: list[str] = []
        for n, (hops, reply) in enumerate(zip(all_hops, replies), 1):
            for h in hops:
                if h.frame.kind == "ipv4":
                    tuples.add(h.frame.tuple())
                for tag, text in h.changes:
                    if tag in narrate.NAT_TAGS and text not in nat_lines:
                        nat_lines.append(text)
            delivered, stopped, note = _fate(hops, names)
            drop = None
            if stopped:
                drop = drops.diagnose(hops, all_hops[n:], names, topo, evidence, stopped)
            elif not reply and not any(replies[n:]) and hops[0].frame.kind == "ipv4" and not hops[-1].frame.broadcast:
                drop = drops.diagnose_local(hops, topo, evidence)  # delivered, unanswered: rp_filter?
                if drop:
                    delivered = False
            elif not reply and n < len(all_hops):
                answer = next((h for h, r in zip(all_hops[n:], replies[n:]) if r), None)
                if answer is not None:
                    drop = drops.refused(hops, answer, names, topo)
                    if drop and any(p.get("drop") and p["drop"]["reason"] == "refused" for p in packets):
                        drop = None  # one refusal per flow: the first attempt carries it
            line = narrate.path_line(hops, topo)
            if path is None and not reply:
                path = line
            if reply_path is None and reply:
                reply_path = line
            prev_t = None
            hop_dicts = []
            for h in hops:
                hop_dicts.append(_hop_dict(h, t0, prev_t, hops[h.pred] if h.pred is not None else None, topo))
                prev_t = h.t_ns
            tunnel = _tunnel(hops)
            if tunnel:
                text = ("reply: " if reply else "") + tunnel_text(tunnel)
                if text not in tunnels:
                    tunnels.append(text)
            packets.append({"n": n, "direction": "reply" if reply else "original", "info": hops[0].frame.info(),
                            "path": line, "delivered": delivered, "drop": drop.as_dict() if drop else None,
                            "note": note, "tunnel": tunnel, "hops": hop_dicts})
            if drop:
                drop_list.append({"flow": fid, "packet": n, "info": hops[0].frame.info(), "where": drop.where,
                                  "reason": drop.reason, "text": drop.text, "setting": drop.setting,
                                  "rule": drop.rule})
        br_note = drops.br_netfilter_note([h for hops in all_hops for h in hops], topo)
        if br_note:
            flow_notes.append(br_note)
        src_ns = names.ns_of(first.src, near=result.points[result.records[gs[0][0]].point].netns)
        last = result.records[gs[0][-1]]
        dst_ns = names.ns_of(frames[gs[0][-1]].dst, near=result.points[last.point].netns)
        if first.kind == "arp":
            title = f"ARP {first.src} ↔ {first.dst}"
        elif first.proto == "icmp":
            title = f"ICMP {first.src} → {first.dst}"
        elif first.kind == "ipv4":
            title = f"{first.proto.upper()} {endpoint(first.src, first.sport)} → {endpoint(first.dst, first.dport)}"
        else:
            title = first.proto
        icmp = first.proto == "icmp"
        out_flows.append({
            "id": fid, "proto": first.proto, "title": title,
            "client": (first.src if icmp else endpoint(first.src, first.sport)) if first.src else None,
            "server": (first.dst if icmp else endpoint(first.dst, first.dport)) if first.dst else None,
            "from": names.who(src_ns), "to": names.who(dst_ns),
            "path": path or reply_path or "", "reply_path": reply_path if path else None,
            "nat": nat_lines, "tunnels": tunnels, "notes": flow_notes, "conntrack": _conntrack_for(conntrack or [], tuples),
            "packets": packets,
        })
    return {
        "version": REPORT_VERSION,
        "capture": {
            "started": round(result.started, 6), "duration_s": round(result.duration, 3),
            "stopped_by": result.stopped_by, "filter": result.filter or None,
            "frames": len(result.records), "lost": sum(result.lost),
        },
        "points": [{"point": p.label, "name": hop_name(p, topo), "detail": hop_detail(p), "netns": p.netns,
                    "interface": p.ifname, "role": p.role,
                    "frames": result.frames[i] if result.frames else 0, "lost": result.lost[i] if result.lost else 0}
                   for i, p in enumerate(result.points)],
        "flows": out_flows,
        "drops": drop_list,
        "notes": list(topo.notes),
        "containers": {ns: list(names_) for ns, names_ in topo.containers.items()},
        "hosts": {ns: dict(h) for ns, h in topo.hosts.items()},
    }
