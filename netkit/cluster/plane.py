"""What one host's kernel should hold for an overlay network, from the store's view (pure).

For every container of the network on another host that is alive: an FDB entry (its MAC ->
its host's underlay address) and a neighbour entry (its IP -> its MAC) on the local VXLAN
device. Endpoints of hosts whose lease expired are left out: their containers vanish from the
others' data plane within a TTL, and come back when their host registers again.
"""
from __future__ import annotations

from dataclasses import dataclass

from netkit.cluster.store import View


@dataclass(frozen=True)
class Entries:
    fdb: frozenset  # of (mac, host underlay IP)
    neigh: frozenset  # of (container IP, mac)


def desired(view: View, network: str, me: str) -> Entries:
    remote = [ep for (net, _), ep in view.endpoints.items()
              if net == network and ep.host != me and ep.host in view.hosts]
    return Entries(frozenset((ep.mac, ep.host_ip) for ep in remote), frozenset((ep.ip, ep.mac) for ep in remote))
