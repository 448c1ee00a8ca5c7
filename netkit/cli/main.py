"""Entry point of the `netkit` command: assembles the command groups and runs the application
(errors become one line on stderr and an exit code: see netkit.cli.app.run_app)."""
from __future__ import annotations

from netkit.cli import bridge, container, daemon, lab, misc, network, ports, topology, trace  # noqa: F401 - they register commands
from netkit.cli.app import run_app


def run() -> None:
    run_app()
