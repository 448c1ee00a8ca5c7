"""`netkit doctor`: every finding in one place. Compares the state with the kernel objects (bridges,
namespaces, veths and, as deep as CNI's CHECK, each endpoint's wiring: host end on the right
bridge and peered with the container's interface, recorded address, MAC and default route
present), with netkit's firewall rules and host settings, and with the running DNS servers.
Each difference is one line; with --fix, what can be repaired is (stray objects a crash left,
rules, host settings, name files, DNS servers). Objects that went missing (a deleted veth or
netns) are reported, not re-made: `netkit container rm` and create again give a clean one.

Host facts come from ctx.probe, so the checks run in unit tests against a FakeProbe.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from netkit import journal, naming, ops, rules, xisolation
from netkit.engine import reconcile
from netkit.errors import EnvError
from netkit.model import MODE_BRIDGE, MODE_NONE, Container, Endpoint

if TYPE_CHECKING:
    from netkit.engine.context import Context

Findings = tuple[list[str], int]  # lines, how many of them are problems


def strays(ctx: Context) -> list[tuple[str, object]]:
    """Objects that only netkit makes but the state does not know (left by a crash or a kill):
    UTS pins, the netns pinned next to them, and veth ports on netkit's bridges."""
    probe = ctx.probe
    known = {c.name for c in ctx.store.containers()}
    found = []
    uts_dir = os.path.join(ctx.run_dir, "uts")
    for name in probe.list_dir(uts_dir):
        if name not in known:
            found.append((f"UTS pin {uts_dir}/{name}", ops.UtsDel(os.path.join(uts_dir, name))))
            if probe.netns_exists(name):
                found.append((f"netns {name}", ops.NetnsDel(name)))
    # Bridges netkit made carry the MAC naming.bridge_mac(name) derives from their name: one with
    # it that no network (nor `netkit bridge create`) owns was left by a killed create or rm.
    owned = {n.bridge for n in ctx.store.networks()}
    for name in probe.link_names():
        if name in owned or ctx.store.bridge(name) is not None:
            continue
        info = probe.link_info(name)
        if info and info.get("kind") == "bridge" and (info.get("address") or "").lower() == naming.bridge_mac(name):
            addrs = ", ".join(info.get("ipv4") or []) or "no address"
            found.append((f"bridge {name} ({addrs})", ops.BridgeDel(name)))
    ports = {e.host_ifname for c in ctx.store.containers() for e in c.endpoints}
    for net in ctx.store.networks():
        if probe.link_exists(net.bridge):
            for port in probe.bridge_ports(net.bridge):
                if port.startswith("veth") and port not in ports:
                    found.append((f"veth {port} on {net.bridge}", ops.LinkDel(port)))
    return found


def endpoint_problems(ctx: Context, c: Container, ep: Endpoint, route_via: str | None) -> list[str]:
    """CNI-CHECK-depth findings for one endpoint whose host veth exists."""
    probe = ctx.probe
    net = ctx.store.network(ep.network)
    host = probe.link_info(ep.host_ifname)
    netns = os.path.basename(c.netns) if c.netns else None
    where = f"container '{c.name}' on network '{ep.network}'"
    fix = f"(netkit network disconnect {ep.network} {c.name}, then connect)"
    out = []
    if host is None:
        return out
    bridge = probe.link_info(net.bridge) if net else None
    if host.get("kind") != "veth":
        out.append(f"problem: '{ep.host_ifname}' of {where} is a {host.get('kind') or 'plain'} interface, "
                   f"not a veth {fix}")
        return out
    if bridge is not None and host.get("master") != bridge.get("ifindex"):
        out.append(f"problem: veth '{ep.host_ifname}' of {where} is not a port of bridge '{net.bridge}' {fix}")
    inner = _inner_link(probe, ep, netns, host)
    if inner is None:
        what = f"the peer of veth '{ep.host_ifname}'" if ep.handover else f"'{ep.ifname}'"
        out.append(f"problem: {what} of {where} is missing inside netns {netns} {fix}")
        return out
    name = inner.get("ifname") or ep.ifname
    if host.get("iflink") != inner.get("ifindex") or inner.get("iflink") != host.get("ifindex"):
        out.append(f"problem: veth '{ep.host_ifname}' of {where} is not peered with its '{name}' {fix}")
    if f"{ep.ip}/{ep.prefixlen}" not in (inner.get("ipv4") or []):
        out.append(f"problem: {name} of {where} lacks its address {ep.ip}/{ep.prefixlen} {fix}")
    if (inner.get("address") or "").lower() != ep.mac.lower():
        out.append(f"problem: {name} of {where} has MAC {inner.get('address')}, the state says {ep.mac} {fix}")
    # The runtime picks the network that gives the default route (Docker: by its own order).
    if route_via is not None and not ep.handover and probe.default_gateway(netns) != route_via:
        out.append(f"problem: container '{c.name}' has no default route via {route_via} ({ep.network}'s gateway) {fix}")
    return out


def _inner_link(probe, ep: Endpoint, netns: str | None, host: dict | None = None) -> dict | None:
    """The endpoint's interface inside the container's netns: by its name, or, when a runtime
    named it (Docker's eth<N>: Endpoint.handover), as the host veth's peer."""
    if not netns:
        return None
    if not ep.handover:
        return probe.link_info(ep.ifname, netns)
    host = host if host is not None else probe.link_info(ep.host_ifname)
    return probe.link_by_index(host.get("iflink"), netns) if host else None


def _route_via(ctx: Context, c: Container) -> tuple[Endpoint | None, str | None]:
    for ep in c.endpoints:
        net = ctx.store.network(ep.network)
        if net is not None and not net.internal:
            return ep, ep.gateway
    return None, None


def interrupted(ctx: Context, fix: bool = False) -> Findings:
    """A change a crash interrupted (its intent journal is still there): finished or undone."""
    data = journal.read(ctx.store.directory)
    if data is None:
        return [], 0
    if fix:
        with ctx.store.transaction():
            return [f"fix: {line}" for line in ctx.recover()], 0
    return [f"problem: an interrupted change was not finished: {journal.describe(data)} "
            f"({journal.path(ctx.store.directory)}; fix: netkit doctor --fix)"], 1


def refuse_if_state_lost(ctx: Context) -> None:
    """An empty state next to many of netkit's kernel objects smells of a lost state file, not of
    strays: removing them all would take every running container down. Refuse; say how to go on."""
    if ctx.store.networks() or ctx.store.containers() or ctx.store.meta(reconcile.META):
        return
    found = strays(ctx)
    pins = [what for what, _ in found if what.startswith("UTS pin")]
    if pins and not os.environ.get("NETKIT_REMOVE_STRAYS"):
        raise EnvError(f"netkit's state in {ctx.store.directory} is empty, yet {len(pins)} container(s) netkit made "
                       "exist: if the state was lost, restore it from a backup; to remove them all, run "
                       "NETKIT_REMOVE_STRAYS=1 netkit doctor --fix")


def addresses(ctx: Context, fix: bool = False) -> Findings:
    """Gateway addresses on netkit's bridges (flushed behind its back, every container loses its way)."""
    lines, problems = [], 0
    for net in ctx.store.networks():
        info = ctx.probe.link_info(net.bridge)
        want = f"{net.gateway}/{net.prefixlen}"
        if info is None or want in (info.get("ipv4") or []):
            continue
        if fix:
            ctx.executor().apply([ops.AddrAdd(net.bridge, want)])
            lines.append(f"fix: put gateway address {want} back on {net.bridge}")
        else:
            problems += 1
            lines.append(f"problem: bridge '{net.bridge}' of network '{net.name}' lacks its gateway address "
                         f"{want} (fix: netkit doctor --fix)")
    if fix:
        lines += container_addresses(ctx)
    return lines, problems


def container_addresses(ctx: Context) -> list[str]:
    """doctor --fix: put back a container's flushed address (and with it its default route)."""
    probe, done = ctx.probe, []
    for c in ctx.store.containers():
        netns = os.path.basename(c.netns) if c.netns else None
        if c.mode not in (MODE_BRIDGE, MODE_NONE) or not netns or not probe.netns_exists(netns):
            continue
        holder, via = _route_via(ctx, c)
        for ep in c.endpoints:
            inner = _inner_link(probe, ep, netns)
            if inner is None:
                continue
            want, name = f"{ep.ip}/{ep.prefixlen}", inner.get("ifname") or ep.ifname
            if want not in (inner.get("ipv4") or []):
                ctx.executor().apply([ops.AddrAdd(name, want, netns)])
                done.append(f"fix: put address {want} back on {name} of container '{c.name}'")
            # A runtime that configured the interface itself (Docker) chose the default route.
            if ep is holder and not ep.handover and probe.default_gateway(netns) != via:
                ctx.executor().apply([ops.RouteReplace(netns, via)])
                done.append(f"fix: put the default route via {via} back in container '{c.name}'")
    return done


def dns_orphans(ctx: Context, fix: bool = False) -> Findings:
    from netkit.dns import supervisor

    lines, problems = [], 0
    # A server for a network the state does not hold (a kill between `network rm`'s commit and
    # the server's stop) is as stray as one without a pidfile.
    known = {n.name for n in ctx.store.networks() if not n.default}
    unknown = sorted({net for net, _ in supervisor.servers() if net not in known}
                     | {net for net in supervisor.hosted(ctx.run_dir) if net not in known})
    strays = supervisor.stray_hosts(ctx.run_dir)
    if fix:
        for net, pid in supervisor.stop_orphans(None, ctx.run_dir):
            lines.append(f"fix: stopped orphaned DNS server of network '{net}' (pid {pid}, no pidfile)")
        for pid in strays:
            if supervisor.stop_stray_host(pid):
                lines.append(f"fix: stopped a DNS host no pidfile names (pid {pid})")
        for net in unknown:
            supervisor.stop(net, ctx.run_dir)
            lines.append(f"fix: stopped the DNS server of network '{net}', which is not in netkit's state")
        return lines, 0
    for net, pid in supervisor.orphans(ctx.run_dir):
        problems += 1
        lines.append(f"problem: DNS server of network '{net}' (pid {pid}) has no pidfile: an orphan of an "
                     "interrupted command (fix: netkit doctor --fix)")
    for net in unknown:
        problems += 1
        lines.append(f"problem: a DNS server runs for network '{net}', which is not in netkit's state "
                     "(fix: netkit doctor --fix)")
    for pid in strays:
        problems += 1
        lines.append(f"problem: a DNS host (pid {pid}) runs that no pidfile names: an orphan of an interrupted "
                     "start (fix: netkit doctor --fix)")
    return lines, problems


def stray_name_files(ctx: Context, fix: bool = False) -> Findings:
    """/etc/netns/NAME folders netkit wrote (their hosts file starts with netkit's header) for a
    container the state does not hold and no netns of that name: left by a kill between `container rm`'s commit and the
    files' removal. They would shadow the files of a later netns of that name."""
    from netkit import names as names_mod
    from netkit.engine import names_sync
    from netkit.kernel.nsexec import ETC_NETNS

    lines, problems = [], 0
    known = {c.name for c in ctx.store.containers()}
    for name in ctx.probe.list_dir(ETC_NETNS):
        if name in known or ctx.probe.netns_exists(name):  # only folders no netns uses
            continue
        try:
            with open(os.path.join(ETC_NETNS, name, "hosts")) as f:
                ours = f.read(len(names_mod._HOSTS_HEADER)) == names_mod._HOSTS_HEADER
        except OSError:
            ours = False
        if not ours:
            continue
        if fix:
            names_sync.remove_files(Container(name=name, id="", mode="", netns=None))
            lines.append(f"fix: removed stray {ETC_NETNS}/{name}")
        else:
            problems += 1
            lines.append(f"problem: stray {ETC_NETNS}/{name} (netkit's name files) is not in netkit's state "
                         "(fix: netkit doctor --fix)")
    return lines, problems


def kernel_objects(ctx: Context, fix: bool = False) -> Findings:
    probe = ctx.probe
    lines, problems = [], 0
    if fix:
        refuse_if_state_lost(ctx)
    for what, op in strays(ctx):
        if fix:
            ctx.executor().apply_all([op])
            lines.append(f"fix: removed stray {what}")
        else:
            problems += 1
            lines.append(f"problem: stray {what} is not in netkit's state (fix: netkit doctor --fix)")
    for net in ctx.store.networks():
        if net.bridge and not probe.link_exists(net.bridge):
            problems += 1
            lines.append(f"problem: bridge '{net.bridge}' of network '{net.name}' is missing "
                         f"(remove the network's containers and the network, then create them again)")
    for c in ctx.store.containers():
        if c.mode in (MODE_BRIDGE, MODE_NONE) and c.netns and not probe.path_exists(c.netns):
            problems += 1
            lines.append(f"problem: netns {c.netns} of container '{c.name}' is missing (netkit container rm {c.name})")
            continue
        holder, via = _route_via(ctx, c)
        for ep in c.endpoints:
            if not ep.host_ifname:  # macvlan/ipvlan: the sub-interface lives inside only
                if probe.link_info(ep.ifname, os.path.basename(c.netns)) is None:
                    problems += 1
                    lines.append(f"problem: '{ep.ifname}' of container '{c.name}' on network '{ep.network}' is "
                                 f"missing inside its netns (netkit container rm {c.name}, then create it again)")
                continue
            if not probe.link_exists(ep.host_ifname):
                problems += 1
                lines.append(f"problem: veth '{ep.host_ifname}' of container '{c.name}' on network "
                             f"'{ep.network}' is missing (netkit network disconnect {ep.network} {c.name}, then connect)")
                continue
            found = endpoint_problems(ctx, c, ep, via if ep is holder else None)
            problems += len(found)
            lines += found
    if not problems:
        lines.append("ok: every bridge, netns and veth in the state exists, and no stray one")
    return lines, problems


def firewall(ctx: Context, fix: bool = False) -> Findings:
    """netkit's rules and the host settings they rely on, against what the state implies; and the
    other firewall backends (netkit rules left there, forward-drop policies)."""
    lines: list[str] = []
    problems = 0
    if fix:
        ctx.require_root()
        with ctx.change():
            pass  # the change's closing sync repairs everything (and moves rules off an old backend)
        lines.append("fix: netkit's rules and host settings were synced with the state")
        stale = [b for b in ctx.other_firewalls() if reconcile.has_leftovers(b)]
        ctx.executor().apply_all([ops.FirewallReset(b.name) for b in stale])
        lines += [f"fix: removed netkit's rules left in the {b.name} backend" for b in stale]
    fw = ctx.firewall
    if not fw.manages_rules:
        lines.append(f"ok: netkit's firewall rules are off (backend none: {ctx.firewall_why()})")
        more, count = other_backends(ctx)
        return lines + more, count
    nets = ctx.store.networks()
    meta = ctx.store.meta(reconcile.META, {}) or {}
    if not any(n.iptables for n in nets) and not meta.get("active"):
        # Nothing made yet (a fresh install): netkit has set up no rules, and needs none.
        return lines + ["ok: no network needs netkit's firewall rules yet"], 0
    snap = fw.snapshot()
    changes = rules.diff(rules.netkit_part(snap), reconcile.desired(ctx, nets))
    for op in changes:
        problems += 1
        if op.action in ("A", "I"):
            lines.append(f"missing rule ({op.table}): -A {op.chain} {op.spec}")
        elif op.action == "N":
            lines.append(f"missing chain ({op.table}): {op.chain}")
        elif op.action == "D":
            lines.append(f"stale rule ({op.table}): -A {op.chain} {op.spec}")
        elif op.action == "X":
            lines.append(f"stale chain ({op.table}): {op.chain}")
    if not changes:
        lines.append(f"ok: every rule the state implies is in the kernel ({fw.name}: see `netkit rules` "
                     f"or `{fw.show_command}`)")
    facts = reconcile.host_facts(ctx, nets, snap)
    managed = reconcile.managed(nets)
    if managed and ctx.config.ip_forward and facts.ip_forward != "1":
        problems += 1
        lines.append("problem: net.ipv4.ip_forward is 0: containers cannot reach outside (fix: netkit doctor --fix)")
    elif managed and facts.ip_forward == "0":
        problems += 1
        lines.append(f"problem: net.ipv4.ip_forward is 0 and {ctx.config.source} says \"ip_forward\": false: containers "
                     f"on {', '.join(n.name for n in managed)} cannot reach outside, nor be reached on published "
                     "ports from other hosts (fix: set \"ip_forward\": true, or sysctl -w net.ipv4.ip_forward=1)")
    elif managed and ctx.config.ip_forward and "ip_forward_was" in meta and facts.forward_policy != "DROP":
        problems += 1
        lines.append(f"problem: the filter FORWARD policy is {facts.forward_policy}, netkit set DROP: the host "
                     "forwards for anyone (fix: netkit doctor --fix)")
    else:
        lines.append(f"ok: net.ipv4.ip_forward={facts.ip_forward}, {fw.name} FORWARD policy {facts.forward_policy}")
    if "ip_forward_was" in meta:
        lines.append(f"note: netkit turned ip_forward on (was {meta['ip_forward_was']}) and set the FORWARD "
                     f"policy to DROP (was {meta.get('forward_policy_was')}) so the host is no open router; "
                     "`netkit reset` restores both")
    for n in managed:
        if facts.route_localnet.get(n.bridge) not in ("1", None):
            problems += 1
            lines.append(f"problem: route_localnet is off on {n.bridge}: 127.0.0.1 publishing fails")
    problems += _bridge_filtering(lines, nets, facts)
    if (want := xisolation.wanted(nets)) and facts.cross_isolation != want:
        problems += 1
        lines.append(f"problem: the nft table {xisolation.QUALIFIED} is missing or stale: netkit's networks are not "
                     "isolated from bridges not netkit's, such as Docker's bridge networks (fix: netkit doctor --fix)")
    if facts.hairpin_off:
        problems += 1
        lines.append(f"problem: hairpin mode off on {', '.join(facts.hairpin_off)}: containers cannot reach their "
                     "own published ports")
    more, count = other_backends(ctx)
    return lines + more, problems + count


# The nft chain that is iptables-nft's built-in FORWARD (reported as that backend's policy).
_IPTABLES_NFT_FORWARD = "ip filter FORWARD"


def other_backends(ctx: Context) -> Findings:
    """netkit rules left in a backend that is not the active one, and forward-drop policies of any
    backend but the active one (they drop netkit's forwarded traffic whatever its rules say)."""
    fw = ctx.firewall
    lines: list[str] = []
    problems = 0
    for backend in ctx.other_firewalls():
        if not backend.available().ok:
            continue
        for left in backend.leftovers():
            problems += 1
            lines.append(f"problem: netkit rules left in the {backend.name} backend, not the active one ({fw.name}): "
                         f"{left} (fix: netkit doctor --fix, or netkit reset)")
        if backend.syntax == "iptables" and backend.policy(backend.snapshot(), rules.FILTER, "FORWARD") == "DROP":
            problems += 1
            tool = backend.name  # iptables-legacy / iptables-nft: the command of that backend
            lines.append(f"warning: the {backend.name} FORWARD policy is DROP, but netkit's rules are in {fw.name}: "
                         f"it drops containers' forwarded traffic (fix: {tool} -P FORWARD ACCEPT, or set "
                         f"\"firewall_backend\": \"{backend.name}\")")
    for chain in ctx.probe.foreign_firewall()["forward_drop_chains"]:
        if chain.startswith("ip netkit ") or (chain == _IPTABLES_NFT_FORWARD and ctx.firewall_choice is not None):
            continue  # netkit's own table; iptables-nft's FORWARD is judged above (or is the active one)
        problems += 1
        lines.append(f"warning: nft chain '{chain}' has policy drop on the forward hook: it drops netkit's "
                     "forwarded traffic whatever netkit's rules say; accept netkit's bridges there "
                     "(e.g. nft insert rule ... iifname \"br-*\" accept; and oifname)")
    return lines, problems


def _bridge_filtering(lines: list[str], nets, facts: reconcile.HostFacts) -> int:
    """--no-icc isolates, and hairpin keeps the client's address, only while bridged frames go
    through iptables (br_netfilter, and each bridge's nf_call_iptables)."""
    needy = reconcile.bridged_filtering(nets)
    if not needy:
        return 0
    isolating = {n.name for n in reconcile.isolating(nets)}
    names = ", ".join(n.name for n in needy)
    if facts.bridge_nf_call is None:
        if not isolating:
            lines.append(f"ok: br_netfilter is not loaded ({reconcile.BRIDGE_NF_CALL} is missing): hairpin masquerades "
                         f"every published flow into {names} (a server sees the gateway, not the calling sibling; "
                         "modprobe br_netfilter, then netkit doctor --fix, keeps the client's address as Docker does)")
            return 0
        lines.append(f"problem: br_netfilter is not loaded ({reconcile.BRIDGE_NF_CALL} is missing): --no-icc on "
                     f"{', '.join(sorted(isolating))} does not isolate containers (fix: modprobe br_netfilter, then "
                     "netkit doctor --fix)")
        return 1
    off = [n for n in needy if facts.nf_call.get(n.bridge) != "1"]
    for n in off:
        what = (f"--no-icc on '{n.name}' does not isolate" if n.name in isolating else
                f"a container calling a port published on '{n.name}' through a host address gets no reply")
        later = (f"--no-icc on '{n.name}' stops isolating" if n.name in isolating else
                 f"hairpin to ports published on '{n.name}' stops working")
        lines.append(f"problem: bridge {n.bridge} does not pass its frames to iptables (nf_call_iptables "
                     f"{facts.nf_call.get(n.bridge)}) and net.bridge.bridge-nf-call-iptables is "
                     f"{facts.bridge_nf_call}: {what} (fix: netkit doctor --fix)"
                     if facts.bridge_nf_call != "1" else
                     f"problem: bridge {n.bridge} has nf_call_iptables {facts.nf_call.get(n.bridge)}: {later} "
                     "if net.bridge.bridge-nf-call-iptables goes to 0 (fix: netkit doctor --fix)")
    if not off:
        lines.append(f"ok: bridged frames of {names} go through iptables (per-bridge nf_call_iptables 1; "
                     f"net.bridge.bridge-nf-call-iptables={facts.bridge_nf_call})")
    return len(off)


def port_guards(ctx: Context, fix: bool = False) -> Findings:
    """Anti-spoofing (netkit/antispoof.py): every endpoint of a network that has it needs its three
    elements, the chain its four rules, and no port the state does not know may keep elements."""
    want = {(e.host_ifname, e.mac.lower(), e.ip): (c.name, e.network)
            for c in ctx.store.containers() for e in c.endpoints
            if e.host_ifname and ctx.firewall.manages_rules
            and (n := ctx.store.network(e.network)) is not None and n.anti_spoofing}
    have, intact, named = ctx.probe.port_guards()
    lines: list[str] = []
    plan: list = []
    if want and not intact:
        lines.append("anti-spoofing table 'bridge netkit' or its chain is missing or altered")
        plan.append(ops.PortGuardTable())
    for guard, (name, network) in sorted(want.items()):
        if guard not in have:
            lines.append(f"anti-spoofing missing for container '{name}' on network '{network}' "
                         f"(port {guard[0]}, {guard[1]}, {guard[2]}): it can send with any address")
            plan.append(ops.PortGuardAdd(*guard))
    wanted_ifnames = {g[0] for g in want}
    ports = {e.host_ifname for c in ctx.store.containers() for e in c.endpoints}
    for ifname in sorted(named - wanted_ifnames):
        if ifname not in ports:
            why = "which no container in the state has"
        elif not ctx.firewall.manages_rules:
            why = f"which the firewall backend {ctx.firewall.name} does not guard (it writes no rules)"
        else:
            why = "whose network has no anti-spoofing"
        lines.append(f"stale anti-spoofing elements of port {ifname}, {why}")
        plan.append(ops.PortGuardForget(ifname))
    if not lines:
        return [f"ok: anti-spoofing holds for {len(want)} container port(s)"], 0
    if fix:
        ctx.require_root()
        ctx.executor().apply_all(plan)
        return [f"fix: {line}" for line in lines], 0
    return [f"problem: {line} (fix: netkit doctor --fix)" for line in lines], len(lines)


def names(ctx: Context, fix: bool) -> Findings:
    from netkit.dns import supervisor
    from netkit.engine import names_sync

    lines, problems = [], 0
    if fix:
        with ctx.store.transaction():
            lines += [f"fix: {done}" for done in names_sync.repair(ctx)]
    host_problem = supervisor.host_problem(ctx.run_dir)
    if host_problem:
        problems += 1
        lines.append(f"problem: {host_problem}")
    hosted = set(supervisor.hosted(ctx.run_dir))
    for net in ctx.store.networks():
        if not names_sync.serves_dns(net) or not ctx.store.has_members(net.name):
            continue
        if supervisor.is_running(net.name, ctx.run_dir):
            by = f" (DNS host pid {supervisor.serving_pid(net.name, ctx.run_dir)})" if net.name in hosted else ""
            lines.append(f"ok: DNS server of network '{net.name}' answers on {net.gateway}:53{by}")
        else:
            problems += 1
            lines.append(f"problem: DNS server of network '{net.name}' is not running (fix: netkit doctor --fix)")
    for name in names_sync.stale_resolv(ctx):
        problems += 1
        lines.append(f"problem: /etc/netns/{name}/resolv.conf is not what netkit writes now "
                     "(the host's resolv.conf changed; fix: netkit doctor --fix)")
    for c in ctx.store.containers():
        if names_sync.has_files(c) and not os.path.exists(os.path.join(names_sync.etc_dir(c), "hosts")):
            problems += 1
            lines.append(f"problem: /etc/netns/{c.name}/hosts is missing (fix: netkit doctor --fix)")
    return lines, problems


def cluster(ctx: Context) -> Findings:
    """This host's share of the overlay networks against the cluster store (issue 15): its
    containers' netns and VXLAN devices, and each device's FDB and neighbour entries."""
    from netkit.cluster import agentctl, etcd
    from netkit.engine import overlay

    if not overlay.enabled(ctx):
        return [], 0
    try:
        found = overlay.check(ctx)
    except etcd.StoreUnavailable as err:
        return [f"problem: {err}"], 1
    lines = [f"problem: {line} (the host agent repairs entries on the next change; "
             f"`netkit container rm` a container whose netns is gone)" for line in found]
    if agentctl.running_pid(ctx.run_dir) is None and any(n.driver == overlay.OVERLAY for n in ctx.store.networks()):
        lines.append("problem: the host agent is not running: remote containers' entries are not kept "
                     "(`python -m netkit.cluster agent start`)")
    if not lines:
        lines.append(f"ok: this host's overlay data plane agrees with the cluster store {ctx.config.cluster_store}")
    return lines, sum(line.startswith("problem") for line in lines)


def run(ctx: Context, fix: bool = False) -> Findings:
    if fix:  # each repair takes the state lock itself
        return _run_parts(ctx, fix)
    with ctx.store.settled():  # a look never catches a change half-way
        return _run_parts(ctx, fix)


def _run_parts(ctx: Context, fix: bool) -> Findings:
    lines, problems = [], 0
    for part in (lambda: interrupted(ctx, fix), lambda: dns_orphans(ctx, fix), lambda: addresses(ctx, fix),
                 lambda: kernel_objects(ctx, fix), lambda: firewall(ctx, fix), lambda: port_guards(ctx, fix),
                 lambda: names(ctx, fix), lambda: stray_name_files(ctx, fix), lambda: cluster(ctx)):
        more, count = part()
        lines += more
        problems += count
    return lines, problems
