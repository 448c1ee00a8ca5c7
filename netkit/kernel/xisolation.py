"""The table that isolates netkit's networks from bridges not netkit's (netkit/xisolation.py says
what it holds) in the kernel, through libnftables in-process."""
from __future__ import annotations

from netkit import xisolation
from netkit.kernel.fw import libnft


def apply(bridges: tuple[str, ...]) -> None:
    libnft.check("\n".join(xisolation.table_script(bridges)))


def remove() -> None:
    libnft.check("\n".join(xisolation.delete_script()))


def current() -> tuple[str, ...] | None:
    """The bridges in the table's set; None when the table is missing or not intact."""
    return xisolation.read_listing(libnft.list_json(f"table {xisolation.QUALIFIED}"))
