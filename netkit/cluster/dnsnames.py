"""The names an overlay network's DNS answers for, from the store's view (pure): every container
on the network whose host is alive (or is this host), by its name and its aliases, each also as
NAME.NETWORK (as Docker answers `web.app`), as the local DNS server's records file holds them
({name: [addresses]}).

The engine writes the file when a local container changes; the host agent rewrites it when a
container elsewhere comes or goes, so every host's DNS for the network knows every container.
"""
from __future__ import annotations

import json
import os

from netkit.cluster.store import View
from netkit.names import qualified


def records(view: View, network: str, me: str) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for (net, _), ep in view.endpoints.items():
        if net != network or (ep.host != me and ep.host not in view.hosts):
            continue
        for name in (ep.container, *ep.aliases):
            out.setdefault(name.lower(), set()).add(ep.ip)
    return qualified({name: sorted(ips) for name, ips in sorted(out.items())}, network)


def rewrite(path: str, names: dict[str, list[str]]) -> bool:
    """Replace the records of an existing records file (its upstreams and clients stay); False
    when there is no file (no local container, no DNS server) or nothing changed."""
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    if doc.get("records") == names:
        return False
    doc["records"] = names
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    os.replace(tmp, path)
    return True
