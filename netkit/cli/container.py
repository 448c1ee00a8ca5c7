"""`netkit container ...`: create, ls, inspect, rm."""
from __future__ import annotations

from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, context, group

ct_app = group("container", "Containers: network namespaces attached in Docker's four modes.")


@ct_app.command("create")
def create(
    name: str,
    net: str = typer.Option("bridge", "--net", "--network", help="bridge | host | none | container:NAME | NETWORK"),
    ip: Optional[str] = typer.Option(None, "--ip", help="Static IPv4 address on the network."),
    mac: Optional[str] = typer.Option(None, "--mac", help="MAC address of eth0 (default: 02:42 + IP)."),
    hostname: Optional[str] = typer.Option(None, "--hostname", "-h", help="Hostname inside the container."),
    dns: list[str] = typer.Option([], "--dns", help="DNS server for /etc/resolv.conf (repeatable)."),
    dns_search: list[str] = typer.Option([], "--dns-search", help="Search domain (repeatable)."),
    dns_option: list[str] = typer.Option([], "--dns-option", help="resolv.conf option, e.g. ndots:2 (repeatable)."),
    add_host: list[str] = typer.Option([], "--add-host", help="Extra /etc/hosts entry NAME:IP (repeatable)."),
    link: list[str] = typer.Option([], "--link", help="Link to another container: NAME[:ALIAS] (repeatable)."),
    network_alias: list[str] = typer.Option([], "--network-alias", help="DNS alias on the network (repeatable)."),
    publish: list[str] = typer.Option([], "--publish", "-p", help="Publish a port: [IP:][HOSTPORT:]PORT[/proto] (repeatable)."),
    publish_all: bool = typer.Option(False, "--publish-all", "-P", help="Publish every exposed port to a free host port."),
    expose: list[str] = typer.Option([], "--expose", help="Expose a port or range: PORT[-PORT][/proto] (repeatable)."),
    dry_run: bool = DRY_OPT,
    json: bool = JSON_OPT,
):
    """Create a container (docker run --network ...), without a process: exec runs commands in it."""
    from netkit.engine import containers

    ctx = context(dry_run)
    req = containers.ContainerRequest(name, net, ip, mac, hostname, dns=dns, dns_search=dns_search,
                                      dns_options=dns_option, add_host=add_host, links=link,
                                      network_alias=network_alias, publish=publish, publish_all=publish_all,
                                      expose=expose)
    c = containers.create(ctx, req)
    warning = containers.forwarding_warning(ctx, c)
    if warning:
        typer.echo(warning, err=True)
    if dry_run:
        render.emit_plan(ctx.printed)
    elif json:
        render.emit_json(containers.inspect_view(c))
    else:
        render.emit(c.id)


@ct_app.command("ls")
def ls(json: bool = JSON_OPT):
    """List containers."""
    from netkit.engine import containers

    views = containers.list_views(context())
    if json:
        render.emit_json(views)
        return
    rows = []
    for v in views:
        nets = ",".join(f"{e['network']}={e['ip']}" for e in v["endpoints"])
        mode = f"container:{v['shares']}" if v["shares"] else v["mode"]
        rows.append([v["id"][:12], v["name"], mode, nets or "-"])
    render.emit(render.table(["CONTAINER ID", "NAME", "MODE", "NETWORKS"], rows))


@ct_app.command("inspect")
def inspect(name: str, json: bool = typer.Option(True, "--json/--text", help="JSON (default) or text.")):
    """Show a container's mode, netns and endpoints."""
    from netkit.engine import containers

    render.emit_inspect(containers.inspect(context(), name), json)


@ct_app.command("rm")
def rm(names: list[str], dry_run: bool = DRY_OPT):
    """Remove containers: their netns, veths, addresses."""
    from netkit.engine import containers

    for name in names:
        ctx = context(dry_run)
        containers.remove(ctx, name)
        render.emit_plan(ctx.printed) if dry_run else render.emit(name)
