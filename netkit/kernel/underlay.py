"""The wires of a multi-host sandbox: an `underlay` bridge in the sandbox's own netns (the
switch between the hosts) and a veth pair from it into each host's netns (`uplink` inside).
"""
from __future__ import annotations

import errno
import os

from netkit.kernel.pyroute2_loader import IPRoute

from netkit.kernel import netns, nsutil


def make_switch(bridge: str, address: str, prefixlen: int) -> None:
    """lo up and the bridge, holding the sandbox's own underlay address."""
    with IPRoute() as ipr:
        ipr.link("set", index=1, state="up")
        ipr.link("add", ifname=bridge, kind="bridge")
        idx = ipr.link_lookup(ifname=bridge)[0]
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")


def plug(bridge: str, port: str, netns_path: str, inner: str, address: str, prefixlen: int) -> None:
    """A veth pair: `port` on the bridge here, `inner` with `address` inside the netns at netns_path."""
    ns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            master = ipr.link_lookup(ifname=bridge)[0]
            ipr.link("add", ifname=port, kind="veth", peer={"ifname": inner, "net_ns_fd": ns_fd})
            idx = ipr.link_lookup(ifname=port)[0]
            ipr.link("set", index=idx, master=master, state="up")
    finally:
        os.close(ns_fd)
    with nsutil.entered_netns(netns_path):
        nsutil.set_link_up("lo")
    sock = netns.open_socket(netns_path)
    with IPRoute(fileno=sock.detach()) as inside:
        idx = inside.link_lookup(ifname=inner)[0]
        inside.addr("add", index=idx, address=address, prefixlen=prefixlen)
        inside.link("set", index=idx, state="up")


def unplug(port: str) -> None:
    """Pull a host's cable: its veth pair goes, the host is cut off the underlay."""
    from netkit.kernel.pyroute2_loader import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=port)
        try:
            if found:
                ipr.link("del", index=found[0])
        except NetlinkError as err:
            if err.code not in (errno.ENODEV, errno.ENOENT):
                raise  # ENODEV: the host's netns died just now and took the pair with it
