"""Port publishing and the firewall: publish, unpublish, port listing, syncing netkit's iptables
rules with the state (every change ends with it), rules read-back, doctor and reset.

Sync has two paths. A publish/unpublish knows exactly which container changed and that only the
order-free DNAT/raw chains are touched, so it appends/deletes just those rules (one commit per
table: the fast path). Every other change diffs the whole plan (rules.plan) against what the
kernel holds and fixes the difference, which also repairs drift. Host settings the rules rely on
(ip_forward with FORWARD policy DROP, route_localnet on bridges, hairpin mode on bridge ports)
are made here too, and what netkit changed is remembered in the state so `reset` can restore it.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import socket

from netkit import portspec, rules
from netkit.engine import containers
from netkit.errors import Conflict, NotFound, UserError
from netkit.model import MODE_CONTAINER, MODE_HOST, MODE_NONE, Container, PortMapping

META = "firewall"  # {"active": bool, "ip_forward_was": "0", "forward_policy_was": "ACCEPT", "route_localnet_was": {br: "0"}}
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def _route_localnet(bridge: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet"


def _managed(nets) -> list:
    """Networks whose bridges netkit's rules forward for (iptables on, not internal)."""
    return [n for n in nets if n.iptables and not n.internal]


def _bridge_ports(ctx, managed) -> list[str]:
    """Host ends of the veths on the bridges of `managed` networks (the ports that need hairpin mode)."""
    names = {n.name for n in managed}
    return [e.host_ifname for c in ctx.store.containers() for e in c.endpoints if e.network in names]


# ---- input --------------------------------------------------------------------------------

def parse_spec(text: str) -> portspec.PortSpec:
    spec = portspec.parse_port_spec(text)
    if spec.host_family == 6:
        raise UserError(f"invalid port spec {text!r}: IPv6 host addresses are not supported yet "
                        "(netkit publishes IPv4 only); leave the address out or use an IPv4 one")
    return spec


def check_publishable(ctx, c: Container, nets: dict) -> None:
    """Refuse publishing where it cannot work, saying why."""
    if c.mode == MODE_HOST:
        raise UserError(f"container '{c.name}' uses the host's network (--net host): its ports are the "
                        "host's ports already; nothing to publish")
    if c.mode == MODE_NONE:
        raise UserError(f"container '{c.name}' has no network (--net none): there is nothing to publish to")
    if c.mode == MODE_CONTAINER:
        raise UserError(f"container '{c.name}' shares the network of '{c.shares}' (--net container:{c.shares}): "
                        f"publish on '{c.shares}' instead")
    if not ctx.config.iptables:
        raise UserError(f"publishing needs firewall rules, but {ctx.config.source} sets \"iptables\": false; "
                        "netkit writes no rules at all")
    if rules.publish_endpoint(c, nets) is None:
        for ep in c.endpoints:
            net = nets.get(ep.network)
            if net is not None and net.internal:
                raise UserError(f"container '{c.name}' is only on internal network '{net.name}' (--internal): "
                                "it has no way in or out, so publishing is refused")
            if net is not None and not net.iptables:
                raise UserError(f"network '{net.name}' was made with netkit's firewall rules off (iptables: false); "
                                "publishing needs them")
        raise UserError(f"container '{c.name}' is not connected to any network; connect it first")


def _same_addr(a: str, b: str) -> bool:
    return a == b or a in ("", "0.0.0.0") or b in ("", "0.0.0.0")


def _published(ctx, proto: str) -> list[tuple[str, int, str]]:
    """(host_ip, host_port, container) of every mapping with this protocol, straight from SQLite's
    JSON (no Python decoding of every container)."""
    return ctx.store.db.execute(
        "SELECT json_extract(p.value, '$.host_ip'), json_extract(p.value, '$.host_port'), c.name "
        "FROM containers c, json_each(c.data, '$.ports') p WHERE json_extract(p.value, '$.proto') = ?",
        (proto,),
    ).fetchall()


def _holder(ctx, proto: str, host_ip: str, port: int) -> str | None:
    """The container publishing proto/port on an address overlapping host_ip. A substring test on
    the stored JSON picks the few candidate rows first: the hot path of publish stays flat at
    thousands of mappings (json_each over every row costs ~5 ms at 1000)."""
    from netkit.model import from_dict

    import json

    rows = ctx.store.db.execute("SELECT data FROM containers WHERE instr(data, ?) > 0",
                                (f'"host_port": {port},',)).fetchall()
    for (data,) in rows:
        c = from_dict(Container, json.loads(data))
        for m in c.ports:
            if m.proto == proto and m.host_port == port and _same_addr(m.host_ip, host_ip):
                return c.name
    return None


_SOCK = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0), "sctp": (socket.SOCK_STREAM, 132)}


def _port_busy(proto: str, ip: str, port: int) -> bool:
    """Does a host socket hold ip:port (a TCP listener, a bound UDP socket)? Asked by binding,
    which is microseconds; reading /proc/net/tcp walks the kernel's global hash (milliseconds).
    SO_REUSEADDR makes TIME_WAIT and outgoing connections not count, as they would not for Docker."""
    kind, number = _SOCK[proto]
    try:
        s = socket.socket(socket.AF_INET, kind, number)
    except OSError:
        return False  # no kernel support for the protocol: nothing can hold the port either
    with s:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def _check_local(ip: str) -> None:
    if ip in ("", "0.0.0.0") or ipaddress.IPv4Address(ip).is_loopback:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            raise UserError(f"{ip} is not an address of this host; publish on one of its addresses, "
                            "127.0.0.1, or leave the address out") from None


def allocate(ctx, c: Container, specs: list[portspec.PortSpec]) -> list[PortMapping]:
    """Turn specs into mappings with concrete host ports, refusing conflicts. Runs inside the
    state transaction, so concurrent netkit processes cannot take the same port."""
    out: list[PortMapping] = []
    cache: dict[str, list] = {}
    for spec in specs:
        host_ip = spec.host_ip or "0.0.0.0"
        _check_local(host_ip)
        mine = [(m.host_ip, m.host_port, c.name) for m in c.ports + out if m.proto == spec.proto]
        given = [(m.host_ip, m.host_port) for m in out if m.proto == spec.proto]  # earlier specs of this command

        for host_port, cport in spec.pairs():
            if host_port is None:
                if spec.proto not in cache:
                    cache[spec.proto] = _published(ctx, spec.proto)
                published = cache[spec.proto] + mine
                lo, hi = spec.pick_range or portspec.ephemeral_range()
                taken = {p for ip, p, _ in published if _same_addr(ip, host_ip)}
                host_port = None
                for candidate in range(lo, hi + 1):
                    if candidate not in taken and not _port_busy(spec.proto, host_ip, candidate):
                        host_port = candidate
                        break
                if host_port is None:
                    raise Conflict(f"no free host port for {cport}/{spec.proto} in {lo}-{hi} on {host_ip}")
            else:
                if any(p == host_port and _same_addr(m_ip, host_ip) for m_ip, p in given):
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is given twice in this command; "
                                   "publish each host port once")
                holder = next((name for ip, p, name in mine if p == host_port and _same_addr(ip, host_ip)), None)
                holder = holder or _holder(ctx, spec.proto, host_ip, host_port)
                if holder:
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is already published by "
                                   f"container '{holder}'")
                if _port_busy(spec.proto, host_ip, host_port):
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is in use by a program on the "
                                   "host (a listening socket); stop it or pick another port")
            m = PortMapping(container=c.name, proto=spec.proto, host_ip=host_ip, host_port=host_port,
                            container_port=cport)
            out.append(m)
            mine.append((host_ip, host_port, c.name))
            given.append((host_ip, host_port))
    return out


def apply_create_options(ctx, c: Container, publish: list[str], publish_all: bool, expose: list[str]) -> None:
    """`container create -p/-P/--expose`: fill c.exposed and c.ports (-p exposes its ports, as in Docker)."""
    specs = [parse_spec(p) for p in publish]
    exposed = []
    for text in expose:
        (lo, hi), proto = portspec.parse_expose(text)
        exposed.append(f"{lo if lo == hi else f'{lo}-{hi}'}/{proto}")
    for s in specs:
        lo, hi = s.container_ports
        exposed.append(f"{lo if lo == hi else f'{lo}-{hi}'}/{s.proto}")
    c.exposed = list(dict.fromkeys(exposed))
    if publish_all:
        for exp in c.exposed:
            (lo, hi), proto = portspec.parse_expose(exp)
            for port in range(lo, hi + 1):
                spec = portspec.PortSpec("", 4, None, (port, port), proto)
                if not any(s.proto == proto and s.container_ports[0] <= port <= s.container_ports[1] for s in specs):
                    specs.append(spec)
    if specs:
        nets = {n.name: n for n in ctx.store.networks()}
        check_publishable(ctx, c, nets)
        c.ports = allocate(ctx, c, specs)


# ---- use cases ----------------------------------------------------------------------------

def publish(ctx, spec_text: str, name: str) -> list[PortMapping]:
    spec = parse_spec(spec_text)
    ctx.require_root()
    with ctx.change():
        c = containers.get(ctx, name)
        check_publishable(ctx, c, {n.name: n for n in ctx.store.networks()})
        old = dataclasses.replace(c, ports=list(c.ports))
        new = allocate(ctx, c, [spec])
        c.ports.extend(new)
        ctx.store.put_container(c)
        ctx.container_changed(old, c)
    return new


def _matches(pm: PortMapping, spec: portspec.PortSpec) -> bool:
    lo, hi = spec.container_ports
    if pm.proto != spec.proto or not lo <= pm.container_port <= hi:
        return False
    if spec.host_ip and spec.host_ip != pm.host_ip:
        return False
    if spec.host_ports and not spec.host_ports[0] <= pm.host_port <= spec.host_ports[1]:
        return False
    return True


def unpublish(ctx, spec_text: str, name: str) -> list[PortMapping]:
    spec = parse_spec(spec_text)
    ctx.require_root()
    with ctx.change():
        c = containers.get(ctx, name)
        gone = [pm for pm in c.ports if _matches(pm, spec)]
        if not gone:
            raise UserError(f"container '{name}' has no published port matching {spec_text!r}; "
                            f"see `netkit port {name}`")
        old = dataclasses.replace(c, ports=list(c.ports))
        c.ports = [pm for pm in c.ports if pm not in gone]
        ctx.store.put_container(c)
        ctx.container_changed(old, c)
    return gone


def port_lines(ctx, name: str, which: str | None = None) -> list[str]:
    """`docker port` lines, optionally for one container port ("80" or "80/udp")."""
    c = containers.get(ctx, name)
    ports = c.ports
    if which:
        (lo, hi), proto = portspec.parse_expose(which)
        ports = [p for p in ports if p.proto == proto and lo <= p.container_port <= hi]
        if not ports:
            raise NotFound(f"no public port '{which}' published for container '{name}'")
    ports = sorted(ports, key=lambda p: (p.container_port, p.proto, p.host_ip, p.host_port))
    return [portspec.format_mapping(p.container_port, p.proto, p.host_ip, p.host_port) for p in ports]


# ---- sync (called by Context.change before the state is committed) ------------------------

def sync_firewall(ctx) -> None:
    hint = getattr(ctx, "firewall_hint", None)
    ctx.firewall_hint = None
    if not ctx.config.iptables:
        return
    nets = ctx.store.networks()
    meta = ctx.store.meta(META, {}) or {}
    if not any(n.iptables for n in nets) and not meta.get("active"):
        return
    if ctx.dry_run:
        from netkit.kernel.firewall import read_sysctl

        ops = _dry_ops(ctx, hint, nets, meta)
        managed = _managed(nets)
        turn_on = managed and ctx.config.ip_forward and read_sysctl(IP_FORWARD) == "0"
        if turn_on:
            ops.append(rules.Op(rules.FILTER, "P", "FORWARD", "DROP"))
        ctx.printed.extend(rules.render(ops))
        if turn_on:
            ctx.printed.append("sysctl -qw net.ipv4.ip_forward=1")
        ctx.printed += [f"sysctl -qw net.ipv4.conf.{n.bridge}.route_localnet=1" for n in managed
                        if read_sysctl(_route_localnet(n.bridge)) != "1"]
        return
    if hint is not None and meta.get("active"):
        from netkit.errors import KernelError

        try:
            _sync_fast(ctx, hint, nets)
            return
        except (KernelError, _NeedFull):
            pass  # e.g. someone deleted netkit's chains: the full sync puts everything back
    _sync_full(ctx, nets, meta)


class _NeedFull(Exception):
    pass


def _sync_fast(ctx, hint, nets) -> None:
    from netkit.kernel import firewall

    if ctx.config.ip_forward and firewall.read_sysctl(IP_FORWARD) == "0":
        raise _NeedFull
    netmap = {n.name: n for n in nets}
    old, new = hint
    if any(rules.involves_links(c, netmap) for c in (old, new) if c is not None):
        raise _NeedFull  # link rules live in the ordered FORWARD chain
    ops = rules.delta(rules.container_rules(old, netmap), rules.container_rules(new, netmap))
    if ops:
        firewall.backend().apply(ops, thorough=False)
        _forget_conntrack(ops)


def desired(ctx, nets=None) -> rules.RuleSet:
    nets = ctx.store.networks() if nets is None else nets
    return rules.plan(nets, ctx.store.containers())


def _sync_full(ctx, nets, meta: dict) -> None:
    from netkit.kernel import firewall

    fw = firewall.backend()
    want = desired(ctx, nets)
    managed = _managed(nets)
    meta = dict(meta)
    changed_forward = False
    with fw.locked():
        snap = fw.snapshot()
        ops = rules.diff(rules.netkit_part(snap), want)
        if managed and ctx.config.ip_forward and firewall.read_sysctl(IP_FORWARD) == "0":
            # Like dockerd: forwarding on, but only for what netkit's rules accept.
            policy_before = fw.policy(snap, rules.FILTER, "FORWARD") or "ACCEPT"
            meta.setdefault("ip_forward_was", "0")
            meta.setdefault("forward_policy_was", policy_before)
            ops.append(rules.Op(rules.FILTER, "P", "FORWARD", "DROP"))
            changed_forward = True
        if ops:
            fw.apply(ops)
    try:
        if changed_forward:
            firewall.write_sysctl(IP_FORWARD, "1")
        was = meta.setdefault("route_localnet_was", {})
        for n in managed:
            value = firewall.read_sysctl(_route_localnet(n.bridge))
            if value is not None and value != "1":
                was.setdefault(n.bridge, value)
                firewall.write_sysctl(_route_localnet(n.bridge), "1")
        firewall.set_hairpin(firewall.hairpin_off(_bridge_ports(ctx, managed)))
    except BaseException:
        undo = firewall.inverse(ops)
        if changed_forward:
            # inverse() leaves policies alone: put back the FORWARD policy that was there before.
            undo.append(rules.Op(rules.FILTER, "P", "FORWARD", policy_before))
        undo_steps = [lambda: fw.apply(undo)] if undo else []
        if changed_forward:
            undo_steps.append(lambda: firewall.write_sysctl(IP_FORWARD, "0"))
        for step in undo_steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    meta["active"] = True
    ctx.store.put_meta(META, meta)
    _forget_conntrack(ops)


def _forget_conntrack(ops) -> None:
    """Conntrack entries of deleted DNAT rules: the old mapping must stop catching its flows."""
    from netkit.kernel import conntrack

    for op in ops:
        if op.action != "D" or op.chain != rules.CHAIN_DNAT or "-j DNAT" not in op.spec:
            continue
        words = op.spec.split()
        proto = words[words.index("-p") + 1]
        host_port = int(words[words.index("--dport") + 1])
        ip, _, cport = words[words.index("--to-destination") + 1].rpartition(":")
        try:
            conntrack.delete_mapping(proto, host_port, ip, int(cport))
        except Exception:  # noqa: BLE001 - best effort: the rules are what matters
            pass


def _committed_state(ctx):
    """The state as last committed (another SQLite connection: WAL shows it the snapshot before
    this command's writes)."""
    import os
    import sqlite3

    from netkit.state import Store

    old = object.__new__(Store)
    old.directory = ctx.store.directory
    old.db = sqlite3.connect(os.path.join(ctx.store.directory, "netkit.db"), isolation_level=None)
    return old


def _as_current(rs: rules.RuleSet, present: bool) -> dict:
    if not present:
        return {}
    cur: dict[str, dict[str, list[str]]] = {t: {c: [] for c in chains} for t, chains in rules.CHAINS.items()}
    for (t, c), specs in rs.rules.items():
        cur[t][c] = list(specs)
    for t, c, s in rs.hooks:
        cur[t].setdefault(c, []).append(s)
    return cur


def _dry_ops(ctx, hint, nets, meta) -> list[rules.Op]:
    if hint is not None and meta.get("active"):
        netmap = {n.name: n for n in nets}
        return rules.delta(rules.container_rules(hint[0], netmap), rules.container_rules(hint[1], netmap))
    old = _committed_state(ctx)
    try:
        before = rules.plan(old.networks(), old.containers())
    finally:
        old.close()
    return rules.diff(_as_current(before, bool(meta.get("active"))), desired(ctx, nets))


# ---- read back, doctor, reset ---------------------------------------------------------------

def kernel_rules() -> dict:
    """netkit's chains and hooks as the kernel holds them: {table: {chain: [spec]}}."""
    from netkit.kernel import firewall

    snap = firewall.backend().snapshot()
    return {t: chains for t, chains in rules.netkit_part(snap).items() if chains}


def backend_info() -> tuple[str, str]:
    """(name, command that shows its rules) of the firewall backend netkit writes to."""
    from netkit.kernel import firewall

    fw = firewall.backend()
    return fw.name, fw.show_command


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


def doctor(ctx, fix: bool = False) -> tuple[list[str], int]:
    """Findings (one line each) and how many are problems."""
    from netkit.kernel import firewall

    fw = firewall.backend()
    lines: list[str] = []
    problems = 0
    nets = ctx.store.networks()
    meta = ctx.store.meta(META, {}) or {}
    if fix:
        ctx.require_root()
        with ctx.change():
            pass  # the change's closing sync repairs everything
        lines.append("fix: netkit's rules and host settings were synced with the state")
    if not ctx.config.iptables:
        lines.append(f"ok: netkit's firewall rules are off ({ctx.config.source}: \"iptables\": false)")
        return lines, 0
    snap = fw.snapshot()
    ops = rules.diff(rules.netkit_part(snap), desired(ctx, nets))
    for op in ops:
        problems += 1
        if op.action in ("A", "I"):
            lines.append(f"missing rule ({op.table}): -A {op.chain} {op.spec}")
        elif op.action == "N":
            lines.append(f"missing chain ({op.table}): {op.chain}")
        elif op.action == "D":
            lines.append(f"stale rule ({op.table}): -A {op.chain} {op.spec}")
        elif op.action == "X":
            lines.append(f"stale chain ({op.table}): {op.chain}")
    if not ops:
        lines.append(f"ok: every rule the state implies is in the kernel ({fw.name}: see `netkit rules` "
                     f"or `{fw.show_command}`)")
    managed = _managed(nets)
    forward = firewall.read_sysctl(IP_FORWARD)
    policy = fw.policy(snap, rules.FILTER, "FORWARD") or "ACCEPT"
    if managed and ctx.config.ip_forward and forward != "1":
        problems += 1
        lines.append("problem: net.ipv4.ip_forward is 0: containers cannot reach outside (fix: netkit doctor --fix)")
    else:
        lines.append(f"ok: net.ipv4.ip_forward={forward}, legacy filter FORWARD policy {policy}")
    if "ip_forward_was" in meta:
        lines.append(f"note: netkit turned ip_forward on (was {meta['ip_forward_was']}) and set the FORWARD "
                     f"policy to DROP (was {meta.get('forward_policy_was')}) so the host is no open router; "
                     "`netkit reset` restores both")
    for n in managed:
        if firewall.read_sysctl(_route_localnet(n.bridge)) not in ("1", None):
            problems += 1
            lines.append(f"problem: route_localnet is off on {n.bridge}: 127.0.0.1 publishing fails")
    off = firewall.hairpin_off(_bridge_ports(ctx, managed))
    if off:
        problems += 1
        lines.append(f"problem: hairpin mode off on {', '.join(off)}: containers cannot reach their own published ports")
    nft = firewall.nft_report()
    if nft["iptables_nft_rules"]:
        lines.append(f"warning: this host also has {nft['iptables_nft_rules']} iptables-nft rule(s): the `iptables` "
                     f"command may show only those; netkit's rules are in the legacy backend "
                     f"(`netkit rules` or `{fw.show_command}`)")
    for chain in nft["forward_drop_chains"]:
        problems += 1
        lines.append(f"warning: nft chain '{chain}' has policy drop on the forward hook: it drops netkit's "
                     "forwarded traffic whatever netkit's rules say; accept netkit's bridges there "
                     "(e.g. nft insert rule ... iifname \"br-*\" accept; and oifname)")
    return lines, problems


def reset(ctx) -> list[str]:
    """Remove every netkit chain and hook; restore ip_forward, the FORWARD policy and
    route_localnet as they were before netkit. Foreign rules are untouched."""
    from netkit.kernel import firewall

    ctx.require_root()
    fw = firewall.backend()
    done = []
    with ctx.store.transaction():
        meta = ctx.store.meta(META, {}) or {}
        with fw.locked():
            snap = fw.snapshot()
            part = rules.netkit_part(snap)
            ops = rules.reset_ops(part)
            if "forward_policy_was" in meta and fw.policy(snap, rules.FILTER, "FORWARD") != meta["forward_policy_was"]:
                ops.append(rules.Op(rules.FILTER, "P", "FORWARD", meta["forward_policy_was"]))
            if ctx.dry_run:
                return rules.render(ops)
            if ops:
                fw.apply(ops)
        removed = sum(1 for o in ops if o.action == "X")
        done.append(f"removed {removed} netkit chain(s) and their hooks")
        user = part.get(rules.FILTER, {}).get(rules.CHAIN_USER)
        if user:
            done.append(f"kept {rules.CHAIN_USER}: it holds {len(user)} rule(s) of yours")
        if "ip_forward_was" in meta:
            firewall.write_sysctl(IP_FORWARD, meta["ip_forward_was"])
            done.append(f"restored net.ipv4.ip_forward={meta['ip_forward_was']} and FORWARD policy "
                        f"{meta.get('forward_policy_was')}")
        for bridge, value in (meta.get("route_localnet_was") or {}).items():
            if firewall.read_sysctl(_route_localnet(bridge)) is not None:
                firewall.write_sysctl(_route_localnet(bridge), value)
        ctx.store.delete_meta(META)
    done.append("the next netkit change (or `netkit doctor --fix`) puts the rules of existing networks back")
    return done

