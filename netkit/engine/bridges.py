"""Plain Linux bridges, as the course notes make them with brctl: create, remove, show, macs."""
from __future__ import annotations

from typing import TYPE_CHECKING

from netkit import ipam, naming, ops
from netkit.errors import Conflict, NotFound, UserError

if TYPE_CHECKING:
    from netkit.engine.context import Context


def create(ctx: Context, name: str, cidr: str | None = None, mtu: int | None = None) -> None:
    ctx.require_root()
    naming.validate_ifname(name, "bridge")
    iface = ipam.parse_interface_cidr(cidr, "--cidr") if cidr else None
    naming.validate_mtu(mtu)
    with ctx.change():
        if ctx.probe.link_exists(name):
            raise Conflict(f"interface '{name}' already exists")
        if iface is not None:
            # Its connected route would steal the traffic of a network with an overlapping subnet.
            ipam.check_overlap(iface.network, {n.name: ipam.parse_subnet(n.subnet) for n in ctx.store.networks()})
        ctx.apply([ops.BridgeAdd(name, mtu or 1500, cidr, naming.bridge_mac(name))])
        ctx.store.put_bridge(name, {"cidr": cidr, "mtu": mtu or 1500})


def remove(ctx: Context, name: str) -> None:
    ctx.require_root()
    with ctx.change():
        owner = next((n.name for n in ctx.store.networks() if n.bridge == name), None)
        if owner:
            raise Conflict(f"bridge '{name}' belongs to network '{owner}'; use `netkit network rm {owner}`")
        if not ctx.probe.link_exists(name):
            if ctx.store.bridge(name) is None:
                raise NotFound(f"bridge '{name}' not found; see `netkit bridge show`")
            ctx.store.delete_bridge(name)  # deleted behind netkit's back: forget it
            return
        if ctx.store.bridge(name) is None:
            info = ctx.probe.link_info(name)
            if info is None or info["kind"] != "bridge":
                raise UserError(f"interface '{name}' is not a bridge")
        ctx.remove([ops.BridgeDel(name)])
        ctx.store.delete_bridge(name)


def show() -> list[dict]:
    from netkit.kernel.links import bridges

    return bridges()


def macs(name: str) -> list[dict]:
    from netkit.kernel import links
    from netkit.kernel.nsutil import link_exists

    info = links.link_info(name) if link_exists(name) else None
    if not info or info["kind"] != "bridge":
        raise NotFound(f"bridge '{name}' not found; see `netkit bridge show`")
    return links.bridge_macs(name)
