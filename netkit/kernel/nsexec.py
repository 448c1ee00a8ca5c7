"""Become a process inside a container: its netns, its UTS namespace (hostname), and a private
mount namespace where /etc/netns/NAME/* are bind-mounted over /etc/* (as `ip netns exec` does).

Called from the single-threaded CLI process right before execvp, so no helper is forked.
"""
from __future__ import annotations

import os

from netkit.errors import EnvError, UserError
from netkit.kernel import nsutil

ETC_NETNS = "/etc/netns"


def _bind_etc(name: str) -> None:
    folder = os.path.join(ETC_NETNS, name)
    if not os.path.isdir(folder):
        return
    for entry in sorted(os.listdir(folder)):
        src = os.path.join(folder, entry)
        dst = os.path.join("/etc", entry)
        # A bind over a symlink lands on its target (resolv.conf -> /run/...). A dangling one is
        # skipped rather than created: that would write to the host's own filesystem.
        target = os.path.realpath(dst)
        if os.path.exists(target):
            nsutil.mount(src, target, None, nsutil.MS_BIND)


def _remount_sys() -> None:
    """So that /sys/class/net shows the container's interfaces, not the host's."""
    try:
        nsutil.umount("/sys", nsutil.MNT_DETACH)
        nsutil.mount("sysfs", "/sys", "sysfs", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)
    except OSError:
        pass  # tools then see the host's sysfs; networking itself is unaffected


def enter(netns_path: str | None, uts_path: str | None, etc_name: str | None) -> None:
    """Move this (single-threaded) process into the container's namespaces."""
    try:
        if netns_path:
            nsutil.setns_path(netns_path, nsutil.CLONE_NEWNET)
        if uts_path:
            nsutil.setns_path(uts_path, nsutil.CLONE_NEWUTS)
        if netns_path:
            nsutil.unshare(nsutil.CLONE_NEWNS)
            # Slave, not private: mounts made later on the host (new netns names) still show.
            nsutil.mount(None, "/", None, nsutil.MS_SLAVE | nsutil.MS_REC)
            _remount_sys()
            if etc_name:
                _bind_etc(etc_name)
    except OSError as err:
        raise EnvError(f"cannot enter the container's namespaces: {err}") from None


def exec_argv(argv: list[str]) -> None:
    if not argv:
        raise UserError("no command given; usage: netkit exec NAME -- CMD [ARGS...]")
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        raise UserError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise UserError(f"command not executable: {argv[0]}") from None
