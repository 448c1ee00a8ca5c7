"""IP address management, pure: subnet pools, gateway and range checks, address allocation."""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from netkit.errors import Conflict, UserError

# Docker's defaults: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 cut into /20s.
DEFAULT_POOLS: list[dict] = [{"base": f"172.{n}.0.0/16", "size": 16} for n in range(17, 32)] + [
    {"base": "192.168.0.0/16", "size": 20}
]


# Ranges a bridge network can never use: the kernel or the world gives them another meaning.
UNUSABLE = [
    (IPv4Network("0.0.0.0/8"), "'this network' (RFC 1122)"),
    (IPv4Network("127.0.0.0/8"), "the loopback range"),
    (IPv4Network("169.254.0.0/16"), "the link-local range"),
    (IPv4Network("224.0.0.0/4"), "the multicast range"),
    (IPv4Network("240.0.0.0/4"), "the reserved range (and broadcast)"),
]
MIN_PREFIX = 8  # Docker accepts any; a /1 bridge captured half of IPv4 in a trial


def parse_subnet(text: str, what: str = "subnet") -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UserError(f"invalid {what} '{text}': use CIDR notation like 172.20.0.0/16") from None
    if net.version != 4:
        raise UserError(f"{what} '{text}' is IPv6; netkit networks are IPv4 only for now")
    if "/" not in text:
        raise UserError(f"invalid {what} '{text}': a prefix length is missing, e.g. {text}/24")
    if str(net) != text:
        raise UserError(f"invalid {what} '{text}': host bits are set; did you mean {net}?")
    if net.prefixlen < MIN_PREFIX:
        raise UserError(f"invalid {what} '{text}': a /{net.prefixlen} would route a large part of IPv4 "
                        f"to one bridge; use a prefix of /{MIN_PREFIX} or longer")
    for special, why in UNUSABLE:
        if net.overlaps(special):
            raise UserError(f"invalid {what} '{text}': it overlaps {special}, {why}; "
                            "use a private range such as 172.16.0.0/12 or 10.0.0.0/8")
    return net


def parse_interface_cidr(text: str, what: str = "address") -> ipaddress.IPv4Interface:
    """An address with prefix, like `--bip 172.30.0.1/24` or `bridge create --cidr`."""
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise UserError(f"invalid {what} '{text}': use ADDRESS/PREFIX like 172.30.0.1/24") from None
    if iface.version != 4 or "/" not in text:
        raise UserError(f"invalid {what} '{text}': use an IPv4 ADDRESS/PREFIX like 172.30.0.1/24")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address) and iface.network.prefixlen < 31:
        raise UserError(f"invalid {what} '{text}': {iface.ip} is the network or broadcast address of {iface.network}")
    return iface


def parse_ip(text: str, what: str = "IP address") -> IPv4Address:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UserError(f"invalid {what} '{text}': use a dotted IPv4 address like 172.20.0.5") from None
    if ip.version != 4:
        raise UserError(f"{what} '{text}' is IPv6; netkit networks are IPv4 only for now")
    return ip


def candidate_pools(pools: list[dict]):
    """Yield the subnets of the configured pools in order (base cut into /size pieces)."""
    for pool in pools:
        base = ipaddress.ip_network(pool["base"])
        size = int(pool["size"])
        if size < base.prefixlen:
            yield base
        else:
            yield from base.subnets(new_prefix=size)


def pick_free_subnet(pools: list[dict], taken: list[IPv4Network]) -> IPv4Network:
    """First pool subnet that overlaps no taken network (host routes, other netkit networks)."""
    for subnet in candidate_pools(pools):
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise Conflict("all default address pools are in use; pass --subnet CIDR or add default_address_pools to the config")


@dataclass(frozen=True)
class Layout:
    """A network's validated addressing."""

    subnet: IPv4Network
    gateway: IPv4Address
    ip_range: IPv4Network | None


def usable(subnet: IPv4Network, ip: IPv4Address) -> bool:
    return ip in subnet and ip not in (subnet.network_address, subnet.broadcast_address)


def plan_layout(subnet: IPv4Network, gateway: str | None, ip_range: str | None) -> Layout:
    if subnet.prefixlen > 30:
        raise UserError(f"subnet {subnet} is too small: a network needs at least a /30 (gateway and one container)")
    gw = parse_ip(gateway, "gateway") if gateway else subnet.network_address + 1
    if not usable(subnet, gw):
        raise UserError(f"gateway {gw} is not a usable address of subnet {subnet}")
    rng = None
    if ip_range:
        rng = parse_subnet(ip_range, "ip-range")
        if not rng.subnet_of(subnet):
            raise UserError(f"ip-range {rng} is not inside subnet {subnet}")
    return Layout(subnet, gw, rng)


def check_overlap(subnet: IPv4Network, others: dict[str, IPv4Network]) -> None:
    for name, other in others.items():
        if subnet.overlaps(other):
            raise Conflict(f"subnet {subnet} overlaps {other} of network '{name}'; choose another --subnet")


def as_int(ip: str) -> int:
    """Dotted IPv4 to int, ~10x faster than ipaddress: allocation scans every used address."""
    return int.from_bytes(socket.inet_aton(ip), "big")


def allocate(layout: Layout, used: set[IPv4Address] | set[int]) -> IPv4Address:
    """Lowest free address of the ip-range (or subnet), skipping gateway, network and broadcast."""
    pool = layout.ip_range or layout.subnet
    first, last = int(pool.network_address), int(pool.broadcast_address)
    taken = {int(a) for a in used} | {int(layout.gateway), int(layout.subnet.network_address),
                                       int(layout.subnet.broadcast_address)}
    for value in range(first, last + 1):
        if value not in taken:
            return IPv4Address(value)
    raise Conflict(f"no free address left in {pool}: the network is full; remove a container or use a larger subnet")


def check_static(layout: Layout, ip: IPv4Address, used: dict[IPv4Address, str]) -> None:
    subnet = layout.subnet
    if ip not in subnet:
        raise UserError(f"IP {ip} is outside the network's subnet {subnet}")
    if ip == layout.gateway:
        raise UserError(f"IP {ip} is the network's gateway; choose another address in {subnet}")
    if ip in (subnet.network_address, subnet.broadcast_address):
        raise UserError(f"IP {ip} is the network or broadcast address of {subnet}")
    if ip in used:
        raise Conflict(f"IP {ip} is already in use by container '{used[ip]}'")


def host_routes(path: str = "/proc/net/route") -> list[IPv4Network]:
    """IPv4 destinations routed in this netns (not the default route): pools must avoid them."""
    routes = []
    try:
        with open(path) as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                dest, mask = int(cols[1], 16), int(cols[7], 16)
                if mask == 0:
                    continue
                to_ip = lambda v: IPv4Address(int.from_bytes(v.to_bytes(4, "little"), "big"))  # noqa: E731
                routes.append(ipaddress.ip_network(f"{to_ip(dest)}/{to_ip(mask)}", strict=False))
    except OSError:
        pass
    return routes
