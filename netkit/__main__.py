"""`python -m netkit` is the same as the `netkit` command."""
from netkit.cli.main import run

run()
