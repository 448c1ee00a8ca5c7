"""`netkit exec`, `attach`, `sandbox` and `config show`."""
from __future__ import annotations

from typing import List, Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, app, context, group

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("exec", context_settings=_PASSTHROUGH)
def exec_(name: str, cmd: List[str] = typer.Argument(None, help="Command and arguments, after --.")):
    """Run a command inside a container (its netns, hostname and /etc files); exit code passed through."""
    from netkit.engine import containers

    containers.exec_in(context(), name, list(cmd or []))


@app.command("attach")
def attach(
    network: str = typer.Option(..., "--network", help="Network to wire the namespace onto."),
    pid: Optional[int] = typer.Option(None, "--pid", help="A process whose netns to wire (e.g. started with unshare -n)."),
    netns: Optional[str] = typer.Option(None, "--netns", help="A netns file instead of a PID."),
    name: Optional[str] = typer.Option(None, "--name", help="Name for the container (default pidPID)."),
    ip: Optional[str] = typer.Option(None, "--ip"),
    dns: List[str] = typer.Option([], "--dns", help="DNS server for its resolv.conf (repeatable)."),
    dns_search: List[str] = typer.Option([], "--dns-search", help="Search domain (repeatable)."),
    add_host: List[str] = typer.Option([], "--add-host", help="Extra hosts entry NAME:IP (repeatable)."),
    network_alias: List[str] = typer.Option([], "--network-alias", help="DNS alias on the network (repeatable)."),
    dry_run: bool = DRY_OPT,
    json: bool = JSON_OPT,
):
    """Wire a namespace made by someone else onto a network (veth, eth0, address, route)."""
    from netkit.engine import containers

    ctx = context(dry_run)
    names = containers.ContainerRequest(name or "", dns=dns, dns_search=dns_search, add_host=add_host,
                                        network_alias=network_alias)
    c = containers.attach(ctx, network, pid, netns, name, ip, names)
    if dry_run:
        render.emit_plan(ctx.printed)
    elif json:
        render.emit_json(containers.inspect_view(c))
    else:
        ep = c.endpoints[0]
        render.emit(f"{c.name} {ep.ifname} {ep.ip}/{ep.prefixlen}")


@app.command("sandbox", context_settings=_PASSTHROUGH)
def sandbox(
    cmd: List[str] = typer.Argument(None, help="Command to run inside (default: a shell); `on HOST CMD` "
                                               "runs CMD on another host of a multi-host sandbox."),
    hosts: Optional[int] = typer.Option(None, "--hosts", help="Several hosts h1..hN on an underlay, with an etcd store; "
                                                 "CMD runs on h1."),
):
    """Run a command in a throwaway network world with an `outside` host; all gone when it exits."""
    import sys

    args = list(cmd or [])
    if args[:1] == ["on"]:
        from netkit import multihost

        multihost.run_on(args[1:])
    elif hosts is not None:
        from netkit import multihost

        sys.exit(multihost.run(hosts, args))
    from netkit import sandbox as sb

    sys.exit(sb.run(args))


cfg_app = group("config", "netkit's config file (like dockerd's daemon.json).")


@cfg_app.command("show")
def config_show(json: bool = JSON_OPT):
    """Print the effective settings and the file they came from."""
    from netkit import config

    from netkit.kernel import fw

    cfg = config.load()
    data = cfg.as_dict()
    choice = fw.choose(cfg.firewall_backend, cfg.iptables, cfg.source)
    data["firewall_backend_effective"] = {"name": choice.name, "why": choice.reason}
    if json:
        render.emit_json(data)
    else:
        data.pop("firewall_backend_effective")
        for key, value in data.items():
            render.emit(f"{key}: {value}")
        render.emit(f"firewall backend in use: {choice.name} ({choice.reason})")
