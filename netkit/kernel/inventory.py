"""Read what exists, for `netkit topology`: every netns's links (ifindex, iflink, kind, master,
MTU, MAC) and IPv4 addresses and default route, read with `ip -j` (iproute2's own view, the one
students compare with), plus each container's resolv.conf nameservers. Read-only."""
from __future__ import annotations

import json
import os
import subprocess

from netkit.programs import require

NETNS_DIR = "/run/netns"


def _ip_json(netns: str | None, *args: str) -> list:
    argv = [require("ip")] + (["-n", netns] if netns else []) + ["-j", *args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def read_netns(netns: str | None) -> dict:
    """{"links": [...], "default_via": IP or None} of one netns (None: the current one)."""
    addrs = {a["ifname"]: [f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", []) if i.get("family") == "inet"]
             for a in _ip_json(netns, "addr", "show")}
    links = []
    for link in _ip_json(netns, "-d", "link", "show"):
        info = link.get("linkinfo", {})
        links.append({
            "ifname": link["ifname"], "ifindex": link["ifindex"], "iflink": link.get("link_index"),
            "peer_netns": link.get("link_netnsid") is not None, "kind": info.get("info_kind"),
            "slave_kind": info.get("info_slave_kind"), "master": link.get("master"), "mtu": link.get("mtu"),
            "mac": link.get("address"), "up": "UP" in link.get("flags", []), "addrs": addrs.get(link["ifname"], []),
        })
    default = next((r.get("gateway") for r in _ip_json(netns, "-4", "route", "show", "default")), None)
    return {"links": links, "default_via": default}


def read_all() -> dict:
    """{"host": {...}, "netns": {name: {...}}} for the current netns and every named one."""
    names = sorted(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else []
    return {"host": read_netns(None), "netns": {n: read_netns(n) for n in names}}


def nameservers(etc_dir: str) -> list[str]:
    try:
        with open(os.path.join(etc_dir, "resolv.conf")) as fh:
            return [line.split()[1] for line in fh if line.startswith("nameserver") and len(line.split()) > 1]
    except OSError:
        return []
