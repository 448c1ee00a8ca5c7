"""The data plane of an overlay network on one host: a bridge and a VXLAN device on it, and the
forwarding (FDB) and neighbour entries that tell the VXLAN device where each remote container is.

As Docker's overlay driver does: the VXLAN device learns nothing and floods nothing (no
all-zeros FDB entry), and answers ARP itself from its neighbour table (`proxy`), so every
frame it sends goes to exactly one host, the one the store says holds that MAC.
"""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from netkit.kernel.pyroute2_loader import IPRoute
from netkit.kernel.pyroute2_loader import NetlinkError
from netkit.kernel.pyroute2_loader import ndmsg

from netkit.errors import KernelError
from netkit.naming import bridge_mac

VXLAN_PORT = 4789  # IANA's port, which Docker and Linux's `dstport 4789` use
AF_BRIDGE = 7  # PF_BRIDGE: FDB entries are neighbour entries of this family
OVERLAY_MTU = 1450  # 1500 of the underlay minus 50 bytes of outer Ethernet, IP, UDP and VXLAN headers
_PERMANENT = ndmsg.states["permanent"]


@dataclass(frozen=True)
class OverlayDevices:
    vni: int
    bridge: str
    vxlan: str


def devices(vni: int) -> OverlayDevices:
    # Named by VNI, which is the same on every host: `ip link` on any host shows the same names.
    return OverlayDevices(vni, f"ovbr{vni}", f"vxlan{vni}")


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _fail(what: str, err: NetlinkError) -> KernelError:
    import os

    return KernelError(f"{what} failed: {os.strerror(err.code) if err.code else err}")


def ensure(vni: int, local_ip: str, gateway: str, prefixlen: int, mtu: int = OVERLAY_MTU) -> bool:
    """Make the network's bridge (gateway address on it) and VXLAN device if missing; True if made."""
    dev = devices(vni)
    with IPRoute() as ipr:
        if _index(ipr, dev.vxlan) is not None:
            return False
        made = []
        try:
            if _index(ipr, dev.bridge) is None:
                ipr.link("add", ifname=dev.bridge, kind="bridge", mtu=mtu, address=bridge_mac(dev.bridge))
                made.append(dev.bridge)
                _disable_ipv6(dev.bridge)
                br = _index(ipr, dev.bridge)
                ipr.addr("add", index=br, address=gateway, prefixlen=prefixlen)
                ipr.link("set", index=br, state="up")
            br = _index(ipr, dev.bridge)
            ipr.link("add", ifname=dev.vxlan, kind="vxlan", vxlan_id=vni, vxlan_local=local_ip,
                     vxlan_port=VXLAN_PORT, vxlan_learning=0, vxlan_proxy=1, mtu=mtu)
            made.append(dev.vxlan)
            _disable_ipv6(dev.vxlan)
            vx = _index(ipr, dev.vxlan)
            # A frame the bridge floods reaches the VXLAN device, which sends it only to a MAC it
            # has an FDB entry for: without an all-zeros entry, nothing is flooded to the underlay.
            ipr.link("set", index=vx, master=br)
            ipr.link("set", index=vx, state="up")
        except NetlinkError as err:
            for name in reversed(made):
                _delete_link(ipr, name)
            raise _fail(f"making overlay devices {dev.bridge}/{dev.vxlan} (VNI {vni})", err) from None
    return True


def remove(vni: int) -> None:
    dev = devices(vni)
    with IPRoute() as ipr:
        for name in (dev.vxlan, dev.bridge):
            _delete_link(ipr, name)


def _delete_link(ipr: IPRoute, name: str) -> None:
    try:
        ipr.link("del", ifname=name)
    except NetlinkError as err:
        if err.code not in (errno.ENODEV, errno.ENOENT):
            raise


def _disable_ipv6(ifname: str) -> None:
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as fh:
            fh.write("1")
    except FileNotFoundError:
        pass


def local_vnis() -> set[int]:
    """VNIs of the overlay networks that have their VXLAN device on this host."""
    out = set()
    for name in socket.if_nameindex():
        ifname = name[1]
        if ifname.startswith("vxlan") and ifname[5:].isdigit():
            out.add(int(ifname[5:]))
    return out


def read(vni: int):
    """(fdb, neigh) of the VXLAN device: {(mac, host IP)}, {(container IP, mac)}; None if it is missing."""
    dev = devices(vni)
    with IPRoute() as ipr:
        vx = _index(ipr, dev.vxlan)
        if vx is None:
            return None
        fdb = set()
        for msg in ipr.fdb("dump", ifindex=vx):
            dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
            if msg["ifindex"] == vx and dst and mac and mac != "00:00:00:00:00:00":
                fdb.add((mac, dst))
        neigh = set()
        for msg in ipr.neigh("dump", ifindex=vx, family=socket.AF_INET):
            dst, mac = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
            if msg["ifindex"] == vx and dst and mac:
                neigh.add((dst, mac))
    return frozenset(fdb), frozenset(neigh)


def program(vni: int, fdb: frozenset, neigh: frozenset) -> tuple[int, int]:
    """Make the VXLAN device's entries exactly these; (added, removed) counts. Neighbour entries
    go in after their FDB entry and out before it, so that no ARP answer points nowhere."""
    have = read(vni)
    if have is None:
        return 0, 0
    have_fdb, have_neigh = have
    dev = devices(vni)
    added = removed = 0
    with IPRoute() as ipr:
        vx = _index(ipr, dev.vxlan)
        try:
            for ip, mac in have_neigh - neigh:
                _ignore_gone(ipr.neigh, "del", ifindex=vx, dst=ip, lladdr=mac, family=socket.AF_INET)
                removed += 1
            for mac, dst in have_fdb - fdb:
                _ignore_gone(ipr.fdb, "del", ifindex=vx, lladdr=mac, dst=dst)
                removed += 1
            for mac, dst in fdb - have_fdb:
                # `replace`, not add: a MAC that moved to another host has an entry to overwrite.
                ipr.neigh("replace", family=AF_BRIDGE, ifindex=vx, lladdr=mac, dst=dst,
                          state=_PERMANENT | ndmsg.states["noarp"], flags=ndmsg.flags["self"])
                added += 1
            for ip, mac in neigh - have_neigh:
                ipr.neigh("replace", ifindex=vx, dst=ip, lladdr=mac, state=_PERMANENT, family=socket.AF_INET)
                added += 1
        except NetlinkError as err:
            raise _fail(f"programming {dev.vxlan}", err) from None
    return added, removed


def _ignore_gone(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except NetlinkError as err:
        if err.code not in (errno.ENOENT, errno.ENODEV):
            raise
