"""Network CONFIGURATION of the sandbox, read back from the kernel, for "nothing changed" checks.

A before/after comparison must see what someone configured, never what the kernel changes on its
own a moment later: IPv6 duplicate address detection (`tentative`), carrier (`NO-CARRIER`,
`LOWER_UP`), operstate, `linkdown` route flags, counters, timers, queue lengths, an empty built-in
iptables table that appears when any process (another test, another user) loads its module. So
this module keeps, per netns:

- links: name, kind, master, flags without the carrier/run-state ones (so admin `UP` stays),
  MTU, MAC, promiscuity/allmulti counts, a few bridge and bridge-port settings;
- addresses without their flags and lifetimes, minus the IPv6 link-local ones the kernel adds by
  itself when carrier arrives;
- routes (IPv4 all; IPv6 minus the `proto kernel` ones derived from addresses) without flags;
- policy rules; a list of sysctls;

and, for the firewall, rules and policies without counters and without built-in-only tables that
hold nothing (see `iptables_config`, `nft_config`).
"""
from __future__ import annotations

import glob
import json
import os
import re
import subprocess

from netkit.kernel import nsutil

# Flags that follow carrier and driver state, not configuration (IFF_RUNNING, IFF_LOWER_UP, ...).
TRANSIENT_LINK_FLAGS = {"LOWER_UP", "NO-CARRIER", "RUNNING", "DORMANT", "M-DOWN", "ECHO"}
BRIDGE_KEYS = ("stp_state", "forward_delay", "ageing_time", "vlan_filtering", "priority", "group_fwd_mask",
               "mcast_snooping", "nf_call_iptables")
BRIDGE_PORT_KEYS = ("hairpin", "learning", "flood", "isolated", "cost", "priority", "proxy_arp")
ROUTE_KEYS = ("type", "dst", "table", "gateway", "via", "dev", "protocol", "scope", "prefsrc", "metric")
ADDR_KEYS = ("family", "local", "address", "prefixlen", "broadcast", "scope", "label", "noprefixroute")
SYSCTL_GLOBS = ("net/ipv4/ip_forward", "net/ipv4/ip_local_port_range", "net/ipv4/conf/*/forwarding",
                "net/ipv4/conf/*/route_localnet", "net/ipv4/conf/*/rp_filter", "net/ipv4/conf/*/proxy_arp",
                "net/ipv6/conf/*/disable_ipv6", "net/ipv6/conf/*/forwarding")
BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}


def _ip_json(ns: str | None, *args: str) -> list:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-j", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out) if out.strip() else []


def links(ns: str | None = None) -> dict:
    result = {}
    for link in _ip_json(ns, "-d", "link", "show"):
        info = link.get("linkinfo", {})
        entry = {
            "kind": info.get("info_kind"),
            "port_kind": info.get("info_slave_kind"),
            "master": link.get("master"),
            "flags": sorted(set(link.get("flags", [])) - TRANSIENT_LINK_FLAGS),
            "mtu": link.get("mtu"),
            "mac": link.get("address"),
            "promiscuity": link.get("promiscuity"),
            "allmulti": link.get("allmulti"),
        }
        if entry["kind"] == "bridge":
            entry["bridge"] = {k: info.get("info_data", {}).get(k) for k in BRIDGE_KEYS}
        if entry["port_kind"] == "bridge":
            entry["port"] = {k: info.get("info_slave_data", {}).get(k) for k in BRIDGE_PORT_KEYS}
        result[link["ifname"]] = entry
    return result


def addresses(ns: str | None = None) -> list:
    found = []
    for link in _ip_json(ns, "addr", "show"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet6" and addr.get("scope") == "link":
                continue  # fe80::/64, added by the kernel whenever carrier comes (or not, if DAD fails)
            found.append({"dev": link["ifname"], **{k: addr[k] for k in ADDR_KEYS if k in addr}})
    return sorted(found, key=json.dumps)


def routes(ns: str | None = None) -> list:
    found = []
    for family in ("-4", "-6"):
        for route in _ip_json(ns, family, "route", "show", "table", "all"):
            if family == "-6" and route.get("protocol") == "kernel":
                continue  # follows the IPv6 addresses and link-locals, compared (or excluded) above
            found.append({"family": family, **{k: route[k] for k in ROUTE_KEYS if k in route}})
    return sorted(found, key=json.dumps)


def rules(ns: str | None = None) -> list:
    return sorted((json.dumps(r, sort_keys=True) for f in ("-4", "-6") for r in _ip_json(ns, f, "rule", "show")))


def sysctls(ns: str | None = None) -> dict:
    def read() -> dict:
        values = {}
        for pattern in SYSCTL_GLOBS:
            for path in sorted(glob.glob(f"/proc/sys/{pattern}")):
                try:
                    with open(path) as fh:
                        values[path[len("/proc/sys/"):]] = " ".join(fh.read().split())
                except OSError:
                    pass  # an interface that went away between glob and open
        return values

    if ns is None:
        return read()
    # /proc/sys/net shows the netns of the thread that opens the file.
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        return read()


def netns_config(ns: str | None = None) -> dict:
    return {"links": links(ns), "addresses": addresses(ns), "routes": routes(ns), "rules": rules(ns),
            "sysctls": sysctls(ns)}


def all_netns() -> list[str]:
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


def network_config() -> dict:
    """The host's (the sandbox's) configuration and that of every named netns."""
    config = {"host": netns_config()}
    for ns in all_netns():
        config[f"netns:{ns}"] = netns_config(ns)
    return config


def all_links() -> dict:
    """Just the links, in the host and every named netns (cheap enough to call while capturing)."""
    return {"host": links(), **{f"netns:{ns}": links(ns) for ns in all_netns()}}


_COUNTERS = re.compile(r"\s*\[\d+:\d+\]")


def iptables_config(save: str) -> str:
    """iptables-save output as configuration: no comments, no counters, and no table that holds
    only built-in chains with policy ACCEPT and no rule (such a table appears as soon as anyone
    touches it or loads its module: it configures nothing)."""
    tables: list[tuple[str, list[str], bool]] = []
    name, lines, meaningful = None, [], False
    for raw in save.splitlines():
        line = _COUNTERS.sub("", raw).rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            name, lines, meaningful = line, [line], False
        elif line == "COMMIT":
            lines.append(line)
            tables.append((name, lines, meaningful))
            name = None
        else:
            lines.append(line)
            if line.startswith(":"):
                chain, policy = line[1:].split()[:2]
                meaningful |= chain not in BUILTIN_CHAINS or policy != "ACCEPT"
            else:
                meaningful = True
    return "\n".join(line for _, lines, keep in sorted(tables) if keep for line in lines)


def _strip_nft(value):
    if isinstance(value, dict):
        if "counter" in value and isinstance(value["counter"], dict):
            return {"counter": {}}
        return {k: _strip_nft(v) for k, v in value.items() if k not in ("handle", "packets", "bytes")}
    if isinstance(value, list):
        return [_strip_nft(v) for v in value]
    return value


def nft_config(ruleset_json: str) -> list:
    """`nft -j list ruleset` as configuration: no handles, no counter values, no metainfo, and no
    empty base chain with policy accept (iptables-nft makes those) nor table left empty."""
    items = [_strip_nft(i) for i in json.loads(ruleset_json).get("nftables", []) if "metainfo" not in i]
    used = {(i["rule"]["family"], i["rule"]["table"], i["rule"]["chain"]) for i in items if "rule" in i}
    kept = []
    for item in items:
        chain = item.get("chain")
        if chain and "hook" in chain and chain.get("policy", "accept") == "accept" \
                and (chain["family"], chain["table"], chain["name"]) not in used:
            continue
        kept.append(item)
    filled = {(v.get("family"), v.get("table")) for i in kept for k, v in i.items() if k != "table"}
    return sorted((json.dumps(i, sort_keys=True) for i in kept
                   if "table" not in i or (i["table"]["family"], i["table"]["name"]) in filled))
