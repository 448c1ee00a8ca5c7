"""`netkit exec`, `attach`, `sandbox` and `config show`."""
from __future__ import annotations

from typing import List, Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, app, context, group

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


# Docker's `exec OPTIONS CONTAINER COMMAND ARGS`: options end at the container's name, so the
# command's own options (`exec web ls -l`) are never taken for netkit's.
_EXEC_SETTINGS = dict(_PASSTHROUGH, allow_interspersed_args=False)


@app.command("exec", context_settings=_EXEC_SETTINGS)
def exec_(
    name: str = typer.Argument(..., help="Container name or ID."),
    cmd: List[str] = typer.Argument(None, help="Command and arguments (a `--` before them is optional)."),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep stdin open (it always is: the "
                                     "command takes over this terminal); accepted for Docker's -i."),
    tty: bool = typer.Option(False, "--tty", "-t", help="Use this terminal (the command always inherits it; "
                             "no new pseudo-terminal is made); accepted for Docker's -t."),
    env: List[str] = typer.Option([], "--env", "-e", help="Set KEY=VALUE in the command's environment, or pass "
                                  "KEY on from this one (repeatable)."),
    workdir: Optional[str] = typer.Option(None, "--workdir", "-w", help="Working directory of the command."),
    user: Optional[str] = typer.Option(None, "--user", "-u", help="Run as USER[:GROUP] (names or numbers)."),
):
    """Run a command inside a container (its netns, hostname and /etc files), as `docker exec`;
    its exit code is passed through (126: cannot run, 127: not found)."""
    from netkit.engine import containers

    argv = list(cmd or [])
    if argv[:1] == ["--"]:
        argv = argv[1:]
    containers.exec_in(context(), name, argv, containers.parse_env(env), workdir, user)


@app.command("attach")
def attach(
    network: str = typer.Option(..., "--network", help="Network to wire the namespace onto."),
    pid: Optional[int] = typer.Option(None, "--pid", help="A process whose netns to wire (e.g. started with unshare -n)."),
    netns: Optional[str] = typer.Option(None, "--netns", help="A netns file instead of a PID."),
    name: Optional[str] = typer.Option(None, "--name", help="Name for the container (default pidPID)."),
    ip: Optional[str] = typer.Option(None, "--ip", help="Static IPv4 address on the network."),
    dns: List[str] = typer.Option([], "--dns", help="DNS server for its queries (repeatable): "
                                   "on a user network its DNS server forwards to it, on the default one resolv.conf names it."),
    dns_search: List[str] = typer.Option([], "--dns-search", help="Search domain (repeatable)."),
    add_host: List[str] = typer.Option([], "--add-host", help="Extra hosts entry NAME:IP, or NAME:host-gateway "
                                        "for the host's address (repeatable)."),
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

    if not args:
        # An interactive shell: say where it is, in a banner and (for shells that take it from
        # the environment) the prompt, so that nobody mistakes it for the host.
        import os

        print("netkit sandbox: a throwaway network world (own net, mount and PID namespaces; host "
              f"`outside` at {sb.OUTSIDE_ADDR}). Everything made here is gone when this shell exits.", file=sys.stderr)
        os.environ["PS1"] = "(netkit sandbox) \\w# "
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
        source = data.pop("source")
        data["default_address_pools"] = [f"{p['base']} size {p['size']}" for p in data["default_address_pools"]]
        render.emit(f"# settings from {source}")
        render.emit_text(data)
        render.emit(f"firewall backend in use: {choice.name} ({choice.reason})")
