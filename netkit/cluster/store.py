"""The cluster store: overlay networks, their VNIs, cluster-wide IPAM, endpoints and the hosts
alive, as keys in etcd. Every change that could race with another host is one etcd transaction
that checks what it read is still true, and is retried from a fresh read when it is not.

Keys (values are JSON):
  /netkit/networks/NAME             the network: VNI, subnet, gateway, MTU
  /netkit/vnis/VNI                  NAME: a VNI belongs to one network
  /netkit/catalog                   bumped by every network create/rm, so that two creates of
                                    overlapping subnets cannot both pass the overlap check
  /netkit/ipam/NAME/IP              CONTAINER: the allocation key, created only if absent
  /netkit/endpoints/NAME/CONTAINER  where a container is: host, host's underlay IP, IP, MAC
  /netkit/hosts/HOST                a live host agent, on a lease: gone a TTL after the host died

Endpoints are permanent (a host that comes back finds its containers as they were); whether a
remote endpoint is programmed into a host's kernel depends on its host being alive (plane.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Address

from netkit import ipam
from netkit.cluster import etcd
from netkit.errors import Conflict, NotFound, UserError
from netkit.naming import mac_for_ip, validate_object_name

ROOT = "/netkit/"
NETWORKS = ROOT + "networks/"
VNIS = ROOT + "vnis/"
CATALOG = ROOT + "catalog"
IPAM = ROOT + "ipam/"
ENDPOINTS = ROOT + "endpoints/"
HOSTS = ROOT + "hosts/"

VNI_FIRST = 4096  # as Docker's overlay driver: lower VNIs are left to hand-made VXLANs
VNI_LAST = (1 << 24) - 1
OVERLAY_POOLS = [{"base": "10.0.0.0/8", "size": 24}]  # Docker swarm's default address pool
MAX_ATTEMPTS = 200  # a transaction lost to another host is retried from a fresh read


@dataclass(frozen=True)
class Network:
    name: str
    vni: int
    subnet: str
    gateway: str
    mtu: int
    driver: str = "overlay"
    scope: str = "global"


@dataclass(frozen=True)
class Endpoint:
    network: str
    container: str
    host: str
    host_ip: str  # the host's underlay address: where VXLAN packets for this MAC go
    ip: str
    mac: str
    aliases: tuple = field(default_factory=tuple)


@dataclass
class View:
    """Everything under /netkit/ at one revision, kept current by applying watch events."""

    networks: dict = field(default_factory=dict)  # name -> Network
    endpoints: dict = field(default_factory=dict)  # (network, container) -> Endpoint
    hosts: dict = field(default_factory=dict)  # host -> {"advertise": ip}
    revision: int = 0

    @classmethod
    def load(cls, kvs: list, revision: int) -> "View":
        view = cls(revision=revision)
        for kv in kvs:
            view.apply("PUT", kv.key, kv.value)
        return view

    def apply(self, kind: str, key: str, value: str) -> str | None:
        """Apply one change; the network it concerns, "*" for a host (all networks), else None."""
        parts = key[len(ROOT):].split("/")
        if parts[0] == "networks" and len(parts) == 2:
            if kind == "PUT":
                self.networks[parts[1]] = Network(**json.loads(value))
            else:
                self.networks.pop(parts[1], None)
            return parts[1]
        if parts[0] == "endpoints" and len(parts) == 3:
            if kind == "PUT":
                doc = json.loads(value)
                doc["aliases"] = tuple(doc.get("aliases", ()))
                self.endpoints[(parts[1], parts[2])] = Endpoint(**doc)
            else:
                self.endpoints.pop((parts[1], parts[2]), None)
            return parts[1]
        if parts[0] == "hosts" and len(parts) == 2:
            if kind == "PUT":
                self.hosts[parts[1]] = json.loads(value)
            else:
                self.hosts.pop(parts[1], None)
            return "*"
        return None


def _dump(obj) -> str:
    return json.dumps(asdict(obj), sort_keys=True)


class ClusterStore:
    """The overlay use cases' view of etcd. One instance per thread."""

    def __init__(self, url: str, timeout: float = etcd.DEFAULT_TIMEOUT):
        self.client = etcd.Etcd(url, timeout)

    def close(self) -> None:
        self.client.close()

    def snapshot(self) -> View:
        kvs, revision = self.client.get_prefix(ROOT)
        return View.load(kvs, revision)

    # ---- networks -------------------------------------------------------------------------

    def networks(self) -> list[Network]:
        kvs, _ = self.client.get_prefix(NETWORKS)
        return [Network(**json.loads(kv.value)) for kv in kvs]

    def network(self, name: str) -> Network:
        kv = self.client.get(NETWORKS + name)
        if kv is None:
            raise NotFound(f"overlay network '{name}' not found in the cluster store")
        return Network(**json.loads(kv.value))

    def create_network(self, name: str, subnet: str | None = None, gateway: str | None = None,
                       mtu: int = 1450) -> Network:
        validate_object_name("network", name)
        wanted = ipam.parse_subnet(subnet) if subnet else None
        for _ in range(MAX_ATTEMPTS):
            kvs, _ = self.client.get_prefix(NETWORKS)
            catalog = self.client.get(CATALOG)
            existing = {kv.key[len(NETWORKS):]: Network(**json.loads(kv.value)) for kv in kvs}
            if name in existing:
                raise Conflict(f"overlay network '{name}' already exists")
            taken = {n: ipam.parse_subnet(net.subnet) for n, net in existing.items()}
            if wanted is not None:
                ipam.check_overlap(wanted, taken)
                chosen = wanted
            else:
                chosen = ipam.pick_free_subnet(OVERLAY_POOLS, list(taken.values()))
            layout = ipam.plan_layout(chosen, gateway, None)
            used_vnis = {net.vni for net in existing.values()}
            vni = next(v for v in range(VNI_FIRST, VNI_LAST + 1) if v not in used_vnis)
            net = Network(name, vni, str(layout.subnet), str(layout.gateway), mtu)
            ok = self.client.txn(
                [etcd.absent(NETWORKS + name), etcd.absent(VNIS + str(vni)),
                 etcd.unchanged(CATALOG, catalog.mod_revision if catalog else 0)],
                [etcd.put_op(NETWORKS + name, _dump(net)), etcd.put_op(VNIS + str(vni), name),
                 etcd.put_op(CATALOG, name)])
            if ok:
                return net
        raise Conflict(f"overlay network '{name}': too many concurrent changes, try again")

    def remove_network(self, name: str) -> Network:
        net = self.network(name)
        kvs, _ = self.client.get_prefix(f"{ENDPOINTS}{name}/")
        if kvs:
            names = ", ".join(sorted(kv.key.rsplit("/", 1)[1] for kv in kvs)[:5])
            raise Conflict(f"overlay network '{name}' has {len(kvs)} container(s) ({names}): remove them first")
        ok = self.client.txn(
            [etcd.absent(f"{ENDPOINTS}{name}/", prefix=True)],  # no container joined meanwhile
            [etcd.delete_op(NETWORKS + name), etcd.delete_op(VNIS + str(net.vni)),
             etcd.delete_op(f"{IPAM}{name}/", prefix=True), etcd.put_op(CATALOG, "-" + name)])
        if not ok:
            raise Conflict(f"overlay network '{name}' changed meanwhile, try again")
        return net

    # ---- endpoints and addresses ----------------------------------------------------------

    def endpoints(self, network: str | None = None) -> list[Endpoint]:
        prefix = f"{ENDPOINTS}{network}/" if network else ENDPOINTS
        kvs, _ = self.client.get_prefix(prefix)
        out = []
        for kv in kvs:
            doc = json.loads(kv.value)
            doc["aliases"] = tuple(doc.get("aliases", ()))
            out.append(Endpoint(**doc))
        return out

    def add_endpoint(self, network: str, container: str, host: str, host_ip: str, ip: str | None = None,
                     aliases: tuple = ()) -> Endpoint:
        """Allocate an address cluster-wide and record the endpoint, in one transaction: the
        allocation key must not exist, nor the endpoint, and the network must be unchanged."""
        validate_object_name("container", container)
        static = ipam.parse_ip(ip, "IP address") if ip else None
        for _ in range(MAX_ATTEMPTS):
            net_kv = self.client.get(NETWORKS + network)
            if net_kv is None:
                raise NotFound(f"overlay network '{network}' not found in the cluster store")
            net = Network(**json.loads(net_kv.value))
            layout = ipam.plan_layout(ipam.parse_subnet(net.subnet), net.gateway, None)
            kvs, _ = self.client.get_prefix(f"{IPAM}{network}/")
            used = {IPv4Address(kv.key.rsplit("/", 1)[1]): kv.value for kv in kvs}
            if container in used.values():
                raise Conflict(f"container '{container}' is already on overlay network '{network}'")
            if static is not None:
                ipam.check_static(layout, static, used)
                chosen = static
            else:
                chosen = ipam.allocate(layout, set(used))
            ep = Endpoint(network, container, host, host_ip, str(chosen), mac_for_ip(str(chosen)), tuple(aliases))
            ipam_key, ep_key = f"{IPAM}{network}/{chosen}", f"{ENDPOINTS}{network}/{container}"
            ok = self.client.txn(
                [etcd.absent(ipam_key), etcd.absent(ep_key), etcd.unchanged(NETWORKS + network, net_kv.mod_revision)],
                [etcd.put_op(ipam_key, container), etcd.put_op(ep_key, _dump(ep))])
            if ok:
                return ep
            # Lost to another host: the address (or the name) was taken meanwhile. Read again.
        raise Conflict(f"no address for '{container}' on '{network}' after {MAX_ATTEMPTS} tries: too many "
                       "concurrent creates, try again")

    def remove_endpoint(self, network: str, container: str) -> Endpoint | None:
        kv = self.client.get(f"{ENDPOINTS}{network}/{container}")
        if kv is None:
            return None
        doc = json.loads(kv.value)
        doc["aliases"] = tuple(doc.get("aliases", ()))
        ep = Endpoint(**doc)
        self.client.txn([etcd.unchanged(kv.key, kv.mod_revision)],
                        [etcd.delete_op(kv.key), etcd.delete_op(f"{IPAM}{network}/{ep.ip}")])
        return ep

    # ---- hosts ----------------------------------------------------------------------------

    def register_host(self, host: str, advertise: str, lease: int) -> None:
        if not host:
            raise UserError("this host has no name (hostname is empty)")
        self.client.put(HOSTS + host, json.dumps({"advertise": advertise}), lease=lease)

    def hosts(self) -> dict[str, dict]:
        kvs, _ = self.client.get_prefix(HOSTS)
        return {kv.key[len(HOSTS):]: json.loads(kv.value) for kv in kvs}
