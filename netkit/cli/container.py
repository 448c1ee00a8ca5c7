"""`netkit container ...`: create, ls, inspect, rm (docker run --network / ps / inspect / rm)."""
from __future__ import annotations

from typing import List, Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, context, group

ct_app = group("container", "Containers: network namespaces attached in Docker's four modes.")

# `docker ps` headers for `--format "table {{.ID}} ..."`.
LS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Networks": "NETWORKS", "Ports": "PORTS",
              "Labels": "LABELS", "CreatedAt": "CREATED AT", "Mode": "MODE"}
LS_FILTERS = ("name", "network", "id", "label")


@ct_app.command("create")
def create(
    name: str = typer.Argument(..., help="Container name (letters, digits, '_', '.', '-')."),
    net: str = typer.Option("bridge", "--net", "--network", help="bridge | host | none | container:NAME | NETWORK"),
    ip: Optional[str] = typer.Option(None, "--ip", help="Static IPv4 address on the network."),
    mac: Optional[str] = typer.Option(None, "--mac", "--mac-address", help="MAC address of eth0 (default: 02:42 + IP)."),
    hostname: Optional[str] = typer.Option(None, "--hostname", "-h", help="Hostname inside the container."),
    dns: List[str] = typer.Option([], "--dns", help="DNS server for this container's queries (repeatable): "
                                   "on a user network its DNS server forwards to it, on the default one resolv.conf names it."),
    dns_search: List[str] = typer.Option([], "--dns-search", help="Search domain (repeatable)."),
    dns_option: List[str] = typer.Option([], "--dns-option", help="resolv.conf option, e.g. ndots:2 (repeatable)."),
    add_host: List[str] = typer.Option([], "--add-host", help="Extra /etc/hosts entry NAME:IP, or NAME:host-gateway "
                                        "for the host's address (repeatable)."),
    link: List[str] = typer.Option([], "--link", help="Link to another container: NAME[:ALIAS] (repeatable)."),
    network_alias: List[str] = typer.Option([], "--network-alias", help="DNS alias on the network (repeatable)."),
    publish: List[str] = typer.Option([], "--publish", "-p", help="Publish a port: [IP:][HOSTPORT:]PORT[/proto] (repeatable)."),
    publish_all: bool = typer.Option(False, "--publish-all", "-P", help="Publish every exposed port to a free host port."),
    expose: List[str] = typer.Option([], "--expose", help="Expose a port or range: PORT[-PORT][/proto] (repeatable)."),
    label: List[str] = typer.Option([], "--label", "-l", help="Metadata KEY=VALUE on the container (repeatable)."),
    dry_run: bool = DRY_OPT,
    json: bool = JSON_OPT,
):
    """Create a container (docker run --network ...), without a process: exec runs commands in it. Prints its ID."""
    from netkit import naming
    from netkit.engine import containers

    ctx = context(dry_run)
    req = containers.ContainerRequest(name, net, ip, mac, hostname, dns=dns, dns_search=dns_search,
                                      dns_options=dns_option, add_host=add_host, links=link,
                                      network_alias=network_alias, publish=publish, publish_all=publish_all,
                                      expose=expose, labels=naming.parse_labels(label))
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
def ls(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print container IDs only."),
    all_: bool = typer.Option(False, "--all", "-a", help="Accepted for `docker ps -a`: netkit's containers "
                              "never stop, so ls always lists all of them."),
    filter_: List[str] = typer.Option([], "--filter", "-f", help="KEY=VALUE: name (part of), network (name or "
                                      "ID), id (prefix), label (KEY or KEY=VALUE); repeatable."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Print full 64-hex IDs."),
    format_: Optional[str] = typer.Option(None, "--format", help="Go template, e.g. '{{.Names}} {{.Ports}}' or "
                                          "'table {{.ID}}\\t{{.Names}}', or json."),
    json: bool = JSON_OPT,
):
    """List containers (docker ps): ID, name, mode, networks with addresses, published ports."""
    from netkit import dockerfilter, dockerview
    from netkit.engine import containers

    ctx = context()
    if json:
        render.emit_json(containers.list_views(ctx))
        return
    wanted = dockerfilter.parse(filter_, LS_FILTERS)
    net_ids = {n.name: n.id for n in ctx.store.networks()} if "network" in wanted else {}
    rows, table_rows = [], []
    for c in ctx.store.containers():
        nets = [e.network for e in c.endpoints]
        if not dockerfilter.matches(wanted, {
            "name": lambda v: v in c.name, "id": lambda v: c.id.startswith(v.lower()),
            "label": lambda v: dockerfilter.label_matches(c.labels or {}, v),
            "network": lambda v: v in nets or (v != "" and any(net_ids.get(n, "").startswith(v.lower()) for n in nets)),
        }):
            continue
        row = dockerview.container_ls_row(c)
        if no_trunc:
            row["ID"] = c.id
        rows.append(row)
        addresses = ",".join(f"{e.network}={e.ip}" for e in c.endpoints)
        mode = f"container:{c.shares}" if c.shares else c.mode
        table_rows.append([row["ID"], c.name, mode, addresses or "-", row["Ports"]])
    if quiet:
        for row in rows:
            render.emit(row["ID"])
    elif format_:
        render.emit_formatted(format_, rows, LS_HEADERS)
    else:
        render.emit(render.table(["CONTAINER ID", "NAMES", "MODE", "NETWORKS", "PORTS"], table_rows))


@ct_app.command("inspect")
def inspect(
    names: List[str] = typer.Argument(..., help="Container names, IDs or unique ID prefixes."),
    format_: Optional[str] = typer.Option(None, "--format", "-f", help="Go template run on each container, "
                                          "e.g. '{{.NetworkSettings.Networks.app.IPAddress}}'."),
    netkit_view: bool = typer.Option(False, "--netkit", "--json", help="netkit's own view (netns, veths, endpoints) "
                                     "instead of Docker's shape."),
    text: bool = typer.Option(False, "--text", help="netkit's own view as readable text."),
):
    """Show containers as `docker inspect` does (a JSON array, published ports included); --netkit for netkit's view."""
    from netkit import dockerview
    from netkit.engine import containers
    from netkit.errors import NotFound

    ctx = context()
    nets = {n.name: n for n in ctx.store.networks()}

    def docker_doc(name: str) -> dict:
        try:
            return dockerview.container_inspect(containers.get(ctx, name), nets)
        except NotFound:  # with a cluster store: a container of another host (or NotFound again)
            return dockerview.remote_container_inspect(containers.inspect(ctx, name))

    # netkit's own view: with a cluster store, remote containers too
    render.emit_inspected(names, format_, netkit_view, text, lambda name: containers.inspect(ctx, name), docker_doc)


@ct_app.command("rm")
def rm(
    names: List[str] = typer.Argument(..., help="Container names, IDs or unique ID prefixes."),
    force: bool = typer.Option(False, "--force", "-f", help="End the processes running inside (by PID) first."),
    dry_run: bool = DRY_OPT,
):
    """Remove containers: their netns, veths, addresses (refused while processes run inside, unless -f)."""
    from netkit.engine import containers

    for name in names:
        ctx = context(dry_run)
        containers.remove(ctx, name, force)
        render.emit_plan(ctx.printed) if dry_run else render.emit(name)
