"""Published ports: `publish`, `unpublish`, `port`, and the part of `container create` that turns
-p/-P/--expose into mappings with concrete host ports (parsing, checks, allocation).

Host ports are allocated inside the state transaction, so concurrent netkit processes cannot take
the same one; the state's `ports` table refuses duplicates even if a check here were wrong. Free
ports are found by asking the probe (a bind test), never the kernel directly. The rules a mapping
implies are not made here: every change ends with engine/reconcile.py, which makes them.
"""
from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING

from netkit import portspec, rules
from netkit.engine import lookup
from netkit.errors import Conflict, NotFound, UserError
from netkit.model import MODE_CONTAINER, MODE_HOST, MODE_NONE, Container, PortMapping

if TYPE_CHECKING:
    from netkit.engine.context import Context


# ---- input --------------------------------------------------------------------------------

def parse_spec(text: str) -> portspec.PortSpec:
    spec = portspec.parse_port_spec(text)
    if spec.host_family == 6:
        raise UserError(f"invalid port spec {text!r}: IPv6 host addresses are not supported yet "
                        "(netkit publishes IPv4 only); leave the address out or use an IPv4 one")
    return spec


def check_publishable(ctx: Context, c: Container, nets: dict) -> None:
    """Refuse publishing where it cannot work, saying why."""
    if c.mode == MODE_HOST:
        raise UserError(f"container '{c.name}' uses the host's network (--net host): its ports are the "
                        "host's ports already; nothing to publish")
    if c.mode == MODE_NONE:
        raise UserError(f"container '{c.name}' has no network (--net none): there is nothing to publish to")
    if c.mode == MODE_CONTAINER:
        raise UserError(f"container '{c.name}' shares the network of '{c.shares}' (--net container:{c.shares}): "
                        f"publish on '{c.shares}' instead")
    if not ctx.firewall.manages_rules:
        raise UserError(f"publishing needs firewall rules, but the firewall backend is none ({ctx.firewall_why()}); "
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


def _check_local(ctx: Context, ip: str) -> None:
    if ip in ("", "0.0.0.0") or ipaddress.IPv4Address(ip).is_loopback:
        return
    if not ctx.probe.is_local_address(ip):
        raise UserError(f"{ip} is not an address of this host; publish on one of its addresses, "
                        "127.0.0.1, or leave the address out")


def allocate(ctx: Context, c: Container, specs: list[portspec.PortSpec]) -> list[PortMapping]:
    """Turn specs into mappings with concrete host ports, refusing conflicts. Runs inside the
    state transaction, so concurrent netkit processes cannot take the same port."""
    out: list[PortMapping] = []
    cache: dict[str, list] = {}
    for spec in specs:
        host_ip = spec.host_ip or ctx.config.ip  # daemon.json's "ip": 0.0.0.0 unless set
        _check_local(ctx, host_ip)
        mine = [(m.host_ip, m.host_port, c.name) for m in c.ports + out if m.proto == spec.proto]
        given = [(m.host_ip, m.host_port) for m in out if m.proto == spec.proto]  # earlier specs of this command

        for host_port, cport in spec.pairs():
            if host_port is None:
                if spec.proto not in cache:
                    cache[spec.proto] = ctx.store.published(spec.proto)
                published = cache[spec.proto] + mine
                lo, hi = spec.pick_range or ctx.probe.ephemeral_range()
                taken = {p for ip, p, _ in published if _same_addr(ip, host_ip)}
                host_port = None
                for candidate in range(lo, hi + 1):
                    if candidate not in taken and not ctx.probe.port_busy(spec.proto, host_ip, candidate):
                        host_port = candidate
                        break
                if host_port is None:
                    raise Conflict(f"no free host port for {cport}/{spec.proto} in {lo}-{hi} on {host_ip}")
            else:
                if any(p == host_port and _same_addr(m_ip, host_ip) for m_ip, p in given):
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is given twice in this command; "
                                   "publish each host port once")
                holder = next((name for ip, p, name in mine if p == host_port and _same_addr(ip, host_ip)), None)
                holder = holder or ctx.store.port_holder(spec.proto, host_ip, host_port)
                if holder:
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is already published by "
                                   f"container '{holder}'")
                if ctx.probe.port_busy(spec.proto, host_ip, host_port):
                    raise Conflict(f"host port {host_ip}:{host_port}/{spec.proto} is in use by a program on the "
                                   "host (a listening socket); stop it or pick another port")
            m = PortMapping(container=c.name, proto=spec.proto, host_ip=host_ip, host_port=host_port,
                            container_port=cport)
            out.append(m)
            mine.append((host_ip, host_port, c.name))
            given.append((host_ip, host_port))
    return out


def apply_create_options(ctx: Context, c: Container, publish: list[str], publish_all: bool, expose: list[str]) -> None:
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

def publish(ctx: Context, spec_text: str, name: str) -> list[PortMapping]:
    spec = parse_spec(spec_text)
    ctx.require_root()
    with ctx.change():
        c = lookup.container(ctx, name)
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


def unpublish(ctx: Context, spec_text: str, name: str) -> list[PortMapping]:
    spec = parse_spec(spec_text)
    ctx.require_root()
    with ctx.change():
        c = lookup.container(ctx, name)
        gone = [pm for pm in c.ports if _matches(pm, spec)]
        if not gone:
            raise UserError(f"container '{name}' has no published port matching {spec_text!r}; "
                            f"see `netkit port {name}`")
        old = dataclasses.replace(c, ports=list(c.ports))
        c.ports = [pm for pm in c.ports if pm not in gone]
        ctx.store.put_container(c)
        ctx.container_changed(old, c)
    return gone


def port_lines(ctx: Context, name: str, which: str | None = None) -> list[str]:
    """`docker port` lines, optionally for one container port ("80" or "80/udp")."""
    c = lookup.container(ctx, name)
    ports = c.ports
    if which:
        (lo, hi), proto = portspec.parse_expose(which)
        ports = [p for p in ports if p.proto == proto and lo <= p.container_port <= hi]
        if not ports:
            raise NotFound(f"no public port '{which}' published for container '{name}'")
    ports = sorted(ports, key=lambda p: (p.container_port, p.proto, p.host_ip, p.host_port))
    return [portspec.format_mapping(p.container_port, p.proto, p.host_ip, p.host_port) for p in ports]
