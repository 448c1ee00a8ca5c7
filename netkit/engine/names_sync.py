"""Keeps names in step with state: each container's /etc/netns/NAME/{hosts,resolv.conf,hostname}
and, for user-defined networks, the records file and DNS server of the network.

A container's resolv.conf follows the host's (refresh_host_resolv) unless someone edited it, as
Docker's does: netkit keeps the digest of what it wrote (RUN_DIR/names/NAME.resolv.sha256) and
leaves a file whose content no longer matches alone.
"""
from __future__ import annotations

import hashlib
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


def host_gateway(ctx: Context, c: Container) -> str | None:
    """What `--add-host NAME:host-gateway` becomes: config `host_gateway_ip` (daemon.json's
    host-gateway-ip), else the gateway of the container's first network whose gateway is this
    host (the host's address as the container sees it), else the default network's gateway."""
    if ctx.config.host_gateway_ip:
        return ctx.config.host_gateway_ip
    nets = [ctx.store.network(ep.network) for ep in c.endpoints]
    nets += [n for n in ctx.store.networks() if n.default]
    for net in nets:
        if net and net.gateway and not net.parent:  # macvlan/ipvlan: the gateway is a router outside
            return net.gateway
    return None


def check_host_gateway(ctx: Context, c: Container) -> None:
    """Refuse `--add-host NAME:host-gateway` before anything is made when it has no address."""
    if any(names.parse_add_host(e)[1] == names.HOST_GATEWAY for e in c.extra_hosts) and not host_gateway(ctx, c):
        from netkit.errors import UserError

        raise UserError("--add-host NAME:host-gateway: this container has no network whose gateway is the host; "
                        "set host_gateway_ip in the config file or use a bridge network")


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
        "hosts": names.render_hosts(hostname, addresses, c.extra_hosts, links, host_gateway(ctx, c)),
        "resolv.conf": names.render_resolv(host_resolv_text(), dns, search, c.dns_options, _network_dns(ctx, c)),
    }


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _digest_path(name: str, run: str | None = None) -> str:
    # Not beside the file: `ip netns exec` bind-mounts every file of /etc/netns/NAME over /etc.
    from netkit.state import run_dir

    return os.path.join(run or run_dir(), "names", f"{name}.resolv.sha256")


def _digests(c: Container, run: str | None = None) -> set[str] | None:
    try:
        with open(_digest_path(c.name, run)) as fh:
            return set(fh.read().split())
    except OSError:
        return None


def user_edited(c: Container, run: str | None = None) -> bool:
    """True when the container's resolv.conf is not what netkit last wrote (Docker: "This file
    can be edited; Docker Engine will not make further changes once it has been modified")."""
    current = _read(os.path.join(etc_dir(c), "resolv.conf"))
    written = _digests(c, run)
    if not current or written is None:
        return False  # none yet, or written before netkit kept digests: netkit's
    return _digest(current) not in written


def _write_resolv(ctx: Context, c: Container, text: str, force: bool = False) -> bool:
    """Write resolv.conf unless the user edited it (or force); True if written. The digest file
    names the old and the new content while the file is replaced, so a kill in between is no "edit"."""
    if not force and user_edited(c, ctx.run_dir):
        return False
    path = _digest_path(c.name, ctx.run_dir)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    current = _read(os.path.join(etc_dir(c), "resolv.conf"))
    _atomic_write(path, "".join(f"{d}\n" for d in {_digest(current), _digest(text)}))
    _atomic_write(os.path.join(etc_dir(c), "resolv.conf"), text)
    _atomic_write(path, _digest(text) + "\n")
    return True


def write_files(ctx: Context, c: Container, force: bool = False) -> None:
    """Write the container's files; a resolv.conf someone edited stays, unless force (`doctor
    --fix`: the explicit repair puts netkit's file back)."""
    if not has_files(c):
        return
    folder = etc_dir(c)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    for fname, text in render_files(ctx, c).items():
        if fname == "resolv.conf":
            _write_resolv(ctx, c, text, force)
        else:
            _atomic_write(os.path.join(folder, fname), text)


def remove_files(c: Container) -> None:
    folder = etc_dir(c)
    for path in [os.path.join(folder, f) for f in ("hosts", "resolv.conf", "hostname")] + [_digest_path(c.name)]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def _last_host_path(ctx: Context) -> str:
    return os.path.join(ctx.run_dir, "names", "host-resolv.conf")


def refresh_host_resolv(ctx: Context, force: bool = False) -> list[str]:
    """Bring containers' files in step with the host's resolv.conf when it changed since the last
    call (or always, with force), as Docker does at a container's start: every resolv.conf netkit
    wrote and nobody edited is rewritten (on the default network it lists the host's servers;
    elsewhere the embedded server's "# ExtServers" comment). The DNS servers need nothing: they
    re-read the host's file themselves. What was rewritten, as lines."""
    host = host_resolv_text()
    last = _last_host_path(ctx)
    if not force and _read(last) == host and os.path.exists(last):
        return []
    done = []
    for c in ctx.store.containers():
        if not has_files(c) or not os.path.isdir(etc_dir(c)):
            continue
        text = render_files(ctx, c)["resolv.conf"]
        if _read(os.path.join(etc_dir(c), "resolv.conf")) != text and _write_resolv(ctx, c, text):
            done.append(f"resolv.conf of container '{c.name}' follows the host's again")
    os.makedirs(os.path.dirname(last), mode=0o755, exist_ok=True)
    _atomic_write(last, host)
    return done


def stale_resolv(ctx: Context) -> list[str]:
    """Containers whose resolv.conf netkit wrote, nobody edited, and that lags what netkit
    would write now (the host's resolv.conf changed since): for `netkit doctor`."""
    return [c.name for c in ctx.store.containers()
            if has_files(c) and os.path.exists(os.path.join(etc_dir(c), "resolv.conf")) and not user_edited(c, ctx.run_dir)
            and _read(os.path.join(etc_dir(c), "resolv.conf")) != render_files(ctx, c)["resolv.conf"]]


# ---- per-network DNS --------------------------------------------------------------------

def records_path(ctx: Context, network: str) -> str:
    return os.path.join(ctx.run_dir, "dns", f"{network}.json")


def _names_of(ctx: Context, net: Network) -> dict[str, list[str]]:
    names_here = ctx.store.dns_names(net.name)
    if net.driver == "overlay":
        # Names across hosts: every container on the network, wherever it runs (the host agent
        # rewrites this as containers elsewhere come and go); the local names if the store is down.
        from netkit.engine import overlay

        remote = overlay.dns_records(ctx, net)
        if remote:
            return remote  # already qualified (netkit.cluster.dnsnames)
    return names.qualified(names_here, net.name)


def records(ctx: Context, net: Network, members: list | None = None) -> dict:
    """The records file of a network's DNS server (netkit.dns.server reads it):
    records      name -> addresses, names also as NAME.NETWORK
    upstreams    where other names go: config `dns`, else the host's resolvers now
    host_resolv  the host's resolv.conf files, which the server re-reads when they change
    clients      who may ask: the network's subnet
    per_client   address -> {netns: where its queries are forwarded from, upstreams: its --dns,
                 names: those of its other networks}"""
    doc: dict = {"records": _names_of(ctx, net), "clients": [net.subnet]}
    if ctx.config.dns:  # daemon.json "dns": every container's default --dns, fixed
        doc["upstreams"] = list(ctx.config.dns)
    else:
        doc["upstreams"] = names.upstream_servers(host_resolv_text())
        doc["host_resolv"] = [os.path.abspath(HOST_RESOLV), RESOLVED_UPSTREAMS]
    per_client: dict[str, dict] = {}
    others: dict[str, dict[str, list[str]] | None] = {}  # network -> its names (None: no DNS), read once
    for c in members if members is not None else ctx.store.dns_clients(net.name):
        # Forwarded queries leave from the container's own netns, as Docker's resolver dials
        # them: through its routes and rules (an --internal network reaches no outside
        # resolver), and a --dns on loopback is the container's own loopback.
        entry: dict = {"netns": c.netns} if c.netns else {}
        if c.dns:
            entry["upstreams"] = list(c.dns)
        extra: dict[str, list[str]] = {}
        for network, _ip in c.endpoints:
            if network == net.name:
                continue
            if network not in others:
                other = ctx.store.network(network)
                others[network] = _names_of(ctx, other) if other is not None and serves_dns(other) else None
            for n, ips in (others[network] or {}).items():
                extra.setdefault(n, ips)
        if extra:
            entry["names"] = extra
        for network, ip in c.endpoints:
            if network == net.name and entry:
                per_client[ip] = entry
    if per_client:
        doc["per_client"] = per_client
    return doc


def serves_dns(net: Network) -> bool:
    """Like Docker, no names on the default bridge network; macvlan/ipvlan networks neither (the
    DNS server listens on the gateway, which is not on this host for them)."""
    return not net.default and not net.parent


def sync_networks(ctx: Context, network_names: list[str]) -> None:
    """sync_network for each named network and for every network that shares a container with
    one of them: a container on two networks asks one server for the names of both."""
    todo = list(dict.fromkeys(network_names))
    members: dict[str, list] = {}  # network -> its containers (Store.dns_clients), read once for both uses
    for name in list(todo):
        members[name] = ctx.store.dns_clients(name)
        todo += [network for c in members[name] for network, _ip in c.endpoints if network not in todo]
    for name in dict.fromkeys(todo):
        net = ctx.store.network(name)
        if net:
            sync_network(ctx, net, members.get(name))


def sync_network(ctx: Context, net: Network, members: list | None = None) -> None:
    """Rewrite the records (the server reloads on change) and start the server if it is not up.
    `members`: the network's Store.dns_clients, if the caller has them already."""
    if not serves_dns(net):
        return
    from netkit.dns import supervisor

    path = records_path(ctx, net.name)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    _atomic_write(path, json.dumps(records(ctx, net, members), separators=(",", ":")))
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
    from netkit.dns import supervisor

    done = refresh_host_resolv(ctx, force=True)
    done += supervisor.repair_host(ctx.run_dir)
    for c in ctx.store.containers():
        write_files(ctx, c, force=True)
    for net in ctx.store.networks():
        if serves_dns(net) and ctx.store.has_members(net.name):
            if not supervisor.is_running(net.name, ctx.run_dir):
                done.append(f"restarted DNS server of network '{net.name}'")
            sync_network(ctx, net)
    return done
