"""Persistent UTS namespaces holding a container's hostname, pinned by a bind mount to a file
(`ip netns exec` has no UTS namespace, so netkit keeps one per container with a hostname)."""
from __future__ import annotations

import os

from netkit.kernel import nsutil


def create(path: str, hostname: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    home = os.open("/proc/thread-self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        nsutil.unshare(nsutil.CLONE_NEWUTS)
        try:
            nsutil.sethostname(hostname)
            nsutil.pin("/proc/thread-self/ns/uts", path)
        finally:
            nsutil.setns(home, nsutil.CLONE_NEWUTS)
    finally:
        os.close(home)


def delete(path: str) -> None:
    nsutil.unpin(path)
