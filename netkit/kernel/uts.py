"""Persistent UTS namespaces holding a container's hostname, pinned by a bind mount to a file
(`ip netns exec` has no UTS namespace, so netkit keeps one per container with a hostname)."""
from __future__ import annotations

import os

from netkit.kernel import nsutil


def create(path: str, hostname: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        nsutil.unshare(nsutil.CLONE_NEWUTS)
        try:
            nsutil.sethostname(hostname)
            nsutil.mount("/proc/thread-self/ns/uts", path, None, nsutil.MS_BIND)
        finally:
            nsutil.setns(home, nsutil.CLONE_NEWUTS)
    except BaseException:
        delete(path)
        raise
    finally:
        os.close(home)


def delete(path: str) -> None:
    try:
        nsutil.umount(path, nsutil.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
