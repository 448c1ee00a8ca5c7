"""The kernel's evidence about a trace, taken around the capture: per-rule firewall counters and
SNMP drop counters in every traced netns before and after, and route lookups afterwards (all
through netkit.kernel adapters, read-only), turned into a drops.Evidence.
"""
from __future__ import annotations

from netkit.trace.drops import SNMP_CAUSES, Evidence
from netkit.trace.model import Topology


def _paths(topo: Topology) -> dict:
    paths: dict = {}
    for p in topo.points:
        paths.setdefault(p.netns, p.path)
    return paths


class Snapshot:
    """Counters of every traced netns at one moment."""

    def __init__(self, topo: Topology):
        from netkit.kernel import rulecounters, tracefacts

        self.rules, self.snmp = {}, {}
        for ns, path in _paths(topo).items():
            try:
                self.rules[ns] = rulecounters.snapshot(path)
                self.snmp[ns] = tracefacts.snmp(path)
            except OSError:
                continue


def evidence(topo: Topology, before: Snapshot | None, after: Snapshot | None) -> Evidence:
    from netkit.kernel import rulecounters, tracefacts

    ev = Evidence()
    paths = _paths(topo)
    if before and after:
        for ns in after.rules:
            ev.moved[ns] = [(c.as_dict(), d) for c, d in rulecounters.moved(before.rules.get(ns, []), after.rules[ns])]
            ev.snmp[ns] = {k: after.snmp[ns].get(k, 0) - before.snmp.get(ns, {}).get(k, 0)
                           for k in SNMP_CAUSES if after.snmp[ns].get(k, 0) > before.snmp.get(ns, {}).get(k, 0)}
        ev.backends = sorted({c.backend for rules in after.rules.values() for c in rules})

    def route(ns, dst, src, iif):
        if ns not in paths:
            return None
        return tracefacts.route_get(paths[ns], dst, src, iif)

    ev.route = route
    return ev
