"""Host facts the planners need, behind one small interface: does a link or netns exist, what is
a link, is a host port taken, which routes and sysctl values does the host have.

The engine asks `ctx.probe` instead of the kernel, so every plan and check can run in a unit test
against `FakeProbe` (a few dicts), without root. `HostProbe` answers from this host: cheap calls
(ioctl, bind, /proc and /sys reads) stay cheap; pyroute2 is imported only by the calls that need it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Protocol


class Probe(Protocol):
    def link_exists(self, ifname: str) -> bool: ...
    def link_info(self, ifname: str, netns: str | None = None) -> dict | None: ...
    def link_by_index(self, index: int, netns: str | None = None) -> dict | None: ...
    def link_names(self) -> list[str]: ...
    def bridge_ports(self, bridge: str) -> list[str]: ...
    def default_gateway(self, netns: str) -> str | None: ...
    def netns_exists(self, name: str) -> bool: ...
    def path_exists(self, path: str) -> bool: ...
    def list_dir(self, path: str) -> list[str]: ...
    def is_netns_file(self, path: str) -> bool: ...
    def same_netns(self, path_a: str, path_b: str) -> bool: ...
    def process_exists(self, pid: int) -> bool: ...
    def netns_pids(self, netns_path: str) -> list[tuple[int, str]]: ...
    def port_busy(self, proto: str, ip: str, port: int) -> bool: ...
    def is_local_address(self, ip: str) -> bool: ...
    def host_routes(self) -> list[IPv4Network]: ...
    def ephemeral_range(self) -> tuple[int, int]: ...
    def sysctl(self, path: str) -> str | None: ...
    def hairpin_off(self, ifnames: list[str]) -> list[str]: ...
    def foreign_firewall(self) -> dict: ...
    def port_guards(self) -> tuple[set, bool, set]: ...
    def cross_isolation(self) -> tuple[str, ...] | None: ...


_SOCK = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0), "sctp": (socket.SOCK_STREAM, 132)}


class HostProbe:
    """Facts of the netns the calling thread is in."""

    def link_exists(self, ifname: str) -> bool:
        from netkit.kernel.nsutil import link_exists

        return link_exists(ifname)

    def link_info(self, ifname: str, netns: str | None = None) -> dict | None:
        from netkit.kernel import links

        return links.link_info(ifname, netns)

    def link_by_index(self, index: int, netns: str | None = None) -> dict | None:
        from netkit.kernel import links

        return links.link_info("", netns, index=index)

    def link_names(self) -> list[str]:
        return sorted(name for _, name in socket.if_nameindex())

    def bridge_ports(self, bridge: str) -> list[str]:
        from netkit.kernel import links

        return links.bridge_ports(bridge)

    def default_gateway(self, netns: str) -> str | None:
        from netkit.kernel import links

        return links.default_gateway(netns)

    def netns_exists(self, name: str) -> bool:
        from netkit.kernel import netns as netns_mod

        return netns_mod.exists(name)

    def path_exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list_dir(self, path: str) -> list[str]:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def is_netns_file(self, path: str) -> bool:
        from netkit.kernel import netns as netns_mod

        return netns_mod.is_netns_file(path)

    def same_netns(self, path_a: str, path_b: str) -> bool:
        from netkit.kernel import netns as netns_mod

        return netns_mod.same_netns(path_a, path_b)

    def process_exists(self, pid: int) -> bool:
        return pid > 0 and os.path.exists(f"/proc/{pid}/ns/net")

    def netns_pids(self, netns_path: str) -> list[tuple[int, str]]:
        from netkit.kernel import procs

        return procs.netns_pids(netns_path)

    def port_busy(self, proto: str, ip: str, port: int) -> bool:
        """Does a host socket hold ip:port (a TCP listener, a bound UDP socket)? Asked by binding,
        which is microseconds; reading /proc/net/tcp walks the kernel's global hash (milliseconds).
        SO_REUSEADDR makes TIME_WAIT and outgoing connections not count, as they would not for Docker."""
        kind, number = _SOCK[proto]
        try:
            s = socket.socket(socket.AF_INET, kind, number)
        except OSError:
            return False  # no kernel support for the protocol: nothing can hold the port either
        with s:
            if proto == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, port))
            except OSError:
                return True
        return False

    def is_local_address(self, ip: str) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((ip, 0))
            except OSError:
                return False
        return True

    def host_routes(self) -> list[IPv4Network]:
        from netkit import ipam

        return ipam.host_routes()

    def ephemeral_range(self) -> tuple[int, int]:
        from netkit import portspec

        return portspec.ephemeral_range()

    def sysctl(self, path: str) -> str | None:
        from netkit.kernel import firewall

        return firewall.read_sysctl(path)

    def hairpin_off(self, ifnames: list[str]) -> list[str]:
        from netkit.kernel import firewall

        return firewall.hairpin_off(ifnames)

    def foreign_firewall(self) -> dict:
        """Rules of other firewall backends that may drop netkit's traffic (see firewall.nft_report)."""
        from netkit.kernel import firewall

        return firewall.nft_report()

    def port_guards(self) -> tuple[set, bool, set]:
        """The anti-spoofing table: (complete (ifname, mac, ip) guards, whether its chain is intact,
        ifnames with any element), see netkit/antispoof.py."""
        from netkit import antispoof
        from netkit.kernel import antispoof as kernel_antispoof

        listing = kernel_antispoof.listing()
        guards, intact = antispoof.read_listing(listing)
        return guards, intact, antispoof.partial(listing)

    def cross_isolation(self) -> tuple[str, ...] | None:
        """The bridges in the table isolating netkit's networks from other bridges (None: no
        intact table), see netkit/xisolation.py."""
        from netkit.kernel import xisolation

        return xisolation.current()


@dataclass
class FakeProbe:
    """A host made of dicts, for unit tests. `links`: name -> link_info dict (kind, ifindex,
    master ifindex, iflink, address, ipv4 ...); `netns_links`: netns -> {name: link_info}; `busy`: (proto, ip,
    port) held by host programs; `sysctls`: /proc/sys path -> value."""

    links: dict[str, dict] = field(default_factory=dict)
    netns_links: dict[str, dict[str, dict]] = field(default_factory=dict)
    gateways: dict[str, str] = field(default_factory=dict)
    netns: set[str] = field(default_factory=set)
    files: dict[str, str] = field(default_factory=dict)  # path -> "netns" | "file" | "dir"
    processes: set[int] = field(default_factory=set)
    netns_procs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # netns path -> (PID, comm)
    busy: set[tuple[str, str, int]] = field(default_factory=set)
    local_addresses: set[str] = field(default_factory=lambda: {"127.0.0.1", "198.18.0.1"})
    routes: list[IPv4Network] = field(default_factory=list)
    ephemeral: tuple[int, int] = (32768, 60999)
    sysctls: dict[str, str] = field(default_factory=dict)
    hairpin: dict[str, bool] = field(default_factory=dict)
    host_netns: str = "/proc/thread-self/ns/net"
    foreign: dict = field(default_factory=lambda: {"iptables_nft_rules": None, "forward_drop_chains": []})
    guards: set = field(default_factory=set)  # (ifname, mac, ip) anti-spoofing elements
    guard_table: bool = False
    cross_isolation_set: tuple | None = None  # netkit/xisolation.py's set; None: no table

    def link_exists(self, ifname: str) -> bool:
        return ifname in self.links

    def link_info(self, ifname: str, netns: str | None = None) -> dict | None:
        table = self.netns_links.get(netns, {}) if netns else self.links
        return table.get(ifname)

    def link_by_index(self, index: int, netns: str | None = None) -> dict | None:
        table = self.netns_links.get(netns, {}) if netns else self.links
        return next((link for link in table.values() if link.get("ifindex") == index), None)

    def link_names(self) -> list[str]:
        return sorted(self.links)

    def bridge_ports(self, bridge: str) -> list[str]:
        index = (self.links.get(bridge) or {}).get("ifindex")
        return sorted(name for name, info in self.links.items() if index is not None and info.get("master") == index)

    def default_gateway(self, netns: str) -> str | None:
        return self.gateways.get(netns)

    def netns_exists(self, name: str) -> bool:
        return name in self.netns

    def path_exists(self, path: str) -> bool:
        return path in self.files or (path.startswith("/run/netns/") and path[len("/run/netns/"):] in self.netns)

    def list_dir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.files if p.startswith(prefix)})

    def is_netns_file(self, path: str) -> bool:
        return self.files.get(path) == "netns" or path.startswith("/proc/") or \
            (path.startswith("/run/netns/") and self.path_exists(path))

    def same_netns(self, path_a: str, path_b: str) -> bool:
        def which(path: str) -> str:
            return self.host_netns if self.files.get(path) == "host-netns" else path

        return which(path_a) == which(path_b)

    def process_exists(self, pid: int) -> bool:
        return pid in self.processes

    def netns_pids(self, netns_path: str) -> list[tuple[int, str]]:
        return list(self.netns_procs.get(netns_path, []))

    def port_busy(self, proto: str, ip: str, port: int) -> bool:
        return any(p == proto and n == port and (i == ip or "0.0.0.0" in (i, ip)) for p, i, n in self.busy)

    def is_local_address(self, ip: str) -> bool:
        return ip in self.local_addresses

    def host_routes(self) -> list[IPv4Network]:
        return list(self.routes)

    def ephemeral_range(self) -> tuple[int, int]:
        return self.ephemeral

    def sysctl(self, path: str) -> str | None:
        return self.sysctls.get(path)

    def hairpin_off(self, ifnames: list[str]) -> list[str]:
        return [n for n in ifnames if (self.links.get(n) or {}).get("master") and not self.hairpin.get(n)]

    def foreign_firewall(self) -> dict:
        return self.foreign

    def port_guards(self) -> tuple[set, bool, set]:
        return set(self.guards), self.guard_table, {g[0] for g in self.guards}

    def cross_isolation(self) -> tuple[str, ...] | None:
        return self.cross_isolation_set
