"""The other hosts of a multi-host sandbox as the tracer sees them: which host runs a container
that is not in this host's state, and the paths through which this process reaches that host's
namespaces.

The hosts of `netkit sandbox --hosts N` share the sandbox's PID namespace (docs/multihost.md),
so from any host, /proc/PID/ns/net of host hK's holder process is hK's network namespace, and
/proc/PID/root/run/netns/NAME is a container's netns file as hK's own mount namespace sees it.
Each host's state folder is on the shared filesystem (the registry names it), read here without
locks (sqlite, query-only). Outside such a sandbox there are no other hosts: trace on each host.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class RemoteHost:
    name: str
    pid: int
    address: str  # its underlay address
    state_dir: str

    @property
    def net_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def path_of(self, path: str) -> str:
        """A file of this host's mount namespace (e.g. /run/netns/db) as this process reaches it."""
        return f"/proc/{self.pid}/root{path}"


def local_name() -> str | None:
    """This host's name in a multi-host sandbox (h1, h2 ...), None elsewhere."""
    return os.environ.get("NETKIT_HOST") or None


def _registry() -> dict:
    from netkit import multihost

    if not local_name() or not os.path.exists(multihost.REGISTRY):
        return {}
    try:
        return multihost.registry()
    except (OSError, ValueError):
        return {}


def others() -> list[RemoteHost]:
    doc = _registry()
    me = local_name()
    return [RemoteHost(name, info["pid"], info["address"], info["state_dir"])
            for name, info in sorted(doc.get("hosts", {}).items()) if name != me]


def local_address() -> str | None:
    info = _registry().get("hosts", {}).get(local_name() or "")
    return info["address"] if info else None


def locate(name: str):
    """(RemoteHost, Container, {network name: Network}) of the other host that runs container
    `name`, or None. A host that is down (its holder process gone) cannot be traced: one line."""
    from netkit.errors import EnvError
    from netkit.state import Store

    for host in others():
        if not os.path.exists(os.path.join(host.state_dir, "netkit.db")):
            continue
        store = Store(host.state_dir, read_only=True)
        try:
            c = store.container(name)
            nets = {n.name: n for n in store.networks()} if c is not None else {}
        finally:
            store.close()
        if c is None:
            continue
        if not os.path.exists(host.net_path):
            raise EnvError(f"container '{name}' runs on host {host.name}, which is down (its process {host.pid} "
                           "is gone): nothing of it can be traced")
        return host, c, nets
    return None
