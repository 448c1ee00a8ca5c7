"""A throwaway world for labs, demos and tests: fresh network, mount and PID namespaces, private
/run/netns, /run/netkit and /etc/netns, netkit state in a temporary folder, and an `outside`
namespace joined by a veth pair (uplink 198.18.0.1/24 <-> outside eth0 198.18.0.2/24).

Nothing made inside can touch the machine's own interfaces or firewall, and when the command
ends, the PID namespace ends with it, taking every process (servers included) along.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

from netkit.errors import EnvError
from netkit.kernel import nsutil

UPLINK = "uplink"
UPLINK_ADDR = "198.18.0.1"
OUTSIDE = "outside"
OUTSIDE_ADDR = "198.18.0.2"
OUTSIDE_IF = "eth0"
PREFIX = 24
PRIVATE_DIRS = ("/run/netns", "/run/netkit", "/etc/netns")
SANDBOX_RESOLV = "/run/netkit/host-resolv.conf"


def mount_private_dirs() -> None:
    """Fresh tmpfs over the folders where netns names, pins and per-container files live."""
    for path in PRIVATE_DIRS:
        os.makedirs(path, exist_ok=True)  # an empty folder on the real filesystem, as mount point
        nsutil.mount("tmpfs", path, "tmpfs", nsutil.MS_NOSUID | nsutil.MS_NODEV, "mode=755")
    # The sandbox's "host resolver" is the outside host: DNS forwarding stays inside.
    with open(SANDBOX_RESOLV, "w") as fh:
        fh.write(f"# netkit sandbox: the outside host plays the upstream resolver\nnameserver {OUTSIDE_ADDR}\n")
    # sysfs shows the netns of whoever mounts it: remount so /sys/class/net is the sandbox's.
    nsutil.mount("sysfs", "/sys", "sysfs", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)


def unmount_private_dirs() -> None:
    for path in ("/sys",) + PRIVATE_DIRS:
        try:
            nsutil.umount(path, nsutil.MNT_DETACH)
        except OSError:
            pass


def build_network() -> None:
    """lo up, and the `outside` host on the other end of the uplink."""
    from netkit.kernel import links

    links.veth_to_netns(UPLINK, UPLINK_ADDR, OUTSIDE, OUTSIDE_IF, OUTSIDE_ADDR, PREFIX)


def _environment(state: str) -> None:
    os.environ["NETKIT_STATE_DIR"] = state
    os.environ["NETKIT_RUN_DIR"] = "/run/netkit"
    os.environ["NETKIT_SANDBOX"] = "1"
    os.environ["NETKIT_HOST_RESOLV"] = SANDBOX_RESOLV
    # So that `netkit` typed inside the sandbox is this very installation.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    os.environ["NETKIT_SANDBOX_PIDNS"] = os.readlink("/proc/self/ns/pid")
    os.environ["XTABLES_LOCKFILE"] = "/run/netkit/xtables.lock"  # the sandbox's own rules, its own lock


def in_sandbox() -> bool:
    """True only inside a netkit sandbox's own PID namespace (safe to kill strays, to touch iptables)."""
    try:
        return os.environ.get("NETKIT_SANDBOX") == "1" and \
            os.environ.get("NETKIT_SANDBOX_PIDNS") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def run(argv: list[str]) -> int:
    """Run argv in a new sandbox; return its exit code once everything inside is gone."""
    if os.geteuid() != 0:
        raise EnvError("netkit sandbox needs root (namespaces and mounts): try sudo")
    argv = argv or [os.environ.get("SHELL", "/bin/sh")]
    state = tempfile.mkdtemp(prefix="netkit-sandbox-")
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(_enter(argv, state))
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command inside decides what Ctrl-C does
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    finally:
        # The empty mount-point folders stay: removing one would detach it from every other
        # sandbox that has its tmpfs mounted there right now.
        shutil.rmtree(state, ignore_errors=True)


def _enter(argv: list[str], state: str) -> int:
    """New namespaces, then PID 1 of the sandbox as a child (a new PID ns applies to children)."""
    try:
        nsutil.unshare(nsutil.CLONE_NEWNET | nsutil.CLONE_NEWNS | nsutil.CLONE_NEWPID)
    except OSError as err:
        print(f"netkit: cannot create namespaces for the sandbox: {err.strerror}", file=sys.stderr)
        return 1
    nsutil.mount(None, "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
    pid = os.fork()
    if pid == 0:
        os._exit(_init(argv, state))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _init(argv: list[str], state: str) -> int:
    """PID 1 of the sandbox: set it up, run the command, reap orphans, return its exit code."""
    try:
        nsutil.mount("proc", "/proc", "proc", nsutil.MS_NOSUID | nsutil.MS_NODEV | nsutil.MS_NOEXEC)
        mount_private_dirs()
        build_network()
        _environment(state)
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                os.execvp(argv[0], argv)
            except OSError as err:
                print(f"netkit sandbox: cannot run {argv[0]}: {err.strerror}", file=sys.stderr)
                os._exit(127)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pid, status = os.wait()
            if pid == child:
                return os.waitstatus_to_exitcode(status)
    except Exception as err:  # noqa: BLE001 - PID 1 must report, never raise
        print(f"netkit sandbox: {err}", file=sys.stderr)
        return 1
