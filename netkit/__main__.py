"""`python -m netkit` is the same as the `netkit` command."""
from netkit.client import main

main()
