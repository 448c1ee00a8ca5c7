"""Makes macvlan and ipvlan sub-interfaces (netkit.lowerdev.SubInterfaceAdd) with pyroute2,
created directly inside the container's netns so that no name is ever taken on the host."""
from __future__ import annotations

import errno
import os

from netkit.kernel.pyroute2_loader import IPRoute
from netkit.kernel.pyroute2_loader import NetlinkError

from netkit.errors import EnvError, KernelError, UserError
from netkit.kernel import netns as netns_mod

IPVLAN_L2 = 0  # IPVLAN_MODE_L2 in linux/if_link.h


def add(step) -> None:
    """Apply one SubInterfaceAdd; on any failure the sub-interface is gone again."""
    with IPRoute() as host:
        found = host.link_lookup(ifname=step.parent)
        if not found:
            raise UserError(f"parent interface '{step.parent}' does not exist on this host")
        parent = found[0]
        ns_fd = os.open(netns_mod.netns_path(step.netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            extra = {"macvlan_mode": step.mode} if step.driver == "macvlan" else {"ipvlan_mode": IPVLAN_L2}
            if step.mac:
                extra["address"] = step.mac
            host.link("add", ifname=step.ifname, kind=step.driver, link=parent, mtu=step.mtu,
                      net_ns_fd=ns_fd, **extra)
        except NetlinkError as err:
            if err.code == errno.EOPNOTSUPP:
                raise EnvError(f"this kernel has no {step.driver} driver (CONFIG_{step.driver.upper()}); "
                               f"use another driver, e.g. --driver macvlan or bridge") from None
            raise KernelError(f"`{step.render()[0]}` failed: {os.strerror(err.code)}") from None
        finally:
            os.close(ns_fd)
    sock = netns_mod.open_socket(netns_mod.netns_path(step.netns))
    with IPRoute(fileno=sock.detach()) as inside:
        try:
            idx = inside.link_lookup(ifname=step.ifname)[0]
            inside.addr("add", index=idx, address=step.ip, prefixlen=step.prefixlen)
            inside.link("set", index=idx, state="up")
            if step.gateway:
                inside.route("add", dst="0.0.0.0/0", gateway=step.gateway)
        except NetlinkError as err:
            inside.link("del", ifname=step.ifname)
            raise KernelError(f"`{step.render()[1]}` failed: {os.strerror(err.code)}") from None
