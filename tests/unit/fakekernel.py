"""A kernel made of dicts for engine unit tests: a FakeProbe that the fake executor keeps up to
date as plan steps run, and an in-memory firewall with iptables' semantics for the ops netkit
uses (N A I D F X P), so that whole use cases run without root and their results can be read
back: links, namespaces, sysctls, hairpin and rules in iptables-save form."""
from __future__ import annotations

import itertools
from contextlib import contextmanager

from netkit import ops, rules
from netkit.config import Config
from netkit.engine.context import Context
from netkit.kernel.executor import Executor
from netkit.kernel.probe import FakeProbe
from netkit.state import Store

BUILTIN = {"raw": ("PREROUTING", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
           "filter": ("INPUT", "FORWARD", "OUTPUT")}


def _target(spec: str) -> str | None:
    words = spec.split()
    return next((words[i + 1] for i in range(len(words) - 1) if words[i] in ("-j", "-g")), None)


class FakeFirewall:
    """iptables-legacy as a dict: {table: {chain: [spec]}} plus policies."""

    name = "fake-iptables"
    show_command = "fake-save"
    syntax = "iptables"
    manages_rules = True

    def __init__(self):
        self.tables = {t: {c: [] for c in chains} for t, chains in BUILTIN.items()}
        self.policies = {t: {c: "ACCEPT" for c in chains} for t, chains in BUILTIN.items()}
        self.applied: list[list[rules.Op]] = []
        self.fail_next: Exception | None = None

    @contextmanager
    def locked(self):
        yield self

    def snapshot(self) -> dict:
        out = {}
        for t, chains in self.tables.items():
            out[t] = {c: list(specs) for c, specs in chains.items()}
            out[t][":policy"] = dict(self.policies[t])
        return out

    def policy(self, snapshot: dict, table: str, chain: str):
        return snapshot.get(table, {}).get(":policy", {}).get(chain)

    # The rest of kernel/fw's FirewallBackend, as the iptables backends do it.
    def available(self):
        from netkit.kernel.fw import Availability

        return Availability(True)

    def render(self, ops: list[rules.Op]) -> list[str]:
        return rules.render(ops)

    def native(self) -> list[str]:
        from netkit.kernel.fw.legacy import render_part

        return render_part(rules.netkit_part(self.snapshot()))

    def reset(self, forward_policy=None, dry_run=False):
        from netkit.kernel.fw.legacy import reset_with

        return reset_with(self, forward_policy, dry_run)

    def leftovers(self) -> list[str]:
        return []

    def apply(self, changes: list[rules.Op], thorough: bool = True):
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        before = (self.snapshot(), {t: dict(p) for t, p in self.policies.items()})
        try:
            for op in changes:
                self._one(op)
        except Exception:
            snap, pol = before
            self.tables = {t: {c: s for c, s in chains.items() if c != ":policy"} for t, chains in snap.items()}
            self.policies = pol
            raise
        self.applied.append(list(changes))

    def _one(self, op: rules.Op) -> None:
        chains = self.tables[op.table]
        if op.action == "N":
            if op.chain in chains:
                raise ValueError(f"chain {op.chain} exists")
            chains[op.chain] = []
        elif op.action == "X":
            if chains.get(op.chain):
                raise ValueError(f"chain {op.chain} is not empty")
            if any(_target(s) == op.chain for specs in chains.values() for s in specs):
                raise ValueError(f"chain {op.chain} is still referenced")
            chains.pop(op.chain, None)
        elif op.action == "F":
            chains[op.chain] = []
        elif op.action == "P":
            self.policies[op.table][op.chain] = op.spec
        elif op.action in ("A", "I", "D"):
            if op.chain not in chains:
                raise ValueError(f"no chain {op.chain} in {op.table}")
            target = _target(op.spec)
            if op.action != "D" and target and target.startswith(rules.PREFIX) and target not in chains:
                raise ValueError(f"no chain {target} to jump to")
            if op.action == "A":
                chains[op.chain].append(op.spec)
            elif op.action == "I":
                chains[op.chain].insert(op.pos - 1, op.spec)
            else:
                chains[op.chain].remove(op.spec)  # ValueError when missing, as iptables -D fails
        else:
            raise ValueError(op.action)

    def save(self, netkit_only: bool = True) -> str:
        """iptables-save text (no counters), only netkit's chains and hooks by default. The rules of
        order-free chains (rules.UNORDERED) are sorted: their order is history, not meaning."""
        lines = []
        part = rules.netkit_part(self.snapshot()) if netkit_only else self.snapshot()
        for t in rules.TABLES:
            chains = {c: s for c, s in part.get(t, {}).items() if c != ":policy"}
            if not chains:
                continue
            lines.append(f"*{t}")
            for c in sorted(chains, key=lambda c: (c.startswith(rules.PREFIX), c)):
                policy = self.policies[t].get(c, "-")
                lines.append(f":{c} {policy}")
            for c in sorted(chains, key=lambda c: (c.startswith(rules.PREFIX), c)):
                specs = sorted(chains[c]) if (t, c) in rules.UNORDERED else chains[c]
                lines += [f"-A {c} {s}" for s in specs]
            lines.append("COMMIT")
        return "\n".join(lines) + "\n" if lines else ""


class FakeKernel:
    """The probe, the executor and the firewall of one fake host, kept consistent."""

    def __init__(self):
        self.probe = FakeProbe()
        self.firewall = FakeFirewall()
        self.probe.sysctls["/proc/sys/net/ipv4/ip_forward"] = "0"
        self.probe.sysctls["/proc/sys/net/bridge/bridge-nf-call-iptables"] = "1"  # br_netfilter loaded
        self.log: list = []  # every step run, undo steps included
        self.fail_on: type | None = None  # a step class whose handler raises
        self._index = itertools.count(2)
        self.executor = Executor({cls: self._handler(cls) for cls in _STEPS})

    def _handler(self, cls):
        method = getattr(self, "_" + cls.__name__)

        def run(op):
            if self.fail_on is cls:
                raise OSError(5, "injected failure")
            self.log.append(op)
            method(op)
        return run

    # ---- links and namespaces
    def _link(self, kind: str, **kw) -> dict:
        return {"kind": kind, "ifindex": next(self._index), "iflink": None, "master": None, "address": None,
                "ipv4": [], **kw}

    def _NetnsAdd(self, op):
        if op.name in self.probe.netns:
            raise FileExistsError(op.name)
        self.probe.netns.add(op.name)
        self.probe.netns_links[op.name] = {"lo": self._link("loopback")}

    def _NetnsAttach(self, op):
        self.probe.netns.add(op.name)
        self.probe.netns_links.setdefault(op.name, {"lo": self._link("loopback")})

    def _NetnsDel(self, op):
        self.probe.netns.discard(op.name)

    def _BridgeAdd(self, op):
        if op.name in self.probe.links:
            raise FileExistsError(op.name)
        self.probe.links[op.name] = self._link("bridge", address=op.mac, ipv4=[op.address] if op.address else [])
        self.probe.sysctls[f"/proc/sys/net/ipv4/conf/{op.name}/route_localnet"] = "0"
        self.probe.sysctls[ops.bridge_nf_call_path(op.name)] = "0"

    def _BridgeDel(self, op):
        self._LinkDel(ops.LinkDel(op.name))

    def _AddrAdd(self, op):
        self.probe.links[op.ifname]["ipv4"].append(op.address)

    def _AddrDel(self, op):
        if op.ifname in self.probe.links and op.address in self.probe.links[op.ifname]["ipv4"]:
            self.probe.links[op.ifname]["ipv4"].remove(op.address)

    def _EndpointAdd(self, op):
        if op.host_ifname in self.probe.links or op.handover in self.probe.links:
            raise FileExistsError(op.host_ifname)
        bridge = self.probe.links[op.bridge]  # KeyError: no such bridge, as the kernel refuses it
        if op.handover:  # the peer stays on the host, down and unaddressed, for the runtime
            peer = self._link("veth", address=op.mac)
            host = self._link("veth", master=bridge["ifindex"], master_name=op.bridge, iflink=peer["ifindex"])
            peer["iflink"] = host["ifindex"]
            host["peer"] = (None, op.handover)  # the host netns: deleting either end deletes both
            self.probe.links[op.handover] = peer
            self.probe.links[op.host_ifname] = host
            return
        inside = self._link("veth", address=op.mac, ipv4=[f"{op.ip}/{op.prefixlen}"])
        host = self._link("veth", master=bridge["ifindex"], master_name=op.bridge, iflink=inside["ifindex"])
        inside["iflink"] = host["ifindex"]
        host["peer"] = (op.netns, op.ifname)
        self.probe.links[op.host_ifname] = host
        self.probe.netns_links[op.netns][op.ifname] = inside
        if op.gateway:
            self.probe.gateways[op.netns] = op.gateway

    def _LinkDel(self, op):
        link = self.probe.links.pop(op.ifname, None)
        self.probe.sysctls.pop(f"/proc/sys/net/ipv4/conf/{op.ifname}/route_localnet", None)
        if link and link.get("peer"):
            ns, name = link["peer"]
            (self.probe.links if ns is None else self.probe.netns_links.get(ns, {})).pop(name, None)
        for other in list(self.probe.links.values()):
            if link and other.get("master") == link["ifindex"]:
                other["master"] = None
        self.probe.hairpin.pop(op.ifname, None)

    def _RouteReplace(self, op):
        self.probe.gateways[op.netns] = op.gateway

    def _UtsAdd(self, op):
        self.probe.files[op.path] = "uts"

    def _UtsDel(self, op):
        self.probe.files.pop(op.path, None)

    # ---- host settings and firewall
    def _HairpinOn(self, op):
        for name in op.ifnames:
            self.probe.hairpin[name] = True

    def _ProcessesKill(self, op):
        for procs in self.probe.netns_procs.values():
            procs[:] = [(pid, comm) for pid, comm in procs if pid not in op.pids]

    def _SysctlSet(self, op):
        self.probe.sysctls[op.path] = op.value

    def _FirewallChange(self, op):
        self.firewall.apply(list(op.changes), op.thorough)

    def _FirewallReset(self, op):
        self.firewall.reset(op.forward_policy)  # the one fake backend stands for every backend

    def _ConntrackForget(self, op):
        pass

    def _PortGuardAdd(self, op):
        self.probe.guard_table = True
        self.probe.guards.add((op.ifname, op.mac.lower(), op.ip))

    def _PortGuardDel(self, op):
        self.probe.guards.discard((op.ifname, op.mac.lower(), op.ip))

    def _PortGuardTable(self, op):
        self.probe.guard_table = True

    def _PortGuardForget(self, op):
        self.probe.guards = {g for g in self.probe.guards if g[0] != op.ifname}

    def _BridgeNfCall(self, op):
        self.probe.sysctls[ops.bridge_nf_call_path(op.bridge)] = op.value

    def _CrossIsolation(self, op):
        self.probe.cross_isolation_set = tuple(op.bridges)

    def _CrossIsolationDel(self, op):
        self.probe.cross_isolation_set = None

    def _PortGuardTableDel(self, op):
        self.probe.guard_table = False
        self.probe.guards.clear()

    def context(self, store_dir: str, dry_run: bool = False, **config) -> Context:
        """A Context over this fake host. The config's "iptables": false (or firewall_backend
        "none") gets the real `none` backend, as fw.choose picks it."""
        from netkit.kernel import fw

        cfg = Config(**config)
        none = not cfg.iptables or cfg.firewall_backend == "none"
        return Context(dry_run=dry_run, store=Store(store_dir), config=cfg, probe=self.probe,
                       executor=self.executor, firewall=fw.get("none") if none else self.firewall,
                       run_dir_path=store_dir, derive=False)


_STEPS = (ops.NetnsAdd, ops.NetnsAttach, ops.NetnsDel, ops.BridgeAdd, ops.BridgeDel, ops.AddrAdd, ops.AddrDel,
          ops.EndpointAdd, ops.LinkDel, ops.RouteReplace, ops.UtsAdd, ops.UtsDel, ops.HairpinOn, ops.ProcessesKill,
          ops.SysctlSet, ops.FirewallChange, ops.FirewallReset, ops.ConntrackForget, ops.PortGuardAdd, ops.PortGuardDel,
          ops.PortGuardTableDel, ops.PortGuardTable, ops.PortGuardForget, ops.BridgeNfCall, ops.CrossIsolation,
          ops.CrossIsolationDel)
