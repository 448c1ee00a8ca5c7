"""Named network namespaces the way `ip netns` keeps them (/run/netns/NAME bind mounts),
made in-process with unshare+bind-mount instead of pyroute2's forked helper (docs/facts.md, "Attach cost")."""
from __future__ import annotations

import os
import socket

from netkit.kernel import nsutil

NETNS_RUN_DIR = "/run/netns"


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _prepare_run_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does, so names show in every mount ns."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    if not nsutil.is_mountpoint(NETNS_RUN_DIR):
        nsutil.mount(NETNS_RUN_DIR, NETNS_RUN_DIR, None, nsutil.MS_BIND | nsutil.MS_REC)
    try:
        nsutil.mount(None, NETNS_RUN_DIR, None, nsutil.MS_SHARED | nsutil.MS_REC)
    except OSError:
        pass  # a private parent (e.g. a sandbox) refuses nothing that matters here


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def create(name: str, ipv6: bool = False) -> tuple[int, socket.socket]:
    """Create netns NAME with lo up; return an fd on it and a NETLINK_ROUTE socket inside it.

    The calling thread steps into the new netns (unshare), pins it with a bind mount, sets its
    sysctls, opens the socket, and steps back: no fork, no interface moved.
    """
    _prepare_run_dir()
    path = netns_path(name)
    home = nsutil.current_netns_fd()
    try:
        nsutil.unshare(nsutil.CLONE_NEWNET)
        try:
            nsutil.pin("/proc/thread-self/ns/net", path)
            if not ipv6:
                # Before any interface exists, so that none of them sends DAD/RS/MLD (docs/facts.md, "IPv6 flooding").
                for scope in ("all", "default"):
                    _write_sysctl(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "1")
            nsutil.set_link_up("lo")
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)
            ns_fd = nsutil.current_netns_fd()
        finally:
            nsutil.setns(home, nsutil.CLONE_NEWNET)
    except FileExistsError:
        raise
    except BaseException:
        nsutil.unpin(path)
        raise
    finally:
        os.close(home)
    return ns_fd, sock


def attach(name: str, source: str) -> None:
    """Pin an existing netns (e.g. /proc/PID/ns/net) under /run/netns/NAME (`ip netns attach`)."""
    _prepare_run_dir()
    nsutil.pin(source, netns_path(name))


def delete(name: str) -> None:
    """Drop the name; the kernel frees the netns once no process or mount holds it."""
    nsutil.unpin(netns_path(name))


def open_socket(path: str) -> socket.socket:
    """A NETLINK_ROUTE socket inside the netns at `path` (file or /proc/PID/ns/net)."""
    with nsutil.entered_netns(path):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, 0)


def same_netns(path_a: str, path_b: str) -> bool:
    a, b = os.stat(path_a), os.stat(path_b)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


_NS_GET_NSTYPE = 0xB703  # ioctl(2) on an nsfs file: which kind of namespace it is (Linux 4.11)


def is_netns_file(path: str) -> bool:
    """Whether `path` is a network namespace (a /proc/PID/ns/net file or a bind mount of one):
    asks the kernel with NS_GET_NSTYPE, which any other file refuses (ENOTTY)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == nsutil.CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)
