"""Anti-spoofing on container ports, as nft text: pure (the kernel side is kernel/antispoof.py).

A container with CAP_NET_RAW can write any frame: another container's IP or MAC, an arbitrary
source (8.8.8.8) that leaves through the uplink un-NATed (MASQUERADE matches `-s SUBNET` only), or
an ARP reply claiming the gateway. Bridge ports have no source check of their own, so netkit keeps
one table of the bridge family, whatever the iptables backend (it filters frames on the bridge
itself, before any IP hook and without br_netfilter):

  table bridge netkit
    set guarded { ifname }                          the container ports under guard
    set mac_ok  { ifname . ether_addr }             the MAC each may send from
    set ip_ok   { ifname . ether_addr . ipv4_addr } the MAC and IPv4 address it may send from
    chain prerouting (filter hook prerouting priority -300)
      a port not in @guarded: accept (ports of networks created with --no-anti-spoofing, the host)
      a source MAC that is not the port's: drop
      IPv4 whose source is not the port's MAC . IP: drop
      ARP whose sender MAC . IP is not the port's: drop

A container endpoint costs three set elements, added in one transaction with the veth and
deleted with it; the chain's four rules never change. Key by ifname (not ifindex): the name is
what netkit plans with, and the table is made before the veth exists.
"""
from __future__ import annotations

FAMILY = "bridge"
TABLE = "netkit"
QUALIFIED = f"{FAMILY} {TABLE}"
CHAIN = "prerouting"
PRIORITY = -300
SETS = {
    "guarded": "type ifname;",
    "mac_ok": "type ifname . ether_addr;",
    "ip_ok": "type ifname . ether_addr . ipv4_addr;",
}
RULES = (
    "iifname != @guarded accept",
    "iifname . ether saddr != @mac_ok drop",
    "ether type ip iifname . ether saddr . ip saddr != @ip_ok drop",
    "ether type arp iifname . arp saddr ether . arp saddr ip != @ip_ok drop",
)


def _q(ifname: str) -> str:
    return f'"{ifname}"'


def table_script() -> list[str]:
    """Make the table (or remake its chain) from whatever is there, keeping the set elements:
    `add` is idempotent for tables, sets and chains, and the flush makes the rule list exact, all
    in one transaction (no frame ever sees the chain half-made)."""
    lines = [f"add table {QUALIFIED}"]
    lines += [f"add set {QUALIFIED} {name} {{ {decl} }}" for name, decl in SETS.items()]
    lines.append(f"add chain {QUALIFIED} {CHAIN} {{ type filter hook prerouting priority {PRIORITY}; policy accept; }}")
    lines.append(f"flush chain {QUALIFIED} {CHAIN}")
    lines += [f"add rule {QUALIFIED} {CHAIN} {rule}" for rule in RULES]
    return lines


def element_lines(verb: str, ifname: str, mac: str, ip: str) -> list[str]:
    """`add` or `delete` the three elements of one port."""
    mac = mac.lower()
    return [f"{verb} element {QUALIFIED} guarded {{ {_q(ifname)} }}",
            f"{verb} element {QUALIFIED} mac_ok {{ {_q(ifname)} . {mac} }}",
            f"{verb} element {QUALIFIED} ip_ok {{ {_q(ifname)} . {mac} . {ip} }}"]


def delete_table_line() -> str:
    return f"delete table {QUALIFIED}"


Guard = tuple[str, str, str]  # (ifname, mac, ip)


def _concat(v) -> list:
    if isinstance(v, dict) and "concat" in v:
        return v["concat"]
    if isinstance(v, dict) and "elem" in v:
        return _concat(v["elem"]["val"])
    return [v]


def read_listing(listing: dict | None) -> tuple[set[Guard], bool]:
    """`nft -j list table bridge netkit` -> (the complete guards, whether the chain is intact).
    A port counts as guarded only when all three of its elements are there."""
    if listing is None:
        return set(), False
    sets: dict[str, list] = {}
    rules = 0
    for item in listing.get("nftables", []):
        if "set" in item:
            sets[item["set"]["name"]] = item["set"].get("elem", [])
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            rules += 1
    guarded = {str(_concat(e)[0]) for e in sets.get("guarded", [])}
    macs = {(str(a), str(b).lower()) for a, b in (_concat(e)[:2] for e in sets.get("mac_ok", []))}
    out = set()
    for e in sets.get("ip_ok", []):
        ifname, mac, ip = (str(x) for x in _concat(e)[:3])
        if ifname in guarded and (ifname, mac.lower()) in macs:
            out.add((ifname, mac.lower(), ip))
    intact = rules == len(RULES) and all(name in sets for name in SETS)
    return out, intact


def partial(listing: dict | None) -> set[str]:
    """ifnames with any element in any set (to find leftovers of ports that are gone)."""
    if listing is None:
        return set()
    names = set()
    for item in listing.get("nftables", []):
        if "set" in item:
            names |= {str(_concat(e)[0]) for e in item["set"].get("elem", [])}
    return names


def forget_lines(listing: dict | None, ifnames: set[str]) -> list[str]:
    """`delete element` lines for every element of the ports `ifnames`, whatever MAC or IP they hold."""
    if listing is None:
        return []
    lines = []
    for item in listing.get("nftables", []):
        if "set" not in item or item["set"]["name"] not in SETS:
            continue
        name = item["set"]["name"]
        for e in item["set"].get("elem", []):
            parts = [str(x) for x in _concat(e)]
            if parts[0] not in ifnames:
                continue
            key = " . ".join([_q(parts[0])] + parts[1:])
            lines.append(f"delete element {QUALIFIED} {name} {{ {key} }}")
    return lines
