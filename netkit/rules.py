"""The iptables rules that netkit's state implies, and the changes that turn one rule set into another.

Pure: networks and containers in, rules out, as iptables-save text (`-d 1.2.3.4/32 -p tcp -m tcp
--dport 80 -j ACCEPT`), exactly as `iptables-legacy-save` prints them back, so that plans, the
kernel's rules, `--dry-run` and `netkit rules` can all be compared as text.

Layout (Docker's, with NETKIT names; one jump per built-in chain, foreign rules never touched):
  raw    PREROUTING  -> NETKIT-RAW          drops: direct routing to container IPs, 127.x publishes
                                              (--no-masquerade networks: in NETKIT-FORWARD, after conntrack)
  nat    PREROUTING, OUTPUT (dst LOCAL) -> NETKIT   one DNAT per published port
  nat    POSTROUTING -> NETKIT-POSTROUTING  MASQUERADE out, 127.0.0.0/8 to the bridge, hairpin to
                                            a container's own published port
  filter FORWARD     -> NETKIT-FORWARD      NETKIT-USER first, isolation, per-network accepts
  filter INPUT       -> NETKIT-INPUT        127.0.0.0/8 arriving from anything but lo: dropped
A published port costs one DNAT rule and Docker's (`--userland-proxy=false`) hairpin rule
`-s IP/32 -d IP/32 -p tcp -m tcp --dport P -j MASQUERADE` (plus one raw rule when bound to 127.x);
Docker's per-port accepts are replaced by one `--ctstate DNAT` accept per network (docs/facts.md,
"python-iptables": legacy commits rewrite the table).

Hairpin (docs/facts.md, "Publishing"): only a container calling its own published port is
masqueraded (its reply would otherwise never leave its own namespace). A sibling calling
host-address:8088 keeps its address, as with Docker: the server's reply is bridged straight back
to the sibling, and br_netfilter hands that bridged frame to conntrack, which un-DNATs it (netkit
turns nf_call_iptables on for each of its bridges, reconcile.bridged_filtering). Without
br_netfilter (`plan(..., bridge_nf=False)`) the reply would bypass conntrack, so every DNATed flow
into a bridge is masqueraded instead (`-s SUB -o BR -m conntrack --ctstate DNAT -j MASQUERADE`).
"""
from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass

from netkit.model import MODE_BRIDGE, Container, Network

RAW, NAT, FILTER = "raw", "nat", "filter"
TABLES = (RAW, NAT, FILTER)

CHAIN_RAW = "NETKIT-RAW"
CHAIN_DNAT = "NETKIT"
CHAIN_POST = "NETKIT-POSTROUTING"
CHAIN_FWD = "NETKIT-FORWARD"
CHAIN_USER = "NETKIT-USER"
CHAIN_ISO1 = "NETKIT-ISOLATION-1"
CHAIN_ISO2 = "NETKIT-ISOLATION-2"
CHAIN_INPUT = "NETKIT-INPUT"
PREFIX = "NETKIT"

CHAINS = {
    RAW: (CHAIN_RAW,),
    NAT: (CHAIN_DNAT, CHAIN_POST),
    FILTER: (CHAIN_FWD, CHAIN_USER, CHAIN_ISO1, CHAIN_ISO2, CHAIN_INPUT),
}
# The one jump per built-in chain; inserted at the top so foreign rules cannot shadow netkit's.
HOOKS = (
    (RAW, "PREROUTING", f"-j {CHAIN_RAW}"),
    (NAT, "PREROUTING", f"-m addrtype --dst-type LOCAL -j {CHAIN_DNAT}"),
    (NAT, "OUTPUT", f"-m addrtype --dst-type LOCAL -j {CHAIN_DNAT}"),
    (NAT, "POSTROUTING", f"-j {CHAIN_POST}"),
    (FILTER, "FORWARD", f"-j {CHAIN_FWD}"),
    (FILTER, "INPUT", f"-j {CHAIN_INPUT}"),
)
# Chains whose order does not matter, so a publish can append/delete without knowing positions:
# disjoint rules (one DNAT per host port, DROPs), or rules that all have one verdict (every rule of
# NETKIT-POSTROUTING is a MASQUERADE: whichever matches first, the packet is masqueraded).
UNORDERED = {(NAT, CHAIN_DNAT), (RAW, CHAIN_RAW), (NAT, CHAIN_POST)}
# Belongs to the user: created, never filled, never compared.
UNMANAGED = {(FILTER, CHAIN_USER)}


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    spec: str  # iptables-save text after "-A CHAIN "

    def text(self) -> str:
        return f"-A {self.chain} {self.spec}"


@dataclass(frozen=True)
class Op:
    """One change: N new chain, A append, I insert at pos (1-based), D delete, F flush, X delete chain,
    P policy (spec = the policy, `was` = the policy before, which its inverse puts back)."""

    table: str
    action: str
    chain: str
    spec: str = ""
    pos: int = 0
    was: str = ""

    def text(self) -> str:
        if self.action in ("N", "F", "X"):
            return f"-{self.action} {self.chain}"
        if self.action == "P":
            return f"-P {self.chain} {self.spec}"
        if self.action == "I":
            return f"-I {self.chain} {self.pos} {self.spec}"
        return f"-{self.action} {self.chain} {self.spec}"


@dataclass
class RuleSet:
    """Desired rules: per (table, chain) the ordered specs, and the hooks."""

    rules: dict[tuple[str, str], list[str]]
    hooks: tuple = HOOKS

    def all(self) -> list[Rule]:
        return [Rule(t, c, s) for (t, c), specs in self.rules.items() for s in specs]


def managed(networks) -> list[Network]:
    return [n for n in networks if n.iptables]


def _proto(proto: str, port_opt: str, port: str) -> str:
    return f"-p {proto} -m {proto} --{port_opt} {port}"


def is_loopback(ip: str) -> bool:
    return bool(ip) and ipaddress.IPv4Address(ip).is_loopback


def publish_endpoint(c: Container, nets: dict[str, Network]):
    """The endpoint published ports are DNATed to: the first one on a network that allows it."""
    for ep in c.endpoints:
        net = nets.get(ep.network)
        if net is not None and net.iptables and not net.internal:
            return ep
    return None


def hairpin_rule(ip: str, proto: str, container_port: int) -> Rule:
    """Docker's hairpin rule: the container at `ip` calling its own published port reaches itself
    through the host's DNAT; without a new source its reply (to itself) would never reach the
    host's conntrack to be un-DNATed. Rewritten to the gateway, it goes back through the host."""
    return Rule(NAT, CHAIN_POST, f"-s {ip}/32 -d {ip}/32 {_proto(proto, 'dport', str(container_port))} -j MASQUERADE")


def mapping_rules(c: Container, nets: dict[str, Network]) -> list[Rule]:
    """The rules of a container's published ports: one DNAT each, one hairpin MASQUERADE per
    container port (two host ports to one container port share it), and a raw DROP for 127.x binds."""
    if c.mode != MODE_BRIDGE or not c.ports:
        return []
    ep = publish_endpoint(c, nets)
    if ep is None:
        return []
    out = []
    for pm in c.ports:
        dst = "" if pm.host_ip in ("", "0.0.0.0") else f"-d {pm.host_ip}/32 "
        match = _proto(pm.proto, "dport", str(pm.host_port))
        out.append(Rule(NAT, CHAIN_DNAT, f"{dst}{match} -j DNAT --to-destination {ep.ip}:{pm.container_port}"))
        if is_loopback(pm.host_ip):
            # DNAT in PREROUTING would also fire for a crafted packet to 127.x from a neighbour
            # (docs/facts.md, "Publishing"); Docker 28 drops those in raw the same way.
            out.append(Rule(RAW, CHAIN_RAW, f"-d {pm.host_ip}/32 ! -i lo {match} -j DROP"))
        hairpin = hairpin_rule(ep.ip, pm.proto, pm.container_port)
        if hairpin not in out:
            out.append(hairpin)
    return out


def endpoint_rules(c: Container, nets: dict[str, Network]) -> list[Rule]:
    """Only the bridge may deliver to a container's address: closes direct routing from neighbours.

    Not on a --no-masquerade network: its containers' connections leave with their own address,
    so the replies come back routed straight to it, and raw (before conntrack) cannot tell a reply
    from an unsolicited packet. There, filter does the job after conntrack (direct_routing_guard)."""
    out = []
    for ep in c.endpoints:
        net = nets.get(ep.network)
        if net is not None and net.iptables and (net.masquerade or net.internal):
            out.append(Rule(RAW, CHAIN_RAW, f"-d {ep.ip}/32 ! -i {net.bridge} -j DROP"))
    return out


def direct_routing_guard(n: Network) -> list[str]:
    """NETKIT-FORWARD for a --no-masquerade network, after its RELATED,ESTABLISHED and DNAT accepts:
    anything else routed in from outside the bridge is dropped, so replies to the containers' own
    connections arrive while unsolicited direct routing stays closed, whatever the FORWARD policy."""
    return [] if n.internal or n.masquerade else [f"! -i {n.bridge} -o {n.bridge} -j DROP"]


def container_rules(c: Container | None, nets: dict[str, Network]) -> list[Rule]:
    """A container's own rules, all in unordered chains: what create/rm/publish change."""
    return [] if c is None else endpoint_rules(c, nets) + mapping_rules(c, nets)


def _link_holes(net: Network | None) -> bool:
    """Whether --link opens firewall holes on `net`: only on the default network with icc off.
    On user-defined networks Docker makes --link a name alias only (no rule), and so does netkit."""
    return net is not None and net.default and not net.icc and net.iptables


def involves_links(c: Container, nets: dict[str, Network]) -> bool:
    """Whether `c` may have --link rules: it sits on the default network with icc off (see link_rules)."""
    return any(_link_holes(nets.get(ep.network)) for ep in c.endpoints)


def _ports(text: str) -> tuple[str, str]:
    """ "80/tcp" or "8000-8010/udp" -> ("80" or "8000:8010", proto)."""
    ports, _, proto = text.partition("/")
    return ports.replace("-", ":"), proto or "tcp"


def exposed_ports(c: Container) -> list[str]:
    seen = list(dict.fromkeys(c.exposed + [f"{p.container_port}/{p.proto}" for p in c.ports]))
    return seen


def link_rules(c: Container, by_name: dict[str, Container], nets: dict[str, Network]) -> list[Rule]:
    """Docker's --link under icc=false on the default network: the linking container may open the
    other's exposed ports. Nothing on user-defined networks (see _link_holes)."""
    out = []
    for link in c.links:
        other = by_name.get(link.split(":", 1)[0])
        if other is None:
            continue
        for ep in c.endpoints:
            net = nets.get(ep.network)
            oep = other.endpoint(ep.network)
            if oep is None or not _link_holes(net):
                continue
            br = net.bridge
            for exp in exposed_ports(other):
                port, proto = _ports(exp)
                out.append(Rule(FILTER, CHAIN_FWD, f"-s {ep.ip}/32 -d {oep.ip}/32 -i {br} -o {br} "
                                f"{_proto(proto, 'dport', port)} -j ACCEPT"))
                out.append(Rule(FILTER, CHAIN_FWD, f"-s {oep.ip}/32 -d {ep.ip}/32 -i {br} -o {br} "
                                f"{_proto(proto, 'sport', port)} -j ACCEPT"))
    return out


def plan(networks: list[Network], containers: list[Container], bridge_nf: bool = True) -> RuleSet:
    """Every rule the state implies, in chain order. `bridge_nf`: frames bridged between two ports
    of netkit's bridges go through iptables (br_netfilter is loaded; netkit turns each bridge's
    nf_call_iptables on); False: hairpin masquerades every DNATed flow into a bridge (see above)."""
    nets = {n.name: n for n in managed(networks)}
    ordered = sorted(nets.values(), key=lambda n: n.name)
    rules: dict[tuple[str, str], list[str]] = {(t, c): [] for t, chains in CHAINS.items() for c in chains}
    rules.pop((FILTER, CHAIN_USER))

    post = rules[(NAT, CHAIN_POST)]
    fwd = rules[(FILTER, CHAIN_FWD)]
    iso1, iso2 = rules[(FILTER, CHAIN_ISO1)], rules[(FILTER, CHAIN_ISO2)]
    fwd += [f"-j {CHAIN_USER}", f"-j {CHAIN_ISO1}"]
    for n in ordered:
        br, sub = n.bridge, n.subnet
        if n.internal:
            iso1 += [f"! -s {sub} -o {br} -j DROP", f"! -d {sub} -i {br} -j DROP"]
        iso1.append(f"-i {br} ! -o {br} -j {CHAIN_ISO2}")
        iso2.append(f"-o {br} -j DROP")
        if n.internal:
            continue
        if n.masquerade:
            post.append(f"-s {sub} ! -o {br} -j MASQUERADE")
        if not bridge_nf:
            # No br_netfilter: a server's reply to a sibling that called host-address:port would be
            # bridged past conntrack, un-DNATed by nobody; with the gateway as source it is routed
            # back through the host instead (the server then sees the gateway, not the sibling).
            post.append(f"-s {sub} -o {br} -m conntrack --ctstate DNAT -j MASQUERADE")
        # Host -> 127.0.0.1:port: with route_localnet on the bridge, the source must be rewritten.
        post.append(f"-s 127.0.0.0/8 -o {br} -j MASQUERADE")
    for n in ordered:
        if not n.internal:
            fwd.append(f"-o {n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    for n in ordered:
        if not n.internal:
            fwd.append(f"-o {n.bridge} -m conntrack --ctstate DNAT -j ACCEPT")
    for n in ordered:
        fwd += direct_routing_guard(n)

    by_name = {c.name: c for c in containers}
    for c in containers:
        for r in link_rules(c, by_name, nets):
            if r.spec not in fwd:
                fwd.append(r.spec)
    for n in ordered:
        fwd.append(f"-i {n.bridge} -o {n.bridge} -j {'ACCEPT' if n.icc else 'DROP'}")
    for n in ordered:
        if not n.internal:
            fwd.append(f"-i {n.bridge} ! -o {n.bridge} -j ACCEPT")

    for c in containers:
        for r in endpoint_rules(c, nets) + mapping_rules(c, nets):
            rules[(r.table, r.chain)].append(r.spec)
    rules[(FILTER, CHAIN_INPUT)] += loopback_guard()
    return RuleSet(rules)


def loopback_guard() -> list[str]:
    """NETKIT-INPUT: nothing addressed to 127.0.0.0/8 may arrive from anything but lo, except the
    replies of flows the host opened (a 127.x publish: host -> 127.0.0.1:port is DNATed to a
    container in nat OUTPUT, and the container's answers come back through the bridge, de-NATed to
    127.0.0.1). route_localnet=1 on netkit's bridges (needed for those publishes) would otherwise
    let a container with CAP_NET_RAW reach host services bound to loopback, on every network
    (CVE-2020-8558's class). kube-proxy's fix says `! --ctstate RELATED,ESTABLISHED,DNAT`; a DNATed
    packet to 127.x from a bridge is already dropped in NETKIT-RAW, so the two states suffice
    (tests/integration/test_security.py checks TCP and UDP publishes on 127.0.0.1 still work)."""
    return ["-d 127.0.0.0/8 ! -i lo -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
            "-d 127.0.0.0/8 ! -i lo -j DROP"]


# ---- diffs -------------------------------------------------------------------------------

def _chain_ops(table: str, chain: str, current: list[str], desired: list[str], ordered: bool) -> list[Op]:
    want = Counter(desired)
    ops: list[Op] = []
    kept: list[str] = []
    seen: Counter = Counter()
    for spec in current:
        seen[spec] += 1
        if seen[spec] <= want[spec]:
            kept.append(spec)
        else:
            # In an ordered chain a deletion remembers where the rule was (1-based, once the
            # deletions before it are done), so that its undo puts it back there, not at the end.
            ops.append(Op(table, "D", chain, spec, len(kept) + 1 if ordered else 0))
    if ordered:
        it = iter(desired)
        if not all(any(spec == d for d in it) for spec in kept):
            # Out of order (someone moved rules): rebuild the chain.
            ops += [Op(table, "D", chain, spec, 1) for spec in kept]
            kept = []
        result = list(kept)
        for i, spec in enumerate(desired):
            if i >= len(result) or result[i] != spec:
                result.insert(i, spec)
                ops.append(Op(table, "A" if i == len(result) - 1 else "I", chain, spec, i + 1))
    else:
        have = Counter(kept)
        for spec in desired:
            if have[spec]:
                have[spec] -= 1
            else:
                ops.append(Op(table, "A", chain, spec))
    return ops


def diff(current: dict[str, dict[str, list[str]]], desired: RuleSet) -> list[Op]:
    """Ops that turn the kernel's netkit part (`current[table][chain]` -> specs, built-in chains
    included for the hooks) into `desired`. Foreign rules and NETKIT-USER's content are left alone."""
    ops: list[Op] = []
    for table in TABLES:
        cur = current.get(table, {})
        wanted_chains = CHAINS[table]
        for chain in wanted_chains:
            if chain not in cur:
                ops.append(Op(table, "N", chain))
        for chain in wanted_chains:
            if (table, chain) in UNMANAGED:
                continue
            ops += _chain_ops(table, chain, cur.get(chain, []), desired.rules.get((table, chain), []),
                              (table, chain) not in UNORDERED)
        hooks = [(c, s) for t, c, s in desired.hooks if t == table]
        for builtin in sorted({c for c, _ in hooks}):
            want = [s for c, s in hooks if c == builtin]
            have = Counter(s for s in cur.get(builtin, []) if _jumps_to_netkit(s))
            for spec, n in have.items():
                ops += [Op(table, "D", builtin, spec)] * (n - (1 if spec in want else 0))
            for spec in want:
                if not have[spec]:
                    ops.append(Op(table, "I", builtin, spec, 1))
        for chain in sorted(cur):
            if chain.startswith(PREFIX) and chain not in wanted_chains:
                ops += [Op(table, "D", chain, s) for s in cur[chain]]
                ops.append(Op(table, "X", chain))
    return ops


def delta(old: list[Rule], new: list[Rule]) -> list[Op]:
    """Append/delete ops between two rule lists of unordered chains (the publish fast path)."""
    ops: list[Op] = []
    olds, news = Counter(old), Counter(new)
    for r, n in olds.items():
        ops += [Op(r.table, "D", r.chain, r.spec)] * max(0, n - news[r])
    for r, n in news.items():
        ops += [Op(r.table, "A", r.chain, r.spec)] * max(0, n - olds[r])
    assert all((o.table, o.chain) in UNORDERED for o in ops), "delta() is for unordered chains only"
    return ops


def _jumps_to_netkit(spec: str) -> bool:
    parts = spec.split()
    return any(parts[i] in ("-j", "-g") and parts[i + 1].startswith(PREFIX) for i in range(len(parts) - 1))


def reset_ops(current: dict[str, dict[str, list[str]]]) -> list[Op]:
    """Ops that remove every netkit hook and chain; NETKIT-USER stays if the user filled it."""
    ops: list[Op] = []
    for table in TABLES:
        cur = current.get(table, {})
        for chain, specs in cur.items():
            if not chain.startswith(PREFIX):
                ops += [Op(table, "D", chain, s) for s in specs if _jumps_to_netkit(s)]
        mine = [c for c in cur if c.startswith(PREFIX)]
        for chain in mine:
            if chain == CHAIN_USER and cur[chain]:
                continue
            if cur[chain]:
                ops.append(Op(table, "F", chain))
        for chain in mine:
            if chain == CHAIN_USER and cur[chain]:
                continue
            ops.append(Op(table, "X", chain))
    return ops


def inverse(ops) -> list[Op]:
    """Ops that undo `ops`, last first. A deleted rule goes back to the position its deletion
    recorded (ordered chains), else it is appended. A flush cannot be undone (only `reset`
    flushes, and it is not undone)."""
    out = []
    for o in reversed(list(ops)):
        if o.action in ("A", "I"):
            out.append(Op(o.table, "D", o.chain, o.spec))
        elif o.action == "D":
            out.append(Op(o.table, "I", o.chain, o.spec, o.pos) if o.pos else Op(o.table, "A", o.chain, o.spec))
        elif o.action == "N":
            out.append(Op(o.table, "X", o.chain))
        elif o.action == "X":
            out.append(Op(o.table, "N", o.chain))
        elif o.action == "P" and o.was:
            out.append(Op(o.table, "P", o.chain, o.was, was=o.spec))
    return out


def render(ops: list[Op]) -> list[str]:
    """Ops in iptables-save syntax, grouped by table (what --dry-run prints)."""
    lines: list[str] = []
    for table in TABLES:
        mine = [o for o in ops if o.table == table]
        if not mine:
            continue
        lines.append(f"*{table}")
        lines += [o.text() for o in mine]
        lines.append("COMMIT")
    return lines


def parse_save(text: str) -> dict[str, dict[str, list[str]]]:
    """`iptables-save` output -> {table: {chain: [spec, ...]}} (every chain, built-in ones included);
    policies under the key ":policy" as {chain: policy}."""
    out: dict[str, dict] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            out[table] = {":policy": {}}
        elif table is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            out[table].setdefault(name, [])
            if policy != "-":
                out[table][":policy"][name] = policy
        elif line.startswith("-A "):
            _, chain, spec = line.split(" ", 2)
            out[table].setdefault(chain, []).append(spec)
    return out


def netkit_part(snapshot: dict) -> dict[str, dict[str, list[str]]]:
    """Only netkit's chains and the hook rules in built-in chains."""
    out: dict[str, dict[str, list[str]]] = {}
    for table, chains in snapshot.items():
        part = {}
        for chain, specs in chains.items():
            if chain == ":policy":
                continue
            if chain.startswith(PREFIX):
                part[chain] = list(specs)
            else:
                hooks = [s for s in specs if _jumps_to_netkit(s)]
                if hooks:
                    part[chain] = hooks
        out[table] = part
    return out
