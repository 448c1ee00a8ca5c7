"""Every external program and shared library netkit, its tests, demos and labs use, with the Debian
package that brings it: the one list `scripts/bootstrap.sh` installs from.

`python3 -m netkit.programs` prints the list for the bootstrap (standard library only, so it runs
before the venv exists). A unit test checks that every program the code and the tests run is here.
"""
from __future__ import annotations

import os
import shutil

BOOTSTRAP = "scripts/bootstrap.sh"

# program -> Debian package. Programs of Debian's essential set are listed too: the unit test
# then needs no exception list, and a minimal image without them is caught like any other gap.
PROGRAMS: dict[str, str] = {
    # netlink and namespaces, as the course material types them
    "ip": "iproute2",
    "ss": "iproute2",
    "bridge": "iproute2",
    "brctl": "bridge-utils",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "sysctl": "procps",
    "hostname": "hostname",
    # firewall: both xtables backends and native nftables
    "iptables": "iptables",
    "iptables-save": "iptables",
    "iptables-legacy": "iptables",
    "iptables-legacy-save": "iptables",
    "iptables-legacy-restore": "iptables",
    "iptables-nft": "iptables",
    "iptables-nft-save": "iptables",
    "iptables-nft-restore": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
    # watching packets, and the traffic the labs make
    "tcpdump": "tcpdump",
    "ping": "iputils-ping",
    "curl": "curl",
    # pictures (tracer, `netkit topology --svg`) rendered to PNG: tests and a look
    "rsvg-convert": "librsvg2-bin",
    # the shared store of several hosts (overlay networks; docs/multihost.md)
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    # a real Docker engine beside netkit's driver (tests, scripts/dockerbox.py, scripts/bench_docker.py)
    "dockerd": "docker.io",
    "containerd": "containerd",
    # shell plumbing used by tests and lab checks
    "bash": "bash",
    "cat": "coreutils",
    "cut": "coreutils",
    "dirname": "coreutils",
    "seq": "coreutils",
    "sleep": "coreutils",
    "sort": "coreutils",
    "touch": "coreutils",
    "chmod": "coreutils",
    "rm": "coreutils",
    "timeout": "coreutils",
    "head": "coreutils",
    "tail": "coreutils",
    "wc": "coreutils",
    "tr": "coreutils",
    "wc": "coreutils",
    "grep": "grep",
    "sed": "sed",
    "awk": "mawk",
    "getent": "libc-bin",
}

# files used by absolute path, off the PATH -> Debian package: the reference CNI plugins, which
# netkit-cni's tests and scripts/bench.py run beside it, and what the Docker tests use.
FILES: dict[str, str] = {
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/lib/cni/host-local": "containernetworking-plugins",
    "/usr/lib/cni/tuning": "containernetworking-plugins",
    # docker.io's client by path: another `docker` may come first on the PATH
    "/usr/bin/docker": "docker.io",
    # the one binary of the local image `docker import` makes (no registry is reachable); the
    # dynamic busybox package has the same path, and an image of it would not run
    "/bin/busybox": "busybox-static",
}

# shared library (as ldconfig names it) -> Debian package: loaded through ctypes, not run.
LIBRARIES: dict[str, str] = {
    "libpcap.so": "libpcap0.8",  # Scapy and the tracer compile BPF filters with it
    "libxtables.so": "libxtables12",  # python-iptables
    "libip4tc.so": "libip4tc2",
    "libnftables.so": "libnftables1",  # the nftables firewall backend (kernel/fw/libnft.py)
}


def missing_message(program: str) -> str:
    package = PROGRAMS.get(program) or FILES.get(program)
    if package is None:
        return f"{program} is not on netkit's list of programs (netkit/programs.py); add it with its Debian package"
    return f"{program} not found: install the Debian package '{package}' (`{BOOTSTRAP}` installs everything netkit uses)"


def find(program: str) -> str | None:
    """Path of an optional program, or None. Unlisted names are a programming error."""
    if program in FILES:
        return program if os.access(program, os.X_OK) else None
    if program not in PROGRAMS:
        raise KeyError(missing_message(program))
    return shutil.which(program)


def require(program: str) -> str:
    """Path of a program netkit cannot do without, or an EnvError naming the package to install."""
    path = find(program)
    if path is None:
        from netkit.errors import EnvError

        raise EnvError(missing_message(program))
    return path


def _main() -> None:
    for program, package in PROGRAMS.items():
        print(f"program {program} {package}")
    for path, package in FILES.items():
        print(f"file {path} {package}")
    for lib, package in LIBRARIES.items():
        print(f"library {lib} {package}")


if __name__ == "__main__":
    _main()
