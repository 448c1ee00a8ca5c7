"""Isolation between netkit's networks and bridges that are not netkit's (Docker's bridge-driver
networks above all), as nft text: pure (the kernel side is kernel/xisolation.py).

netkit's iptables chains isolate its networks from each other, and dockerd's isolate its bridge
networks from each other, but neither knows the other's bridges; and dockerd keeps its own jumps
first in FORWARD (DOCKER-USER, its per-bridge ACCEPTs) and removes and re-makes its chains when it
starts, so nothing netkit writes into or around them lasts. So netkit keeps one table of its own,
which dockerd never touches, hooked on forward just before the iptables filter table (priority
filter - 1: a drop there is final whatever FORWARD says later):

  table inet netkit_isolation
    set networks { ifname }                 the bridges of netkit's networks
    chain forward (filter hook forward priority filter - 1)
      from a netkit bridge to a Docker bridge (docker0, br-*) that is not netkit's: drop
      from such a bridge to a netkit bridge: drop

Only bridges named as Docker's bridge driver names them (and `meta iifkind/oifkind "bridge"`,
Linux 4.19): routed traffic to and from the uplink, also when the uplink is itself a bridge
(br0, vmbr0), and any other interface stays untouched. Traffic between two netkit networks is left to netkit's
own chains (NETKIT-ISOLATION-1/2), as before.
"""
from __future__ import annotations

FAMILY = "inet"
TABLE = "netkit_isolation"
QUALIFIED = f"{FAMILY} {TABLE}"
CHAIN = "forward"
SET = "networks"
# The bridges Docker's bridge driver makes: `docker0` and `br-<12 hex of the network id>`. Only
# those: a host whose uplink is a bridge (br0, vmbr0, libvirt's virbr0) must keep routing netkit's
# containers out through it. A Docker network given its own bridge name
# (com.docker.network.bridge.name) is not recognised.
DOCKER_BRIDGES = ("docker0", "br-*")
RULES = tuple(
    rule
    for name in DOCKER_BRIDGES
    for rule in (f'iifname @{SET} oifname != @{SET} oifname "{name}" meta oifkind "bridge" drop',
                 f'oifname @{SET} iifname != @{SET} iifname "{name}" meta iifkind "bridge" drop')
)


def table_script(bridges: tuple[str, ...]) -> list[str]:
    """Make the table as it should be with exactly `bridges` in the set: one transaction (`add`
    is idempotent; the flushes make the chain and the set exact)."""
    lines = [f"add table {QUALIFIED}", f"add set {QUALIFIED} {SET} {{ type ifname; }}",
             f"add chain {QUALIFIED} {CHAIN} {{ type filter hook forward priority filter - 1; policy accept; }}",
             f"flush chain {QUALIFIED} {CHAIN}", f"flush set {QUALIFIED} {SET}"]
    lines += [f"add rule {QUALIFIED} {CHAIN} {rule}" for rule in RULES]
    if bridges:
        lines.append(f"add element {QUALIFIED} {SET} {{ {', '.join(_q(b) for b in bridges)} }}")
    return lines


def delete_script() -> list[str]:
    """Remove the table; nothing to do if it is not there (add first: delete alone would fail)."""
    return [f"add table {QUALIFIED}", f"delete table {QUALIFIED}"]


def _q(ifname: str) -> str:
    return f'"{ifname}"'


def read_listing(listing: dict | None) -> tuple[str, ...] | None:
    """`nft -j list table inet netkit_isolation` -> the bridges in its set, sorted; None when the
    table is missing or its chain does not hold exactly its rules (then it is made again)."""
    if listing is None:
        return None
    bridges: list[str] = []
    rules = 0
    for item in listing.get("nftables", []):
        if "set" in item and item["set"].get("name") == SET:
            bridges = [str(e) for e in item["set"].get("elem", [])]
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            rules += 1
    return tuple(sorted(bridges)) if rules == len(RULES) else None


def wanted(nets) -> tuple[str, ...]:
    """The set's content for these networks: the bridges of those netkit writes rules for."""
    return tuple(sorted({n.bridge for n in nets if n.iptables and n.bridge and not n.parent}))
