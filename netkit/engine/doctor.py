"""`netkit doctor`: compare the state with the kernel and the running helpers, report each
difference in one line, and with --fix repair what can be repaired (rules, host settings,
name files, DNS servers). Objects that went missing (a deleted veth or netns) are reported,
not re-made: `netkit container rm` and create again give a clean container."""
from __future__ import annotations

import os

from netkit.kernel.nsutil import link_exists
from netkit.model import MODE_BRIDGE, MODE_NONE


def kernel_objects(ctx) -> tuple[list[str], int]:
    lines, problems = [], 0
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
        lines.append("ok: every bridge, netns and veth in the state exists")
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
    for part in (lambda: kernel_objects(ctx), lambda: publish.doctor(ctx, fix), lambda: names(ctx, fix)):
        more, count = part()
        lines += more
        problems += count
    return lines, problems
