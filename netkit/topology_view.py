"""`netkit topology`: what exists, as a text tree and as an SVG picture (pure: works on data read
by kernel/inventory.py and netkit's state; see engine/topology.py `scene`).

A veth pair is two interfaces in two namespaces; each end's `iflink` is the other end's ifindex,
which is how the pair is matched here (and how a student matches it with `ip link`: `eth0@if7`
inside is the host's interface 7). The picture shows the host and each namespace as a box,
bridges as bars inside the host, veth pairs as lines with both ends' names and indexes, and
NAT as labelled arrows (DNAT of each published port, MASQUERADE of each network).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape


@dataclass
class End:
    ifname: str
    ifindex: int
    iflink: int | None
    addrs: list[str] = field(default_factory=list)
    mac: str | None = None
    mtu: int | None = None
    netns: str | None = None  # None: the host


@dataclass
class Pair:
    host: End
    peer: End | None  # None: the other end was not found (moved away, or a stray)


@dataclass
class Bridge:
    name: str
    ifindex: int
    addrs: list[str]
    mtu: int | None
    network: str | None  # netkit's network on this bridge
    ports: list[Pair] = field(default_factory=list)


@dataclass
class Namespace:
    name: str
    container: str | None = None
    mode: str | None = None
    hostname: str | None = None
    sharers: list[str] = field(default_factory=list)  # container: mode members
    ifaces: list[End] = field(default_factory=list)  # besides lo
    default_via: str | None = None
    dns: list[str] = field(default_factory=list)


@dataclass
class Nat:
    kind: str  # DNAT | MASQUERADE
    label: str
    bridge: str | None = None
    container: str | None = None


@dataclass
class Scene:
    bridges: list[Bridge] = field(default_factory=list)
    links: list[Pair] = field(default_factory=list)  # host veths not on a bridge (e.g. uplink)
    namespaces: list[Namespace] = field(default_factory=list)
    host_mode: list[str] = field(default_factory=list)
    nat: list[Nat] = field(default_factory=list)
    host_addrs: list[str] = field(default_factory=list)


def build(inventory: dict, networks: list, containers: list, dns: dict[str, list[str]]) -> Scene:
    """inventory: kernel/inventory.read_all(); networks, containers: model objects from state;
    dns: netns name -> nameservers of its resolv.conf."""
    scene = Scene()
    host_links = inventory["host"]["links"]
    ns_ends: dict[str, list[End]] = {}
    for ns, data in inventory["netns"].items():
        ns_ends[ns] = [End(l["ifname"], l["ifindex"], l["iflink"], l["addrs"], l["mac"], l["mtu"], ns)
                       for l in data["links"] if l["ifname"] != "lo"]

    def peer_of(link: dict) -> End | None:
        for ends in ns_ends.values():
            for end in ends:
                if end.ifindex == link["iflink"] and end.iflink == link["ifindex"]:
                    return end
        return None

    by_bridge = {n.bridge: n.name for n in networks}
    bridges = {l["ifname"]: Bridge(l["ifname"], l["ifindex"], l["addrs"], l["mtu"], by_bridge.get(l["ifname"]))
               for l in host_links if l["kind"] == "bridge"}
    for link in host_links:
        if link["ifname"] == "lo" or link["kind"] == "bridge":
            continue
        end = End(link["ifname"], link["ifindex"], link["iflink"], link["addrs"], link["mac"], link["mtu"])
        scene.host_addrs += link["addrs"]
        if link["master"] in bridges:
            bridges[link["master"]].ports.append(Pair(end, peer_of(link) if link["kind"] == "veth" else None))
        elif link["kind"] == "veth" or link["addrs"]:
            scene.links.append(Pair(end, peer_of(link) if link["kind"] == "veth" else None))
    scene.bridges = list(bridges.values())

    by_netns: dict[str, object] = {}
    for c in containers:
        if c.mode == "host":
            scene.host_mode.append(c.name)
        elif c.mode == "container":
            continue
        elif c.netns:
            by_netns[c.netns.rsplit("/", 1)[-1]] = c
    for ns in sorted(inventory["netns"]):
        c = by_netns.get(ns)
        space = Namespace(ns, ifaces=ns_ends[ns], default_via=inventory["netns"][ns]["default_via"], dns=dns.get(ns, []))
        if c is not None:
            space.container, space.mode, space.hostname = c.name, c.mode, c.hostname
            space.sharers = sorted(o.name for o in containers if o.mode == "container" and o.shares == c.name)
        scene.namespaces.append(space)

    nets = {n.name: n for n in networks}
    for c in containers:
        for pm in c.ports:
            ep = c.endpoints[0] if c.endpoints else None
            if ep is None:
                continue
            scene.nat.append(Nat("DNAT", f"{pm.proto} {pm.host_ip}:{pm.host_port} → {ep.ip}:{pm.container_port}",
                                 nets[ep.network].bridge if ep.network in nets else None, c.name))
    for n in networks:
        if n.masquerade and not n.internal and n.iptables:
            scene.nat.append(Nat("MASQUERADE", f"{n.subnet} leaving by any interface but {n.bridge}", n.bridge))
    return scene


# --- text ---------------------------------------------------------------------------------------

def _end(e: End) -> str:
    where = f" in netns {e.netns}" if e.netns else ""
    addrs = f" {' '.join(e.addrs)}" if e.addrs else ""
    return f"{e.ifname} (ifindex {e.ifindex}, iflink {e.iflink}){where}{addrs}"


def render_text(scene: Scene) -> str:
    out = ["host (this netns)" + (f": {', '.join(scene.host_addrs)}" if scene.host_addrs else "")]
    items: list[tuple[str, list[str]]] = []
    for b in scene.bridges:
        head = f"bridge {b.name} (ifindex {b.ifindex}) {' '.join(b.addrs) or 'no address'} mtu {b.mtu}"
        head += f"  [network {b.network}]" if b.network else ""
        items.append((head, [f"port {_end(p.host)} <=veth=> {_end(p.peer) if p.peer else '(peer not found)'}"
                             for p in b.ports] or ["(no ports)"]))
    for p in scene.links:
        items.append((f"link {_end(p.host)}" + (f" <=veth=> {_end(p.peer)}" if p.peer else ""), []))
    for name in scene.host_mode:
        items.append((f"container {name} (host mode: the host's own interfaces and ports)", []))
    _tree(out, items)
    out.append("namespaces")
    items = []
    for ns in scene.namespaces:
        what = f"container {ns.container}, {ns.mode} mode" if ns.container else "not a netkit container"
        if ns.hostname:
            what += f", hostname {ns.hostname}"
        kids = [f"{e.ifname} (ifindex {e.ifindex}, iflink {e.iflink}) {' '.join(e.addrs)} mac {e.mac} mtu {e.mtu}"
                for e in ns.ifaces] or ["only lo"]
        if ns.default_via:
            kids.append(f"default via {ns.default_via}")
        if ns.dns:
            kids.append(f"DNS {' '.join(ns.dns)}")
        if ns.sharers:
            kids.append(f"shared by {', '.join(ns.sharers)} (container: mode)")
        items.append((f"{ns.name}: {what}", kids))
    _tree(out, items)
    out.append("NAT (netkit's rules)")
    _tree(out, [(f"{n.kind} {n.label}" + (f" (container {n.container})" if n.container else ""), [])
                for n in scene.nat] or [("none", [])])
    return "\n".join(out)


def _tree(out: list[str], items: list[tuple[str, list[str]]]) -> None:
    for i, (head, kids) in enumerate(items):
        last = i == len(items) - 1
        out.append(("└─ " if last else "├─ ") + head)
        for j, kid in enumerate(kids):
            out.append(("   " if last else "│  ") + ("└─ " if j == len(kids) - 1 else "├─ ") + kid)


# --- SVG ----------------------------------------------------------------------------------------

BOX_W, BOX_H, GAP = 210, 124, 22
HOST_TOP, BRIDGE_Y, BRIDGE_H = 20, 150, 54
HOST_BOTTOM, NS_TOP = 300, 350
COLORS = {"host": "#eef3fb", "bridge": "#3b6fb6", "ns": "#fdf6e3", "other": "#eef7ee", "veth": "#555",
          "dnat": "#c0392b", "masq": "#2e8b57"}


def _t(x: float, y: float, text: str, size: float = 12, anchor: str = "start", weight: str = "normal",
       fill: str = "#222") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-family="DejaVu Sans, sans-serif" font-size="{size}" '
            f'text-anchor="{anchor}" font-weight="{weight}" fill="{fill}">{escape(text)}</text>')


def _columns(scene: Scene):
    """Left to right: each bridge (or host link) over the namespaces it reaches first.
    Returns [(group, [namespace, ...])] where group is a Bridge, a Pair (host link) or None."""
    first: dict[str, object] = {}
    groups: list[tuple[object, list[Pair]]] = [(b, b.ports) for b in scene.bridges] + \
        [(p, [p]) for p in scene.links]
    for group, pairs in groups:
        for p in pairs:
            if p.peer and p.peer.netns not in first:
                first[p.peer.netns] = group
    by_name = {ns.name: ns for ns in scene.namespaces}
    cols = []
    for group, _pairs in groups:
        cols.append((group, [by_name[n] for n, g in first.items() if g is group and n in by_name]))
    loose = [ns for ns in scene.namespaces if ns.name not in first]
    if loose:
        cols.append((None, loose))
    return cols


def render_svg(scene: Scene) -> str:
    cols = _columns(scene)
    x = GAP
    ns_x: dict[str, float] = {}
    spans: list[tuple[object, float, float]] = []
    for group, spaces in cols:
        start = x
        for ns in spaces:
            ns_x[ns.name] = x
            x += BOX_W + GAP
        if not spaces:
            x += BOX_W + GAP
        spans.append((group, start, x - GAP))
    width = max(760, x)
    height = NS_TOP + BOX_H + 50 + 18 * len(scene.nat)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
         f'viewBox="0 0 {width:.0f} {height}">',
         '<defs>' + "".join(
             f'<marker id="{mid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{COLORS[c]}"/></marker>'
             for mid, c in (("arrow-d", "dnat"), ("arrow-m", "masq"))) + '</defs>',
         f'<rect width="{width:.0f}" height="{height}" fill="white"/>',
         f'<rect x="8" y="{HOST_TOP}" width="{width - 16:.0f}" height="{HOST_BOTTOM - HOST_TOP}" rx="10" '
         f'fill="{COLORS["host"]}" stroke="#8aa2c8" stroke-width="1.5"/>',
         _t(20, HOST_TOP + 22, "host: the root network namespace", 15, weight="bold")]
    note = "addresses " + ", ".join(scene.host_addrs) if scene.host_addrs else ""
    if scene.host_mode:
        note += f"   ·   host-mode containers (no netns of their own): {', '.join(scene.host_mode)}"
    s.append(_t(20, HOST_TOP + 40, note, 11, fill="#555"))
    if scene.nat:
        s.append(_t(width - 20, HOST_TOP + 22, "iptables nat table (numbers: see below)", 11, anchor="end",
                    fill="#555"))
    # bridges and host links
    slot: dict[int, int] = {}  # id(group) -> ports drawn so far
    for group, x0, x1 in spans:
        if isinstance(group, Bridge):
            s.append(f'<rect x="{x0}" y="{BRIDGE_Y}" width="{x1 - x0}" height="{BRIDGE_H}" rx="6" '
                     f'fill="{COLORS["bridge"]}"/>')
            s.append(_t(x0 + 10, BRIDGE_Y + 18, group.name, 13, weight="bold", fill="white"))
            s.append(_t(x0 + 10, BRIDGE_Y + 32, f"{' '.join(group.addrs) or 'no address'} · mtu {group.mtu}", 10.5,
                        fill="#e3ecf8"))
            sub = f"bridge, if {group.ifindex}" + (f" · network {group.network}" if group.network else "")
            s.append(_t(x0 + 10, BRIDGE_Y + 45, sub, 10.5, fill="#e3ecf8"))
        elif isinstance(group, Pair):
            cx = (x0 + x1) / 2
            s.append(f'<rect x="{cx - 70}" y="{BRIDGE_Y}" width="140" height="{BRIDGE_H}" rx="6" fill="white" '
                     f'stroke="#777"/>')
            s.append(_t(cx, BRIDGE_Y + 20, group.host.ifname, 13, anchor="middle", weight="bold"))
            s.append(_t(cx, BRIDGE_Y + 37, f"{' '.join(group.host.addrs)} · veth", 10, anchor="middle", fill="#555"))
    # NAT arrows: DNAT comes in from the nat table down to the bridge; MASQUERADE goes out, up.
    arrow_top = HOST_TOP + 58
    per_bridge: dict[str, int] = {}
    for i, nat in enumerate(scene.nat):
        span = next(((x0, x1) for g, x0, x1 in spans if isinstance(g, Bridge) and g.name == nat.bridge), None)
        if span is None:
            continue
        k = per_bridge[nat.bridge] = per_bridge.get(nat.bridge, -1) + 1
        ax = span[1] - 20 - k * 26
        color, marker = (COLORS["dnat"], "arrow-d") if nat.kind == "DNAT" else (COLORS["masq"], "arrow-m")
        y1, y2 = (arrow_top, BRIDGE_Y - 2) if nat.kind == "DNAT" else (BRIDGE_Y - 2, arrow_top)
        dash = '' if nat.kind == "DNAT" else ' stroke-dasharray="5,3"'
        s.append(f'<line x1="{ax}" y1="{y1}" x2="{ax}" y2="{y2}" stroke="{color}" stroke-width="2"{dash} '
                 f'marker-end="url(#{marker})"/>')
        s.append(_t(ax, arrow_top - 6, str(i + 1), 11, anchor="middle", weight="bold", fill=color))
    # namespaces
    for ns in scene.namespaces:
        nx = ns_x[ns.name]
        fill = COLORS["ns"] if ns.container else COLORS["other"]
        s.append(f'<rect x="{nx}" y="{NS_TOP}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
                 f'stroke="#b59a5a" stroke-width="1.5"/>')
        s.append(_t(nx + 10, NS_TOP + 20, ns.container or ns.name, 14, weight="bold"))
        sub = f"netns {ns.name} · {ns.mode} mode" if ns.container else f"netns {ns.name} (not a container)"
        s.append(_t(nx + 10, NS_TOP + 35, sub, 10, fill="#666"))
        y = NS_TOP + 53
        for e in ns.ifaces[:3]:
            s.append(_t(nx + 10, y, f"{e.ifname}@if{e.iflink}  {' '.join(e.addrs)}", 11))
            y += 15
        if not ns.ifaces:
            s.append(_t(nx + 10, y, "only lo: no way in or out", 11, fill="#666"))
            y += 15
        for extra in ([f"default via {ns.default_via}"] if ns.default_via else []) + \
                ([f"DNS {' '.join(ns.dns)}"] if ns.dns else []):
            s.append(_t(nx + 10, y, extra, 10, fill="#555"))
            y += 14
        if ns.sharers:
            s.append(_t(nx + 10, NS_TOP + BOX_H - 8, f"shared by {', '.join(ns.sharers)}", 10,
                        fill="#8a5a00"))
    # veth pairs: host end on its bridge (or host link), other end on the namespace's top edge
    ends_in: dict[str, list] = {}
    for group, x0, x1 in spans:
        pairs = group.ports if isinstance(group, Bridge) else [group] if isinstance(group, Pair) else []
        for p in pairs:
            if p.peer and p.peer.netns in ns_x:
                ends_in.setdefault(p.peer.netns, []).append((group, x0, x1, p))
    lane = 0
    for ns_name, items in ends_in.items():
        nx = ns_x[ns_name]
        for k, (group, x0, x1, p) in enumerate(items):
            cx = nx + BOX_W * (k + 1) / (len(items) + 1) if len(items) > 1 else nx + BOX_W / 2
            bottom = BRIDGE_Y + BRIDGE_H
            if x0 <= cx <= x1:
                hx = cx
                path = f"M{cx},{bottom} L{cx},{NS_TOP}"
            else:  # the namespace sits under another bridge: an elbow through the host
                used = slot[id(group)] = slot.get(id(group), 0) + 1
                hx = x1 - 12 - 14 * (used - 1) if cx > x1 else x0 + 12 + 14 * (used - 1)
                ly = bottom + 42 + 10 * lane
                lane += 1
                path = f"M{hx},{bottom} L{hx},{ly} L{cx},{ly} L{cx},{NS_TOP}"
            s.append(f'<path d="{path}" fill="none" stroke="{COLORS["veth"]}" stroke-width="2.5"/>')
            s.append(f'<circle cx="{hx}" cy="{bottom + 3}" r="3.5" fill="{COLORS["veth"]}"/>')
            side, anchor = (-5, "end") if hx != cx and hx > x0 + BOX_W / 2 else (5, "start")
            s.append(_t(hx + side, bottom + 14, p.host.ifname, 9.5, anchor=anchor))
            s.append(_t(hx + side, bottom + 25, f"if {p.host.ifindex}", 9.5, anchor=anchor, fill="#555"))
            s.append(_t(cx + 5, NS_TOP - 17, p.peer.ifname, 9.5))
            s.append(_t(cx + 5, NS_TOP - 6, f"if {p.peer.ifindex}", 9.5, fill="#555"))
    for group, x0, x1 in spans:
        if isinstance(group, Bridge):
            for k, p in enumerate(q for q in group.ports if not q.peer):
                s.append(_t(x1 - 6, BRIDGE_Y + BRIDGE_H + 14 + 12 * k, f"{p.host.ifname}: peer not found", 10,
                            anchor="end", fill="#a00"))
    # legend
    y = NS_TOP + BOX_H + 26
    s.append(_t(20, y, "A line is a veth pair: the end inside shows as eth0@ifN, N being the host end's ifindex.",
                12, fill="#333"))
    for i, nat in enumerate(scene.nat):
        color = COLORS["dnat"] if nat.kind == "DNAT" else COLORS["masq"]
        what = ("DNAT (nat PREROUTING → NETKIT): " if nat.kind == "DNAT"
                else "MASQUERADE (nat POSTROUTING → NETKIT-POSTROUTING): ") + nat.label
        if nat.container:
            what += f"  [{nat.container}]"
        s.append(_t(30, y + 18 * (i + 1), f"{i + 1}. {what}", 12, fill=color))
    s.append("</svg>")
    return "\n".join(s)
