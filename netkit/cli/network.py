"""`netkit network ...`: create, ls, inspect, rm, prune, connect, disconnect (docker network)."""
from __future__ import annotations

from typing import List, Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, context, group

net_app = group("network", "Networks: a bridge, a subnet, and the containers on it (docker network).")

# `docker network ls` headers for `--format "table {{.ID}} ..."`.
LS_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
              "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
LS_FILTERS = ("driver", "name", "id", "label", "type")
BUILTIN_ROWS = ("bridge", "host", "none")  # listed always, as Docker does


@net_app.command("create")
def create(
    name: str = typer.Argument(..., help="Network name (Docker's rules: letters, digits, '_', '.', '-')."),
    subnet: Optional[str] = typer.Option(None, help="CIDR, e.g. 172.20.0.0/16 (default: a free pool)."),
    gateway: Optional[str] = typer.Option(None, help="Gateway address (default: first host of the subnet)."),
    ip_range: Optional[str] = typer.Option(None, "--ip-range", help="Allocate container IPs from this sub-range."),
    bridge: Optional[str] = typer.Option(None, help="Bridge device (default br-NAME, or br-<12 hex of the id> "
                                                    "when that is too long); an existing one is adopted and never deleted."),
    mtu: Optional[int] = typer.Option(None, help="MTU of the bridge and the containers' interfaces."),
    internal: bool = typer.Option(False, "--internal", help="No way out of the network, no publishing."),
    no_icc: bool = typer.Option(False, "--no-icc", help="Containers on this network cannot talk to each other."),
    no_masquerade: bool = typer.Option(False, "--no-masquerade", help="Do not SNAT traffic leaving the host."),
    driver: str = typer.Option("bridge", "--driver", "-d",
                               help="bridge, overlay (needs cluster_store), macvlan or ipvlan (-o parent=IF)."),
    opt: List[str] = typer.Option([], "--opt", "-o", help="Driver option KEY=VALUE (repeatable): for bridge "
                                  "com.docker.network.bridge.name, ...bridge.enable_icc, "
                                  "...bridge.enable_ip_masquerade, com.docker.network.driver.mtu; "
                                  "for macvlan/ipvlan parent=IF."),
    label: List[str] = typer.Option([], "--label", help="Metadata KEY=VALUE on the network (repeatable)."),
    no_anti_spoofing: bool = typer.Option(False, "--no-anti-spoofing",
                                          help="Let containers send from any IP and MAC (default: only their own)."),
    dry_run: bool = DRY_OPT,
    json: bool = JSON_OPT,
):
    """Create a network (docker network create); prints its ID."""
    from netkit import naming
    from netkit.engine import networks

    ctx = context(dry_run)
    req = networks.NetworkRequest(name, subnet, gateway, ip_range, bridge, mtu, internal, not no_icc,
                                  not no_masquerade, driver, labels=naming.parse_labels(label), options=list(opt),
                                  anti_spoofing=not no_anti_spoofing)
    net = networks.create(ctx, req)
    if dry_run:
        render.emit_plan(ctx.printed)
    elif json:
        render.emit_json(networks.inspect(ctx, net.name))
    else:
        render.emit(net.id)


def _ls_rows(ctx) -> list[tuple[dict, dict, str]]:
    """(row for --format, labels, full id) of every network, the built-in ones included."""
    from netkit import dockerview

    from netkit.engine import networks

    rows, names = [], set()
    for net in ctx.store.networks():
        if net.driver != "overlay":
            rows.append((dockerview.network_ls_row(net), net.labels or {}, net.id))
            names.add(net.name)
    for view in networks.list_views(ctx):  # overlay networks: from the cluster store, scope global
        if view.get("driver") == "overlay" and view["name"] not in names:
            row = dict(dockerview.network_ls_row(None, view["name"]), ID=view["id"][:12], Driver="overlay",
                       Scope=view.get("scope", "global"))
            rows.append((row, {}, view["id"]))
            names.add(view["name"])
    for name in BUILTIN_ROWS:
        if name not in names:
            row = dockerview.network_ls_row(None, name)
            rows.append((row, {}, dockerview.builtin_network_id(name)))
    return sorted(rows, key=lambda r: r[0]["Name"])


@net_app.command("ls")
def ls(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print network IDs only."),
    filter_: List[str] = typer.Option([], "--filter", "-f", help="KEY=VALUE: driver, name (part of), id (prefix), "
                                      "label (KEY or KEY=VALUE), type (custom|builtin); repeatable."),
    no_trunc: bool = typer.Option(False, "--no-trunc", help="Print full 64-hex IDs."),
    format_: Optional[str] = typer.Option(None, "--format", help="Go template, e.g. '{{.Name}}' or "
                                          "'table {{.ID}}\\t{{.Name}}', or json."),
    json: bool = JSON_OPT,
):
    """List networks (docker network ls): NETWORK ID, NAME, DRIVER, SCOPE; bridge, host and none always."""
    from netkit import dockerfilter
    from netkit.engine import networks

    ctx = context()
    if json:
        render.emit_json(networks.list_views(ctx))
        return
    wanted = dockerfilter.parse(filter_, LS_FILTERS)
    rows = []
    for row, labels, full_id in _ls_rows(ctx):
        kind = "builtin" if row["Name"] in BUILTIN_ROWS else "custom"
        if not dockerfilter.matches(wanted, {
            "driver": lambda v: row["Driver"] == v, "name": lambda v: v in row["Name"],
            "id": lambda v: full_id.startswith(v.lower()), "label": lambda v: dockerfilter.label_matches(labels, v),
            "type": lambda v: v == kind,
        }):
            continue
        if no_trunc:
            row = dict(row, ID=full_id)
        rows.append(row)
    if quiet:
        for row in rows:
            render.emit(row["ID"])
    elif format_:
        render.emit_formatted(format_, rows, LS_HEADERS)
    else:
        render.emit(render.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                                 [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]))


def overlay_view(ctx, name: str) -> dict | None:
    """netkit's cluster-wide view of overlay network `name`, if there is a cluster store and it has one."""
    from netkit.engine import overlay

    if not overlay.enabled(ctx):
        return None
    return next((v for v in overlay.global_views(ctx) if v["name"] == name), None)


@net_app.command("inspect")
def inspect(
    names: List[str] = typer.Argument(..., help="Network names, IDs or unique ID prefixes."),
    format_: Optional[str] = typer.Option(None, "--format", "-f", help="Go template run on each network, "
                                          "e.g. '{{json .IPAM.Config}}'."),
    netkit_view: bool = typer.Option(False, "--netkit", "--json", help="netkit's own view (bridge, veths, settings) "
                                     "instead of Docker's shape."),
    text: bool = typer.Option(False, "--text", help="netkit's own view as readable text."),
):
    """Show networks as `docker network inspect` does (a JSON array); --netkit for netkit's view."""
    from netkit import dockerview
    from netkit.engine import networks

    ctx = context()

    def docker_doc(name: str) -> dict:
        net = ctx.store.network(name)
        if (net is None or net.driver == "overlay") and overlay_view(ctx, name):
            return dockerview.overlay_network_inspect(overlay_view(ctx, name))  # cluster-wide
        # bridge, host and none always answer, as `network ls` always lists them; bridge before
        # its first container with the settings it will get (no kernel object is claimed: no members)
        name, net = networks.resolve_always(ctx, name)
        if net is None:
            return dockerview.builtin_network_inspect(name, ctx.store.containers())
        members = [c for c in (ctx.store.container(m) for m in ctx.store.members(net.name)) if c]
        return dockerview.network_inspect(net, members)

    render.emit_inspected(names, format_, netkit_view, text, lambda name: networks.inspect(ctx, name), docker_doc)


@net_app.command("rm")
def rm(names: List[str] = typer.Argument(..., help="Network names, IDs or unique ID prefixes."), dry_run: bool = DRY_OPT):
    """Remove networks (refused while containers are attached)."""
    from netkit.engine import networks

    for name in names:
        ctx = context(dry_run)
        networks.remove(ctx, name)
        render.emit_plan(ctx.printed) if dry_run else render.emit(name)


@net_app.command("prune")
def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not ask for confirmation."),
          dry_run: bool = DRY_OPT):
    """Remove every network without containers, except the default one (docker network prune)."""
    from netkit.engine import networks

    if not force and not dry_run and not typer.confirm(
            "WARNING! This will remove all custom networks not used by at least "
            "one container.\nAre you sure you want to continue?", default=False):
        raise typer.Exit(0)
    ctx = context(dry_run)
    gone = networks.prune(ctx)
    if dry_run:
        render.emit_plan(ctx.printed)
        return
    if gone:
        render.emit("Deleted Networks:")
        for net in gone:
            render.emit(net.name)


@net_app.command("connect")
def connect(
    network: str = typer.Argument(..., help="Network name or ID."),
    container: str = typer.Argument(..., help="Container name or ID."),
    ip: Optional[str] = typer.Option(None, "--ip", help="Static address in the network's subnet."),
    alias: List[str] = typer.Option([], "--alias", help="DNS alias on this network (repeatable)."),
    dry_run: bool = DRY_OPT,
):
    """Connect a container to one more network (eth1, eth2 ...)."""
    from netkit.engine import containers

    ctx = context(dry_run)
    ep = containers.connect(ctx, network, container, ip, alias)
    render.emit_plan(ctx.printed) if dry_run else render.emit(f"{ep.container} {ep.ifname} {ep.ip}/{ep.prefixlen}")


@net_app.command("disconnect")
def disconnect(
    network: str = typer.Argument(..., help="Network name or ID."),
    container: str = typer.Argument(..., help="Container name or ID."),
    dry_run: bool = DRY_OPT,
):
    """Disconnect a container from a network; prints what went (CONTAINER IFNAME ADDRESS)."""
    from netkit.engine import containers

    ctx = context(dry_run)
    ep = containers.disconnect(ctx, network, container)
    if dry_run:
        render.emit_plan(ctx.printed)
    else:
        render.emit(f"{ep.container} {ep.ifname} {ep.ip}/{ep.prefixlen} disconnected from {ep.network}")
