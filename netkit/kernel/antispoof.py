"""The anti-spoofing table (netkit/antispoof.py says what it holds) in the kernel, through
libnftables in-process: one transaction per endpoint, no process started.

A port's elements are added without looking first; when the table is missing (the first
container, or after `netkit reset` or someone's `nft flush ruleset`) the add fails and is retried
with the table made in the same transaction.
"""
from __future__ import annotations

from netkit import antispoof
from netkit.errors import KernelError
from netkit.kernel.fw import libnft

def ensure_table() -> None:
    libnft.check("\n".join(antispoof.table_script()))


def guard(ifname: str, mac: str, ip: str) -> None:
    """Allow only (mac, ip) out of bridge port `ifname`."""
    lines = antispoof.element_lines("add", ifname, mac, ip)
    # The elements alone first, also in a process that never made the table (every command
    # netkitd forks): the table is there after the first container, and remaking it reads
    # and rewrites the whole chain. Missing (or lacking a set): made, with the elements, in one go.
    rc, _, _ = libnft.run("\n".join(lines))
    if rc == 0:
        return
    libnft.check("\n".join(antispoof.table_script() + lines))


def unguard(ifname: str, mac: str, ip: str) -> None:
    """Forget port `ifname`; elements (or the table) already gone are fine."""
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
