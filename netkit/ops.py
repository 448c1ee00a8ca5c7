"""Every kernel change netkit makes, as plain data: each step knows the commands it stands for
(`render()`, what --dry-run prints) and the step that reverses it (`undo()`, None when nothing
needs reversing or it cannot be reversed).

One vocabulary for all of it: namespaces, links, addresses, routes, UTS pins, sysctls, hairpin
mode, anti-spoofing elements, firewall rule changes (a batch of `rules.Op`, FORWARD policy included) and conntrack
clean-up. The engine builds lists of these (plans); kernel/executor.py runs them through one
dispatch table, undoing the finished ones in reverse when a later one fails.
"""
from __future__ import annotations

from dataclasses import dataclass

from netkit import antispoof, rules, xisolation


def _ns(netns: str | None) -> str:
    return f"-n {netns} " if netns else ""


@dataclass(frozen=True)
class NetnsAdd:
    """A named netns (/run/netns/NAME) with lo up and, unless asked for, IPv6 off."""

    name: str
    ipv6: bool = False

    def render(self) -> list[str]:
        lines = [f"ip netns add {self.name}"]
        if not self.ipv6:
            lines.append(f"ip netns exec {self.name} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                         "net.ipv6.conf.default.disable_ipv6=1")
        lines.append(f"ip -n {self.name} link set lo up")
        return lines

    def undo(self):
        return NetnsDel(self.name)


@dataclass(frozen=True)
class NetnsAttach:
    """Give a name to a netns made by someone else (a process's), as `ip netns attach` does."""

    name: str
    source: str  # /proc/PID/ns/net or a netns file
    pid: int | None = None

    def render(self) -> list[str]:
        if self.pid is not None:
            return [f"ip netns attach {self.name} {self.pid}"]
        return [f"touch /run/netns/{self.name}", f"mount --bind {self.source} /run/netns/{self.name}"]

    def undo(self):
        return NetnsDel(self.name)


@dataclass(frozen=True)
class NetnsDel:
    """Drop the name; the netns itself goes when nothing else holds it."""

    name: str

    def render(self) -> list[str]:
        return [f"ip netns del {self.name}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class BridgeAdd:
    name: str
    mtu: int
    address: str | None = None  # "172.17.0.1/16"
    mac: str | None = None  # fixed, so that joining ports never change it

    def render(self) -> list[str]:
        mac = f" address {self.mac}" if self.mac else ""
        lines = [f"ip link add {self.name}{mac} type bridge", f"ip link set {self.name} mtu {self.mtu}",
                 f"sysctl -qw net.ipv6.conf.{self.name}.disable_ipv6=1"]
        if self.address:
            lines.append(f"ip addr add {self.address} dev {self.name}")
        lines.append(f"ip link set {self.name} up")
        return lines

    def undo(self):
        return BridgeDel(self.name)


@dataclass(frozen=True)
class AddrAdd:
    """An address on an existing interface of the host (an adopted bridge's gateway)."""

    ifname: str
    address: str
    netns: str | None = None  # set: inside that netns (doctor --fix puts a flushed address back)

    def render(self) -> list[str]:
        return [f"ip {_ns(self.netns)}addr add {self.address} dev {self.ifname}",
                f"ip {_ns(self.netns)}link set {self.ifname} up"]

    def undo(self):
        return AddrDel(self.ifname, self.address, self.netns)


@dataclass(frozen=True)
class AddrDel:
    ifname: str
    address: str
    netns: str | None = None

    def render(self) -> list[str]:
        return [f"ip {_ns(self.netns)}addr del {self.address} dev {self.ifname}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class BridgeDel:
    name: str

    def render(self) -> list[str]:
        return [f"ip link del {self.name}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class EndpointAdd:
    """A veth pair: host end on the bridge, the peer made directly inside the container's netns,
    with its address and (for the container's first network with a way out) the default route.
    Hairpin mode on the host end is a step of its own (HairpinOn), planned right after.

    With `handover` set, the peer is made in the host netns under that name instead, down and
    unaddressed (netns, ip and gateway are then the record's, not applied): a runtime that moves
    interfaces itself (Docker's remote driver protocol) takes it from there, names it `ifname`
    inside its netns and configures it, as it does with its own bridge driver's veth."""

    netns: str
    host_ifname: str
    ifname: str
    bridge: str
    mtu: int
    mac: str
    ip: str
    prefixlen: int
    gateway: str | None  # set: add the default route via it (the container's first network)
    handover: str | None = None  # set: the peer's name in the host netns, left for the runtime

    def render(self) -> list[str]:
        ns = self.netns
        if self.handover:
            return [f"ip link add {self.host_ifname} mtu {self.mtu} master {self.bridge} type veth "
                    f"peer name {self.handover} mtu {self.mtu} address {self.mac}",
                    f"sysctl -qw net.ipv6.conf.{self.host_ifname}.disable_ipv6=1",
                    f"ip link set {self.host_ifname} up"]
        lines = [
            f"ip link add {self.host_ifname} mtu {self.mtu} type veth peer name {self.ifname} "
            f"mtu {self.mtu} address {self.mac} netns {ns}",
            f"sysctl -qw net.ipv6.conf.{self.host_ifname}.disable_ipv6=1",
            f"ip link set {self.host_ifname} master {self.bridge} up",
            f"ip -n {ns} addr add {self.ip}/{self.prefixlen} dev {self.ifname}",
            f"ip -n {ns} link set {self.ifname} up",
        ]
        if self.gateway:
            lines.append(f"ip -n {ns} route add default via {self.gateway}")
        return lines

    def undo(self):
        return LinkDel(self.host_ifname)


@dataclass(frozen=True)
class OverlayAdd:
    """An overlay network's devices on this host (issue 15): bridge ovbrVNI with the gateway
    address, and VXLAN device vxlanVNI on it (UDP 4789, no learning, ARP proxy)."""

    vni: int
    local_ip: str
    gateway: str
    prefixlen: int
    mtu: int

    def render(self) -> list[str]:
        br, vx = f"ovbr{self.vni}", f"vxlan{self.vni}"
        return [f"ip link add {br} mtu {self.mtu} type bridge",
                f"ip addr add {self.gateway}/{self.prefixlen} dev {br}",
                f"ip link set {br} up",
                f"ip link add {vx} mtu {self.mtu} type vxlan id {self.vni} local {self.local_ip} "
                f"dstport 4789 nolearning proxy",
                f"ip link set {vx} master {br} up"]

    def undo(self):
        return OverlayDel(self.vni)


@dataclass(frozen=True)
class OverlayDel:
    vni: int

    def render(self) -> list[str]:
        return [f"ip link del vxlan{self.vni}", f"ip link del ovbr{self.vni}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class RouteReplace:
    """The container's default route, moved to another network's gateway."""

    netns: str
    gateway: str

    def render(self) -> list[str]:
        return [f"ip -n {self.netns} route replace default via {self.gateway}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class LinkDel:
    """Delete an interface (deleting one end of a veth deletes both)."""

    ifname: str
    netns: str | None = None

    def render(self) -> list[str]:
        return [f"ip {_ns(self.netns)}link del {self.ifname}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class UtsAdd:
    """A persistent UTS namespace holding the container's hostname, pinned to a file."""

    path: str
    hostname: str

    def render(self) -> list[str]:
        return [f"touch {self.path}", f"unshare --uts={self.path} hostname {self.hostname}"]

    def undo(self):
        return UtsDel(self.path)


@dataclass(frozen=True)
class UtsDel:
    path: str

    def render(self) -> list[str]:
        return [f"umount {self.path}", f"rm {self.path}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class ProcessesKill:
    """End processes by PID (`container rm -f`: those running in the container's namespaces)."""

    pids: tuple[int, ...]

    def render(self) -> list[str]:
        return [f"kill -KILL {' '.join(str(p) for p in self.pids)}"] if self.pids else []

    def undo(self):
        return None  # an ended process cannot come back


@dataclass(frozen=True)
class HairpinOn:
    """Hairpin mode on bridge ports: a frame may leave by the port it came in, so that a container
    reaches its own published port through the host (docs/facts.md, "Publishing"). Planned at
    attach for the new port, and by the reconciler for every port of netkit's networks that lost it
    (its last step: with no such port it does nothing)."""

    ifnames: tuple[str, ...]

    def render(self) -> list[str]:
        return [f"bridge link set dev {name} hairpin on" for name in self.ifnames]

    def undo(self):
        return None  # harmless to leave on; the port goes with its container anyway


@dataclass(frozen=True)
class PortGuardAdd:
    """Anti-spoofing for one container port: only its MAC, and its IPv4 address (IP and ARP), may
    enter the bridge through `ifname` (netkit/antispoof.py: three set elements)."""

    ifname: str
    mac: str
    ip: str

    def render(self) -> list[str]:
        return [f"nft {line}" for line in antispoof.element_lines("add", self.ifname, self.mac, self.ip)]

    def undo(self):
        return PortGuardDel(self.ifname, self.mac, self.ip)


@dataclass(frozen=True)
class PortGuardDel:
    """Drop a port's anti-spoofing elements (elements already gone are fine)."""

    ifname: str
    mac: str
    ip: str

    def render(self) -> list[str]:
        return [f"nft {line}" for line in antispoof.element_lines("delete", self.ifname, self.mac, self.ip)]

    def undo(self):
        return None


@dataclass(frozen=True)
class PortGuardForget:
    """Drop every anti-spoofing element of a port the state does not know (doctor --fix)."""

    ifname: str

    def render(self) -> list[str]:
        return [f"nft: delete every element of \"{self.ifname}\" from {antispoof.QUALIFIED} "
                f"{', '.join(antispoof.SETS)}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class PortGuardTable:
    """Make the anti-spoofing table and its chain's rules as they should be (elements kept)."""

    def render(self) -> list[str]:
        return [f"nft {line}" for line in antispoof.table_script()]

    def undo(self):
        return None


@dataclass(frozen=True)
class BridgeNfCall:
    """Per-bridge br_netfilter switch: frames bridged between ports of `bridge` go through the
    iptables FORWARD chain even when net.bridge.bridge-nf-call-iptables is 0 (--no-icc needs it)."""

    bridge: str
    value: str
    was: str | None = None

    def render(self) -> list[str]:
        return [f"ip link set {self.bridge} type bridge nf_call_iptables {self.value}"]

    def undo(self):
        return BridgeNfCall(self.bridge, self.was) if self.was is not None and self.was != self.value else None


def bridge_nf_call_path(bridge: str) -> str:
    return f"/sys/class/net/{bridge}/bridge/nf_call_iptables"


@dataclass(frozen=True)
class PortGuardTableDel:
    """Remove the whole anti-spoofing table (`netkit reset`)."""

    def render(self) -> list[str]:
        return [f"nft {antispoof.delete_table_line()}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class CrossIsolation:
    """The table isolating netkit's networks from bridges not netkit's (netkit/xisolation.py),
    made or re-made with exactly these bridges in its set; `was`: the set before (None: no table)."""

    bridges: tuple[str, ...]
    was: tuple[str, ...] | None = None

    def render(self) -> list[str]:
        return [f"nft {line}" for line in xisolation.table_script(self.bridges)]

    def undo(self):
        return CrossIsolation(self.was, self.bridges) if self.was is not None else CrossIsolationDel()


@dataclass(frozen=True)
class CrossIsolationDel:
    """Remove that table (`netkit reset`, or undoing its first making)."""

    def render(self) -> list[str]:
        return [f"nft {line}" for line in xisolation.delete_script()]

    def undo(self):
        return None


def sysctl_key(path: str) -> str:
    """/proc/sys/net/ipv4/conf/br-x/route_localnet -> net.ipv4.conf.br-x.route_localnet"""
    return path.removeprefix("/proc/sys/").replace("/", ".")


@dataclass(frozen=True)
class SysctlSet:
    """A value under /proc/sys (of the host's netns); `was` is put back on undo (None: kept)."""

    path: str
    value: str
    was: str | None = None

    def render(self) -> list[str]:
        return [f"sysctl -qw {sysctl_key(self.path)}={self.value}"]

    def undo(self):
        return SysctlSet(self.path, self.was) if self.was is not None and self.was != self.value else None


@dataclass(frozen=True)
class FirewallChange:
    """Rule changes in netkit's chains (and the FORWARD policy), applied by the firewall backend
    one table at a time. `thorough`: read every added rule back after the commit; otherwise only
    the table's entry count is checked (the per-container fast path)."""

    changes: tuple[rules.Op, ...]
    thorough: bool = True

    def render(self) -> list[str]:
        return rules.render(list(self.changes))

    def undo(self):
        back = rules.inverse(self.changes)
        return FirewallChange(tuple(back)) if back else None


@dataclass(frozen=True)
class FirewallReset:
    """Remove every netkit object from firewall backend `backend` (NETKIT-USER stays when it holds
    rules) and, when given, put its FORWARD policy back to `forward_policy`: `netkit reset`, and
    leaving a backend after a switch. Like a flush, it cannot be undone."""

    backend: str
    forward_policy: str | None = None

    def render(self) -> list[str]:
        policy = f", FORWARD policy back to {self.forward_policy}" if self.forward_policy else ""
        return [f"# remove netkit's rules from the {self.backend} backend{policy}"]

    def undo(self):
        return None


@dataclass(frozen=True)
class ConntrackForget:
    """Delete the conntrack entries of a DNAT that went away, so its flows stop following the old
    mapping (docs/facts.md, "UDP and conntrack"). Best effort: entries may expire meanwhile."""

    proto: str
    host_port: int
    container_ip: str
    container_port: int

    def render(self) -> list[str]:
        return [f"conntrack -D -p {self.proto} --orig-port-dst {self.host_port} --reply-src {self.container_ip} "
                f"--reply-port-src {self.container_port}"]

    def undo(self):
        return None


def render_plan(ops) -> list[str]:
    return [line for op in ops for line in op.render()]
