"""Containers in Docker's four modes; connect/disconnect; attach a foreign netns; exec.

Each use case validates against the state and the probe's host facts, builds a plan of ops steps
and hands it to the context; nothing here touches the kernel itself."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netkit import ipam, naming, ops
from netkit.engine import lookup, networks, overlay, ports
from netkit.errors import Conflict, NotFound, UserError
from netkit.kernel.netns import netns_path as named_netns
from netkit.model import (MODE_BRIDGE, MODE_CONTAINER, MODE_HOST, MODE_NONE, Container, Endpoint,
                          Network)

if TYPE_CHECKING:
    from netkit.engine.context import Context

HOST_NETNS = "/proc/thread-self/ns/net"


@dataclass
class ContainerRequest:
    name: str
    net: str = "bridge"  # bridge | host | none | container:NAME | NETWORK
    ip: str | None = None
    mac: str | None = None
    hostname: str | None = None
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)  # "name:ip"
    links: list[str] = field(default_factory=list)  # "other[:alias]"
    network_alias: list[str] = field(default_factory=list)  # DNS aliases on the first network
    publish: list[str] = field(default_factory=list)  # -p specs, Docker syntax
    publish_all: bool = False  # -P: every exposed port to an ephemeral host port
    expose: list[str] = field(default_factory=list)  # --expose PORT[/proto]
    labels: dict[str, str] = field(default_factory=dict)  # --label KEY=VAL


def get(ctx: Context, name: str) -> Container:
    return lookup.container(ctx, name)


def _netns_name(c: Container) -> str | None:
    """The /run/netns name of the netns a container's interfaces live in."""
    return os.path.basename(c.netns) if c.netns else None


def plan_endpoint(ctx: Context, c: Container, net: Network, ip: str | None, mac: str | None,
                  aliases: list[str] | None = None, ifname: str | None = None,
                  handover: str | None = None) -> tuple[Endpoint, list]:
    """The endpoint and the steps that make it. `handover`: leave the veth's container end in the
    host netns under this name for a runtime that moves it in itself (see attach)."""
    if c.endpoint(net.name):
        raise Conflict(f"container '{c.name}' is already connected to network '{net.name}'")
    for alias in aliases or []:
        naming.validate_object_name("network alias", alias)
    if net.driver == overlay.OVERLAY:
        return _plan_overlay_endpoint(ctx, c, net, ip, mac, aliases or [], ifname)
    layout = ipam.plan_layout(ipam.parse_subnet(net.subnet), net.gateway, net.ip_range)
    used = ctx.store.addresses(net.name)
    if ip:
        addr = ipam.parse_ip(ip)
        ipam.check_static(layout, addr, {ipam.parse_ip(a): owner for a, owner in used.items()})
    else:
        addr = ipam.allocate(layout, {ipam.as_int(a) for a in used})
    used_if = {e.ifname for e in c.endpoints}
    if ifname:  # a runtime names it (CNI_IFNAME)
        naming.validate_ifname(ifname, "container interface")
    ifname = ifname or next(naming.container_ifname(i) for i in range(len(used_if) + 1)
                            if naming.container_ifname(i) not in used_if)
    ep = Endpoint(
        container=c.name, network=net.name, ifname=ifname, host_ifname=naming.veth_name(c.id, net.id),
        ip=str(addr), prefixlen=net.prefixlen, gateway=net.gateway,
        mac=naming.validate_mac(mac) if mac else naming.mac_for_ip(str(addr)), aliases=list(aliases or []),
        handover=handover is not None,
    )
    if mac:
        _check_mac_free(ctx, net.name, ep.mac)
        bridge = ctx.probe.link_info(net.bridge) or {}
        if ep.mac.lower() in {(bridge.get("address") or "").lower(), naming.bridge_mac(net.bridge)}:
            # The gateway's own MAC: the bridge would take the container's frames as its own.
            raise Conflict(f"MAC address {ep.mac} is the MAC of bridge '{net.bridge}' (the gateway); choose another")
    # The first network with a way out gives the default route, as in Docker.
    gateway = net.gateway if not net.internal and _route_holder(ctx, c) is None else None
    if net.parent:  # macvlan/ipvlan: a sub-interface of the parent, made inside the netns
        from netkit import lowerdev

        opts = lowerdev.LowerOptions(net.driver, net.parent, net.driver_mode or lowerdev.MODES[net.driver][0])
        ep.host_ifname = ""
        return ep, [lowerdev.plan_endpoint(opts, _netns_name(c), ep.ifname, net.mtu, ep.ip, ep.prefixlen,
                                           gateway, ep.mac)]
    if ctx.probe.link_exists(ep.host_ifname):
        raise Conflict(f"interface '{ep.host_ifname}' already exists on the host; run `netkit doctor`")
    step = ops.EndpointAdd(_netns_name(c), ep.host_ifname, ep.ifname, net.bridge, net.mtu, ep.mac,
                           ep.ip, ep.prefixlen, gateway, handover)
    return ep, [step, ops.HairpinOn((ep.host_ifname,))] + guard_steps(ctx, net, ep)


def _guarding(ctx: Context, net: Network | None) -> bool:
    """Anti-spoofing is firewalling: none with the `none` backend (`iptables: false`), nor on a
    network that opted out."""
    return ctx.firewall.manages_rules and (net is None or net.anti_spoofing)


def guard_steps(ctx: Context, net: Network, ep: Endpoint) -> list:
    """Anti-spoofing for the endpoint's port (netkit/antispoof.py). Planned after the veth: a
    failing element add undoes the veth too."""
    return [ops.PortGuardAdd(ep.host_ifname, ep.mac, ep.ip)] if _guarding(ctx, net) else []


def unguard_steps(ctx: Context, ep: Endpoint) -> list:
    return [ops.PortGuardDel(ep.host_ifname, ep.mac, ep.ip)] if _guarding(ctx, ctx.store.network(ep.network)) else []


def _plan_overlay_endpoint(ctx: Context, c: Container, net: Network, ip: str | None, mac: str | None,
                           aliases: list[str], ifname: str | None) -> tuple[Endpoint, list]:
    """An address from the cluster store (one cluster-wide transaction), the host's bridge and
    VXLAN device for the network if this is its first container here, and a veth into it."""
    if mac:
        raise UserError("--mac does not apply to overlay networks: the MAC follows the address, unique cluster-wide")
    used_if = {e.ifname for e in c.endpoints}
    ifname = ifname or next(naming.container_ifname(i) for i in range(len(used_if) + 1)
                            if naming.container_ifname(i) not in used_if)
    host_ifname = naming.veth_name(c.id, net.id)
    if ctx.probe.link_exists(host_ifname):
        raise Conflict(f"interface '{host_ifname}' already exists on the host; run `netkit doctor`")
    # The store's names for it: its name, a --hostname of its own, its aliases (what the local DNS serves).
    dns_names = list(aliases) + ([c.hostname] if c.hostname and c.hostname != c.name else [])
    sep = overlay.allocate(ctx, net, c.name, ip, dns_names)
    ep = Endpoint(container=c.name, network=net.name, ifname=ifname, host_ifname=host_ifname, ip=sep.ip,
                  prefixlen=net.prefixlen, gateway=net.gateway, mac=sep.mac, aliases=list(aliases))
    plan: list = []
    first_here = not ctx.probe.link_exists(f"vxlan{net.vni}")
    if first_here:
        plan.append(ops.OverlayAdd(net.vni, overlay.member(ctx).advertise, net.gateway, net.prefixlen, net.mtu))
    gateway = net.gateway if _route_holder(ctx, c) is None else None
    plan += [ops.EndpointAdd(_netns_name(c), host_ifname, ifname, net.bridge, net.mtu, ep.mac, ep.ip,
                             ep.prefixlen, gateway), ops.HairpinOn((host_ifname,))]
    plan += guard_steps(ctx, net, ep)  # anti-spoofing on the overlay bridge's port too
    ctx.after(lambda ctx: _overlay_joined(ctx, net, first_here))
    return ep, plan


def _overlay_joined(ctx: Context, net: Network, made_devices: bool) -> None:
    """After the commit: the host agent runs (presence, watches) and the VXLAN device already
    knows every remote container, so they are reachable when the command returns.

    Only devices this command made under an agent that was already running need programming
    here: that agent skipped the network while it had no device on this host. Devices that
    existed are the running agent's to keep; an agent started now programs every device in its
    first read before ensure_running returns (scripts/bench_overlay.py: one store read and two
    netlink dumps less per create)."""
    started = overlay.start_agent(ctx)
    if made_devices and not started:
        overlay.program_now(ctx, net)


def _overlay_left(ctx: Context, c: Container, eps: list[Endpoint]) -> None:
    """Inside a change: give the store back the addresses of `eps` on overlay networks (fails
    with the store's one line before anything else changed); a network left without local
    containers loses its local row and devices, as Docker drops a host's overlay sandbox."""
    for ep in eps:
        net = ctx.store.network(ep.network)
        if net is None or net.driver != overlay.OVERLAY:
            continue
        overlay.release(ctx, net.name, c.name)
        if set(ctx.store.members(net.name)) <= {c.name}:
            ctx.store.delete_network(net.name)
            ctx.network_changed()
            ctx.remove([ops.OverlayDel(net.vni)])
            from netkit.engine import names_sync

            ctx.after(lambda ctx, net=net: names_sync.stop_network(ctx, net))


def _with_store_release(ctx: Context, use_case, *args):
    """Run a use case's change; if it fails, addresses it took in the cluster store go back."""
    try:
        with ctx.change():
            result = use_case(ctx, *args)
    except BaseException:
        if overlay.enabled(ctx):
            overlay.release_pending(ctx)
        raise
    overlay.committed(ctx)
    return result


def _check_mac_free(ctx: Context, network: str, mac: str) -> None:
    for other_name in ctx.store.members(network):
        other = ctx.store.container(other_name)
        ep = other.endpoint(network) if other else None
        if ep and ep.mac == mac:
            raise Conflict(f"MAC address {mac} is already used by container '{other_name}' on network '{network}'")


def _route_holder(ctx: Context, c: Container, endpoints: list[Endpoint] | None = None) -> Endpoint | None:
    """The endpoint whose gateway is the container's default route: the first non-internal one."""
    for ep in c.endpoints if endpoints is None else endpoints:
        net = ctx.store.network(ep.network)
        if net is not None and not net.internal:
            return ep
    return None


def _parse_mode(ctx: Context, req: ContainerRequest) -> tuple[str, str | None, Container | None]:
    """(mode, network name, shared container) from --net."""
    net = req.net or "bridge"
    if net == "host":
        return MODE_HOST, None, None
    if net == "none":
        return MODE_NONE, None, None
    if net.startswith("container:"):
        other = net.split(":", 1)[1]
        if not other:
            raise UserError("--net container: needs a name, e.g. --net container:web")
        if other == req.name:
            raise UserError(f"container '{req.name}' cannot share its own network namespace")
        target = lookup.find_container(ctx, other)
        if not target:
            raise NotFound(f"--net container:{other}: container '{other}' not found")
        if target.name == req.name:
            raise UserError(f"container '{req.name}' cannot share its own network namespace")
        # Join the netns owner, not a sharer, so that removal order stays simple.
        if target.mode == MODE_CONTAINER:
            target = ctx.store.container(target.shares)
        return MODE_CONTAINER, None, target
    return MODE_BRIDGE, net, None


def _apply_name_options(ctx: Context, c: Container, req: ContainerRequest) -> None:
    """Validate and record --dns, --dns-search, --dns-option, --add-host, --link."""
    from netkit import names

    c.dns = [names.validate_dns_server(d) for d in req.dns]
    for domain in req.dns_search:
        if not domain or any(ch.isspace() for ch in domain):
            raise UserError(f"invalid --dns-search '{domain}': give a domain name like example.com")
    c.dns_search = list(req.dns_search)
    for opt in req.dns_options:
        if not opt or any(ch.isspace() for ch in opt):
            raise UserError(f"invalid --dns-option '{opt}': give one resolv.conf option like ndots:2")
    c.dns_options = list(req.dns_options)
    for entry in req.add_host:
        names.parse_add_host(entry)
    c.extra_hosts = list(req.add_host)
    links = []
    for spec in req.links:
        other, _, alias = spec.partition(":")
        target = lookup.find_container(ctx, other) if other != c.name else None
        if other == c.name:
            raise UserError(f"--link {spec}: a container cannot link to itself")
        if not target:
            raise NotFound(f"--link {spec}: container '{other}' not found")
        if alias:  # it becomes a line of /etc/hosts: a name, nothing else
            naming.validate_object_name("--link alias", alias)
        links.append(f"{target.name}:{alias or other}")
    c.links = links
    if c.mode in (MODE_HOST, MODE_CONTAINER) and (req.dns or req.dns_search or req.dns_options or req.add_host):
        raise UserError(f"--dns, --dns-search, --dns-option and --add-host need a netns of the container's own; "
                        f"'{req.net}' mode uses another's files")


def _check_host_gateway(ctx: Context, c: Container) -> None:
    from netkit.engine import names_sync

    names_sync.check_host_gateway(ctx, c)


def create(ctx: Context, req: ContainerRequest) -> Container:
    ctx.require_root()
    return _with_store_release(ctx, plan_create, req)


def plan_create(ctx: Context, req: ContainerRequest) -> Container:
    """Validate, plan and apply a container inside an open ctx.change()."""
    naming.validate_object_name("container", req.name)
    for option, value in (("--ip", req.ip), ("--mac", req.mac), ("--hostname", req.hostname)):
        if value is not None and not value.strip():  # not "pick one for me"
            raise UserError(f"{option} is empty; give a value or leave the option out")
    if ctx.store.container(req.name):
        raise Conflict(f"container '{req.name}' already exists")
    mode, net_name, shared = _parse_mode(ctx, req)
    if mode != MODE_BRIDGE and (req.ip or req.mac):
        raise UserError(f"--ip and --mac need a bridge network; '{req.net}' mode has no interface of its own")
    if req.hostname:
        if mode == MODE_CONTAINER:
            raise UserError("--hostname conflicts with --net container:...: the hostname belongs to the shared container")
        if mode == MODE_HOST:
            raise UserError("--hostname conflicts with --net host: a host-mode container uses the host's name")
        naming.validate_container_hostname(req.hostname)
    c = Container(name=req.name, id=naming.new_id(req.name), mode=mode, netns=None, hostname=req.hostname,
                  created=time.time(), labels=dict(req.labels))
    _apply_name_options(ctx, c, req)
    if req.network_alias and mode != MODE_BRIDGE:
        raise UserError("--network-alias needs a bridge network")
    plan: list = []
    if mode in (MODE_BRIDGE, MODE_NONE):
        if ctx.probe.netns_exists(req.name):
            raise Conflict(f"a network namespace named '{req.name}' already exists (see `ip netns list`)")
        c.netns = named_netns(req.name)
        plan.append(ops.NetnsAdd(req.name))
    elif mode == MODE_CONTAINER:
        c.shares, c.netns, c.uts = shared.name, shared.netns, shared.uts
    if mode in (MODE_BRIDGE, MODE_NONE):
        # Every container with a netns of its own gets a hostname, its name by default (Docker
        # uses the short id): `exec` then shows it, and /etc/hosts resolves it.
        c.hostname = req.hostname or req.name
        c.uts = os.path.join(ctx.run_dir, "uts", req.name)
        plan.append(ops.UtsAdd(c.uts, c.hostname))
    if mode == MODE_BRIDGE:
        net = networks.get(ctx, net_name)
        ep, steps = plan_endpoint(ctx, c, net, req.ip, req.mac, req.network_alias)
        c.endpoints.append(ep)
        plan += steps
    if req.publish or req.publish_all or req.expose:
        # Ports are checked for conflicts here, inside the locked state transaction.
        ports.apply_create_options(ctx, c, req.publish, req.publish_all, req.expose)
    _check_host_gateway(ctx, c)
    ctx.apply(plan)
    ctx.store.put_container(c)
    ctx.container_changed(None, c)
    _sync_names(ctx, c)
    return c


def _sync_names(ctx: Context, c: Container, networks_changed: list[str] | None = None, removed: bool = False) -> None:
    """Once the plan is applied: the container's /etc files and its networks' DNS records."""
    from netkit.engine import names_sync

    def step(ctx: Context) -> None:
        if removed:
            names_sync.remove_files(c)
        else:
            names_sync.write_files(ctx, c)
        # The container's remaining networks too: their servers hold its other networks' names.
        nets = list(networks_changed or []) + [e.network for e in c.endpoints]
        names_sync.sync_networks(ctx, nets)
        # Like Docker at a container's start: files that follow the host's resolv.conf catch up.
        names_sync.refresh_host_resolv(ctx)

    ctx.after(step)


def running_processes(ctx: Context, c: Container) -> list[tuple[int, str]]:
    """(PID, command) of the processes inside a container's own namespaces (exec'd commands,
    servers): none for host mode, a sharer (they are the owner's) or a netns made by a runtime."""
    if c.mode not in (MODE_BRIDGE, MODE_NONE) or c.external or not c.netns:
        return []
    return ctx.probe.netns_pids(c.netns)


def remove(ctx: Context, name: str, force: bool = False) -> Container:
    """Remove a container; one with processes running inside is refused unless `force`
    (docker rm -f), which ends them by PID first."""
    ctx.require_root()
    with ctx.change():
        c = get(ctx, name)
        name = c.name
        sharers = ctx.store.sharers(name)
        if sharers:
            raise Conflict(
                f"container '{name}' shares its network namespace with {', '.join(sharers)} "
                f"(--net container:{name}); remove {'them' if len(sharers) > 1 else sharers[0]} first"
            )
        procs = running_processes(ctx, c)
        if procs and not force:
            listed = ", ".join(f"{pid} ({comm})" for pid, comm in procs)
            raise Conflict(f"container '{name}' has processes running inside: PID {listed}; "
                           f"stop them or use `netkit container rm -f {name}`")
        _overlay_left(ctx, c, c.endpoints)
        plan: list = [ops.ProcessesKill(tuple(pid for pid, _ in procs))] if procs else []
        plan += [ops.LinkDel(e.host_ifname) for e in c.endpoints if e.host_ifname]
        plan += [step for e in c.endpoints if e.host_ifname for step in unguard_steps(ctx, e)]
        if c.mode in (MODE_BRIDGE, MODE_NONE):
            plan.append(ops.NetnsDel(_netns_name(c)))
        if c.uts and c.mode != MODE_CONTAINER:
            plan.append(ops.UtsDel(c.uts))
        ctx.remove(plan)
        ctx.store.delete_container(name)
        ctx.container_changed(c, None)
        if c.mode != MODE_CONTAINER:
            _sync_names(ctx, c, removed=True)
    return c


def connect(ctx: Context, network: str, name: str, ip: str | None = None, aliases: list[str] | None = None) -> Endpoint:
    ctx.require_root()
    return _with_store_release(ctx, _connect, network, name, ip, aliases)


def _connect(ctx: Context, network: str, name: str, ip: str | None, aliases: list[str] | None) -> Endpoint:
    c = get(ctx, name)
    name = c.name
    if c.mode != MODE_BRIDGE:
        raise UserError(
            f"container '{name}' is in {c.mode} mode and cannot join networks; "
            "create it with --net bridge or a network name"
        )
    net = networks.get(ctx, network)
    network = net.name
    ep, plan = plan_endpoint(ctx, c, net, ip, None, aliases)
    ctx.apply(plan)
    old = dataclasses.replace(c, endpoints=list(c.endpoints))
    c.endpoints.append(ep)
    ctx.store.put_container(c)
    ctx.container_changed(old, c)
    _sync_names(ctx, c, [network])
    return ep


def disconnect(ctx: Context, network: str, name: str) -> Endpoint:
    ctx.require_root()
    with ctx.change():
        c = get(ctx, name)
        name = c.name
        network = lookup.network(ctx, network).name
        ep = c.endpoint(network)
        if not ep:
            raise UserError(f"container '{name}' is not connected to network '{network}'")
        _overlay_left(ctx, c, [ep])
        plan: list = ([ops.LinkDel(ep.host_ifname)] + unguard_steps(ctx, ep) if ep.host_ifname
                      else [ops.LinkDel(ep.ifname, _netns_name(c))])
        remaining = [e for e in c.endpoints if e is not ep]
        if _route_holder(ctx, c) is ep and (nxt := _route_holder(ctx, c, remaining)) is not None:
            plan.append(ops.RouteReplace(_netns_name(c), nxt.gateway))  # like Docker: next network's gateway
        ctx.remove(plan)
        old = dataclasses.replace(c, endpoints=list(c.endpoints))
        c.endpoints.remove(ep)
        ctx.store.put_container(c)
        ctx.container_changed(old, c)
        _sync_names(ctx, c, [network])
    return ep


def attach(ctx: Context, network: str, pid: int | None = None, netns_path: str | None = None,
           name: str | None = None, ip: str | None = None, names: ContainerRequest | None = None,
           ifname: str | None = None, handover: str | None = None) -> Container:
    """Wire a netns made by someone else (a runtime's --net=none container) onto a network.

    `names` carries --dns, --dns-search, --dns-option, --add-host and --network-alias; the
    hostname stays the runtime's (its process has a UTS namespace of its own). `ifname` is the
    interface's name inside (default eth0), as CNI runtimes choose it.

    `handover` (Docker's remote driver protocol): the runtime moves and configures the
    interface itself, as with its own bridge driver. The veth's container end is left in the
    host netns under that name, and `netns_path` is where the runtime's netns is or will be:
    named at once if it is a netns already, else later by pin_runtime_netns."""
    ctx.require_root()
    probe = ctx.probe
    if (pid is None) == (netns_path is None):
        raise UserError("give exactly one of --pid PID or --netns PATH")
    if handover is not None:
        naming.validate_ifname(handover, "hand-over interface")
        if pid is not None:
            raise UserError("a hand-over attachment takes the runtime's netns path, not a PID")
        if not probe.is_netns_file(netns_path):  # not made yet (docker run: runc makes it after Join)
            name = name or os.path.basename(netns_path.rstrip("/"))
            return _with_store_release(ctx, _attach_change, network, name, None, None, ip, names, ifname, handover)
    if pid is not None:
        source = f"/proc/{pid}/ns/net"
        if pid <= 0 or not probe.process_exists(pid):
            raise NotFound(f"no process with PID {pid}")
        name = name or f"pid{pid}"
    else:
        source = netns_path
        if not probe.path_exists(source):
            raise NotFound(f"no network namespace file at {netns_path}")
        if not probe.is_netns_file(source):
            raise UserError(f"{netns_path} is not a network namespace; give a file under /run/netns "
                            "or /proc/PID/ns/net (or use --pid PID)")
        name = name or os.path.basename(netns_path.rstrip("/"))
    if probe.same_netns(source, HOST_NETNS):
        raise UserError(
            f"{'process ' + str(pid) if pid else netns_path} is in the host's network namespace; "
            "start it in its own (e.g. `unshare -n`, or a runtime's --net=none)"
        )
    return _with_store_release(ctx, _attach_change, network, name, source, pid, ip, names, ifname, handover)


def _attach_change(ctx: Context, network: str, name: str, source: str | None, pid: int | None, ip: str | None,
                   names: ContainerRequest | None, ifname: str | None, handover: str | None = None) -> Container:
    probe = ctx.probe
    naming.validate_object_name("container", name)
    if ctx.store.container(name):
        raise Conflict(f"container '{name}' already exists; pass --name")
    if probe.netns_exists(name):
        raise Conflict(f"a network namespace named '{name}' already exists (see `ip netns list`); pass --name")
    c = Container(name=name, id=naming.new_id(name), mode=MODE_BRIDGE, netns=named_netns(name),
                  external=True, pid=pid, created=time.time())
    names = names or ContainerRequest(name)
    _apply_name_options(ctx, c, names)
    plan: list = [ops.NetnsAttach(name, source, pid)] if source else []
    net = networks.get(ctx, network)
    ep, steps = plan_endpoint(ctx, c, net, ip, None, names.network_alias, ifname, handover)
    c.endpoints.append(ep)
    _check_host_gateway(ctx, c)
    ctx.apply(plan + steps)
    if handover:  # the runtime may take its end once the change committed (with its rules)
        ctx.handover_made(c, ep, next(s.gateway for s in steps if isinstance(s, ops.EndpointAdd)))
    ctx.store.put_container(c)
    ctx.container_changed(None, c)
    _sync_names(ctx, c)
    return c


def pin_runtime_netns(ctx: Context, name: str, source: str) -> bool:
    """Name the runtime's netns after the hand-over attachment `name` once it exists (attach with
    `handover` before the runtime made it); False if there is nothing to do: the attachment is
    gone, already named, or `source` is no netns (yet). Under the state lock, so that a concurrent
    remove cannot leave a name behind that holds the runtime's netns alive."""
    ctx.require_root()
    with ctx.store.transaction():
        c = ctx.store.container(name)
        if c is None or not c.external or ctx.probe.netns_exists(name) or not ctx.probe.is_netns_file(source):
            return False
        if ctx.probe.same_netns(source, HOST_NETNS):
            raise UserError(f"{source} is the host's network namespace; netkit does not name it after '{name}'")
        ctx.executor().apply([ops.NetnsAttach(name, source)])
        return True


def parse_env(items: list[str]) -> dict[str, str]:
    """`-e KEY=VALUE`, or `-e KEY` to pass this process's value on (skipped when unset), as Docker."""
    env = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key or any(ch.isspace() for ch in key):
            raise UserError(f"invalid -e '{item}': use KEY=VALUE, or KEY to pass its current value")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def exec_in(ctx: Context, name: str, argv: list[str], env: dict[str, str] | None = None,
            workdir: str | None = None, user: str | None = None) -> None:
    """Become argv inside container `name` (its netns, hostname and /etc files); never returns."""
    from netkit.kernel import nsexec

    c = get(ctx, name)
    ctx.close()
    if not argv:
        nsexec.exec_argv([])
    # container: mode shares the owner's files, which live under the owner's netns name.
    nsexec.enter(c.netns, c.uts, _netns_name(c))
    nsexec.exec_argv(list(argv), env, workdir, user)


def forwarding_warning(ctx: Context, c: Container) -> str | None:
    """Docker's line when a container needs forwarding and the host does not forward (the config
    says "ip_forward": false, so netkit leaves it off)."""
    from netkit.engine import reconcile

    needs = any((n := ctx.store.network(e.network)) is not None and not n.internal for e in c.endpoints)
    if needs and ctx.probe.sysctl(reconcile.IP_FORWARD) == "0":
        return "WARNING: IPv4 forwarding is disabled. Networking will not work."
    return None


def list_views(ctx: Context) -> list[dict]:
    return [inspect_view(c) for c in ctx.store.containers()]


def inspect(ctx: Context, name: str) -> dict:
    """`container inspect`: with a cluster store, which host the container is on; a container of
    another host is shown from the store (its overlay endpoints)."""
    try:
        c = get(ctx, name)
    except NotFound:
        if overlay.enabled(ctx):
            return overlay.remote_view(ctx, name)
        raise
    view = inspect_view(c)
    if overlay.enabled(ctx):
        view["host"] = overlay.this_host()
    return view


def inspect_view(c: Container) -> dict:
    return {
        "name": c.name, "id": c.id, "mode": c.mode, "netns": c.netns, "shares": c.shares,
        "hostname": c.hostname, "external": c.external, "pid": c.pid,
        "dns": c.dns, "dns_search": c.dns_search, "dns_options": c.dns_options, "extra_hosts": c.extra_hosts,
        "links": c.links,
        "endpoints": [
            {"network": e.network, "interface": e.ifname, "host_interface": e.host_ifname, "ip": e.ip,
             "prefix_length": e.prefixlen, "gateway": e.gateway, "mac": e.mac, "aliases": e.aliases}
            for e in c.endpoints
        ],
    }
