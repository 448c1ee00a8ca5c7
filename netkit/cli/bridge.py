"""`netkit bridge ...`: plain Linux bridges, like brctl addbr/delbr/show/showmacs."""
from __future__ import annotations

from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, JSON_OPT, context, group

br_app = group("bridge", "Plain Linux bridges (brctl addbr, delbr, show, showmacs).")


@br_app.command("create")
def create(
    name: str = typer.Argument(..., help="Bridge interface name (at most 15 bytes)."),
    cidr: Optional[str] = typer.Option(None, "--cidr", help="Address for the bridge, e.g. 172.30.0.1/24."),
    mtu: Optional[int] = typer.Option(None, "--mtu", help="MTU of the bridge (default: the kernel's, 1500)."),
    dry_run: bool = DRY_OPT,
):
    """Create a bridge (brctl addbr; ip link add NAME type bridge)."""
    from netkit.engine import bridges

    ctx = context(dry_run)
    bridges.create(ctx, name, cidr, mtu)
    render.emit_plan(ctx.printed) if dry_run else render.emit(name)


@br_app.command("rm")
def rm(name: str = typer.Argument(..., help="Bridge interface name (at most 15 bytes)."), dry_run: bool = DRY_OPT):
    """Delete a bridge that no network uses (brctl delbr)."""
    from netkit.engine import bridges

    ctx = context(dry_run)
    bridges.remove(ctx, name)
    render.emit_plan(ctx.printed) if dry_run else render.emit(name)


@br_app.command("show")
def show(json: bool = JSON_OPT):
    """Bridges with id, STP state and attached interfaces (brctl show)."""
    from netkit.engine import bridges

    data = bridges.show()
    if json:
        render.emit_json(data)
        return
    lines = [f"{'bridge name':<16}{'bridge id':<24}{'STP enabled':<16}interfaces"]
    for b in data:
        ports = b["interfaces"] or [""]
        lines.append(f"{b['name']:<16}{b['id']:<24}{'yes' if b['stp'] else 'no':<16}{ports[0]}")
        lines += [f"{'':<56}{p}" for p in ports[1:]]
    render.emit("\n".join(lines))


@br_app.command("macs")
def macs(name: str = typer.Argument(..., help="Bridge interface name (at most 15 bytes)."), json: bool = JSON_OPT):
    """The bridge's learnt MAC addresses (brctl showmacs)."""
    from netkit.engine import bridges

    rows = bridges.macs(name)
    if json:
        render.emit_json(rows)
        return
    render.emit(render.table(
        ["port no", "mac addr", "is local?", "ageing timer", "interface"],
        [[r["port"], r["mac"], "yes" if r["local"] else "no", f"{r['ageing']:.2f}", r["interface"]] for r in rows],
    ))
