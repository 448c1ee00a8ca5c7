"""The Typer application object and the helpers every command module shares."""
from __future__ import annotations

import typer

app = typer.Typer(
    help="netkit: Docker's network layer (bridges, veths, netns, IPAM, NAT) as a readable toolkit.",
    no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=False,
)


def run_app() -> None:
    """Run the command line; a NetkitError becomes one line on stderr and its exit code (2 bad
    input, 1 environment), Ctrl-C exit 130. Usage errors are Typer's (exit 2)."""
    import sqlite3
    import sys

    from netkit.errors import NetkitError

    try:
        app()
    except NetkitError as err:
        print(f"netkit: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except sqlite3.Error as err:  # anything the state module did not already put in words
        from netkit.state import damaged, state_dir

        print(f"netkit: {damaged(state_dir(), str(err))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("netkit: interrupted", file=sys.stderr)
        sys.exit(130)


def group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
    app.add_typer(sub, name=name)
    return sub


def context(dry_run: bool = False):
    from netkit.engine.context import Context

    return Context(dry_run=dry_run)


JSON_OPT = typer.Option(False, "--json", help="Print JSON with stable field names.")
DRY_OPT = typer.Option(False, "--dry-run", help="Print the equivalent iproute2 commands; change nothing.")
