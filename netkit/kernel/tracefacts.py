"""Read-only kernel facts the packet tracer needs, per network namespace: links (MAC, MTU),
addresses, the sysctls that decide a packet's fate (ip_forward, rp_filter, br_netfilter's
bridge-nf-call-iptables), the neighbour table, a route lookup (`ip route get ... iif ...`), the
SNMP drop counters (/proc/net/snmp, /proc/net/netstat), the conntrack table and bridge FDBs.

Everything here is netns-local: each read runs with the calling thread inside the netns at
`path` (None: the caller's own). Nothing is changed. Returns plain dicts.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager

from netkit.kernel import nsutil

NUD_NAMES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
             0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
RTN_NAMES = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole", 7: "unreachable",
             8: "prohibit"}


@contextmanager
def inside(path: str | None):
    """The body runs with the calling thread in the netns at `path` (None: stay)."""
    if not path:
        yield
        return
    with nsutil.entered_netns(path):
        yield


def _iproute(path: str | None):
    from netkit.kernel.pyroute2_loader import IPRoute

    if not path:
        return IPRoute()
    from netkit.kernel import netns as netns_mod

    return IPRoute(fileno=netns_mod.open_socket(path).detach())


def _read(p: str) -> str | None:
    try:
        with open(p) as fh:
            return fh.read().strip()
    except OSError:
        return None


def sysctls(path: str | None, ifnames: list[str]) -> dict:
    """ip_forward, rp_filter (all, default and per interface), bridge-nf-call-iptables (None when
    br_netfilter is absent), as strings the way `sysctl` prints them; for each bridge among
    `ifnames`, its own nf_call_iptables switch as "bridge.NAME.nf_call_iptables" (the kernel ORs it
    with the global one)."""
    out: dict = {}
    with inside(path):
        # /proc/sys/net follows the netns of the thread that opens the file.
        out["net.ipv4.ip_forward"] = _read("/proc/sys/net/ipv4/ip_forward")
        for scope in ["all", "default"] + ifnames:
            value = _read(f"/proc/sys/net/ipv4/conf/{scope}/rp_filter")
            if value is not None:
                out[f"net.ipv4.conf.{scope}.rp_filter"] = value
        out["net.bridge.bridge-nf-call-iptables"] = _read("/proc/sys/net/bridge/bridge-nf-call-iptables")
        for name in ifnames:
            value = _read(f"/sys/class/net/{name}/bridge/nf_call_iptables")
            if value is not None:
                out[f"bridge.{name}.nf_call_iptables"] = value
    return out


def links_and_addresses(path: str | None) -> dict:
    """{links: {ifname: {index, mac, mtu}}, addresses: {ip: ifname}, neighbours: {ip: state}}."""
    out = {"links": {}, "addresses": {}, "neighbours": {}}
    with _iproute(path) as ipr:
        names = {}
        for m in ipr.get_links():
            name = m.get_attr("IFLA_IFNAME")
            names[m["index"]] = name
            out["links"][name] = {"index": m["index"], "mac": m.get_attr("IFLA_ADDRESS"),
                                  "mtu": m.get_attr("IFLA_MTU")}
        for a in ipr.get_addr(family=2):
            out["addresses"][a.get_attr("IFA_ADDRESS")] = names.get(a["index"], "?")
        for n in ipr.get_neighbours(family=2):
            ip = n.get_attr("NDA_DST")
            if ip:
                out["neighbours"][ip] = NUD_NAMES.get(n["state"], str(n["state"]))
    return out


def route_get(path: str | None, dst: str, src: str | None = None, iif: str | None = None) -> dict:
    """What the kernel's routing decides for a packet (`ip route get DST [from SRC iif IF]`):
    {type: unicast|local|unreachable|..., oif, gateway, error: None|rp_filter|no_route|...}.
    With `iif` this is the input lookup a received packet gets, rp_filter included."""
    from netkit.kernel.pyroute2_loader import NetlinkError

    out = {"type": None, "oif": None, "gateway": None, "error": None, "errno": None}
    kwargs = {"dst": dst}
    if src:
        kwargs["src"] = src
    try:
        with _iproute(path) as ipr:
            if iif:
                idx = ipr.link_lookup(ifname=iif)
                if not idx:
                    out["error"] = "no_interface"
                    return out
                kwargs["iif"] = idx[0]
            names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
            (msg,) = ipr.route("get", **kwargs)[:1]
            out["type"] = RTN_NAMES.get(msg["type"], str(msg["type"]))
            out["oif"] = names.get(msg.get_attr("RTA_OIF"))
            out["gateway"] = msg.get_attr("RTA_GATEWAY")
    except NetlinkError as err:
        out["errno"] = err.code
        # An input lookup (iif) whose source fails validation answers EXDEV on older kernels and
        # EINVAL on newer ones (the "martian source" path): rp_filter, or an impossible source.
        out["error"] = {errno.EXDEV: "martian_source", errno.ENETUNREACH: "no_route",
                        errno.EHOSTUNREACH: "host_unreachable",
                        errno.EINVAL: "martian_source" if iif else "invalid"}.get(err.code, os.strerror(err.code))
        out["message"] = os.strerror(err.code)
    except (OSError, ValueError) as err:
        out["error"] = str(err)
    return out


def snmp(path: str | None) -> dict[str, int]:
    """The netns's SNMP and extended counters: {"Ip:InHdrErrors": n, "TcpExt:IPReversePathFilter": n, ...}."""
    out: dict[str, int] = {}
    with inside(path):
        # /proc/thread-self/net: the calling thread's netns (/proc/self/net would be the process's).
        for name in ("snmp", "netstat"):
            text = _read(f"/proc/thread-self/net/{name}") or ""
            lines = text.splitlines()
            for head, vals in zip(lines[::2], lines[1::2]):
                keys, values = head.split(), vals.split()
                if not keys or keys[0] != values[0]:
                    continue
                group = keys[0].rstrip(":")
                for k, v in zip(keys[1:], values[1:]):
                    try:
                        out[f"{group}:{k}"] = int(v)
                    except ValueError:
                        pass
    return out


def _tuple_dict(t) -> dict:
    return {"src": t.saddr, "dst": t.daddr, "sport": t.sport, "dport": t.dport}


def conntrack(path: str | None = None) -> list[dict]:
    """The netns's conntrack table, read-only, as plain dicts ([] if unavailable)."""
    try:
        from netkit.kernel.pyroute2_loader import load

        Conntrack = load("pyroute2.conntrack", "Conntrack")  # noqa: N806 - a class

        entries = []
        with inside(path), Conntrack() as ct:
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


def bridge_fdb(bridge: str) -> dict:
    """{mac: port ifname} the bridge has learnt (its own local entries left out)."""
    from netkit.kernel.links import bridge_macs

    try:
        return {r["mac"]: r["interface"] for r in bridge_macs(bridge) if not r["local"]}
    except Exception:  # noqa: BLE001 - the FDB only decorates the report
        return {}
