"""Entry point of the `netkit` command: registers the command groups this command line needs and
runs the application (errors become one line on stderr and an exit code: see
netkit.cli.app.run_app).

One command runs per process, so only the module that registers it is imported and turned into
click objects by Typer (building all of them costs ~60 ms at start-up; docs/facts.md, "CLI
start-up"). Anything else -- no argument, --help or another top-level option, a mistyped or
unknown command, shell completion, and `netkit daemon` (netkitd serves every command) -- loads
every group, so help, suggestions and errors read exactly as before.
"""
from __future__ import annotations

import importlib
import sys

# Every command module, in the order their commands are registered (the order --help lists).
ALL_MODULES = ("bridge", "container", "daemon", "lab", "misc", "network", "ports", "topology", "trace")
# Top-level command -> the module that registers it. `daemon` is left out on purpose (see above).
MODULE_OF = {
    "bridge": "bridge", "container": "container", "lab": "lab", "network": "network",
    "exec": "misc", "attach": "misc", "sandbox": "misc", "config": "misc",
    "publish": "ports", "unpublish": "ports", "port": "ports", "rules": "ports", "doctor": "ports", "reset": "ports",
    "up": "topology", "down": "topology", "topology": "topology",
    "trace": "trace", "demo": "trace",
}
VERSION_ONLY = (["--version"], ["-v"])  # an eager option of the root: no command is needed


def modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules a command line needs (argv without the program name)."""
    if argv in VERSION_ONLY:
        return ()
    if argv and argv[0] in MODULE_OF:
        return (MODULE_OF[argv[0]],)
    return ALL_MODULES


def load(modules: tuple[str, ...] = ALL_MODULES) -> None:
    """Import command modules (each registers its commands on netkit.cli.app.app)."""
    for name in modules:
        importlib.import_module(f"netkit.cli.{name}")


def run() -> None:
    load(modules_for(sys.argv[1:]))
    from netkit.cli.app import run_app

    run_app()
