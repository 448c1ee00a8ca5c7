"""Why a packet died, named: the firewall rule whose counter moved (any backend), or the kernel's
reason read from the netns where the packet was last seen (ip_forward off, rp_filter, no route,
neighbour failure, TTL expired, MTU/fragmentation needed), or a refusal (RST, ICMP unreachable);
and the netkit setting behind it (icc=false, internal, network isolation, an unpublished port,
a 127.x bind, ip_forward off, br_netfilter off).

No I/O: the kernel's evidence comes in an Evidence (counter deltas taken before and after the
capture, and a route lookup function), gathered by session.py through netkit.kernel adapters.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from netkit.trace.model import Drop, Hop, Topology
from netkit.trace.narrate import Names, endpoint, hop_name

# SNMP counters (per netns, /proc/net/snmp and netstat) that name a drop cause when they moved.
SNMP_CAUSES = {
    "TcpExt:IPReversePathFilter": "rp_filter",
    "Ip:InHdrErrors": "ttl",
    "Ip:FragFails": "mtu",
    "Ip:InNoRoutes": "no_route",
    "Ip:OutNoRoutes": "no_route",
    "Ip:InAddrErrors": "ip_forward",
}


@dataclass
class Evidence:
    """What the kernel said about the capture's time span, per netns display name."""

    moved: dict = field(default_factory=dict)  # netns -> [(counter dict, packets moved)]
    snmp: dict = field(default_factory=dict)  # netns -> {counter: delta} (moved ones only)
    route: object = None  # route(netns, dst, src, iif) -> tracefacts.route_get dict, or None
    backends: list = field(default_factory=list)  # counter readers that answered


# ---- matching a packet against an x_tables rule -------------------------------------------

def _addr_in(ip: str | None, net: str) -> bool | None:
    if ip is None:
        return None
    try:
        return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(net, strict=False)
    except ValueError:
        return None


def _if_match(name: str, candidates: set | None) -> bool | None:
    if candidates is None:
        return None  # not known: cannot rule it out
    if name.endswith("+"):
        return any(c.startswith(name[:-1]) for c in candidates)
    return name in candidates


def xt_may_match(spec: str, src, dst, proto, sport, dport, iifs: set | None, oifs: set | None) -> bool:
    """False only when the rule certainly does not match the packet (unknown options match)."""
    words = spec.split()
    if words[:1] == ["-A"]:
        words = words[2:]
    neg = False
    i = 0
    while i < len(words):
        w = words[i]
        if w == "!":
            neg = True
            i += 1
            continue
        val = words[i + 1] if i + 1 < len(words) else ""
        res = None
        if w == "-s":
            res = _addr_in(src, val)
        elif w == "-d":
            res = _addr_in(dst, val)
        elif w == "-i":
            res = _if_match(val, iifs)
        elif w == "-o":
            res = _if_match(val, oifs)
        elif w == "-p":
            res = None if not proto else proto == val
        elif w in ("--dport", "--sport", "--dports", "--sports"):
            port = dport if "d" in w[2:4] else sport
            if port is not None:
                lo, _, hi = val.replace("-", ":").partition(":")
                try:
                    res = int(lo) <= port <= int(hi or lo)
                except ValueError:
                    res = None
        if res is not None and res == neg:
            return False
        neg = False
        i += 2 if w.startswith("-") and val and not val.startswith("-") else 1
    return True


# ---- from a rule to the setting behind it -------------------------------------------------

def setting_for(rule: dict, topo: Topology, came_from: str | None = None) -> tuple[str | None, str]:
    """(setting, explanation) for a rule netkit writes; (None, ...) for a foreign rule.
    `came_from`: the interface (a bridge, for a bridge port) the packet entered the netns on."""
    text, chain = rule["rule"], rule["chain"]
    words = text.split()

    def arg(opt):
        for i, w in enumerate(words[:-1]):
            if w == opt:
                return words[i + 1]
        return None

    def net(bridge):
        n = topo.networks.get(bridge or "")
        return n["name"] if n else bridge

    if rule["verdict"] == "DROP" and rule["rule"].startswith("policy"):
        if chain == "FORWARD":
            return ("FORWARD policy DROP", "nothing accepted this forwarded packet, so the FORWARD chain's policy "
                    "dropped it (netkit sets it to DROP when it turns ip_forward on, as dockerd does)")
        return (f"{chain} policy DROP", f"the {chain} chain's policy dropped it")
    if chain == "NETKIT-ISOLATION-2":
        return ("network isolation", f"networks are isolated from each other: netkit drops what one network's "
                f"bridge forwards to network {net(arg('-o'))} ({arg('-o')})")
    if chain == "NETKIT-ISOLATION-1":
        bridge = arg("-o") or arg("-i")
        return ("internal", f"network {net(bridge)} is internal (--internal): no traffic in or out of its subnet")
    if chain == "NETKIT-FORWARD" and arg("-i") and arg("-i") == arg("-o"):
        return ("icc=false", f"network {net(arg('-i'))} was made with --no-icc (icc=false): containers on it "
                "may not talk to each other")
    if chain == "NETKIT-RAW":
        dst = (arg("-d") or "").split("/")[0]
        if dst.startswith("127."):
            return ("127.x bind", f"port published on {dst} only: netkit drops packets to {dst} that do not come "
                    "from the host itself")
        owner = next((",".join(n) for ns, n in topo.containers.items()
                      if dst in topo.addresses.get(ns, {})), None)
        who = f"container {owner}'s" if owner else "a container's"
        home = arg("-i")
        if came_from in topo.networks and came_from != home:
            return ("network isolation", f"networks are isolated from each other: a packet from network "
                    f"{net(came_from)} for {who} address {dst} on network {net(home)} is dropped "
                    "(only that network's bridge may deliver to it)")
        return ("unpublished port", f"direct routing to {who} address {dst} is refused: only its published "
                "ports (-p) are reachable, through the host's address")
    if chain == "NETKIT-USER":
        return ("NETKIT-USER", "a rule of your own in NETKIT-USER")
    return (None, "a rule netkit did not write")


# ---- the diagnosis ------------------------------------------------------------------------

def _icmp_errors_about(hops: list[Hop], later: list[list[Hop]]) -> list:
    """ICMP errors among later packets of the flow that quote this packet."""
    f = hops[0].frame
    ids = {h.frame.ip_id for h in hops}
    out = []
    for pkt in later:
        e = pkt[0].frame
        if e.proto == "icmp" and e.icmp_type in (3, 11) and e.inner_key and e.inner_key[1] in ids \
                and e.inner and e.inner[0] == f.proto:
            out.append(pkt)
    return out


def _input_iif(hop: Hop) -> str:
    """The interface the netns's IP stack saw the packet arrive on (a bridge port's is its bridge)."""
    p = hop.point
    return p.bridge if p.role == "veth" and p.bridge and p.bridge != p.ifname else p.ifname


def _rule_drop(hops: list[Hop], ns: str, ev: Evidence, topo: Topology) -> Drop | None:
    last = hops[-1]
    f = last.frame
    iifs = {last.point.ifname} | ({last.point.bridge} if last.point.bridge else set())
    candidates = []
    for rule, delta in ev.moved.get(ns, []):
        if rule["verdict"] not in ("DROP", "REJECT"):
            continue
        if rule["backend"].startswith("iptables") and not rule["rule"].startswith("policy"):
            if not xt_may_match(rule["rule"], f.src, f.dst, f.proto, f.sport, f.dport, iifs, None):
                continue
        candidates.append((rule, delta))
    if not candidates:
        return None
    # A policy fires only when no rule did: prefer rules; then the chain netkit owns.
    candidates.sort(key=lambda rd: (rd[0]["rule"].startswith("policy"), not rd[0]["chain"].startswith("NETKIT")))
    rule, delta = candidates[0]
    setting, why = setting_for(rule, topo, _input_iif(last))
    rule = dict(rule, packets=delta)
    where = hop_name(last.point, topo)
    text = (f"dropped in {ns} after {where.split(':', 1)[1]} by {rule['backend']} rule "
            f"`{rule['rule']}` (table {rule['table']}, chain {rule['chain']}): {why}")
    ev_lines = [f"{r['backend']} {r['table']}/{r['chain']}: `{r['rule']}` +{d} packet(s)" for r, d in candidates]
    return Drop("rule" if not rule["rule"].startswith("policy") else "policy", text, last.point.label,
                setting, rule, ev_lines)


def diagnose(hops: list[Hop], later: list[list[Hop]], names: Names, topo: Topology, ev: Evidence,
             default: str) -> Drop:
    """The cause of a drop (the packet was last seen at hops[-1]); `later`: the flow's next packets."""
    last = hops[-1]
    ns, f = last.point.netns, last.frame
    where = hop_name(last.point, topo)
    at = f"in {ns} after {where.split(':', 1)[1]}"
    snmp = ev.snmp.get(ns, {})
    hints = [f"{k} +{v} in {ns}" for k, v in snmp.items() if k in SNMP_CAUSES]

    def drop(reason, text, setting=None, evidence=()):
        return Drop(reason, text, last.point.label, setting, None, list(evidence) + hints)

    if last.outgoing:
        return drop("lost", default)
    errors = _icmp_errors_about(hops, later)
    for pkt in errors:
        e = pkt[0].frame
        sender = names.who(names.ns_of(e.src))
        seen = f"{e.info()} from {e.src} ({sender}) seen at {hop_name(pkt[0].point, topo)}"
        if e.icmp_type == 11:
            return drop("ttl", f"TTL expired {at}: it arrived with TTL {f.ttl} and {ns} would have to forward it "
                        "(the sender set a low TTL: traceroute does this on purpose)", None, [seen])
        if e.icmp_type == 3 and e.icmp_code == 4:
            return drop("mtu", f"too big for the next hop {at}: {f.ip_len} bytes with don't-fragment set, next-hop "
                        f"MTU {e.icmp_mtu}; {ns} answered 'fragmentation needed' (path MTU discovery)",
                        "MTU", [seen])
    rule = _rule_drop(hops, ns, ev, topo)
    if rule:
        rule.evidence += hints
        return rule
    owner = names.ns_of(f.dst, near=ns)
    if topo.forwarding.get(ns) is False and owner != ns:
        return drop("ip_forward", f"dropped {at}: IPv4 forwarding is off in {ns} (net.ipv4.ip_forward=0), so "
                    f"{ns} does not route packets for {f.dst} on", "ip_forward off")
    route = ev.route(ns, f.dst, f.src, _input_iif(last)) if ev.route and f.dst and f.src else None
    if route:
        err = route.get("error")
        if err == "martian_source":
            return _rp_drop(last, topo, route, hints)
        if err in ("no_route", "host_unreachable") or route.get("type") in ("unreachable", "prohibit", "blackhole"):
            unreach = [p for p in errors if p[0].frame.icmp_type == 3]
            return drop("no_route", f"no route {at}: {ns} has no route to {f.dst}", "no route",
                        [f"ip route get {f.dst}: {err or route.get('type')}"] +
                        [f"{p[0].frame.info()} from {p[0].frame.src}" for p in unreach])
        if route.get("type") == "unicast" and route.get("oif"):
            oif = route["oif"]
            if f.ttl is not None and f.ttl <= 1:
                return drop("ttl", f"TTL expired {at}: it arrived with TTL {f.ttl}, {ns} would forward it out {oif}")
            mtu = topo.mtu.get(f"{ns}:{oif}")
            if f.df and mtu and f.ip_len > mtu:
                return drop("mtu", f"too big for the next hop {at}: {f.ip_len} bytes with don't-fragment set, "
                            f"{oif} has MTU {mtu}", "MTU")
            nexthop = route.get("gateway") or f.dst
            state = topo.neighbours.get(ns, {}).get(nexthop)
            unanswered = _arp_unanswered(later, nexthop)
            if state in ("FAILED", "INCOMPLETE") or unanswered:
                ev_lines = [f"neighbour {nexthop} on {oif}: {state}"] if state else []
                if unanswered:
                    ev_lines.append(f"{unanswered} ARP who-has {nexthop} unanswered")
                unreach = [p for p in errors if p[0].frame.icmp_type == 3 and p[0].frame.icmp_code == 1]
                ev_lines += [f"{p[0].frame.info()} from {p[0].frame.src}" for p in unreach]
                return drop("neighbour", f"neighbour failure {at}: nobody answered ARP for {nexthop} on {oif}, "
                            f"so {ns} could not send the packet on", None, ev_lines)
    for counter, cause in SNMP_CAUSES.items():
        if snmp.get(counter):
            return drop(cause, f"{default} ({counter} moved by {snmp[counter]} in {ns})")
    br_note = br_netfilter_note(hops, topo)
    return drop("lost", default + (f"; {br_note}" if br_note else ""))


def diagnose_local(hops: list[Hop], topo: Topology, ev: Evidence) -> Drop | None:
    """A packet that reached the netns owning its destination but may have died at its input
    routing (rp_filter). Asked only when that netns's drop counters moved and nothing answered."""
    last = hops[-1]
    ns, f = last.point.netns, last.frame
    if last.outgoing or not ev.snmp.get(ns) or not ev.route or not (f.src and f.dst):
        return None
    route = ev.route(ns, f.dst, f.src, _input_iif(last))
    if not route or route.get("error") != "martian_source":
        return None
    return _rp_drop(last, topo, route, [f"{k} +{v} in {ns}" for k, v in ev.snmp[ns].items()])


def _rp_drop(last: Hop, topo: Topology, route: dict, hints: list) -> Drop:
    """The input route lookup refused the packet's source: reverse-path filtering (or a martian)."""
    ns, f = last.point.netns, last.frame
    where = hop_name(last.point, topo).split(":", 1)[1]
    rp = {k: v for k, v in topo.settings.get(ns, {}).items() if "rp_filter" in k and v != "0"}
    lookup = [f"ip route get {f.dst} from {f.src} iif {_input_iif(last)}: {route.get('message', 'refused')}"]
    if not rp:
        return Drop("martian", f"dropped in {ns} after {where}: source {f.src} is not a valid source there "
                    "(a martian)", last.point.label, None, None, lookup + hints)
    detail = ", ".join(f"{k}={v}" for k, v in rp.items())
    return Drop("rp_filter", f"dropped in {ns} after {where} by reverse-path filtering: {ns} has no route back "
                f"to {f.src} out the interface it came in on ({detail})", last.point.label, "rp_filter", None,
                lookup + hints)


def _arp_unanswered(later: list[list[Hop]], ip: str) -> int:
    asked = sum(1 for pkt in later if pkt[0].frame.kind == "arp" and pkt[0].frame.arp_op == "who-has"
                and pkt[0].frame.dst == ip)
    answered = any(pkt[0].frame.kind == "arp" and pkt[0].frame.arp_op == "is-at" and pkt[0].frame.src == ip
                   for pkt in later)
    return 0 if answered else asked


def refused(first: list[Hop], answer: list[Hop], names: Names, topo: Topology) -> Drop | None:
    """A connection answered by a TCP RST or an ICMP port unreachable, and the setting behind it."""
    a = answer[0].frame
    f = first[-1].frame
    if not ((a.proto == "tcp" and "R" in a.flags) or (a.proto == "icmp" and a.icmp_type == 3 and a.icmp_code == 3)):
        return None
    owner = names.ns_of(f.dst, near=first[-1].point.netns)
    how = "a TCP RST" if a.proto == "tcp" else "ICMP port unreachable"
    dst = endpoint(f.dst, f.dport)
    setting, why = None, f"nothing listens on {dst}"
    if topo.is_host(owner) and f.dport is not None:
        maps = [m for m in topo.published if m["host_port"] == f.dport and m["proto"] == f.proto]
        local = [m for m in maps if m["host_ip"].startswith("127.")]
        if local and not f.dst.startswith("127."):
            m = local[0]
            setting = "127.x bind"
            why = (f"port {f.dport} is published on {m['host_ip']} only (-p {m['host_ip']}:{f.dport}:"
                   f"{m['container_port']} on {m['container']}), so it is not reachable on {f.dst}")
        elif not maps:
            setting = "unpublished port"
            exposers = [c for c, ports in topo.exposed.items() if f"{f.dport}/{f.proto}" in ports]
            why = f"no container publishes host port {f.dport}/{f.proto} and nothing on the host listens there"
            if exposers:
                why += f" ({', '.join(exposers)} exposes it: publish it with -p {f.dport}:{f.dport})"
    elif owner:
        why = f"nothing listens on {dst} in {names.who(owner)}"
    return Drop("refused", f"refused: {names.who(owner)} answered with {how}: {why}", first[-1].point.label,
                setting, None, [f"{answer[0].frame.info()} from {endpoint(a.src, a.sport)}"])


def br_netfilter_note(hops: list[Hop], topo: Topology) -> str | None:
    """When bridged traffic skips iptables (bridge-nf-call-iptables=0 and the bridge's own
    nf_call_iptables switch off), icc=false, isolation and netkit's raw drops do not apply to it:
    say so where it matters."""
    ns = next((n for n, h in topo.hosts.items() if h["local"]), "host")
    settings = topo.settings.get(ns, {})
    value = settings.get("net.bridge.bridge-nf-call-iptables")
    if value != "0":
        return None
    bridges = {h.point.bridge for h in hops if h.point.bridge
               and settings.get(f"bridge.{h.point.bridge}.nf_call_iptables") != "1"}
    nets = [topo.networks[b] for b in bridges if b in topo.networks]
    if not nets:
        return None
    names = ", ".join(n["name"] for n in nets)
    icc = [n["name"] for n in nets if not n["icc"]]
    text = (f"br_netfilter is off in {ns} (net.bridge.bridge-nf-call-iptables=0, and on the bridge): frames bridged on {names} "
            "skip iptables, so netkit's rules for them do not apply")
    if icc:
        text += f" (icc=false on {', '.join(icc)} is not enforced)"
    return text
