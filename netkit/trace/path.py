"""Which interfaces a container's packets cross, worked out from netkit's state: the container's
eth0 in its netns, the host-side veth, the bridge, the host's uplinks (and, in a sandbox, the
`outside` host); plus the facts the report needs afterwards (who owns which address and MAC).

Reads only the state (through world.World), /proc/net/route and /sys/class/net before the
capture (no pyroute2: start-up time counts); the kernel facts are read after the capture through
netkit.kernel.tracefacts, read-only.
"""
from __future__ import annotations

import os

from netkit.errors import NotFound
from netkit.model import MODE_BRIDGE, MODE_CONTAINER, MODE_HOST, MODE_NONE
from netkit.trace.model import Point, Topology

HOST = "host"


def _netns_name(path: str | None) -> str:
    return os.path.basename(path) if path else HOST


def _route_devices() -> list[str]:
    """Interfaces that carry a route in the host netns, default route first (/proc/net/route)."""
    try:
        with open("/proc/self/net/route") as fh:
            rows = [line.split() for line in fh.readlines()[1:]]
    except OSError:
        return []
    default = [r[0] for r in rows if len(r) > 2 and r[1] == "00000000"]
    others = [r[0] for r in rows if len(r) > 2 and r[1] != "00000000"]
    seen, out = set(), []
    for dev in default + others:
        if dev not in seen:
            seen.add(dev)
            out.append(dev)
    return out


def _is_bridge_or_port(ifname: str) -> bool:
    base = f"/sys/class/net/{ifname}"
    return os.path.exists(f"{base}/bridge") or os.path.exists(f"{base}/brport")


def uplinks(world) -> list[str]:
    """The host's ways out: routed interfaces that are not lo, nor a bridge or a bridge port."""
    netkit_ifs = {n.bridge for n in world.networks()}
    for c in world.containers():
        netkit_ifs.update(e.host_ifname for e in c.endpoints)
    return [d for d in _route_devices()
            if d != "lo" and d not in netkit_ifs and not _is_bridge_or_port(d)]


def _outside_points() -> list[Point]:
    """In a netkit sandbox, the `outside` host is part of the world: trace its eth0 too."""
    from netkit import sandbox as sb

    path = os.path.join("/run/netns", sb.OUTSIDE)
    if sb.in_sandbox() and os.path.exists(path):
        return [Point(sb.OUTSIDE, sb.OUTSIDE_IF, path, "outside", peer=f"{HOST}:{sb.UPLINK}")]
    return []


def resolve(world, names: list[str] | None = None, port: int | None = None, proto: str | None = None) -> Topology:
    """Capture points for the named containers (all of them when none is named). In a multi-host
    sandbox a name that is not local may be a container of another host (on an overlay network):
    its host's interfaces and the container are traced too (trace/hosts.py)."""
    containers = world.containers()
    by_name = {c.name: c for c in containers}
    remote = []  # (RemoteHost, Container, {network name: Network})
    if names:
        missing = [n for n in names if n not in by_name]
        if missing:
            from netkit.trace import hosts

            for n in missing:
                found = hosts.locate(n)
                if found is None:
                    where = " on any host of this sandbox" if hosts.others() else ""
                    raise NotFound(f"container '{n}' not found{where}; see `netkit container ls`")
                remote.append(found)
        chosen = [by_name[n] for n in names if n in by_name]
    else:
        chosen = containers
    topo = Topology(points=[], networks=world.network_facts(), published=world.published(),
                    exposed=world.exposed())
    here = HOST
    if remote:
        from netkit.trace import hosts

        here = hosts.local_name() or HOST
        topo.hosts[here] = {"address": hosts.local_address(), "local": True}
    seen: set[tuple] = set()
    # Outside first, then the host's uplinks, then bridges and veths, then the containers:
    # the order a published-port packet takes, and the order of lanes in the SVG.
    outer, bridges, veths, inner = [], [], [], []

    def add(bucket: list, point: Point) -> None:
        key = (point.path, point.ifname)
        if key not in seen:
            seen.add(key)
            bucket.append(point)

    up = uplinks(world)
    outside = _outside_points()
    for p in outside:
        add(outer, p)
    for dev in up:
        from netkit import sandbox as sb

        peer = outside[0].label if outside and dev == sb.UPLINK else None
        add(outer, Point(here, dev, None, "uplink", peer=peer))

    for c in chosen:
        topo.modes[c.name] = c.mode if not c.shares else f"container:{c.shares}"
        owner = by_name.get(c.shares) if c.mode == MODE_CONTAINER else c
        if c.mode == MODE_HOST:
            topo.containers.setdefault(here, []).append(c.name)
            add(inner, Point(here, "lo", None, "lo"))
            continue
        if owner is None or not owner.netns:
            topo.notes.append(f"container '{c.name}' has no network namespace of its own")
            continue
        ns = _netns_name(owner.netns)
        topo.containers.setdefault(ns, [])
        if c.name not in topo.containers[ns]:
            topo.containers[ns].append(c.name)
        add(inner, Point(ns, "lo", owner.netns, "lo"))
        if owner.mode == MODE_NONE:
            continue
        if owner.mode == MODE_BRIDGE:
            for ep in owner.endpoints:
                net = world.network(ep.network)
                bridge = net.bridge if net else None
                if bridge:
                    add(bridges, Point(here, bridge, None, "bridge", bridge=bridge))
                    if net.driver == "overlay" and net.vni is not None:
                        add(bridges, _vxlan_point(here, None, net))
                add(veths, Point(here, ep.host_ifname, None, "veth", bridge=bridge, peer=f"{ns}:{ep.ifname}",
                                 owner=ns))
                add(inner, Point(ns, ep.ifname, owner.netns, "container", peer=f"{here}:{ep.host_ifname}"))
        if port:
            for pm in owner.ports:
                if pm.host_port == port and (proto is None or pm.proto == proto):
                    topo.ports.append(pm.container_port)
    # lo first inside each container only when it is the container's sole interface (none mode,
    # container mode talks over lo): otherwise eth0 leads, lo follows.
    inner.sort(key=lambda p: (p.netns, p.role == "lo"))
    if remote:
        # Across hosts the lanes follow the packet: containers here, this host's veths, bridges,
        # VXLAN devices and uplink, then the other host's in the opposite order, its containers.
        far = _remote_points(topo, remote, add)
        topo.points = [p for p in inner if p.role != "lo"] + veths + bridges + outer + far
    else:
        topo.points = outer + bridges + veths + inner
    if port:
        topo.ports = sorted({port, *topo.ports})
    return topo


def _vxlan_point(netns: str, path: str | None, net) -> Point:
    # Named by VNI on every host, as kernel/vxlan.devices() makes it (not imported: pyroute2).
    return Point(netns, f"vxlan{net.vni}", path, "vxlan", bridge=net.bridge)


def _remote_points(topo: Topology, remote: list, add) -> list[Point]:
    """Capture points on other hosts: their uplink, the overlay bridge and VXLAN device of each
    overlay network the container is on, its veth and its eth (lo left out: a remote container
    talks to the traced ones over the overlay)."""
    from netkit import sandbox as sb

    out: list[Point] = []
    bucket: list[Point] = []
    for host, c, nets in remote:
        topo.hosts.setdefault(host.name, {"address": host.address, "local": False})
        topo.modes[c.name] = c.mode
        if c.mode != MODE_BRIDGE or not c.netns:
            topo.notes.append(f"container '{c.name}' on {host.name} is not on an overlay network: "
                              "only its host's uplink is traced")
        bucket = []
        add(bucket, Point(host.name, sb.UPLINK, host.net_path, "uplink"))
        ns = _netns_name(c.netns)
        cpath = host.path_of(c.netns) if c.netns else None
        topo.containers.setdefault(ns, [])
        if c.name not in topo.containers[ns]:
            topo.containers[ns].append(c.name)
        devs, ports, eths = [], [], []
        for ep in c.endpoints if c.mode == MODE_BRIDGE and c.netns else []:
            net = nets.get(ep.network)
            if net is None or net.driver != "overlay" or net.vni is None:
                topo.notes.append(f"{c.name}'s network {ep.network} on {host.name} is not an overlay network: "
                                  "its packets never cross to this host, not traced")
                continue
            add(devs, _vxlan_point(host.name, host.net_path, net))
            add(devs, Point(host.name, net.bridge, host.net_path, "bridge", bridge=net.bridge))
            add(ports, Point(host.name, ep.host_ifname, host.net_path, "veth", bridge=net.bridge,
                             peer=f"{ns}:{ep.ifname}", owner=ns))
            add(eths, Point(ns, ep.ifname, cpath, "container", peer=f"{host.name}:{ep.host_ifname}"))
        out += bucket + devs + ports + eths
    return out


def enrich(topo: Topology, world) -> None:
    """After the capture: addresses, MTUs, settings and neighbours per netns, MAC owners, and
    the bridges' learnt MACs (all read through netkit.kernel.tracefacts)."""
    from netkit.kernel import tracefacts

    paths = {}
    for p in topo.points:
        paths.setdefault(p.netns, p.path)
    for ns, path in paths.items():
        try:
            facts = tracefacts.links_and_addresses(path)
        except OSError:
            continue
        names = [p.ifname for p in topo.points if p.netns == ns]
        names += sorted({p.bridge for p in topo.points if p.netns == ns and p.bridge} - set(names))
        settings = tracefacts.sysctls(path, names)
        topo.settings[ns] = settings
        fwd = settings.get("net.ipv4.ip_forward")
        topo.forwarding[ns] = None if fwd is None else fwd == "1"
        for name, link in facts["links"].items():
            if link["mac"] and link["mac"] != "00:00:00:00:00:00":
                topo.macs.setdefault(link["mac"], f"{ns}:{name}")
            topo.mtu[f"{ns}:{name}"] = link["mtu"]
        topo.addresses.setdefault(ns, {}).update(facts["addresses"])
        topo.neighbours[ns] = facts["neighbours"]
    # Containers that are not traced still own their addresses: a packet heading to one of
    # them left the traced path, it was not dropped.
    for c in world.containers():
        ns = _netns_name(c.netns)
        for ep in c.endpoints:
            topo.addresses.setdefault(ns, {}).setdefault(ep.ip, ep.ifname)
        if c.name not in topo.containers.get(ns, []) and not topo.is_host(ns):
            topo.containers.setdefault(ns, []).append(c.name)
    for p in topo.points:
        if p.role == "bridge" and topo.fdb_key(p) not in topo.fdb:
            with tracefacts.inside(p.path):  # another host's bridge: read in its netns
                topo.fdb[topo.fdb_key(p)] = tracefacts.bridge_fdb(p.ifname)
