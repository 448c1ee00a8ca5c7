"""`netkit publish`, `unpublish`, `port`, `rules`, `doctor`, `reset`: the firewall side."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, app, context

_SPEC_HELP = "[IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp|sctp], ranges allowed (Docker's -p syntax)"


def _emit_mappings(printed: list[str], mappings, dry_run: bool) -> None:
    from netkit.portspec import format_mapping

    if dry_run:
        render.emit_plan(printed)
        return
    for m in mappings:
        render.emit(format_mapping(m.container_port, m.proto, m.host_ip, m.host_port))


@app.command("publish")
def publish(spec: str = typer.Argument(..., help=_SPEC_HELP), container: str = typer.Argument(..., help="Container name or ID."),
            dry_run: bool = DRY_OPT):
    """Publish a port of a running container (DNAT from the host)."""
    from netkit.engine import ports

    ctx = context(dry_run)
    _emit_mappings(ctx.printed, ports.publish(ctx, spec, container), dry_run)


@app.command("unpublish")
def unpublish(spec: str = typer.Argument(..., help=_SPEC_HELP), container: str = typer.Argument(..., help="Container name or ID."),
              dry_run: bool = DRY_OPT):
    """Remove published ports matching SPEC (and forget their conntrack entries)."""
    from netkit.engine import ports

    ctx = context(dry_run)
    _emit_mappings(ctx.printed, ports.unpublish(ctx, spec, container), dry_run)


@app.command("port")
def port(container: str = typer.Argument(..., help="Container name or ID."),
         which: Optional[str] = typer.Argument(None, metavar="[PORT[/proto]]",
                                               help="One container port: print only its host addresses.")):
    """List a container's published ports (docker port): `80/tcp -> 0.0.0.0:8088`, or with PORT
    only the host side, `0.0.0.0:8088`, as Docker prints them."""
    from netkit.engine import ports

    for line in ports.port_lines(context(), container, which):
        # Docker prints the mapping's host side alone when asked about one port.
        render.emit(line.split(" -> ", 1)[1] if which else line)


@app.command("rules")
def rules_cmd(json: bool = JSON_OPT):
    """Every rule netkit owns, read back from the kernel, in the active firewall backend's syntax
    (iptables-save, or nft for the nftables backend)."""
    from netkit.engine import reconcile

    ctx = context()
    ctx.require_root()
    name, show_command = reconcile.backend_info(ctx)
    if json:
        render.emit_json({"backend": name, "tables": reconcile.kernel_rules(ctx)})
        return
    render.emit(f"# netkit's rules in the {name} backend (also: {show_command})")
    for line in reconcile.native_rules(ctx):
        render.emit(line)


@app.command("doctor")
def doctor(fix: bool = typer.Option(False, "--fix", help="Repair: sync rules and host settings with the state.")):
    """Check state against kernel objects, rules, host settings and DNS servers; exit 1 on problems."""
    from netkit.engine import doctor as doc

    ctx = context()
    ctx.require_root()
    lines, problems = doc.run(ctx, fix)
    for line in lines:
        render.emit(line)
    if problems:
        sys.exit(1)


@app.command("reset")
def reset(dry_run: bool = DRY_OPT):
    """Remove all netkit chains and hooks; restore ip_forward and the FORWARD policy. Foreign rules stay."""
    from netkit.engine import reconcile

    ctx = context(dry_run)
    for line in reconcile.reset(ctx):
        render.emit(line)
