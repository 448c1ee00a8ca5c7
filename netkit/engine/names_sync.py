"""Keeps names in step with state: each container's /etc/netns/NAME/{hosts,resolv.conf,hostname}
and, for user-defined networks, the records file and DNS server of the network."""
from __future__ import annotations

import json
import os

from typing import TYPE_CHECKING

from netkit import names
from netkit.kernel.nsexec import ETC_NETNS
from netkit.model import MODE_BRIDGE, MODE_NONE, Container, Network

if TYPE_CHECKING:
    from netkit.engine.context import Context

# The sandbox points this at a file naming its `outside` host, so forwarded queries never leave.
HOST_RESOLV = os.environ.get("NETKIT_HOST_RESOLV", "/etc/resolv.conf")
# Where systemd-resolved keeps the real upstreams when /etc/resolv.conf says 127.0.0.53.
RESOLVED_UPSTREAMS = "/run/systemd/resolve/resolv.conf"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def host_resolv_text() -> str:
    text = _read(HOST_RESOLV)
    if not names.upstream_servers(text) and os.path.exists(RESOLVED_UPSTREAMS):
        return _read(RESOLVED_UPSTREAMS)
    return text


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def etc_dir(c: Container) -> str:
    return os.path.join(ETC_NETNS, c.name)


def has_files(c: Container) -> bool:
    """Containers with a netns of their own get files; container: mode shares the owner's."""
    return c.mode in (MODE_BRIDGE, MODE_NONE) and c.netns is not None


def _network_dns(ctx: Context, c: Container) -> str | None:
    """The embedded DNS address: the gateway of the first user-defined network (not `bridge`)."""
    for ep in c.endpoints:
        net = ctx.store.network(ep.network)
        if net and serves_dns(net):
            return net.gateway
    return None


def render_files(ctx: Context, c: Container) -> dict[str, str]:
    hostname = c.hostname or c.name
    addresses = [(ep.ip, ep.aliases) for ep in c.endpoints]
    links = []
    for spec in c.links:
        other_name, alias = (spec.split(":", 1) + [spec])[:2]
        other = ctx.store.container(other_name)
        if other and other.endpoints:
            links.append((other.endpoints[0].ip, alias, other_name))
    dns = c.dns or ctx.config.dns
    search = c.dns_search or ctx.config.dns_search
    return {
        "hostname": hostname + "\n",
        "hosts": names.render_hosts(hostname, addresses, c.extra_hosts, links),
        "resolv.conf": names.render_resolv(host_resolv_text(), dns, search, c.dns_options, _network_dns(ctx, c)),
    }


def write_files(ctx: Context, c: Container) -> None:
    if not has_files(c):
        return
    folder = etc_dir(c)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    for fname, text in render_files(ctx, c).items():
        _atomic_write(os.path.join(folder, fname), text)


def remove_files(c: Container) -> None:
    folder = etc_dir(c)
    for fname in ("hosts", "resolv.conf", "hostname"):
        try:
            os.unlink(os.path.join(folder, fname))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


# ---- per-network DNS --------------------------------------------------------------------

def records_path(ctx: Context, network: str) -> str:
    return os.path.join(ctx.run_dir, "dns", f"{network}.json")


def records(ctx: Context, net: Network) -> dict:
    names_here = ctx.store.dns_names(net.name)
    if net.driver == "overlay":
        # Names across hosts: every container on the network, wherever it runs (the host agent
        # rewrites this as containers elsewhere come and go); the local names if the store is down.
        from netkit.engine import overlay

        names_here = overlay.dns_records(ctx, net) or names_here
    return {"records": names_here, "upstreams": names.upstream_servers(host_resolv_text()),
            "clients": [net.subnet]}


def serves_dns(net: Network) -> bool:
    """Like Docker, no names on the default bridge network; macvlan/ipvlan networks neither (the
    DNS server listens on the gateway, which is not on this host for them)."""
    return not net.default and not net.parent


def sync_network(ctx: Context, net: Network) -> None:
    """Rewrite the records (the server reloads on change) and start the server if it is not up."""
    if not serves_dns(net):
        return
    from netkit.dns import supervisor

    path = records_path(ctx, net.name)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    _atomic_write(path, json.dumps(records(ctx, net), separators=(",", ":")))
    if ctx.store.has_members(net.name):
        supervisor.ensure_running(net.name, net.gateway, path, ctx.run_dir)


def stop_network(ctx: Context, net: Network) -> None:
    from netkit.dns import supervisor

    supervisor.stop(net.name, ctx.run_dir)
    base = os.path.join(ctx.run_dir, "dns", net.name)
    for suffix in (".json", ".log", ".lock", ".pid"):
        try:
            os.unlink(base + suffix)
        except FileNotFoundError:
            pass


def repair(ctx: Context) -> list[str]:
    """doctor --fix: rewrite every file and restart every DNS server that should run."""
    done = []
    for c in ctx.store.containers():
        write_files(ctx, c)
    for net in ctx.store.networks():
        if serves_dns(net) and ctx.store.has_members(net.name):
            from netkit.dns import supervisor

            if not supervisor.is_running(net.name, ctx.run_dir):
                done.append(f"restarted DNS server of network '{net.name}'")
            sync_network(ctx, net)
    return done
