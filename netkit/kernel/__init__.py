"""Thin adapters: the only code that touches the kernel (netlink, namespaces, firewall)."""
