"""The anti-spoofing table (netkit/antispoof.py says what it holds) in the kernel, in-process:
one transaction per endpoint, no process started.

A port's three elements go straight over netlink (kernel/nftelements.py: a libnftables context
costs ~2 ms on its first command, and every command netkitd runs is a fresh process), without
looking first; when the table is missing (the first container, or after `netkit reset` or
someone's `nft flush ruleset`) the kernel refuses and the table is made by libnftables with the
elements in the same transaction.
"""
from __future__ import annotations

from netkit import antispoof
from netkit.errors import KernelError
from netkit.kernel import nftelements
from netkit.kernel.fw import libnft


def ensure_table() -> None:
    libnft.check("\n".join(antispoof.table_script()))


def _elements(ifname: str, mac: str, ip: str) -> list[tuple[str, bytes]]:
    """The port's three elements (antispoof.element_lines in the kernel's key layout)."""
    port, source = nftelements.ifname_key(ifname), nftelements.ether_key(mac.lower())
    return [("guarded", port), ("mac_ok", port + source), ("ip_ok", port + source + nftelements.ipv4_key(ip))]


def guard(ifname: str, mac: str, ip: str) -> None:
    """Allow only (mac, ip) out of bridge port `ifname`."""
    if nftelements.change(antispoof.FAMILY, antispoof.TABLE, _elements(ifname, mac, ip)) == 0:
        return
    # Refused (no table yet, or a set missing): made with the elements in one libnftables go.
    libnft.check("\n".join(antispoof.table_script() + antispoof.element_lines("add", ifname, mac, ip)))


def unguard(ifname: str, mac: str, ip: str) -> None:
    """Forget port `ifname`; elements (or the table) already gone are fine."""
    if nftelements.change(antispoof.FAMILY, antispoof.TABLE, _elements(ifname, mac, ip), delete=True) == 0:
        return
    lines = antispoof.element_lines("delete", ifname, mac, ip)
    rc, _, _ = libnft.run("\n".join(lines))
    if rc == 0:
        return
    for line in lines:  # some were missing: delete the rest one by one
        rc, _, err = libnft.run(line)
        if rc != 0 and "No such file" not in err:
            raise KernelError(f"nftables: {line}: {err.strip().splitlines()[0] if err.strip() else rc}")


def forget(ifname: str) -> None:
    """Delete every element of port `ifname` (a leftover whose MAC and IP the state no longer knows)."""
    delete_lines(antispoof.forget_lines(listing(), {ifname}))


def listing() -> dict | None:
    return libnft.list_json(f"table {antispoof.QUALIFIED}")


def delete_lines(lines: list[str]) -> None:
    for line in lines:
        rc, _, err = libnft.run(line)
        if rc != 0 and "No such file" not in err:
            raise KernelError(f"nftables: {line}: {err.strip().splitlines()[0] if err.strip() else rc}")


def remove_table() -> bool:
    """Delete the whole table; False when there was none."""
    if listing() is None:
        return False
    libnft.check(antispoof.delete_table_line())
    return True
