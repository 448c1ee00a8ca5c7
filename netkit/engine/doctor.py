"""`netkit doctor`: compare the state with the kernel and the running helpers, report each
difference in one line, and with --fix repair what can be repaired (stray objects a crash left,
rules, host settings, name files, DNS servers). Objects that went missing (a deleted veth or
netns) are reported, not re-made: `netkit container rm` and create again give a clean one."""
from __future__ import annotations

import os

from netkit.kernel.nsutil import link_exists
from netkit.model import MODE_BRIDGE, MODE_NONE


def strays(ctx) -> list[tuple[str, object]]:
    """Objects that only netkit makes but the state does not know (left by a crash or a kill):
    UTS pins, the netns pinned next to them, and veth ports on netkit's bridges."""
    from netkit import ops
    from netkit.kernel.links import bridge_ports

    known = {c.name for c in ctx.store.containers()}
    found = []
    uts_dir = os.path.join(ctx.run_dir, "uts")
    for name in sorted(os.listdir(uts_dir)) if os.path.isdir(uts_dir) else []:
        if name not in known:
            found.append((f"UTS pin {uts_dir}/{name}", ops.UtsDel(os.path.join(uts_dir, name))))
            if os.path.exists(f"/run/netns/{name}"):
                found.append((f"netns {name}", ops.NetnsDel(name)))
    ports = {e.host_ifname for c in ctx.store.containers() for e in c.endpoints}
    for net in ctx.store.networks():
        if link_exists(net.bridge):
            for port in bridge_ports(net.bridge):
                if port.startswith("veth") and port not in ports:
                    found.append((f"veth {port} on {net.bridge}", ops.LinkDel(port)))
    return found


def kernel_objects(ctx, fix: bool = False) -> tuple[list[str], int]:
    lines, problems = [], 0
    for what, op in strays(ctx):
        if fix:
            ctx.executor().apply_all([op])
            lines.append(f"fix: removed stray {what}")
        else:
            problems += 1
            lines.append(f"problem: stray {what} is not in netkit's state (fix: netkit doctor --fix)")
    for net in ctx.store.networks():
        if not link_exists(net.bridge):
            problems += 1
            lines.append(f"problem: bridge '{net.bridge}' of network '{net.name}' is missing "
                         f"(remove the network's containers and the network, then create them again)")
    for c in ctx.store.containers():
        if c.mode in (MODE_BRIDGE, MODE_NONE) and c.netns and not os.path.exists(c.netns):
            problems += 1
            lines.append(f"problem: netns {c.netns} of container '{c.name}' is missing (netkit container rm {c.name})")
            continue
        for ep in c.endpoints:
            if not link_exists(ep.host_ifname):
                problems += 1
                lines.append(f"problem: veth '{ep.host_ifname}' of container '{c.name}' on network "
                             f"'{ep.network}' is missing (netkit network disconnect {ep.network} {c.name}, then connect)")
    if not problems:
        lines.append("ok: every bridge, netns and veth in the state exists, and no stray one")
    return lines, problems


def names(ctx, fix: bool) -> tuple[list[str], int]:
    from netkit.dns import supervisor
    from netkit.engine import names_sync

    lines, problems = [], 0
    if fix:
        with ctx.store.transaction():
            lines += [f"fix: {done}" for done in names_sync.repair(ctx)]
    for net in ctx.store.networks():
        if net.default or not ctx.store.has_members(net.name):
            continue
        if supervisor.is_running(net.name, ctx.run_dir):
            lines.append(f"ok: DNS server of network '{net.name}' answers on {net.gateway}:53")
        else:
            problems += 1
            lines.append(f"problem: DNS server of network '{net.name}' is not running (fix: netkit doctor --fix)")
    for c in ctx.store.containers():
        if names_sync.has_files(c) and not os.path.exists(os.path.join(names_sync.etc_dir(c), "hosts")):
            problems += 1
            lines.append(f"problem: /etc/netns/{c.name}/hosts is missing (fix: netkit doctor --fix)")
    return lines, problems


def run(ctx, fix: bool = False) -> tuple[list[str], int]:
    from netkit.engine import publish

    lines, problems = [], 0
    for part in (lambda: kernel_objects(ctx, fix), lambda: publish.doctor(ctx, fix), lambda: names(ctx, fix)):
        more, count = part()
        lines += more
        problems += count
    return lines, problems
