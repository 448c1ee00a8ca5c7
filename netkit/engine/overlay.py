"""The engine's one door to the cluster store (issue 15, phase 2): what the network and container
use cases need of overlay networks, behind a few functions, so that they stay free of etcd.

etcd holds the truth (the network, its VNI, cluster-wide IPAM, every endpoint); the local state
holds a reference row for an overlay network (driver "overlay", its VNI, bridge ovbrVNI) only
while this host has a container on it, so that the firewall rules, DNS and doctor treat the
local bridge as they treat any bridge network. Without `cluster_store` nothing here is reached.
"""
from __future__ import annotations

import socket
import weakref
from typing import TYPE_CHECKING

from netkit import naming
from netkit.errors import NotFound, UserError
from netkit.model import Network

if TYPE_CHECKING:
    from netkit.cluster.overlay import Membership
    from netkit.cluster.store import Endpoint as StoreEndpoint
    from netkit.cluster.store import Network as StoreNetwork
    from netkit.engine.context import Context

OVERLAY = "overlay"
GLOBAL = "global"  # the scope Docker gives KV-store overlays

# Addresses taken in the store by a change that has not committed yet: released if it fails.
_pending: "weakref.WeakKeyDictionary[Context, list[tuple[str, str]]]" = weakref.WeakKeyDictionary()


def enabled(ctx: Context) -> bool:
    return bool(ctx.config.cluster_store)


def member(ctx: Context) -> Membership:
    from netkit.cluster import overlay

    return overlay.membership(ctx.config)


def _store(ctx: Context):
    from netkit.cluster.store import ClusterStore

    return ClusterStore(ctx.config.cluster_store)


def require(ctx: Context) -> Membership:
    if not enabled(ctx):
        from netkit.config import config_path

        raise UserError(f"--driver overlay needs a cluster store: set cluster_store (etcd://ADDRESS:PORT) and "
                        f"cluster_advertise in {config_path()} (`netkit sandbox --hosts N` sets them)")
    return member(ctx)


# ---- networks -----------------------------------------------------------------------------

def create_network(ctx: Context, name: str, subnet: str | None, gateway: str | None) -> StoreNetwork:
    require(ctx)
    store = _store(ctx)
    try:
        if ctx.dry_run:
            from netkit.cluster.store import NETWORKS

            if store.client.get(NETWORKS + name) is not None:
                from netkit.errors import Conflict

                raise Conflict(f"overlay network '{name}' already exists")
            ctx.printed.append(f"# etcd {ctx.config.cluster_store}: put /netkit/networks/{name} (VNI, subnet, gateway)")
            return None
        return store.create_network(name, subnet, gateway)
    finally:
        store.close()


def find_network(ctx: Context, name: str) -> StoreNetwork | None:
    """The overlay network of that name in the store, or None (also when there is no cluster)."""
    if not enabled(ctx):
        return None
    store = _store(ctx)
    try:
        from netkit.cluster.store import NETWORKS

        kv = store.client.get(NETWORKS + name)
    finally:
        store.close()
    if kv is None:
        return None
    import json

    from netkit.cluster.store import Network as StoreNetwork

    return StoreNetwork(**json.loads(kv.value))


def global_name_taken(ctx: Context, name: str) -> bool:
    """Whether a local network's name is an overlay network's; a store that is down does not
    stop single-host networks (the clash, if any, shows when the store is back)."""
    from netkit.cluster import etcd

    try:
        return find_network(ctx, name) is not None
    except etcd.StoreUnavailable:
        return False


def remove_network(ctx: Context, name: str) -> StoreNetwork:
    store = _store(ctx)
    try:
        return store.remove_network(name)
    finally:
        store.close()


def network_id(name: str, vni: int) -> str:
    """The same on every host: derived from what the store holds."""
    import hashlib

    return hashlib.sha256(f"overlay/{name}/{vni}".encode()).hexdigest()


def reference(ctx: Context, snet: StoreNetwork) -> Network:
    """The local row for a store network: the host's bridge for it is ovbrVNI."""
    import time

    return Network(name=snet.name, id=network_id(snet.name, snet.vni), bridge=f"ovbr{snet.vni}",
                   subnet=snet.subnet, gateway=snet.gateway, mtu=snet.mtu, iptables=ctx.config.iptables,
                   created=time.time(), driver=OVERLAY, vni=snet.vni)


def global_views(ctx: Context) -> list[dict]:
    """Every overlay network in the store, as `network inspect` shows them, with every
    container on it and the host it runs on."""
    store = _store(ctx)
    try:
        view = store.snapshot()
    finally:
        store.close()
    out = []
    for name, n in sorted(view.networks.items()):
        containers = {ep.container: {"ip": ep.ip, "prefix_length": int(n.subnet.split("/")[1]), "mac": ep.mac,
                                     "host": ep.host, "host_alive": ep.host in view.hosts}
                      for (net, _), ep in sorted(view.endpoints.items()) if net == name}
        out.append({"name": name, "id": network_id(name, n.vni), "driver": OVERLAY, "scope": GLOBAL,
                    "bridge": f"ovbr{n.vni}", "vni": n.vni, "subnet": n.subnet, "gateway": n.gateway,
                    "ip_range": None, "mtu": n.mtu, "internal": False, "icc": True, "masquerade": True,
                    "adopted_bridge": False, "default": False, "iptables": True, "containers": containers})
    return out


# ---- endpoints ----------------------------------------------------------------------------

def allocate(ctx: Context, net: Network, container: str, ip: str | None, aliases: list[str]) -> StoreEndpoint:
    """Take an address in the store (one cluster-wide transaction); released again if the
    change fails before it commits (see release_pending)."""
    m = member(ctx)
    store = _store(ctx)
    try:
        if ctx.dry_run:
            from ipaddress import IPv4Address

            from netkit import ipam
            from netkit.cluster.store import Endpoint as StoreEndpoint

            layout = ipam.plan_layout(ipam.parse_subnet(net.subnet), net.gateway, None)
            used = {IPv4Address(e.ip) for e in store.endpoints(net.name)}
            chosen = ip or str(ipam.allocate(layout, used))
            return StoreEndpoint(net.name, container, m.host, m.advertise, chosen, naming.mac_for_ip(chosen))
        ep = store.add_endpoint(net.name, container, m.host, m.advertise, ip, tuple(aliases))
    finally:
        store.close()
    _pending.setdefault(ctx, []).append((net.name, container))
    return ep


def release_pending(ctx: Context) -> None:
    """After a failed change: give back the addresses it took in the store."""
    taken = _pending.pop(ctx, [])
    if not taken:
        return
    store = _store(ctx)
    try:
        for network, container in taken:
            store.remove_endpoint(network, container)
    finally:
        store.close()


def committed(ctx: Context) -> None:
    _pending.pop(ctx, None)


def release(ctx: Context, network: str, container: str) -> None:
    """Give an endpoint's address back (container rm, disconnect): fails with the store's one
    line when it is unreachable, before anything local changed."""
    if ctx.dry_run:
        ctx.printed.append(f"# etcd {ctx.config.cluster_store}: delete /netkit/endpoints/{network}/{container}")
        return
    store = _store(ctx)
    try:
        store.remove_endpoint(network, container)
    finally:
        store.close()


def start_agent(ctx: Context) -> bool:
    """The host agent runs after this; True when this call started it (it has then programmed
    every local VXLAN device from a fresh read before returning)."""
    from netkit.cluster import agentctl, overlay

    was = agentctl.running_pid(overlay.run_dir())
    return overlay.ensure_agent(member(ctx)) != was


def program_now(ctx: Context, net: Network) -> None:
    """Program the host's VXLAN device for `net` from a fresh read, so that remote containers are
    reachable when the command returns (the agent keeps it so afterwards)."""
    from netkit.cluster import overlay, plane, programming

    store = _store(ctx)
    try:
        view = store.snapshot()
    finally:
        store.close()
    want = plane.desired(view, net.name, socket.gethostname())
    # Through the revision lock: a read older than the agent's last programming of the device
    # would delete entries it added since (cluster/programming.py); the agent has them then.
    programming.program_at(overlay.run_dir(), net.vni, view.revision, want.fdb, want.neigh)


def dns_records(ctx: Context, net: Network) -> dict[str, list[str]] | None:
    """name -> addresses for every container on the overlay network, wherever it runs (hosts
    alive); None when the store cannot be read (the caller keeps the local names)."""
    from netkit.cluster import etcd
    from netkit.cluster.dnsnames import records

    store = _store(ctx)
    try:
        view = store.snapshot()
    except etcd.StoreUnavailable:
        return None
    finally:
        store.close()
    return records(view, net.name, socket.gethostname())


def where(ctx: Context, container: str) -> list[dict]:
    """A container this host does not know: its endpoints in the store (network, host, ip)."""
    if not enabled(ctx):
        return []
    store = _store(ctx)
    try:
        eps = [ep for ep in store.endpoints() if ep.container == container]
    finally:
        store.close()
    return [{"network": ep.network, "host": ep.host, "host_ip": ep.host_ip, "ip": ep.ip, "mac": ep.mac,
             "aliases": list(ep.aliases)} for ep in eps]


def remote_view(ctx: Context, name: str) -> dict:
    """`container inspect` of a container on another host, from the store."""
    eps = where(ctx, name)
    if not eps:
        raise NotFound(f"container '{name}' not found; see `netkit container ls`")
    return {"name": name, "host": eps[0]["host"], "local": False, "mode": "bridge",
            "endpoints": [{"network": e["network"], "ip": e["ip"], "mac": e["mac"], "aliases": e["aliases"],
                           "host": e["host"], "host_ip": e["host_ip"]} for e in eps]}


def this_host() -> str:
    return socket.gethostname()


def check(ctx: Context) -> list[str]:
    from netkit.cluster import overlay

    return overlay.check(member(ctx))
