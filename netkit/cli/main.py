"""Entry point of the `netkit` command: assembles the command groups and turns errors into one
line on stderr and an exit code (2 bad input, 1 environment). Usage errors are Typer's (exit 2)."""
from __future__ import annotations

import sys

from netkit.cli import bridge, container, daemon, misc, network, ports, trace  # noqa: F401 - they register commands
from netkit.cli.app import app
from netkit.errors import NetkitError


def run() -> None:
    try:
        app()
    except NetkitError as err:
        print(f"netkit: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("netkit: interrupted", file=sys.stderr)
        sys.exit(130)
