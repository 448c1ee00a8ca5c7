"""Networks: create (own or adopted bridge), remove, list, inspect, and the default network."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netkit import ipam, naming, ops
from netkit.engine import lookup
from netkit.errors import Conflict, NotFound, UserError
from netkit.model import Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

DEFAULT_NETWORK = "bridge"
# Names that --net gives another meaning, as in Docker.
RESERVED = {"bridge": "the default network", "host": "host mode", "none": "none mode", "default": "the default network"}


@dataclass
class NetworkRequest:
    name: str
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    bridge: str | None = None
    mtu: int | None = None
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    driver: str = "bridge"


def _bridge_addresses(ctx: Context, name: str) -> list[str]:
    info = ctx.probe.link_info(name)
    if info is None:
        return []
    if info["kind"] != "bridge":
        raise UserError(f"interface '{name}' exists but is a {info['kind'] or 'plain'} interface, not a bridge")
    return info["ipv4"]


def _taken_subnets(ctx: Context, exclude: str | None = None) -> dict[str, ipam.IPv4Network]:
    return {n.name: ipam.parse_subnet(n.subnet) for n in ctx.store.networks() if n.name != exclude}


def _check_host_routes(ctx: Context, subnet: ipam.IPv4Network, own: list[str]) -> None:
    """An explicit subnet must not overlap a route the host already has (its uplink's, a VPN's):
    the bridge's connected route would steal that traffic (128.0.0.0/1 took half of IPv4).
    Routes of an adopted bridge's own addresses do not count."""
    mine = {ipam.parse_interface_cidr(a).network for a in own}
    for route in ctx.probe.host_routes():
        if route not in mine and subnet.overlaps(route):
            raise Conflict(f"subnet {subnet} overlaps the host's route to {route}; choose another --subnet")


def plan_network(ctx: Context, req: NetworkRequest, default: bool = False) -> tuple[Network, list]:
    """Validate a request against state and kernel; return the Network and its kernel plan."""
    naming.validate_object_name("network", req.name)
    for option, value in (("--subnet", req.subnet), ("--gateway", req.gateway), ("--ip-range", req.ip_range),
                          ("--bridge", req.bridge)):
        if value is not None and not value.strip():  # not "pick one for me"
            raise UserError(f"{option} is empty; give a value or leave the option out")
    if req.name in RESERVED and not default:
        raise UserError(f"network name '{req.name}' is reserved: `--net {req.name}` means {RESERVED[req.name]}")
    if req.driver != "bridge":
        raise UserError(f"unknown network driver '{req.driver}': only 'bridge' is supported")
    if ctx.store.network(req.name):
        raise Conflict(f"network '{req.name}' already exists")
    naming.validate_mtu(req.mtu)

    if req.bridge:
        bridge = naming.validate_ifname(req.bridge, "bridge")
    else:
        bridge = naming.bridge_name_for(req.name)
    owner = next((n.name for n in ctx.store.networks() if n.bridge == bridge), None)
    if owner:
        raise Conflict(f"bridge '{bridge}' already belongs to network '{owner}'")
    adopted = ctx.probe.link_exists(bridge)
    if adopted and not req.bridge and not default:
        raise Conflict(f"interface '{bridge}' already exists; adopt it with --bridge {bridge} or choose another name")
    existing_addrs = _bridge_addresses(ctx, bridge) if adopted else []

    others = _taken_subnets(ctx)
    gateway = req.gateway
    if req.subnet:
        subnet = ipam.parse_subnet(req.subnet)
        ipam.check_overlap(subnet, others)
        _check_host_routes(ctx, subnet, existing_addrs)
    elif existing_addrs:
        # Like dockerd -b: an adopted bridge that already has an address defines the network.
        iface = ipam.parse_interface_cidr(existing_addrs[0])
        subnet, gateway = iface.network, gateway or str(iface.ip)
        ipam.check_overlap(subnet, others)
    else:
        taken = list(others.values()) + ctx.probe.host_routes()
        subnet = ipam.pick_free_subnet(ctx.config.default_address_pools, taken)
    layout = ipam.plan_layout(subnet, gateway, req.ip_range)

    net = Network(
        name=req.name, id=naming.new_id(req.name), bridge=bridge, subnet=str(layout.subnet),
        gateway=str(layout.gateway), ip_range=str(layout.ip_range) if layout.ip_range else None,
        mtu=req.mtu or ctx.config.mtu, internal=req.internal, icc=req.icc, masquerade=req.masquerade,
        adopted=adopted, default=default, iptables=ctx.config.iptables, created=time.time(),
    )
    address = f"{net.gateway}/{layout.subnet.prefixlen}"
    if adopted:
        net.address_added = address not in existing_addrs
        plan = [ops.AddrAdd(bridge, address)] if net.address_added else []
    else:
        plan = [ops.BridgeAdd(bridge, net.mtu, address, naming.bridge_mac(bridge))]
    return net, plan


def create(ctx: Context, req: NetworkRequest) -> Network:
    ctx.require_root()
    with ctx.change():
        net, plan = plan_network(ctx, req)
        ctx.apply(plan)
        ctx.store.put_network(net)
    return net


def default_request(ctx: Context) -> tuple[NetworkRequest, bool]:
    cfg = ctx.config
    req = NetworkRequest(name=DEFAULT_NETWORK, mtu=cfg.mtu, icc=cfg.icc, masquerade=cfg.ip_masq)
    if cfg.bip:
        iface = ipam.parse_interface_cidr(cfg.bip)
        req.subnet, req.gateway = str(iface.network), str(iface.ip)
    req.bridge = cfg.bridge
    return req, cfg.bridge != "netkit0"


def get(ctx: Context, name: str) -> Network:
    """A network by name; the default `bridge` network is made on first use (like docker0)."""
    net = ctx.store.network(name)
    if net:
        return net
    if name != DEFAULT_NETWORK:
        raise NotFound(f"network '{name}' not found; see `netkit network ls`")
    req, must_exist = default_request(ctx)
    if must_exist and not ctx.probe.link_exists(req.bridge):
        raise UserError(
            f"{ctx.config.source}: bridge '{req.bridge}' does not exist; create it first "
            f"(ip link add {req.bridge} type bridge) or remove the 'bridge' key"
        )
    net, plan = plan_network(ctx, req, default=True)
    ctx.apply(plan)
    ctx.store.put_network(net)
    ctx.network_changed()
    return net


def remove(ctx: Context, name: str) -> Network:
    ctx.require_root()
    with ctx.change():
        net = lookup.network(ctx, name)
        members = ctx.store.members(name)
        if members:
            raise Conflict(
                f"network '{name}' still has containers: {', '.join(members)}; "
                "remove them or `netkit network disconnect` them first"
            )
        if net.adopted:
            # Like dockerd -b: the bridge stays; only an address netkit added goes.
            ctx.remove([ops.AddrDel(net.bridge, f"{net.gateway}/{net.prefixlen}")] if net.address_added else [])
        else:
            ctx.remove([ops.BridgeDel(net.bridge)])
        ctx.store.delete_network(name)
        from netkit.engine import names_sync

        ctx.after(lambda ctx: names_sync.stop_network(ctx, net))
    return net


def list_views(ctx: Context) -> list[dict]:
    return [inspect(ctx, n.name) for n in ctx.store.networks()]


def inspect(ctx: Context, name: str) -> dict:
    net = lookup.network(ctx, name)
    containers = {}
    for cname in ctx.store.members(name):
        c = ctx.store.container(cname)
        ep = c.endpoint(name) if c else None
        if ep:
            containers[cname] = {"ip": ep.ip, "prefix_length": ep.prefixlen, "mac": ep.mac,
                                 "interface": ep.ifname, "host_interface": ep.host_ifname}
    return {
        "name": net.name, "id": net.id, "driver": "bridge", "bridge": net.bridge, "subnet": net.subnet,
        "gateway": net.gateway, "ip_range": net.ip_range, "mtu": net.mtu, "internal": net.internal,
        "icc": net.icc, "masquerade": net.masquerade, "adopted_bridge": net.adopted, "default": net.default,
        "iptables": net.iptables, "containers": containers,
    }
