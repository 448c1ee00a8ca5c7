"""The objects netkit keeps in its state: networks, containers, endpoints and port mappings.

Plain dataclasses with no behaviour beyond (de)serialisation, shared by the pure planning
code (ipam, rules, naming) and the engine. Field names are the stable names of `--json`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

# Container network modes, as in `docker run --network`.
MODE_BRIDGE = "bridge"  # own netns, one endpoint per network
MODE_HOST = "host"  # the host's netns
MODE_NONE = "none"  # own netns with only lo
MODE_CONTAINER = "container"  # joins another container's netns


@dataclass
class Network:
    name: str
    id: str
    bridge: str  # bridge device in the host netns
    subnet: str  # "172.17.0.0/16"
    gateway: str  # "172.17.0.1", set on the bridge
    ip_range: str | None = None  # allocate from this sub-range only
    mtu: int = 1500
    internal: bool = False  # no way out, no publishing
    icc: bool = True  # inter-container communication on the same bridge
    masquerade: bool = True  # SNAT traffic leaving the host
    adopted: bool = False  # the bridge existed before netkit: never delete it
    address_added: bool = False  # netkit put the gateway address on an adopted bridge
    default: bool = False  # the "bridge" network made on first use
    iptables: bool = True  # false: netkit writes no firewall rules for this network
    anti_spoofing: bool = True  # container ports may send only from their own MAC and IP (antispoof.py)
    created: float = 0.0
    # Drivers other than bridge (issue 15). overlay: the network lives in the cluster store and
    # this row is the host's reference to it, kept while the host has a container on it (bridge
    # ovbrVNI). macvlan/ipvlan: containers hang off `parent`; no bridge, no firewall rules.
    driver: str = "bridge"
    vni: int | None = None
    parent: str | None = None
    driver_mode: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # --label KEY=VAL, as Docker's

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])


@dataclass
class Endpoint:
    """One container interface on one network (eth0, eth1 ...)."""

    container: str
    network: str
    ifname: str  # name inside the container: eth0, eth1 ...
    host_ifname: str  # the veth peer on the host, enslaved to the bridge
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    aliases: list[str] = field(default_factory=list)  # DNS aliases on this network
    # The runtime moved the container end in and configured it (Docker's remote driver): its
    # name inside (eth<N>) and which network gives the default route are the runtime's.
    handover: bool = False


@dataclass
class PortMapping:
    """One published port: host_ip:host_port/proto -> container_port on the container's IP."""

    container: str
    proto: str  # tcp, udp, sctp
    host_ip: str  # "0.0.0.0" for all IPv4 addresses
    host_port: int
    container_port: int


@dataclass
class Container:
    name: str
    id: str
    mode: str  # MODE_*
    netns: str | None  # /run/netns/NAME, None for host mode
    shares: str | None = None  # container mode: whose netns is joined
    hostname: str | None = None
    uts: str | None = None  # pinned UTS namespace holding the hostname (own-netns modes)
    external: bool = False  # netns made by someone else (netkit attach): never delete it
    pid: int | None = None  # attach --pid: the process whose netns was wired
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)  # "name:ip"
    links: list[str] = field(default_factory=list)  # "other:alias"
    exposed: list[str] = field(default_factory=list)  # "80/tcp"
    created: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)  # --label KEY=VAL, as Docker's
    endpoints: list[Endpoint] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)

    def endpoint(self, network: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.network == network), None)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_dict(obj) -> dict:
    """What dataclasses.asdict gives for these models, without its deep copy of every value
    (~0.1 ms of each container write): the models hold only scalars, lists and dicts of
    scalars, and nested models."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
    return {name: _plain(getattr(obj, name)) for name in names}


def _plain(value):
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return to_dict(value)
    return value


def from_dict(cls, data: dict):
    """Build a dataclass from a dict, ignoring unknown keys (older/newer state rows)."""
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if cls is Container:
        kwargs["endpoints"] = [from_dict(Endpoint, e) for e in data.get("endpoints", [])]
        kwargs["ports"] = [from_dict(PortMapping, p) for p in data.get("ports", [])]
    return cls(**kwargs)
