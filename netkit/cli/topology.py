"""`netkit up`, `netkit down` (compose files) and `netkit topology` (what exists, as text or SVG)."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from netkit.cli import render
from netkit.cli.app import DRY_OPT, app

FILE_OPT = typer.Option(None, "--file", "-f", help="Compose file (default: compose.yaml, docker-compose.yml ... here).")
PROJECT_OPT = typer.Option(None, "--project-name", "-p", help="Project name (default: the file's `name:` or its folder).")


def _load(file: Optional[str], project: Optional[str], quiet: bool = False):
    from netkit import compose

    proj = compose.load(file or compose.find_file(), project)
    notice = proj.notice()
    if notice and not quiet:
        print(notice, file=sys.stderr)
    return proj


@app.command("up")
def up(file: Optional[str] = FILE_OPT, project: Optional[str] = PROJECT_OPT, dry_run: bool = DRY_OPT):
    """Create the networks and containers of a compose file; a second run changes only what changed."""
    from netkit.engine import topology

    proj = _load(file, project)
    plan, printed = topology.up(proj, dry_run)
    if plan.empty():
        render.emit(f"project {proj.name}: nothing to change ({len(plan.unchanged)} objects as the file says)")
        return
    for line in plan.describe():
        render.emit(("# " if dry_run else "") + line)
    if dry_run:
        render.emit_plan(printed)


@app.command("down")
def down(file: Optional[str] = FILE_OPT, project: Optional[str] = PROJECT_OPT, dry_run: bool = DRY_OPT):
    """Remove exactly the networks and containers `netkit up` made from this file."""
    from netkit import compose
    from netkit.engine import topology

    if project is None:
        project = _load(file, None, quiet=True).name
    else:
        project = compose.project_name(project)
    plan, printed = topology.down(project, dry_run)
    if plan.empty():
        render.emit(f"project {project}: nothing to remove")
        return
    for line in plan.describe():
        render.emit(("# " if dry_run else "") + line)
    if dry_run:
        render.emit_plan(printed)


@app.command("topology")
def topology_cmd(svg: Optional[str] = typer.Option(None, "--svg", help="Also write the picture to this SVG file.")):
    """What exists: bridges, veth pairs (both ends, ifindex/iflink), namespaces, addresses, NAT, DNS."""
    from netkit import topology_view
    from netkit.cli.app import context
    from netkit.engine import topology

    ctx = context()
    scene = topology.scene(ctx)
    render.emit(topology_view.render_text(scene))
    if svg:
        with open(svg, "w") as fh:
            fh.write(topology_view.render_svg(scene))
