"""Interfaces handed over to a runtime that moves them itself (Docker's remote network driver).

dockerd calls the driver's Join before the container's netns exists and then moves the
interface the driver names into it. netkit wires an attachment the usual way in a staging netns,
then hands the container end back to the caller's netns under a temporary name for Docker to
take; once Docker's netns exists, netkit's pin of the staging netns is re-pointed at it, so that
`ip netns exec rt-...` and netkit's records show the container's real netns.
"""
from __future__ import annotations

import os

from netkit.errors import KernelError
from netkit.kernel import netns, nsutil


def make_staging(name: str) -> str:
    """A fresh, empty netns pinned at /run/netns/NAME; its path. A name left by a Join that
    died half-way (same endpoint, retried) is dropped first."""
    if netns.exists(name):
        netns.delete(name)
    fd, sock = netns.create(name)
    os.close(fd)
    sock.close()
    return netns.netns_path(name)


def drop_name(name: str) -> None:
    netns.delete(name)


def move_here(netns_path: str, ifname: str, new_name: str) -> None:
    """Move `ifname` out of the netns at `netns_path` into the calling thread's netns as `new_name`
    (one netlink request: IFLA_NET_NS_FD with IFLA_IFNAME renames on the way)."""
    from netkit.kernel.pyroute2_loader import IPRoute
    from netkit.kernel.pyroute2_loader import NetlinkError

    home = nsutil.current_netns_fd()
    try:
        with nsutil.entered_netns(netns_path):
            ipr = IPRoute()
        try:
            index = ipr.link_lookup(ifname=ifname)
            if not index:
                raise FileNotFoundError(f"no interface {ifname} in {netns_path}")
            ipr.link("set", index=index[0], net_ns_fd=home, ifname=new_name)
        except NetlinkError as err:
            raise KernelError(f"cannot hand {ifname} over as {new_name}: {os.strerror(err.code)}") from None
        finally:
            ipr.close()
    finally:
        os.close(home)


def repin(name: str, source: str) -> bool:
    """Point the netns name NAME at the netns file `source` instead; False if NAME is gone (the
    attachment was removed meanwhile)."""
    path = netns.netns_path(name)
    if not os.path.exists(path):
        return False
    nsutil.umount(path, nsutil.MNT_DETACH)
    try:
        nsutil.mount(source, path, None, nsutil.MS_BIND)
    except FileNotFoundError:
        return False
    return True
