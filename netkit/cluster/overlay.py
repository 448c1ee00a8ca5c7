"""Overlay use cases on one host: networks in the cluster store, and containers on them with a
veth into the network's local bridge, whose VXLAN device the host agent programs.

Phase 1 of docs/multihost.md: these run beside the engine (through `python -m netkit.cluster`),
not yet through `netkit network/container create`, and keep no local state: the store says which
containers a host has, the kernel (netns, veth) holds the rest.
"""
from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass

from netkit import config as config_mod
from netkit.cluster.store import ClusterStore, Endpoint, Network
from netkit.errors import Conflict, UserError


@dataclass(frozen=True)
class Membership:
    """This host in the cluster: the store's URL, its name and its underlay address."""

    url: str
    host: str
    advertise: str


def membership(cfg=None) -> Membership:
    cfg = cfg or config_mod.load()
    if not cfg.cluster_store:
        raise UserError(f"this host is in no cluster: set cluster_store and cluster_advertise in {cfg.source} "
                        "(e.g. in `netkit sandbox --hosts 3` they are set for you)")
    return Membership(cfg.cluster_store, socket.gethostname(), cfg.cluster_advertise)


def run_dir() -> str:
    from netkit import state

    return state.run_dir()


def ensure_agent(member: Membership) -> int:
    import os

    from netkit.cluster import agentctl

    # NETKIT_CLUSTER_TTL: a shorter lease for tests and labs that watch a host die.
    ttl = int(os.environ["NETKIT_CLUSTER_TTL"]) if os.environ.get("NETKIT_CLUSTER_TTL", "").isdigit() else None
    return agentctl.ensure_running(member.url, member.host, member.advertise, run_dir(), ttl)


def create_network(member: Membership, name: str, subnet: str | None = None, gateway: str | None = None) -> Network:
    store = ClusterStore(member.url)
    try:
        return store.create_network(name, subnet, gateway)
    finally:
        store.close()


def remove_network(member: Membership, name: str) -> Network:
    from netkit.kernel import vxlan

    store = ClusterStore(member.url)
    try:
        net = store.remove_network(name)
    finally:
        store.close()
    vxlan.remove(net.vni)
    return net


def veth_for(container: str, network: str) -> str:
    return "veth" + hashlib.sha256(f"{container}/{network}".encode()).hexdigest()[:7]


def create_container(member: Membership, name: str, network: str, ip: str | None = None) -> Endpoint:
    """Address from the store (one transaction), then the kernel: the network's bridge and VXLAN
    device if this is the host's first container on it, the netns, the veth. A kernel failure
    takes the endpoint out of the store again."""
    from netkit import ops
    from netkit.kernel import netns, vxlan
    from netkit.kernel.executor import kernel_executor

    if netns.exists(name):
        raise Conflict(f"a container (netns) named '{name}' already exists on this host")
    ensure_agent(member)
    store = ClusterStore(member.url)
    try:
        net = store.network(network)
        ep = store.add_endpoint(network, name, member.host, member.advertise, ip)
        try:
            prefixlen = int(net.subnet.split("/")[1])
            vxlan.ensure(net.vni, member.advertise, net.gateway, prefixlen, net.mtu)
            dev = vxlan.devices(net.vni)
            plan = [ops.NetnsAdd(name),
                    ops.EndpointAdd(name, veth_for(name, network), "eth0", dev.bridge, net.mtu, ep.mac, ep.ip,
                                    prefixlen, net.gateway)]
            executor = kernel_executor()
            try:
                executor.apply(plan)
            finally:
                executor.close()
        except BaseException:
            store.remove_endpoint(network, name)
            raise
        # The agent may have seen this endpoint's event before the device existed: program the
        # remote entries now, so the container reaches the others when the command returns.
        # Through the revision lock: never undo what the agent programmed from a newer event.
        from netkit.cluster import plane, programming

        view = store.snapshot()
        want = plane.desired(view, network, member.host)
        programming.program_at(run_dir(), net.vni, view.revision, want.fdb, want.neigh)
        return ep
    finally:
        store.close()


def remove_container(member: Membership, name: str) -> list[Endpoint]:
    """Take the container's endpoints out of the store, then its netns and veths out of the kernel."""
    from netkit.kernel import netns

    store = ClusterStore(member.url)
    try:
        mine = [ep for ep in store.endpoints() if ep.container == name]
        if not mine:
            raise UserError(f"no overlay container '{name}' in the cluster store")
        elsewhere = [ep for ep in mine if ep.host != member.host]
        if elsewhere:
            raise UserError(f"container '{name}' runs on host {elsewhere[0].host}: remove it there "
                            f"(netkit sandbox on {elsewhere[0].host} -- ...)")
        for ep in mine:
            store.remove_endpoint(ep.network, name)
    finally:
        store.close()
    if netns.exists(name):
        netns.delete(name)  # its veth ends die with the netns
    return mine


def status(member: Membership) -> dict:
    from netkit.cluster import agentctl

    store = ClusterStore(member.url)
    try:
        view = store.snapshot()
    finally:
        store.close()
    return {"host": member.host, "advertise": member.advertise, "store": member.url,
            "agent_pid": agentctl.running_pid(run_dir()), "revision": view.revision,
            "hosts": view.hosts, "networks": [n.__dict__ for n in view.networks.values()],
            "endpoints": [e.__dict__ | {"aliases": list(e.aliases)} for e in view.endpoints.values()]}



def check(member: Membership) -> list[str]:
    """What this host's kernel lacks or has too much of, against the store: one line each.
    Empty when they agree (the basis of `doctor`'s overlay checks)."""
    from netkit.cluster import plane
    from netkit.kernel import netns, vxlan

    store = ClusterStore(member.url)
    try:
        view = store.snapshot()
    finally:
        store.close()
    problems = []
    local = vxlan.local_vnis()
    for (network, container), ep in sorted(view.endpoints.items()):
        net = view.networks.get(network)
        if ep.host != member.host or net is None:
            continue
        if not netns.exists(container):
            problems.append(f"container {container} ({ep.ip} on {network}) is in the store but has no netns here")
        if net.vni not in local:
            problems.append(f"network {network} has container {container} here but no VXLAN device vxlan{net.vni}")
    for name, net in sorted(view.networks.items()):
        have = vxlan.read(net.vni) if net.vni in local else None
        if have is None:
            continue
        want = plane.desired(view, name, member.host)
        for mac, dst in sorted(want.fdb - have[0]):
            problems.append(f"network {name}: FDB entry {mac} -> {dst} missing on vxlan{net.vni}")
        for mac, dst in sorted(have[0] - want.fdb):
            problems.append(f"network {name}: stray FDB entry {mac} -> {dst} on vxlan{net.vni}")
        for ip, mac in sorted(want.neigh - have[1]):
            problems.append(f"network {name}: neighbour entry {ip} -> {mac} missing on vxlan{net.vni}")
        for ip, mac in sorted(have[1] - want.neigh):
            problems.append(f"network {name}: stray neighbour entry {ip} -> {mac} on vxlan{net.vni}")
    return problems
