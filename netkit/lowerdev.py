"""Planning for networks whose containers hang directly off a host interface, as Docker's
macvlan (bridge mode) and ipvlan (L2) drivers do: the `-o parent=IF` options, and the kernel
step that gives one container its sub-interface (pure: unit-tested without root).

No bridge and no veth: the kernel switches between the sub-interfaces of one parent itself,
and their frames leave by the parent onto its wire. As with Docker, the host cannot reach its
own macvlan/ipvlan containers through that parent (the kernel keeps parent and children apart).
"""
from __future__ import annotations

from dataclasses import dataclass

from netkit.errors import UserError
from netkit.naming import validate_ifname

MODES = {"macvlan": ("bridge",), "ipvlan": ("l2",)}


@dataclass(frozen=True)
class LowerOptions:
    driver: str
    parent: str
    mode: str


def parse_options(driver: str, options: list[str]) -> LowerOptions:
    """`-o parent=IF [-o macvlan_mode=bridge | -o ipvlan_mode=l2]`, checked one by one."""
    if driver not in MODES:
        raise UserError(f"unknown driver '{driver}': use one of {', '.join(sorted(MODES))}")
    found: dict[str, str] = {}
    mode_key = f"{driver}_mode"
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not value:
            raise UserError(f"bad option '-o {opt}': use KEY=VALUE, e.g. -o parent=eth0")
        if key not in ("parent", mode_key):
            raise UserError(f"unknown option '{key}' for driver {driver}: use parent and {mode_key}")
        found[key] = value
    if "parent" not in found:
        raise UserError(f"driver {driver} needs the host interface to hang off: -o parent=IF (e.g. -o parent=eth0)")
    validate_ifname(found["parent"], "parent interface")
    mode = found.get(mode_key, MODES[driver][0])
    if mode not in MODES[driver]:
        raise UserError(f"{mode_key} '{mode}' is not supported; netkit supports {', '.join(MODES[driver])}")
    return LowerOptions(driver, found["parent"], mode)


@dataclass(frozen=True)
class SubInterfaceAdd:
    """A macvlan/ipvlan sub-interface of `parent`, made straight inside the container's netns."""

    netns: str
    driver: str
    parent: str
    mode: str
    ifname: str
    mtu: int
    mac: str | None  # macvlan only: ipvlan children share the parent's MAC
    ip: str
    prefixlen: int
    gateway: str | None

    def render(self) -> list[str]:
        ns = self.netns
        mac = f" address {self.mac}" if self.mac and self.driver == "macvlan" else ""
        lines = [f"ip link add link {self.parent} name {self.ifname} netns {ns} mtu {self.mtu}{mac} "
                 f"type {self.driver} mode {self.mode}",
                 f"ip -n {ns} addr add {self.ip}/{self.prefixlen} dev {self.ifname}",
                 f"ip -n {ns} link set {self.ifname} up"]
        if self.gateway:
            lines.append(f"ip -n {ns} route add default via {self.gateway}")
        return lines

    def undo(self):
        from netkit.ops import LinkDel

        return LinkDel(self.ifname, self.netns)


def plan_endpoint(opts: LowerOptions, netns: str, ifname: str, mtu: int, ip: str, prefixlen: int,
                  gateway: str | None, mac: str | None) -> SubInterfaceAdd:
    if opts.driver == "ipvlan":
        mac = None
    return SubInterfaceAdd(netns, opts.driver, opts.parent, opts.mode, ifname, mtu, mac, ip, prefixlen, gateway)
