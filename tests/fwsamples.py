"""Sample states for firewall backend tests (unit and integration): the rule plans every backend
must render, apply and read back. Pure data, no kernel."""
from __future__ import annotations

from netkit import rules
from netkit.model import Container, Endpoint, Network, PortMapping


def net(name, bridge, subnet, **kw) -> Network:
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    return Network(name=name, id=name, bridge=bridge, subnet=subnet, gateway=gateway, **kw)


def ct(name, ip, network, bridge_prefix=24, ports=(), **kw) -> Container:
    ep = Endpoint(name, network, "eth0", f"veth{name}"[:15], ip, bridge_prefix, "", "02:42:00:00:00:00")
    return Container(name=name, id=name, mode="bridge", netns=f"/run/netns/{name}", endpoints=[ep],
                     ports=[PortMapping(name, *p) for p in ports], **kw)


def everything() -> tuple[list[Network], list[Container]]:
    """Every kind of rule netkit writes: masquerade, no-masquerade, internal, icc off with a
    --link (on the default network: the only one where --link opens holes), 127.x and
    address-bound publishes, udp/sctp, port ranges in links, the loopback guard of NETKIT-INPUT."""
    nets = [
        net("app", "br-app", "172.20.0.0/24"),
        net("back", "br-back", "172.21.0.0/24", icc=False, default=True),
        net("priv", "br-priv", "172.22.0.0/24", internal=True),
        net("nomasq", "br-nomasq", "172.23.0.0/24", masquerade=False),
    ]
    cts = [
        ct("web", "172.20.0.2", "app", ports=[("tcp", "0.0.0.0", 8088, 80), ("udp", "127.0.0.1", 53, 53),
                                              ("tcp", "198.18.0.1", 8443, 443), ("sctp", "0.0.0.0", 9000, 9000)]),
        ct("db", "172.21.0.10", "back", exposed=["5432/tcp", "7000-7001/udp"]),
        ct("api", "172.21.0.11", "back", links=["db:database"], ports=[("tcp", "127.0.0.2", 9001, 9001)]),
        ct("vault", "172.22.0.5", "priv"),
        ct("plain", "172.23.0.7", "nomasq"),
    ]
    return nets, cts


def plan_everything() -> rules.RuleSet:
    return rules.plan(*everything())
