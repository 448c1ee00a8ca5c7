"""`netkit trace ...` and `netkit demo`: the packet tracer."""
