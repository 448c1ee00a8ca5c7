"""Networks: create (own or adopted bridge), remove, list, inspect, and the default network."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from netkit import config as config_mod
from netkit import ipam, naming, ops
from netkit.engine import lookup, overlay
from netkit.errors import Conflict, EnvError, NotFound, UserError
from netkit.model import Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

DEFAULT_NETWORK = "bridge"
# Names that --net gives another meaning, as in Docker.
BUILTIN = ("host", "none")  # always there, nothing to make: `--net host` and `--net none`
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
    options: list[str] = field(default_factory=list)  # -o KEY=VALUE: bridge options, or macvlan/ipvlan parent=IF
    anti_spoofing: bool = True
    labels: dict[str, str] = field(default_factory=dict)


def _check_bridged_filtering(ctx: Context, req: NetworkRequest) -> None:
    """icc off is a FORWARD rule on bridged frames, which reach iptables only through br_netfilter:
    without it the network would silently not isolate, so refuse (Docker loads the module)."""
    from netkit.engine import reconcile

    if not req.icc and ctx.config.iptables and ctx.probe.sysctl(reconcile.BRIDGE_NF_CALL) is None:
        what = "--no-icc" if req.name != DEFAULT_NETWORK else f"{ctx.config.source}: \"icc\": false"
        raise EnvError(f"{what} needs br_netfilter (bridged frames through iptables), which is not loaded: "
                       "run `modprobe br_netfilter` and try again")

DRIVERS = ("bridge", "overlay", "macvlan", "ipvlan")
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
    if req.driver not in DRIVERS:
        raise UserError(f"unknown network driver '{req.driver}': use one of {', '.join(DRIVERS)}")
    if ctx.store.network(req.name):
        raise Conflict(f"network '{req.name}' already exists")
    if req.driver in ("macvlan", "ipvlan"):
        naming.validate_mtu(req.mtu)
        return _plan_lower(ctx, req)  # -o parent=IF
    _merge_bridge_options(req)  # -o com.docker.network.bridge.* and driver.mtu
    naming.validate_mtu(req.mtu)
    _check_bridged_filtering(ctx, req)

    net_id = naming.builtin_id(DEFAULT_NETWORK) if default else naming.new_id(req.name)
    if req.bridge:
        bridge = naming.validate_ifname(req.bridge, "bridge")
    else:
        bridge = naming.bridge_name_for(req.name, net_id)
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
        reserved = [] if default else _reserved_for_default(ctx, taken)
        try:
            subnet = ipam.pick_free_subnet(ctx.config.default_address_pools, taken + reserved)
        except Conflict:
            if not reserved:
                raise
            subnet = ipam.pick_free_subnet(ctx.config.default_address_pools, taken)  # pools too small to keep it
    layout = ipam.plan_layout(subnet, gateway, req.ip_range)

    net = Network(
        name=req.name, id=net_id, bridge=bridge, subnet=str(layout.subnet),
        gateway=str(layout.gateway), ip_range=str(layout.ip_range) if layout.ip_range else None,
        mtu=req.mtu or ctx.config.mtu, internal=req.internal, icc=req.icc, masquerade=req.masquerade,
        adopted=adopted, default=default, iptables=ctx.config.iptables, anti_spoofing=req.anti_spoofing,
        created=time.time(), labels=dict(req.labels),
    )
    address = f"{net.gateway}/{layout.subnet.prefixlen}"
    if adopted:
        net.address_added = address not in existing_addrs
        plan = [ops.AddrAdd(bridge, address)] if net.address_added else []
    else:
        plan = [ops.BridgeAdd(bridge, net.mtu, address, naming.bridge_mac(bridge))]
    return net, plan


def _plan_lower(ctx: Context, req: NetworkRequest) -> tuple[Network, list]:
    """macvlan/ipvlan: containers hang off the parent interface; no bridge and, as with Docker,
    no firewall rules (iptables=False keeps the network out of the rule set)."""
    from netkit import lowerdev

    opts = lowerdev.parse_options(req.driver, req.options)
    if req.bridge or req.internal:
        raise UserError(f"--bridge and --internal do not apply to driver {req.driver}")
    if not ctx.probe.link_exists(opts.parent):
        raise UserError(f"parent interface '{opts.parent}' does not exist on this host (-o parent=IF)")
    others = _taken_subnets(ctx)
    if req.subnet:
        subnet = ipam.parse_subnet(req.subnet)
        ipam.check_overlap(subnet, others)
    else:
        subnet = ipam.pick_free_subnet(ctx.config.default_address_pools, list(others.values()) + ctx.probe.host_routes())
    layout = ipam.plan_layout(subnet, req.gateway, req.ip_range)
    net = Network(name=req.name, id=naming.new_id(req.name), bridge="", subnet=str(layout.subnet),
                  gateway=str(layout.gateway), ip_range=str(layout.ip_range) if layout.ip_range else None,
                  mtu=req.mtu or ctx.config.mtu, iptables=False, masquerade=False, created=time.time(),
                  driver=req.driver, parent=opts.parent, driver_mode=opts.mode)
    return net, []


def _create_overlay(ctx: Context, req: NetworkRequest) -> Network:
    """The network, its VNI and IPAM go to the cluster store; no local row or device until a
    container of this host joins it (see get())."""
    if req.bridge or req.ip_range or req.internal or req.options or req.mtu:
        raise UserError("--bridge, --ip-range, --internal, --mtu and -o do not apply to overlay networks "
                        "(bridge ovbrVNI and MTU 1450 on every host)")
    naming.validate_object_name("network", req.name)
    if req.name in RESERVED:
        raise UserError(f"network name '{req.name}' is reserved: `--net {req.name}` means {RESERVED[req.name]}")
    if ctx.store.network(req.name):
        raise Conflict(f"network '{req.name}' already exists on this host")
    snet = overlay.create_network(ctx, req.name, req.subnet, req.gateway)
    if snet is None:  # dry run
        return Network(name=req.name, id="", bridge="", subnet=req.subnet or "", gateway=req.gateway or "",
                       driver=overlay.OVERLAY)
    return overlay.reference(ctx, snet)


def _merge_bridge_options(req: NetworkRequest) -> None:
    """Fold `-o com.docker.network.bridge.*` into the request; a flag saying otherwise is refused."""
    if not req.options:
        return
    from netkit import bridgeopts

    opts = bridgeopts.parse(req.options)
    pairs = [("bridge", "--bridge", opts.bridge, None), ("mtu", "--mtu", opts.mtu, None),
             ("icc", "--no-icc", opts.icc, True), ("masquerade", "--no-masquerade", opts.masquerade, True)]
    for attr, flag, value, unset in pairs:
        if value is None:
            continue
        current = getattr(req, attr)
        if current is not unset and current != value:
            raise UserError(f"{flag} and -o disagree ({current} vs {value}); give one of them")
        setattr(req, attr, value)


def _reserved_for_default(ctx: Context, taken: list) -> list:
    """The subnet the default `bridge` network will take when it is made (172.17.0.0/16 with
    the default pools): kept free for it, as dockerd's docker0 always holds it."""
    if ctx.store.network(DEFAULT_NETWORK):
        return []
    if ctx.config.bip:
        return [ipam.parse_interface_cidr(ctx.config.bip).network]
    if ctx.config.bridge != config_mod.DEFAULT_BRIDGE:
        return []  # an adopted bridge brings its own addresses
    try:
        return [ipam.pick_free_subnet(ctx.config.default_address_pools, taken)]
    except Conflict:
        return []


def create(ctx: Context, req: NetworkRequest) -> Network:
    ctx.require_root()
    if req.driver == overlay.OVERLAY:
        overlay.require(ctx)
        return _create_overlay(ctx, req)
    if overlay.enabled(ctx) and not ctx.dry_run and overlay.global_name_taken(ctx, req.name):
        raise Conflict(f"network '{req.name}' already exists (an overlay network in the cluster store)")
    with ctx.change():
        net, plan = plan_network(ctx, req)
        ctx.apply(plan)
        ctx.store.put_network(net)
    return net


def default_request(ctx: Context) -> tuple[NetworkRequest, bool]:
    cfg = ctx.config
    req = NetworkRequest(name=DEFAULT_NETWORK, mtu=cfg.mtu, icc=cfg.icc, masquerade=cfg.ip_masq,
                         anti_spoofing=cfg.anti_spoofing)
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
    if name not in RESERVED and (snet := overlay.find_network(ctx, name)) is not None:
        # This host's first container on an overlay network: its local reference row, so that
        # the rules, DNS and doctor see the host's bridge for it; removed with the last one.
        net = overlay.reference(ctx, snet)
        ctx.store.put_network(net)
        ctx.network_changed()
        return net
    if name != DEFAULT_NETWORK:
        return lookup.network(ctx, name)  # an ID or a unique prefix of one, or NotFound
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


def _remove_overlay(ctx: Context, name: str):
    local = ctx.store.network(name)
    if local is not None and ctx.store.members(name):
        raise Conflict(f"network '{name}' still has containers: {', '.join(ctx.store.members(name))}; "
                       "remove them first")
    if ctx.dry_run:
        ctx.printed.append(f"# etcd {ctx.config.cluster_store}: delete /netkit/networks/{name}")
        return local
    snet = overlay.remove_network(ctx, name)  # refused while any host has a container on it
    with ctx.change():
        if ctx.store.network(name) is not None:
            ctx.store.delete_network(name)
            ctx.network_changed()
        ctx.remove([ops.OverlayDel(snet.vni)])
    return overlay.reference(ctx, snet)


def remove(ctx: Context, name: str) -> Network:
    if name in BUILTIN:
        raise UserError(f"{name} is a pre-defined network and cannot be removed")
    ctx.require_root()
    local = ctx.store.network(name)
    if (local is not None and local.driver == overlay.OVERLAY) or \
            (local is None and overlay.find_network(ctx, name) is not None):
        return _remove_overlay(ctx, name)
    with ctx.change():
        net = lookup.network(ctx, name)
        name = net.name
        members = ctx.store.members(name)
        if members:
            raise Conflict(
                f"network '{name}' still has containers: {', '.join(members)}; "
                "remove them or `netkit network disconnect` them first"
            )
        if not net.bridge:
            pass  # macvlan/ipvlan: nothing on the host
        elif net.adopted:
            # Like dockerd -b: the bridge stays; only an address netkit added goes.
            ctx.remove([ops.AddrDel(net.bridge, f"{net.gateway}/{net.prefixlen}")] if net.address_added else [])
        else:
            ctx.remove([ops.BridgeDel(net.bridge)])
        ctx.store.delete_network(name)
        from netkit.engine import names_sync

        ctx.after(lambda ctx: names_sync.stop_network(ctx, net))
    return net


def prune(ctx: Context) -> list[Network]:
    """Remove every network without containers but the default one (docker network prune)."""
    ctx.require_root()
    idle = [n.name for n in ctx.store.networks() if not n.default and not ctx.store.members(n.name)]
    return [remove(ctx, name) for name in idle]


def list_views(ctx: Context) -> list[dict]:
    """Local networks, then (with a cluster store) every overlay network of the cluster, scope
    `global`. A store that cannot be read leaves the overlays out, with one line on stderr."""
    views = [inspect(ctx, n.name) for n in ctx.store.networks() if n.driver != overlay.OVERLAY]
    if overlay.enabled(ctx):
        from netkit.cluster import etcd

        try:
            views += overlay.global_views(ctx)
        except etcd.StoreUnavailable as err:
            import sys

            print(f"warning: {err}", file=sys.stderr)
            views += [inspect(ctx, n.name) for n in ctx.store.networks() if n.driver == overlay.OVERLAY]
    return views


ALWAYS = (DEFAULT_NETWORK,) + BUILTIN  # the networks Docker always has; `network ls` lists them


def planned_default(ctx: Context) -> Network:
    """The default network as netkit will make it on first use (config: bip, mtu, icc, ip_masq,
    bridge), planned only: no bridge, no rule, nothing stored. Its Created is 0: it has not been."""
    req, _ = default_request(ctx)
    net, _ = plan_network(ctx, req, default=True)
    return replace(net, created=0.0)


def resolve_always(ctx: Context, ref: str) -> tuple[str, Network | None]:
    """What `network inspect REF` shows, by name, full ID or unique ID prefix: a stored network
    (name, net); one of Docker's three that the store does not hold: ("bridge", its planned
    shape) before the first container made it, ("host"/"none", None). NotFound otherwise."""
    net = ctx.store.network(ref)
    if net is not None:
        return net.name, net
    if ref not in ALWAYS:
        try:
            net = lookup.network(ctx, ref)
            return net.name, net
        except NotFound:
            unmade = [n for n in ALWAYS if ctx.store.network(n) is None]
            matches = lookup.by_id_prefix([Network(name=n, id=naming.builtin_id(n), bridge="", subnet="", gateway="")
                                           for n in unmade], ref)
            if len(matches) != 1:
                raise
            ref = matches[0].name
    return ref, planned_default(ctx) if ref == DEFAULT_NETWORK else None


def inspect(ctx: Context, name: str) -> dict:
    net = ctx.store.network(name)
    if (net is None or net.driver == overlay.OVERLAY) and overlay.enabled(ctx):
        found = [v for v in overlay.global_views(ctx) if v["name"] == name]
        if found:
            return found[0]
    name, net = resolve_always(ctx, name)
    if net is None:  # host or none: nothing to make; the containers in that mode
        return {"name": name, "id": naming.builtin_id(name), "driver": "null" if name == "none" else name,
                "scope": "local", "containers": {c.name: {} for c in ctx.store.containers()
                                                 if c.mode == name and not c.shares}}
    if ctx.store.network(name) is None:  # the default network, not made yet: say so
        return {"name": name, "id": net.id, "driver": net.driver, "scope": "local", "exists": False,
                "note": "made on the first container that uses it; these are the settings it will get",
                "bridge": net.bridge, "subnet": net.subnet, "gateway": net.gateway, "mtu": net.mtu,
                "icc": net.icc, "masquerade": net.masquerade, "default": True, "containers": {}}
    name = net.name
    containers = {}
    for cname in ctx.store.members(name):
        c = ctx.store.container(cname)
        ep = c.endpoint(name) if c else None
        if ep:
            containers[cname] = {"ip": ep.ip, "prefix_length": ep.prefixlen, "mac": ep.mac,
                                 "interface": ep.ifname, "host_interface": ep.host_ifname}
    extra = {"parent": net.parent, "mode": net.driver_mode} if net.parent else {}
    if net.driver == overlay.OVERLAY:
        extra = {"vni": net.vni}
    return extra | {
        "name": net.name, "id": net.id, "driver": net.driver, "scope": "global" if net.vni else "local",
        "bridge": net.bridge, "subnet": net.subnet,
        "gateway": net.gateway, "ip_range": net.ip_range, "mtu": net.mtu, "internal": net.internal,
        "icc": net.icc, "masquerade": net.masquerade, "adopted_bridge": net.adopted, "default": net.default,
        "iptables": net.iptables, "anti_spoofing": net.anti_spoofing, "containers": containers,
    }
