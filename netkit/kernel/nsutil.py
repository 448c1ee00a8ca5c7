"""Namespace system calls through ctypes (Python 3.11 has no os.setns/os.unshare).

setns/unshare act on the calling thread only for network and UTS namespaces, which is what
lets netkit step into a container's netns and back without forking a helper process.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setns_path(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def pin(source: str, path: str) -> None:
    """Keep a namespace alive under `path` by bind-mounting its /proc file (`ip netns add` does)."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        mount(source, path, None, MS_BIND)
    except BaseException:
        unpin(path)
        raise


def unpin(path: str) -> None:
    import errno

    try:
        umount(path, MNT_DETACH)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def current_netns_fd() -> int:
    """An fd on the calling thread's netns (not the process's: they differ after setns)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextmanager
def entered_netns(path: str):
    """Run the body with the calling thread inside the netns at `path`, then step back."""
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = current_netns_fd()
        try:
            setns(target, CLONE_NEWNET)
            try:
                yield
            finally:
                setns(home, CLONE_NEWNET)
        finally:
            os.close(home)
    finally:
        os.close(target)  # also when the path is no netns or the setns is refused: no fd leaked


def link_exists(ifname: str) -> bool:
    """Whether an interface of that name is in the calling thread's netns (no netlink needed)."""
    import socket

    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False


def set_link_up(ifname: str) -> None:
    """IFF_UP by ioctl in the calling thread's netns: ~10 us, against ~1 ms for a netlink round trip."""
    import fcntl
    import socket
    import struct

    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        req = struct.pack("16sH14x", ifname.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags | IFF_UP))


def is_mountpoint(path: str) -> bool:
    try:
        return os.path.ismount(path)
    except OSError:
        return False
