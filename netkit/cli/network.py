"""`netkit network ...`: create, ls, inspect, rm, connect, disconnect."""
from __future__ import annotations

from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, context, group

net_app = group("network", "Networks: a bridge, a subnet, and the containers on it (docker network).")


@net_app.command("create")
def create(
    name: str,
    subnet: Optional[str] = typer.Option(None, help="CIDR, e.g. 172.20.0.0/16 (default: a free pool)."),
    gateway: Optional[str] = typer.Option(None, help="Gateway address (default: first host of the subnet)."),
    ip_range: Optional[str] = typer.Option(None, "--ip-range", help="Allocate container IPs from this sub-range."),
    bridge: Optional[str] = typer.Option(None, help="Bridge device; an existing one is adopted and never deleted."),
    mtu: Optional[int] = typer.Option(None, help="MTU of the bridge and the containers' interfaces."),
    internal: bool = typer.Option(False, "--internal", help="No way out of the network, no publishing."),
    no_icc: bool = typer.Option(False, "--no-icc", help="Containers on this network cannot talk to each other."),
    no_masquerade: bool = typer.Option(False, "--no-masquerade", help="Do not SNAT traffic leaving the host."),
    driver: str = typer.Option("bridge", "--driver", "-d",
                               help="bridge, overlay (needs cluster_store), macvlan or ipvlan (-o parent=IF)."),
    opt: list[str] = typer.Option([], "--opt", "-o", help="Driver option KEY=VALUE, e.g. -o parent=eth0 (repeatable)."),
    no_anti_spoofing: bool = typer.Option(False, "--no-anti-spoofing",
                                          help="Let containers send from any IP and MAC (default: only their own)."),
    dry_run: bool = DRY_OPT,
    json: bool = JSON_OPT,
):
    """Create a network (docker network create)."""
    from netkit.engine import networks

    ctx = context(dry_run)
    req = networks.NetworkRequest(name, subnet, gateway, ip_range, bridge, mtu, internal, not no_icc,
                                  not no_masquerade, driver, opt, anti_spoofing=not no_anti_spoofing)
    net = networks.create(ctx, req)
    if dry_run:
        render.emit_plan(ctx.printed)
    elif json:
        render.emit_json(networks.inspect(ctx, net.name))
    else:
        render.emit(net.id)


@net_app.command("ls")
def ls(json: bool = JSON_OPT):
    """List networks."""
    from netkit.engine import networks

    views = networks.list_views(context())
    if json:
        render.emit_json(views)
        return
    rows = [[v["id"][:12], v["name"], v["bridge"], v["subnet"], v["gateway"], len(v["containers"])] for v in views]
    header = ["NETWORK ID", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "CONTAINERS"]
    if any(v.get("driver", "bridge") != "bridge" for v in views):
        # Other drivers (issue 15): say which, and overlay networks' scope `global` (cluster-wide).
        header[2:2] = ["DRIVER", "SCOPE"]
        for row, v in zip(rows, views):
            row[2:2] = [v.get("driver", "bridge"), v.get("scope", "local")]
    render.emit(render.table(header, rows))


@net_app.command("inspect")
def inspect(name: str, json: bool = typer.Option(True, "--json/--text", help="JSON (default) or text.")):
    """Show a network's settings and containers."""
    from netkit.engine import networks

    render.emit_inspect(networks.inspect(context(), name), json)


@net_app.command("rm")
def rm(names: list[str], dry_run: bool = DRY_OPT):
    """Remove networks (refused while containers are attached)."""
    from netkit.engine import networks

    for name in names:
        ctx = context(dry_run)
        networks.remove(ctx, name)
        render.emit_plan(ctx.printed) if dry_run else render.emit(name)


@net_app.command("connect")
def connect(
    network: str, container: str,
    ip: Optional[str] = typer.Option(None, "--ip", help="Static address in the network's subnet."),
    alias: list[str] = typer.Option([], "--alias", help="DNS alias on this network (repeatable)."),
    dry_run: bool = DRY_OPT,
):
    """Connect a container to one more network (eth1, eth2 ...)."""
    from netkit.engine import containers

    ctx = context(dry_run)
    ep = containers.connect(ctx, network, container, ip, alias)
    render.emit_plan(ctx.printed) if dry_run else render.emit(f"{container} {ep.ifname} {ep.ip}/{ep.prefixlen}")


@net_app.command("disconnect")
def disconnect(network: str, container: str, dry_run: bool = DRY_OPT):
    """Disconnect a container from a network."""
    from netkit.engine import containers

    ctx = context(dry_run)
    containers.disconnect(ctx, network, container)
    if dry_run:
        render.emit_plan(ctx.printed)
