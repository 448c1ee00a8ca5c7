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


class CannotRun(UserError):
    """The command could not be started: exit 127 when it is not found, 126 when it cannot be
    run (not executable, bad working directory or user), as `docker exec` and shells do."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _become(user: str) -> dict[str, str]:
    """Switch to USER[:GROUP] (names or numbers, as `docker exec -u`); returns env to set."""
    import grp
    import pwd

    name, _, group = user.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid, home = entry.pw_uid, entry.pw_gid, entry.pw_dir
    except KeyError:
        if not name.isdigit():
            raise CannotRun(f"unable to find user {name}: no matching entries in passwd file", 126) from None
        uid, gid, home = int(name), int(name), "/"
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise CannotRun(f"unable to find group {group}: no matching entries in group file", 126) from None
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return {"HOME": home}


def exec_argv(argv: list[str], env: dict[str, str] | None = None, workdir: str | None = None,
              user: str | None = None) -> None:
    """Become argv; `env` is added to the environment, `workdir` is the working directory and
    `user` USER[:GROUP] the identity (docker exec -e, -w, -u)."""
    if not argv:
        raise UserError("no command given; usage: netkit exec NAME [-it] [-e K=V] [-w DIR] [-u USER] CMD [ARGS...]")
    environ = dict(os.environ)
    if user:
        environ.update(_become(user))
    if workdir:
        try:
            os.chdir(workdir)
        except OSError as err:
            raise CannotRun(f"cannot change to working directory {workdir}: {err.strerror}", 126) from None
    environ.update(env or {})
    try:
        os.execvpe(argv[0], argv, environ)
    except FileNotFoundError:
        raise CannotRun(f"command not found: {argv[0]}", 127) from None
    except PermissionError:
        raise CannotRun(f"command not executable: {argv[0]} (permission denied)", 126) from None
    except OSError as err:
        raise CannotRun(f"cannot run {argv[0]}: {err.strerror}", 126) from None
