"""netkit's rules in native nftables: the translation both ways, pure.

One table, `table ip netkit`, holds everything: netkit's chains under their iptables names
(NETKIT, NETKIT-POSTROUTING, NETKIT-FORWARD, NETKIT-USER, NETKIT-ISOLATION-1/2, NETKIT-RAW) and
one base chain per hook rules.py hooks into, at the priority of the iptables table it stands for:

  raw-PREROUTING   filter hook prerouting  priority raw (-300)     jump NETKIT-RAW
  nat-PREROUTING   nat    hook prerouting  priority dstnat (-100)  fib daddr type local jump NETKIT
  nat-OUTPUT       nat    hook output      priority dstnat (-100)  fib daddr type local jump NETKIT
  nat-POSTROUTING  nat    hook postrouting priority srcnat (100)   jump NETKIT-POSTROUTING
  filter-FORWARD   filter hook forward     priority filter (0)     jump NETKIT-FORWARD
  filter-INPUT     filter hook input       priority filter (0)     jump NETKIT-INPUT

The rules that grow with the number of containers and ports are set and map elements instead of
rules, so a publish is one element and the chains stay a few rules long:
  dnat_any   proto . port -> container ip . port     (DNAT of a port published on every address)
  dnat_addr  host ip . proto . port -> ip . port     (published on one address)
  raw_lo     127.x ip . proto . port                 (drop those from anywhere but lo)
  raw_ep_addrs / raw_ep_pairs  container ip; ip . bridge  (drop what reaches a container's address
             through anything but its bridge)
  hairpin    ip . ip . proto . port                  (masquerade a container calling its own
             published port: Docker's `-s IP -d IP --dport P -j MASQUERADE`, rules.hairpin_rule)
NETKIT, NETKIT-RAW and NETKIT-POSTROUTING each start with the fixed lookup rules over those sets.

The reconciler diffs iptables-save text (rules.py): `ops_script` turns its ops into one nft
script (applied as one transaction), `normalize` turns the table read back as `nft -j` JSON into
that text again, and `render_ruleset` prints a whole desired rule set in nft syntax (golden files,
`--dry-run`). The FORWARD policy, which the iptables backends set on the built-in chain, is the
policy of netkit's own forward base chain here: a drop there drops what netkit does not accept,
whatever other tables accept, as the iptables policy does.
"""
from __future__ import annotations

import json

from netkit import rules
from netkit.rulespec import Addr, Iface, Spec, host_cidr, parse

FAMILY = "ip"
TABLE = "netkit"
QUALIFIED = f"{FAMILY} {TABLE}"

# (iptables table, built-in chain) -> (base chain, type, hook, priority). The priorities are those
# of the iptables tables (raw -300, dstnat -100, filter 0, srcnat 100), written as numbers:
# nft 1.0.6 accepts the name "dstnat" on prerouting only, not on output.
BASE_CHAINS = {
    (rules.RAW, "PREROUTING"): ("raw-PREROUTING", "filter", "prerouting", -300),
    (rules.NAT, "PREROUTING"): ("nat-PREROUTING", "nat", "prerouting", -100),
    (rules.NAT, "OUTPUT"): ("nat-OUTPUT", "nat", "output", -100),
    (rules.NAT, "POSTROUTING"): ("nat-POSTROUTING", "nat", "postrouting", 100),
    (rules.FILTER, "FORWARD"): ("filter-FORWARD", "filter", "forward", 0),
    (rules.FILTER, "INPUT"): ("filter-INPUT", "filter", "input", 0),
}
BASE_BY_NAME = {v[0]: k for k, v in BASE_CHAINS.items()}
CHAIN_TABLE = {chain: table for table, chains in rules.CHAINS.items() for chain in chains}

SETS = {
    "dnat_any": "map dnat_any { type inet_proto . inet_service : ipv4_addr . inet_service; }",
    "dnat_addr": "map dnat_addr { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }",
    "raw_lo": "set raw_lo { type ipv4_addr . inet_proto . inet_service; }",
    "raw_ep_addrs": "set raw_ep_addrs { type ipv4_addr; }",
    "raw_ep_pairs": "set raw_ep_pairs { type ipv4_addr . ifname; }",
    "hairpin": "set hairpin { type ipv4_addr . ipv4_addr . inet_proto . inet_service; }",
}
LOOKUPS = {
    rules.CHAIN_DNAT: ("dnat ip to ip daddr . meta l4proto . th dport map @dnat_addr",
                       "dnat ip to meta l4proto . th dport map @dnat_any"),
    rules.CHAIN_RAW: ('iifname != "lo" ip daddr . meta l4proto . th dport @raw_lo drop',
                      "ip daddr @raw_ep_addrs ip daddr . iifname != @raw_ep_pairs drop"),
    rules.CHAIN_POST: ("ip saddr . ip daddr . meta l4proto . th dport @hairpin masquerade",),
}
LOOKUP_REFS = {rules.CHAIN_DNAT: ("dnat_addr", "dnat_any"), rules.CHAIN_RAW: ("raw_lo", "raw_ep_pairs"),
               rules.CHAIN_POST: ("hairpin",)}
CHAIN_SETS = {rules.CHAIN_DNAT: ("dnat_any", "dnat_addr"), rules.CHAIN_RAW: ("raw_lo", "raw_ep_addrs", "raw_ep_pairs"),
              rules.CHAIN_POST: ("hairpin",)}


# ---- rules -> nft ----------------------------------------------------------------------------

def _host(cidr: str) -> str:
    return cidr[:-3] if cidr.endswith("/32") else cidr


def _quote(name: str) -> str:
    return json.dumps(name)


def statement(spec: Spec) -> str:
    """One netkit rule as an nft rule body."""
    words: list[str] = []
    for key, addr in (("saddr", spec.src), ("daddr", spec.dst)):
        if addr is not None:
            words += ["ip", key] + (["!="] if addr.neg else []) + [_host(addr.cidr)]
    for key, iface in (("iifname", spec.iif), ("oifname", spec.oif)):
        if iface is not None:
            words += [key] + (["!="] if iface.neg else []) + [_quote(iface.name)]
    if spec.proto:
        if spec.sport or spec.dport:
            for key, port in (("sport", spec.sport), ("dport", spec.dport)):
                if port:
                    words += [spec.proto, key, port.replace(":", "-")]
        else:
            words += ["meta", "l4proto", spec.proto]
    if spec.dst_type:
        words += ["fib", "daddr", "type", spec.dst_type.lower()]
    if spec.ctstate:
        states = [s.lower() for s in spec.ctstate]
        status = [s for s in states if s in ("dnat", "snat")]
        if status and len(status) != len(states):
            raise ValueError(f"rule {spec.text()!r}: --ctstate mixes states and NAT status")
        words += ["ct", "status" if status else "state", ",".join(states)]
    if spec.target == "DNAT":
        words += ["dnat", "to", spec.to or ""]
    elif spec.target in ("ACCEPT", "DROP", "RETURN", "MASQUERADE"):
        words.append(spec.target.lower())
    else:
        words += ["goto" if spec.goto else "jump", spec.target]
    return " ".join(words)


def element(chain: str, spec: Spec) -> tuple[str, str, str] | None:
    """(set, key, value) when the rule is one of the per-port / per-container shapes kept as set
    elements in `chain`; None for an ordinary rule. value is "" for sets."""
    single_host = spec.dst is not None and not spec.dst.neg and spec.dst.cidr.endswith("/32")
    port_ok = spec.dport is not None and spec.dport.isdigit()
    if chain == rules.CHAIN_POST and spec.target == "MASQUERADE" and single_host and spec.src == spec.dst \
            and spec.proto and port_ok and not spec.sport and spec.iif is None and spec.oif is None \
            and not spec.ctstate and not spec.dst_type:
        ip = _host(spec.dst.cidr)
        return "hairpin", f"{ip} . {ip} . {spec.proto} . {spec.dport}", ""
    plain = spec.src is None and spec.oif is None and not spec.ctstate and not spec.dst_type and not spec.goto
    if not plain or spec.sport:
        return None
    if chain == rules.CHAIN_DNAT and spec.target == "DNAT" and spec.iif is None and spec.proto and port_ok:
        ip, _, port = (spec.to or "").rpartition(":")
        if not ip or not port.isdigit():
            return None
        if spec.dst is None:
            return "dnat_any", f"{spec.proto} . {spec.dport}", f"{ip} . {port}"
        if single_host:
            return "dnat_addr", f"{_host(spec.dst.cidr)} . {spec.proto} . {spec.dport}", f"{ip} . {port}"
        return None
    if chain == rules.CHAIN_RAW and spec.target == "DROP" and single_host and spec.iif is not None and spec.iif.neg:
        if spec.iif.name == "lo" and spec.proto and port_ok:
            return "raw_lo", f"{_host(spec.dst.cidr)} . {spec.proto} . {spec.dport}", ""
        if spec.proto is None and spec.dport is None:
            return "raw_ep_pairs", f"{_host(spec.dst.cidr)} . {_quote(spec.iif.name)}", ""
    return None


FOREIGN = "?nft: "  # how normalize() reports a rule netkit cannot express


def structured(text: str) -> Spec | None:
    """parse(), or None for a foreign rule as normalize() reports it."""
    return None if text.startswith(FOREIGN) else parse(text)


def _elem_lines(verb: str, chain: str, spec: Spec | None) -> list[str] | None:
    if spec is None:
        return None
    shape = element(chain, spec)
    if shape is None:
        return None
    name, key, value = shape
    item = f"{key} : {value}" if value and verb == "add" else key
    lines = [f"{verb} element {QUALIFIED} {name} {{ {item} }}"]
    if name == "raw_ep_pairs":
        # The address set says "this is a container address"; the pair set says through which
        # bridge it may be reached. One pair per address (IPAM never repeats an address).
        lines.append(f"{verb} element {QUALIFIED} raw_ep_addrs {{ {key.split(' . ')[0]} }}")
    return lines


def base_chain_line(table: str, builtin: str, policy: str | None = None) -> str:
    name, kind, hook, prio = BASE_CHAINS[(table, builtin)]
    pol = f" policy {policy.lower()};" if policy else ""
    return f"add chain {QUALIFIED} {name} {{ type {kind} hook {hook} priority {prio};{pol} }}"


def nft_chain(table: str, chain: str) -> str:
    """The nft chain holding the iptables (table, chain)."""
    base = BASE_CHAINS.get((table, chain))
    return base[0] if base else chain


def _kind(name: str) -> str:
    return SETS[name].split()[0]  # "map" or "set"


def _chain_setup(chain: str) -> list[str]:
    """Create `chain` (with its sets and lookup rules when it has any) from nothing."""
    lines = [f"add {SETS[s]}".replace("add map", f"add map {QUALIFIED}", 1).replace("add set", f"add set {QUALIFIED}", 1)
             for s in CHAIN_SETS.get(chain, ())]
    lines.append(f"add chain {QUALIFIED} {chain}")
    if chain in LOOKUPS:
        lines.append(f"flush chain {QUALIFIED} {chain}")
        lines += [f"flush {_kind(s)} {QUALIFIED} {s}" for s in CHAIN_SETS[chain]]
        lines += [f"add rule {QUALIFIED} {chain} {body}" for body in LOOKUPS[chain]]
    return lines


def needs_current(ops: list[rules.Op]) -> set[tuple[str, str]]:
    """(table, chain)s whose present rules `ops_script` needs: where rules are deleted or inserted
    at a position, the chain is rewritten whole (one transaction, so nobody sees it half-made)."""
    out = set()
    for op in ops:
        if op.action in ("D", "I") and _elem_lines("add", op.chain, structured(op.spec)) is None:
            if not (op.action == "I" and op.pos == 1 and (op.table, op.chain) in BASE_CHAINS):
                out.add((op.table, op.chain))
    return out


def ops_script(ops: list[rules.Op], current: dict[tuple[str, str], list[str]] | None = None) -> list[str]:
    """rules.Op list -> lines of one nft script. `current` holds the present plain rules (specs,
    lookup rules left out) of every chain `needs_current(ops)` names."""
    current = current or {}
    lines = [f"add table {QUALIFIED}"]
    rebuilt: dict[tuple[str, str], list[str]] = {}
    made_base: set[tuple[str, str]] = set()
    # Chain deletions go last: a chain that a rewritten chain jumps to can only go once that
    # chain is rewritten without the jump (the kernel refuses to delete a referenced chain).
    deletions: list[str] = []

    def ensure_base(table: str, chain: str) -> None:
        if (table, chain) in BASE_CHAINS and (table, chain) not in made_base:
            lines.append(base_chain_line(table, chain))
            made_base.add((table, chain))

    for op in ops:
        key = (op.table, op.chain)
        if op.action == "N":
            lines += _chain_setup(op.chain)
        elif op.action == "X":
            deletions.append(f"delete chain {QUALIFIED} {nft_chain(*key)}")
            deletions.extend(f"delete {_kind(s)} {QUALIFIED} {s}" for s in CHAIN_SETS.get(op.chain, ()))
        elif op.action == "P":
            if key not in BASE_CHAINS:
                raise ValueError(f"policy on {op.table} {op.chain}: nftables base chains only")
            lines.append(base_chain_line(op.table, op.chain, op.spec))
            made_base.add(key)
        elif op.action == "F":
            ensure_base(*key)
            lines.append(f"flush chain {QUALIFIED} {nft_chain(*key)}")
            if op.chain in LOOKUPS:
                lines += [f"flush {_kind(s)} {QUALIFIED} {s}" for s in CHAIN_SETS[op.chain]]
                lines += [f"add rule {QUALIFIED} {op.chain} {body}" for body in LOOKUPS[op.chain]]
            rebuilt[key] = []
        else:
            spec = structured(op.spec)
            if spec is None and op.action != "D":
                raise ValueError(f"cannot write a foreign rule: {op.spec}")
            elem = _elem_lines("add" if op.action in ("A", "I") else "delete", op.chain, spec)
            if elem is not None:
                lines += elem
                continue
            ensure_base(*key)
            if key in rebuilt or op.action == "D" or (op.action == "I" and not (key in BASE_CHAINS and op.pos == 1)):
                have = rebuilt.setdefault(key, list(current.get(key, [])))
                if op.action == "A":
                    have.append(op.spec)
                elif op.action == "I":
                    have.insert(max(op.pos - 1, 0), op.spec)
                elif op.spec in have:
                    have.remove(op.spec)
                else:
                    raise ValueError(f"cannot delete `-A {op.chain} {op.spec}`: not in the chain")
            elif op.action == "A":
                lines.append(f"add rule {QUALIFIED} {nft_chain(*key)} {statement(spec)}")
            else:  # insert at the top of a base chain: the hook
                lines.append(f"insert rule {QUALIFIED} {nft_chain(*key)} {statement(spec)}")
    for (table, chain), specs in rebuilt.items():
        name = nft_chain(table, chain)
        lines.append(f"flush chain {QUALIFIED} {name}")
        lines += [f"add rule {QUALIFIED} {name} {body}" for body in LOOKUPS.get(chain, ())]
        for text in specs:
            spec = structured(text)
            if spec is None:
                raise ValueError(f"chain {name} holds a rule netkit cannot write back: {text}")
            lines.append(f"add rule {QUALIFIED} {name} {statement(spec)}")
    return lines + deletions


def render_ruleset(rs: rules.RuleSet, forward_policy: str | None = None) -> list[str]:
    """A whole desired rule set as the nft table netkit would hold (`nft list table ip netkit`'s
    shape, loadable with `nft -f`)."""
    chains = {c: [] for t in rules.TABLES for c in rules.CHAINS[t]}
    elements: dict[str, list[str]] = {s: [] for s in SETS}
    for (_, chain), specs in rs.rules.items():
        for text in specs:
            spec = parse(text)
            shape = element(chain, spec)
            if shape is None:
                chains[chain].append(statement(spec))
            else:
                name, key, value = shape
                elements[name].append(f"{key} : {value}" if value else key)
                if name == "raw_ep_pairs":
                    elements["raw_ep_addrs"].append(key.split(" . ")[0])
    out = [f"table {QUALIFIED} {{"]
    for name, decl in SETS.items():
        head, _, body = decl.partition(" { ")
        out.append(f"\t{head} {{")
        out.append(f"\t\t{body.rstrip(' }').strip()}")
        if elements[name]:
            out.append(f"\t\telements = {{ {', '.join(elements[name])} }}")
        out.append("\t}")
    for chain, bodies in chains.items():
        out.append(f"\tchain {chain} {{")
        out += [f"\t\t{b}" for b in LOOKUPS.get(chain, ()) + tuple(bodies)]
        out.append("\t}")
    for (table, builtin), (name, kind, hook, prio) in BASE_CHAINS.items():
        policy = (forward_policy or "accept").lower() if (table, builtin) == (rules.FILTER, "FORWARD") else "accept"
        out.append(f"\tchain {name} {{")
        out.append(f"\t\ttype {kind} hook {hook} priority {prio}; policy {policy};")
        out += [f"\t\t{statement(parse(s))}" for t, c, s in rs.hooks if (t, c) == (table, builtin)]
        out.append("\t}")
    out.append("}")
    return out


# ---- nft JSON -> rules ------------------------------------------------------------------------

class Unknown(ValueError):
    """An nft rule netkit did not write and cannot express in its iptables form."""


def _value(v) -> str:
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    if isinstance(v, dict) and "range" in v:
        lo, hi = v["range"]
        return f"{lo}:{hi}"
    if isinstance(v, (str, int)):
        return str(v)
    raise Unknown(f"value {v!r}")


def _set_words(v) -> list[str]:
    if isinstance(v, dict) and "set" in v:
        return [str(x) for x in v["set"]]
    if isinstance(v, list):
        return [str(x) for x in v]
    return [str(v)]


def spec_of(exprs: list[dict]) -> Spec:
    """The JSON expressions of one rule (as `statement` wrote it) -> Spec."""
    f: dict = {}
    for e in exprs:
        if "match" in e:
            m = e["match"]
            left, right, neg = m["left"], m["right"], m["op"] == "!="
            if m["op"] not in ("==", "!=", "in"):
                raise Unknown(f"operator {m['op']}")
            if "payload" in left:
                proto, key = left["payload"]["protocol"], left["payload"]["field"]
                if proto == "ip" and key in ("saddr", "daddr"):
                    f["src" if key == "saddr" else "dst"] = Addr(host_cidr(_value(right)), neg)
                elif proto in ("tcp", "udp", "sctp") and key in ("sport", "dport") and not neg:
                    f["proto"] = proto
                    f[key] = _value(right)
                else:
                    raise Unknown(f"payload {proto} {key}")
            elif "meta" in left and left["meta"]["key"] in ("iifname", "oifname"):
                f["iif" if left["meta"]["key"] == "iifname" else "oif"] = Iface(_value(right), neg)
            elif "meta" in left and left["meta"]["key"] == "l4proto" and not neg:
                f["proto"] = _value(right)
            elif "fib" in left and left["fib"].get("result") == "type" and not neg:
                f["dst_type"] = _value(right).upper()
            elif "ct" in left and left["ct"]["key"] in ("state", "status") and not neg:
                words = [w.upper() for w in _set_words(right)]
                order = {"RELATED": 0, "ESTABLISHED": 1}  # iptables-save's order
                f["ctstate"] = tuple(sorted(words, key=lambda w: order.get(w, 9)))
            else:
                raise Unknown(f"match {json.dumps(left)}")
        elif "accept" in e or "drop" in e or "return" in e:
            f["target"] = next(iter(e)).upper()
        elif "masquerade" in e:
            f["target"] = "MASQUERADE"
        elif "dnat" in e and "map" not in json.dumps(e["dnat"]):
            d = e["dnat"]
            f["target"], f["to"] = "DNAT", f"{d['addr']}:{d['port']}" if "port" in d else str(d["addr"])
        elif "jump" in e or "goto" in e:
            f["target"], f["goto"] = (e.get("jump") or e.get("goto"))["target"], "goto" in e
        elif "counter" in e:
            continue
        else:
            raise Unknown(f"statement {json.dumps(e)}")
    if "target" not in f:
        raise Unknown("no verdict")
    return Spec(**f)


def _lookup_ref(chain: str, exprs: list[dict]) -> str | None:
    """The set a lookup rule of `chain` reads (its "@name"), or None for any other rule."""
    text = json.dumps(exprs)
    return next((f"@{s}" for s in LOOKUP_REFS.get(chain, ()) if f'"@{s}"' in text), None)


def _elements(obj: dict) -> list:
    return obj.get("elem", [])


def _concat(v) -> list:
    if isinstance(v, dict) and "concat" in v:
        return v["concat"]
    if isinstance(v, dict) and "elem" in v:
        return _concat(v["elem"]["val"])
    return [v]


def normalize(listing: dict) -> dict:
    """`nft -j list table ip netkit` -> the snapshot shape of rules.parse_save: {iptables table:
    {chain: [spec], ":policy": {builtin: policy}}}. Base chains come back as the built-in chains
    they stand for. NETKIT and NETKIT-RAW are reported only while their lookup rules are intact
    (otherwise the reconciler sees them missing and rebuilds them); rules that are not netkit's
    shapes come back as "?nft: <json>" lines, which never equal a desired rule, so they show up as
    stale and get removed."""
    out: dict[str, dict] = {t: {":policy": {}} for t in rules.TABLES}
    sets: dict[str, list] = {}
    chains: dict[str, list] = {}
    order: list[str] = []
    for item in listing.get("nftables", []):
        if "set" in item or "map" in item:
            obj = item.get("set") or item.get("map")
            sets[obj["name"]] = _elements(obj)
        elif "chain" in item:
            c = item["chain"]
            chains.setdefault(c["name"], [])
            order.append(c["name"])
            if c["name"] in BASE_BY_NAME:
                table, builtin = BASE_BY_NAME[c["name"]]
                out[table][":policy"][builtin] = c.get("policy", "accept").upper()
        elif "rule" in item:
            r = item["rule"]
            chains.setdefault(r["chain"], []).append(r["expr"])
    for name in order:
        if name in BASE_BY_NAME:
            table, chain = BASE_BY_NAME[name]
        else:
            table, chain = CHAIN_TABLE.get(name, rules.FILTER), name
        exprs = chains[name]
        specs: list[str] = []
        if name in LOOKUPS:
            refs = [_lookup_ref(name, e) for e in exprs]
            if sorted(r for r in refs if r) != sorted(f"@{s}" for s in LOOKUP_REFS[name]):
                continue  # a lookup rule missing or doubled: the chain counts as missing
            exprs = [e for e, r in zip(exprs, refs) if r is None]
            specs += _element_specs(name, sets)
        for e in exprs:
            try:
                specs.append(spec_of(e).text())
            except Unknown:
                specs.append(FOREIGN + json.dumps(e, sort_keys=True))
        out[table][chain] = specs
    return out


def _element_specs(chain: str, sets: dict[str, list]) -> list[str]:
    out = []
    if chain == rules.CHAIN_DNAT:
        for key, val in (_pair(e) for e in sets.get("dnat_addr", [])):
            ip, proto, port = _concat(key)
            cip, cport = _concat(val)
            out.append(Spec("DNAT", dst=Addr(host_cidr(str(ip))), proto=proto, dport=str(port), to=f"{cip}:{cport}").text())
        for key, val in (_pair(e) for e in sets.get("dnat_any", [])):
            proto, port = _concat(key)
            cip, cport = _concat(val)
            out.append(Spec("DNAT", proto=proto, dport=str(port), to=f"{cip}:{cport}").text())
    elif chain == rules.CHAIN_POST:
        for e in sets.get("hairpin", []):
            src, dst, proto, port = _concat(e)
            out.append(Spec("MASQUERADE", src=Addr(host_cidr(str(src))), dst=Addr(host_cidr(str(dst))), proto=proto,
                            dport=str(port)).text())
    elif chain == rules.CHAIN_RAW:
        for e in sets.get("raw_lo", []):
            ip, proto, port = _concat(e)
            out.append(Spec("DROP", dst=Addr(host_cidr(str(ip))), iif=Iface("lo", True), proto=proto,
                            dport=str(port)).text())
        addrs = {str(_concat(e)[0]) for e in sets.get("raw_ep_addrs", [])}
        for e in sets.get("raw_ep_pairs", []):
            ip, ifname = _concat(e)
            if str(ip) in addrs:
                out.append(Spec("DROP", dst=Addr(host_cidr(str(ip))), iif=Iface(str(ifname), True)).text())
    return out


def _pair(e) -> tuple:
    if isinstance(e, list) and len(e) == 2:
        return e[0], e[1]
    raise Unknown(f"map element {e!r}")

