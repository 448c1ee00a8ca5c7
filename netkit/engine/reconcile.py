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
(list of rules.Op) are backend-neutral; the active backend (ctx.firewall, kernel/fw's
FirewallBackend, chosen by the config's `firewall_backend`) reads and writes them, and prints them
in its own syntax. The state remembers which backend holds netkit's rules (meta "backend"): when
the config names another one, the next sync removes netkit's rules from the old backend (and puts
its FORWARD policy back) before writing the new one, so both are never active.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netkit import journal, ops, rules, xisolation
from netkit.errors import KernelError
from netkit.model import Container, Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

META = "firewall"  # {"active": bool, "backend": "iptables-nft", "ip_forward_was": "0", "forward_policy_was": "ACCEPT",
#                    "route_localnet_was": {br: "0"}, "nf_call_was": {br: "0"}}
LEGACY_OWNER = "iptables-legacy"  # states written before backends existed: their rules are legacy ones
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
# br_netfilter's switch for every bridge of this netns; absent when br_netfilter is not loaded.
BRIDGE_NF_CALL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def route_localnet(bridge: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"


def managed(nets: list[Network]) -> list[Network]:
    """Networks whose bridges netkit's rules forward for (iptables on, not internal)."""
    return [n for n in nets if n.iptables and not n.internal]


def bridged_filtering(nets: list[Network]) -> list[Network]:
    """Networks whose rules act on frames bridged between two ports: icc off (`-i br -o br -j
    DROP` and the --link holes), and every network that can publish (hairpin: a server's reply to
    a sibling that called host-address:port is bridged straight back, and only conntrack, reached
    through br_netfilter, turns its source back into host-address:port; rules.py, "Hairpin").
    Those frames reach iptables only through br_netfilter: each such bridge gets its per-bridge
    nf_call_iptables on, so isolation and hairpin hold whatever the global
    net.bridge.bridge-nf-call-iptables says (the kernel ORs the two)."""
    return [n for n in nets if n.iptables and (not n.icc or not n.internal)]


def isolating(nets: list[Network]) -> list[Network]:
    """The networks of bridged_filtering whose isolation (--no-icc) depends on br_netfilter."""
    return [n for n in nets if n.iptables and not n.icc]


def bridge_nf(ctx: Context) -> bool:
    """Whether br_netfilter is loaded (its sysctl exists): then netkit's bridges pass bridged frames
    to iptables, and hairpin keeps the client's address (rules.plan's `bridge_nf`)."""
    return ctx.probe.sysctl(BRIDGE_NF_CALL) is not None


def hairpin_ports(containers: list[Container], nets: list[Network]) -> list[str]:
    """The bridge ports that need hairpin mode: host ends of the veths on managed networks."""
    names = {n.name for n in managed(nets)}
    return [e.host_ifname for c in containers for e in c.endpoints if e.network in names]


def desired(ctx: Context, nets: list[Network] | None = None) -> rules.RuleSet:
    nets = ctx.store.networks() if nets is None else nets
    return rules.plan(nets, ctx.store.containers(), bridge_nf(ctx))


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
    nf_call: dict[str, str | None] = field(default_factory=dict)  # bridge -> per-bridge nf_call_iptables
    bridge_nf_call: str | None = None  # net.bridge.bridge-nf-call-iptables (None: br_netfilter absent)
    cross_isolation: tuple | None = None  # bridges in netkit/xisolation.py's table (None: no table)


def plan_full(current: dict, want: rules.RuleSet, nets: list[Network], facts: HostFacts, forward_wanted: bool,
              meta: dict, planned_bridges: bool = False, claim_forward: bool = False) -> tuple[list, dict]:
    """Ops that make netkit's part of the firewall (`current`, rules.netkit_part form) and the host
    settings match the state, and the meta to remember. `planned_bridges`: bridges of the plan may
    not exist yet (a dry run), so a missing route_localnet counts as off. `claim_forward`: netkit
    turned forwarding on while writing another backend (a backend switch): this backend's FORWARD
    policy becomes DROP too, remembering its own old value."""
    meta = dict(meta)
    changes = rules.diff(current, want)
    plan: list = []
    turn_on = bool(managed(nets)) and forward_wanted and facts.ip_forward == "0"
    if turn_on:
        # Like dockerd: forwarding on, but only for what netkit's rules accept.
        meta.setdefault("ip_forward_was", "0")
        meta.setdefault("forward_policy_was", facts.forward_policy)
        changes.append(rules.Op(rules.FILTER, "P", "FORWARD", "DROP", was=facts.forward_policy))
    elif bool(managed(nets)) and "ip_forward_was" in meta and (
            claim_forward or ("forward_policy_was" not in meta and forward_wanted)):
        # Also when this backend takes over from `none` (which holds no policy, so none was kept).
        meta["forward_policy_was"] = facts.forward_policy
        if facts.forward_policy != "DROP":
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
    nf_was = dict(meta.get("nf_call_was") or {})
    for n in bridged_filtering(nets):
        value = facts.nf_call.get(n.bridge)
        if value != "1" and (value is not None or planned_bridges):
            if value is not None:
                nf_was.setdefault(n.bridge, value)
            plan.append(ops.BridgeNfCall(n.bridge, "1", was=value))
    if nf_was:
        meta["nf_call_was"] = nf_was
    # Isolation from bridges that are not netkit's (Docker's bridge networks): netkit/xisolation.py.
    if facts.cross_isolation != xisolation.wanted(nets):
        plan.append(ops.CrossIsolation(xisolation.wanted(nets), was=facts.cross_isolation))
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


def plan_reset(current: dict, policy_now: str | None, meta: dict, route_localnet_now: dict[str, str | None],
               nf_call_now: dict[str, str | None] | None = None) -> list:
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
    for bridge, value in (meta.get("nf_call_was") or {}).items():
        if (nf_call_now or {}).get(bridge) is not None:
            plan.append(ops.BridgeNfCall(bridge, value))
    # The anti-spoofing table (netkit/antispoof.py) goes too; nothing there if it never was.
    # So does the isolation from other bridges (netkit/xisolation.py).
    plan += [ops.PortGuardTableDel(), ops.CrossIsolationDel()]
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
        nf_call={n.bridge: probe.sysctl(ops.bridge_nf_call_path(n.bridge)) for n in bridged_filtering(nets)},
        bridge_nf_call=probe.sysctl(BRIDGE_NF_CALL),
        cross_isolation=probe.cross_isolation(),
    )


def owner(meta: dict) -> str | None:
    """The backend that holds netkit's rules according to the state (None: no rules written)."""
    return meta.get("backend", LEGACY_OWNER) if meta.get("active") else None


def leave_backend(name: str, meta: dict) -> tuple[list, dict]:
    """The step that removes netkit's rules from backend `name` (no longer the active one) and
    puts back the FORWARD policy netkit set there; and the meta without that backend's policy."""
    step = ops.FirewallReset(name, meta.get("forward_policy_was"))
    meta = dict(meta)
    meta.pop("forward_policy_was", None)
    meta["active"] = False
    return [step], meta


def sync(ctx: Context) -> None:
    """Make netkit's rules and host settings match the state (in a dry run: print the changes)."""
    hint = ctx.firewall_hint
    ctx.firewall_hint = None
    fw = ctx.firewall
    nets = ctx.store.networks()
    meta = ctx.store.meta(META, {}) or {}
    holder = owner(meta)
    moving = holder is not None and holder != fw.name  # the config names another backend now
    if not fw.manages_rules and not moving:
        return
    if not any(n.iptables for n in nets) and not meta.get("active"):
        if not ctx.dry_run and journal.host_originals(ctx.store.directory):
            _undo_interrupted_first_change(ctx)
        return
    if ctx.dry_run:
        if moving:
            ctx.printed.append(f"# netkit's rules move from {holder} to {fw.name}: `netkit reset` runs on {holder}")
        # After a move the new backend starts empty: plan as if no rules were written yet.
        ctx.printed.extend(render(ctx, _dry_plan(ctx, None if moving else hint, nets,
                                                 {**meta, "active": False} if moving else meta, moving)))
        return
    if hint is not None and meta.get("active") and not moving:
        try:
            if ctx.config.ip_forward and ctx.probe.sysctl(IP_FORWARD) == "0":
                raise NeedFull
            ctx.apply(plan_fast(hint[0], hint[1], nets))  # recorded: a failed commit undoes it
            return
        except (KernelError, NeedFull):
            pass  # e.g. someone deleted netkit's chains: the full sync puts everything back
    with fw.locked():
        leave: list = []
        if moving:
            leave, meta = leave_backend(holder, meta)
        if not fw.manages_rules:
            ctx.executor().apply(leave)
            ctx.store.put_meta(META, meta)
            return
        snap = fw.snapshot()
        plan, meta = plan_full(rules.netkit_part(snap), desired(ctx, nets), nets, host_facts(ctx, nets, snap),
                               ctx.config.ip_forward, meta, claim_forward=moving)
        originals = {k: v for k, v in meta.items() if k.endswith("_was") and v}
        if originals:  # durable before the change: a kill during it must not lose them
            journal.save_host_originals(ctx.store.directory, originals)
        # Rules (re)written from nothing (first change, after `netkit reset`, after a backend
        # move): the existing containers' anti-spoofing comes back with them.
        guards = [] if meta.get("active") and not moving else port_guards(ctx.store.containers(), nets)
        ctx.apply(leave + plan + guards)  # recorded: a failed commit undoes it
    meta["active"] = True
    meta["backend"] = fw.name
    ctx.store.put_meta(META, meta)


def _undo_interrupted_first_change(ctx: Context) -> None:
    """The state knows no network with rules and netkit never committed its rules, yet the host's
    originals were recorded: a change was killed while it set the host up. Put the host back
    (as `reset` does) so that nothing of netkit is left."""
    fw = ctx.firewall
    meta = journal.host_originals(ctx.store.directory)
    with fw.locked():
        now = {b: ctx.probe.sysctl(route_localnet(b)) for b in (meta.get("route_localnet_was") or {})}
        host = [op for op in plan_reset({}, None, meta, now, {}) if not isinstance(op, ops.FirewallChange)]
        ctx.executor().apply_all([ops.FirewallReset(fw.name, meta.get("forward_policy_was"))] + host)
    journal.clear_host_originals(ctx.store.directory)


def port_guards(containers: list, nets: list[Network]) -> list:
    """Anti-spoofing elements of every bridge-port endpoint on a network that has it (adding an
    element that exists changes nothing)."""
    guarded = {n.name for n in nets if n.anti_spoofing}
    return [ops.PortGuardAdd(e.host_ifname, e.mac, e.ip)
            for c in containers for e in c.endpoints if e.host_ifname and e.network in guarded]


def render(ctx: Context, plan: list) -> list[str]:
    """A plan as text; its rule changes in the active backend's own syntax (nft for nftables)."""
    out: list[str] = []
    for step in plan:
        out += ctx.firewall.render(list(step.changes)) if isinstance(step, ops.FirewallChange) else step.render()
    return out


def _dry_plan(ctx: Context, hint, nets: list[Network], meta: dict, claim_forward: bool = False) -> list:
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
        before = rules.plan(old.networks(), old.containers(), bridge_nf(ctx))
    finally:
        old.close()
    # (Ports this plan makes do not exist yet, so the probe does not count them as hairpin off.)
    plan, _ = plan_full(as_current(before, bool(meta.get("active"))), desired(ctx, nets), nets,
                        host_facts(ctx, nets, None), ctx.config.ip_forward, meta, planned_bridges=True,
                        claim_forward=claim_forward)
    return plan


# ---- read back and reset ------------------------------------------------------------------

def kernel_rules(ctx: Context) -> dict:
    """netkit's chains and hooks as the backend holds them: {table: {chain: [spec]}} (for nftables,
    translated back into iptables-save text: the JSON shape is the same for every backend)."""
    snap = ctx.firewall.snapshot()
    return {t: chains for t, chains in rules.netkit_part(snap).items() if chains}


def backend_info(ctx: Context) -> tuple[str, str]:
    """(name, command that shows its rules) of the firewall backend netkit writes to."""
    return ctx.firewall.name, ctx.firewall.show_command


def native_rules(ctx: Context) -> list[str]:
    """netkit's rules as the active backend holds them, in its own syntax."""
    return ctx.firewall.native()


def reset(ctx: Context) -> list[str]:
    """Remove every netkit chain and hook (in every backend: rules left from before a backend
    switch too); restore ip_forward, the FORWARD policy and route_localnet as they were before
    netkit. Foreign rules are untouched."""
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
        holder = owner(meta) or fw.name
        with fw.locked():
            now = {b: ctx.probe.sysctl(route_localnet(b)) for b in (meta.get("route_localnet_was") or {})}
            nf_now = {b: ctx.probe.sysctl(ops.bridge_nf_call_path(b)) for b in (meta.get("nf_call_was") or {})}
            # host settings, bridge switches and the anti-spoofing table: the same in every backend
            host = [op for op in plan_reset({}, None, meta, now, nf_now) if not isinstance(op, ops.FirewallChange)]
            backends = [fw] + [b for b in ctx.other_firewalls() if b.name == holder or has_leftovers(b)]
            policies = [meta.get("forward_policy_was") if b.name == holder else None for b in backends]
            # What each reset removes, read before (and, in a dry run, instead of) doing it.
            reports = [b.reset(p, dry_run=True) for b, p in zip(backends, policies)]
            if ctx.dry_run:
                return [line for r in reports for line in r.lines] + render(ctx, host)
            # Best effort, step by step, as deletions are.
            ctx.executor().apply_all([ops.FirewallReset(b.name, p) for b, p in zip(backends, policies)] + host)
        for backend, report in zip(backends, reports):
            if backend is fw:
                done.append(f"removed {report.removed_chains} netkit chain(s) and their hooks, and the anti-spoofing table")
            else:
                done.append(f"removed {report.removed_chains} netkit chain(s) and their hooks from {backend.name} "
                            f"(not the active backend {fw.name})")
            if report.kept_user_rules:
                done.append(f"kept {rules.CHAIN_USER} ({backend.name}): it holds {report.kept_user_rules} rule(s) of yours")
        if "ip_forward_was" in meta:
            done.append(f"restored net.ipv4.ip_forward={meta['ip_forward_was']} and FORWARD policy "
                        f"{meta.get('forward_policy_was')}")
        ctx.store.delete_meta(META)
        journal.clear_host_originals(ctx.store.directory)
    done.append("the next netkit change (or `netkit doctor --fix`) puts the rules and the anti-spoofing of "
                "existing networks and containers back")
    return done


def has_leftovers(backend) -> bool:
    """Whether a backend holds netkit objects (read only; one that cannot be read holds none)."""
    try:
        return backend.available().ok and bool(backend.leftovers())
    except Exception:  # noqa: BLE001 - a backend that cannot even be read holds nothing of ours
        return False
