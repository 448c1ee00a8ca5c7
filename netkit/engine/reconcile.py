"""netkit's chains and the host settings they rely on, made to match the state. Every change ends
here (Context.change calls `sync`), and `doctor --fix`, `rules` and `reset` use the same parts.

The reconciler only plans: it reads what is there through the firewall backend's snapshot and the
probe, and emits ops (ops.FirewallChange, ops.SysctlSet, ops.HairpinOn, ops.ConntrackForget) that
the executor applies and can undo. It never calls the kernel itself.

Two paths. A change to one container (create, rm, connect, publish) appends or deletes only that
container's rules in the order-free DNAT and raw chains (`plan_fast`: one commit per table). Any
other change, or a fast path that finds something unexpected, diffs the whole desired rule set
against what netkit's chains hold (`plan_full`), which also repairs drift. Host settings: when
netkit turns ip_forward on it sets the FORWARD policy to DROP (as dockerd does); route_localnet on
its bridges; hairpin mode on every port of its bridges. What netkit changed is remembered in the
state (meta "firewall") so that `reset` can restore it.

The seam for firewall backends: `desired()` (a rules.RuleSet) and `rules.diff(current, desired)`
(list of rules.Op) are backend-neutral; a backend offers kernel.firewall_backend.FirewallBackend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netkit import journal, ops, rules
from netkit.errors import KernelError
from netkit.model import Container, Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

META = "firewall"  # {"active": bool, "ip_forward_was": "0", "forward_policy_was": "ACCEPT", "route_localnet_was": {br: "0"}}
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def route_localnet(bridge: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"


def managed(nets: list[Network]) -> list[Network]:
    """Networks whose bridges netkit's rules forward for (iptables on, not internal)."""
    return [n for n in nets if n.iptables and not n.internal]


def hairpin_ports(containers: list[Container], nets: list[Network]) -> list[str]:
    """The bridge ports that need hairpin mode: host ends of the veths on managed networks."""
    names = {n.name for n in managed(nets)}
    return [e.host_ifname for c in containers for e in c.endpoints if e.network in names]


def desired(ctx: Context, nets: list[Network] | None = None) -> rules.RuleSet:
    nets = ctx.store.networks() if nets is None else nets
    return rules.plan(nets, ctx.store.containers())


# ---- pure planning ------------------------------------------------------------------------

class NeedFull(Exception):
    """The fast path cannot be used: compare everything."""


def plan_fast(old: Container | None, new: Container | None, nets: list[Network]) -> list:
    """Ops for a change of one container: its rules in the unordered chains, nothing else."""
    netmap = {n.name: n for n in nets}
    if any(rules.involves_links(c, netmap) for c in (old, new) if c is not None):
        raise NeedFull  # link rules live in the ordered FORWARD chain
    changes = rules.delta(rules.container_rules(old, netmap), rules.container_rules(new, netmap))
    if not changes:
        return []
    return [ops.FirewallChange(tuple(changes), thorough=False)] + forget_ops(changes)


@dataclass
class HostFacts:
    """What the full plan needs to know of the host besides the rules."""

    ip_forward: str | None  # current net.ipv4.ip_forward
    forward_policy: str  # current filter FORWARD policy
    route_localnet: dict[str, str | None] = field(default_factory=dict)  # bridge -> current value
    hairpin_off: list[str] = field(default_factory=list)  # ports of managed bridges with hairpin off


def plan_full(current: dict, want: rules.RuleSet, nets: list[Network], facts: HostFacts, forward_wanted: bool,
              meta: dict, planned_bridges: bool = False) -> tuple[list, dict]:
    """Ops that make netkit's part of the firewall (`current`, rules.netkit_part form) and the host
    settings match the state, and the meta to remember. `planned_bridges`: bridges of the plan may
    not exist yet (a dry run), so a missing route_localnet counts as off."""
    meta = dict(meta)
    changes = rules.diff(current, want)
    plan: list = []
    turn_on = bool(managed(nets)) and forward_wanted and facts.ip_forward == "0"
    if turn_on:
        # Like dockerd: forwarding on, but only for what netkit's rules accept.
        meta.setdefault("ip_forward_was", "0")
        meta.setdefault("forward_policy_was", facts.forward_policy)
        changes.append(rules.Op(rules.FILTER, "P", "FORWARD", "DROP", was=facts.forward_policy))
    elif "forward_policy_was" in meta and forward_wanted and facts.forward_policy != "DROP" and managed(nets):
        # netkit set DROP when it turned forwarding on; someone flipped it back: the host routes
        # for anyone again. Put DROP back (doctor reports it).
        changes.append(rules.Op(rules.FILTER, "P", "FORWARD", "DROP", was=facts.forward_policy))
    if changes:
        plan.append(ops.FirewallChange(tuple(changes)))
    if turn_on:
        plan.append(ops.SysctlSet(IP_FORWARD, "1", was="0"))
    was = dict(meta.get("route_localnet_was") or {})
    for n in managed(nets):
        value = facts.route_localnet.get(n.bridge)
        if value != "1" and (value is not None or planned_bridges):
            if value is not None:
                was.setdefault(n.bridge, value)
            plan.append(ops.SysctlSet(route_localnet(n.bridge), "1", was=value))
    meta["route_localnet_was"] = was
    # Always the last step, even with no port to fix: a failure after the rules are committed
    # must find them undone (tests/integration/test_firewall.py injects one here).
    plan.append(ops.HairpinOn(tuple(facts.hairpin_off)))
    plan += forget_ops(changes)
    return plan, meta


def forget_ops(changes: list[rules.Op]) -> list[ops.ConntrackForget]:
    """Conntrack clean-up for deleted DNAT rules: the old mapping must stop catching its flows."""
    out = []
    for op in changes:
        if op.action != "D" or op.chain != rules.CHAIN_DNAT or "-j DNAT" not in op.spec:
            continue
        words = op.spec.split()
        ip, _, cport = words[words.index("--to-destination") + 1].rpartition(":")
        out.append(ops.ConntrackForget(words[words.index("-p") + 1], int(words[words.index("--dport") + 1]),
                                       ip, int(cport)))
    return out


def as_current(rs: rules.RuleSet, present: bool) -> dict:
    """A rule set as if the kernel held it (what a dry run compares the new state with)."""
    if not present:
        return {}
    cur: dict[str, dict[str, list[str]]] = {t: {c: [] for c in chains} for t, chains in rules.CHAINS.items()}
    for (t, c), specs in rs.rules.items():
        cur[t][c] = list(specs)
    for t, c, s in rs.hooks:
        cur[t].setdefault(c, []).append(s)
    return cur


def plan_reset(current: dict, policy_now: str | None, meta: dict, route_localnet_now: dict[str, str | None]) -> list:
    """Ops that remove every netkit chain and hook and put back what netkit changed on the host."""
    changes = rules.reset_ops(current)
    if "forward_policy_was" in meta and policy_now != meta["forward_policy_was"]:
        changes.append(rules.Op(rules.FILTER, "P", "FORWARD", meta["forward_policy_was"]))
    plan: list = [ops.FirewallChange(tuple(changes))] if changes else []
    if "ip_forward_was" in meta:
        plan.append(ops.SysctlSet(IP_FORWARD, meta["ip_forward_was"]))
    for bridge, value in (meta.get("route_localnet_was") or {}).items():
        if route_localnet_now.get(bridge) is not None:
            plan.append(ops.SysctlSet(route_localnet(bridge), value))
    return plan


# ---- reading the host, then handing the plan over -----------------------------------------

def host_facts(ctx: Context, nets: list[Network], snapshot: dict | None) -> HostFacts:
    probe = ctx.probe
    mine = managed(nets)
    policy = (ctx.firewall.policy(snapshot, rules.FILTER, "FORWARD") if snapshot is not None else None) or "ACCEPT"
    return HostFacts(
        ip_forward=probe.sysctl(IP_FORWARD), forward_policy=policy,
        route_localnet={n.bridge: probe.sysctl(route_localnet(n.bridge)) for n in mine},
        hairpin_off=probe.hairpin_off(hairpin_ports(ctx.store.containers(), nets)),
    )


def sync(ctx: Context) -> None:
    """Make netkit's rules and host settings match the state (in a dry run: print the changes)."""
    hint = ctx.firewall_hint
    ctx.firewall_hint = None
    if not ctx.config.iptables:
        return
    nets = ctx.store.networks()
    meta = ctx.store.meta(META, {}) or {}
    if not any(n.iptables for n in nets) and not meta.get("active"):
        if not ctx.dry_run and journal.host_originals(ctx.store.directory):
            _undo_interrupted_first_change(ctx)
        return
    if ctx.dry_run:
        ctx.printed.extend(ops.render_plan(_dry_plan(ctx, hint, nets, meta)))
        return
    if hint is not None and meta.get("active"):
        try:
            if ctx.config.ip_forward and ctx.probe.sysctl(IP_FORWARD) == "0":
                raise NeedFull
            ctx.apply(plan_fast(hint[0], hint[1], nets))  # recorded: a failed commit undoes it
            return
        except (KernelError, NeedFull):
            pass  # e.g. someone deleted netkit's chains: the full sync puts everything back
    fw = ctx.firewall
    with fw.locked():
        snap = fw.snapshot()
        plan, meta = plan_full(rules.netkit_part(snap), desired(ctx, nets), nets, host_facts(ctx, nets, snap),
                               ctx.config.ip_forward, meta)
        originals = {k: v for k, v in meta.items() if k.endswith("_was") and v}
        if originals:  # durable before the change: a kill during it must not lose them
            journal.save_host_originals(ctx.store.directory, originals)
        ctx.apply(plan)
    meta["active"] = True
    ctx.store.put_meta(META, meta)


def _undo_interrupted_first_change(ctx: Context) -> None:
    """The state knows no network with rules and netkit never committed its rules, yet the host's
    originals were recorded: a change was killed while it set the host up. Put the host back
    (as `reset` does) so that nothing of netkit is left."""
    fw = ctx.firewall
    meta = journal.host_originals(ctx.store.directory)
    with fw.locked():
        snap = fw.snapshot()
        now = {b: ctx.probe.sysctl(route_localnet(b)) for b in (meta.get("route_localnet_was") or {})}
        plan = plan_reset(rules.netkit_part(snap), fw.policy(snap, rules.FILTER, "FORWARD"), meta, now)
        ctx.executor().apply_all(plan)
    journal.clear_host_originals(ctx.store.directory)


def _dry_plan(ctx: Context, hint, nets: list[Network], meta: dict) -> list:
    if hint is not None and meta.get("active"):
        try:
            plan = plan_fast(hint[0], hint[1], nets)
        except NeedFull:
            plan = None
        if plan is not None:
            facts = host_facts(ctx, nets, None)
            if managed(nets) and ctx.config.ip_forward and facts.ip_forward == "0":
                plan = None
        if plan is not None:
            return plan
    old = ctx.store.committed()
    try:
        before = rules.plan(old.networks(), old.containers())
    finally:
        old.close()
    # (Ports this plan makes do not exist yet, so the probe does not count them as hairpin off.)
    plan, _ = plan_full(as_current(before, bool(meta.get("active"))), desired(ctx, nets), nets,
                        host_facts(ctx, nets, None), ctx.config.ip_forward, meta, planned_bridges=True)
    return plan


# ---- read back and reset ------------------------------------------------------------------

def kernel_rules(ctx: Context) -> dict:
    """netkit's chains and hooks as the backend holds them: {table: {chain: [spec]}}."""
    snap = ctx.firewall.snapshot()
    return {t: chains for t, chains in rules.netkit_part(snap).items() if chains}


def backend_info(ctx: Context) -> tuple[str, str]:
    """(name, command that shows its rules) of the firewall backend netkit writes to."""
    return ctx.firewall.name, ctx.firewall.show_command


def render_kernel_rules(part: dict) -> list[str]:
    lines = []
    for table in rules.TABLES:
        chains = part.get(table)
        if not chains:
            continue
        lines.append(f"*{table}")
        lines += [f":{c} -" for c in chains if c.startswith(rules.PREFIX)]
        for chain in sorted(chains, key=lambda c: (c.startswith(rules.PREFIX), c)):
            lines += [f"-A {chain} {s}" for s in chains[chain]]
        lines.append("COMMIT")
    return lines


def reset(ctx: Context) -> list[str]:
    """Remove every netkit chain and hook; restore ip_forward, the FORWARD policy and
    route_localnet as they were before netkit. Foreign rules are untouched."""
    ctx.require_root()
    fw = ctx.firewall
    done = []
    with ctx.store.transaction():
        # The originals recorded before netkit's first change count too (a kill may have lost the
        # state's copy); what the state says wins.
        saved = journal.host_originals(ctx.store.directory)
        meta = {**saved, **(ctx.store.meta(META, {}) or {})}
        meta["route_localnet_was"] = {**(saved.get("route_localnet_was") or {}),
                                      **(meta.get("route_localnet_was") or {})}
        with fw.locked():
            snap = fw.snapshot()
            part = rules.netkit_part(snap)
            now = {b: ctx.probe.sysctl(route_localnet(b)) for b in (meta.get("route_localnet_was") or {})}
            plan = plan_reset(part, fw.policy(snap, rules.FILTER, "FORWARD"), meta, now)
            changes = [c for op in plan if isinstance(op, ops.FirewallChange) for c in op.changes]
            if ctx.dry_run:
                return rules.render(changes)
            # Best effort, step by step, as deletions are: a flush cannot be undone anyway.
            ctx.executor().apply_all(plan)
        removed = sum(1 for o in changes if o.action == "X")
        done.append(f"removed {removed} netkit chain(s) and their hooks")
        user = part.get(rules.FILTER, {}).get(rules.CHAIN_USER)
        if user:
            done.append(f"kept {rules.CHAIN_USER}: it holds {len(user)} rule(s) of yours")
        if "ip_forward_was" in meta:
            done.append(f"restored net.ipv4.ip_forward={meta['ip_forward_was']} and FORWARD policy "
                        f"{meta.get('forward_policy_was')}")
        ctx.store.delete_meta(META)
        journal.clear_host_originals(ctx.store.directory)
    done.append("the next netkit change (or `netkit doctor --fix`) puts the rules of existing networks back")
    return done
