"""The Typer application object and the helpers every command module shares."""
from __future__ import annotations

import typer

app = typer.Typer(
    help="netkit: Docker's network layer (bridges, veths, netns, IPAM, NAT) as a readable toolkit.",
    no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False,
)


def group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
    app.add_typer(sub, name=name)
    return sub


def context(dry_run: bool = False):
    from netkit.engine.context import Context

    return Context(dry_run=dry_run)


JSON_OPT = typer.Option(False, "--json", help="Print JSON with stable field names.")
DRY_OPT = typer.Option(False, "--dry-run", help="Print the equivalent iproute2 commands; change nothing.")
