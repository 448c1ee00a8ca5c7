"""The one door from container runtimes' protocols (the CNI plugin, Docker's network plugin)
into netkit's engine: each function is a use case they need, in their words (a netns path, an
interface name, a subnet), carried out by the engine's public use cases only. When the engine's
API changes, this is the file to adapt.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from netkit.errors import Conflict, NotFound, UserError

RUNTIME_PREFIX = "rt-"  # netkit container names of attachments made for a runtime (CNI, Docker)


@dataclass
class NetworkSpec:
    """A network as a runtime's config describes it; None leaves netkit's default."""

    name: str
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    bridge: str | None = None
    mtu: int | None = None
    masquerade: bool = True
    internal: bool = False


@dataclass
class Attachment:
    """What a runtime gets back: the interfaces and address it needs to report."""

    container: str  # netkit's name for the attachment
    bridge: str
    bridge_mac: str
    host_ifname: str
    host_mac: str
    ifname: str
    mac: str
    netns: str
    ip: str
    prefixlen: int
    gateway: str | None
    default_route: bool
    nameservers: list[str] = field(default_factory=list)


@dataclass
class HandoverReady:
    """A hand-over attachment just committed (its names are still being written): what a runtime
    that takes the interface over itself needs to be answered with."""

    container: str
    host_ifname: str
    mac: str
    gateway: str | None  # set when the attachment gives the netns its default route


def attachment_name(network: str, container_id: str, ifname: str) -> str:
    """A stable, valid netkit container name for (network, runtime's container id, interface)."""
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()
    return RUNTIME_PREFIX + digest[:20]


_STORE: tuple | None = None  # ((process id, thread id), state file identity, Store) of _store()


def _store():
    """The state, opened once per process and thread for runtime calls: a Docker plugin child
    answers every request of a connection, and opening the state (connect, integrity check,
    schema) takes ~0.5 ms of a Join. Opened afresh when the file was replaced (a state restored
    from a backup, another NETKIT_STATE_DIR) and in a forked child, which must not use the
    parent's connection: a child that forks after using the adapter must exec (SQLite keeps no
    connection across a fork)."""
    global _STORE
    import threading

    from netkit.state import Store, state_dir

    path = os.path.join(state_dir(), "netkit.db")
    try:
        st = os.stat(path)
        identity = (path, st.st_dev, st.st_ino)
    except OSError:
        identity = None
    owner = (os.getpid(), threading.get_ident())
    if _STORE is not None and identity is not None and _STORE[:2] == (owner, identity):
        return _STORE[2]
    store = Store()
    if identity is None:  # made just now
        st = os.stat(path)
        identity = (path, st.st_dev, st.st_ino)
    _STORE = (owner, identity, store)
    return store


def _context():
    """A Context for one runtime call. Callers end it with close_kernel(), as the CLI does: closing
    the state too would checkpoint its WAL on every call (~1 ms of a CNI ADD under netkitd); the
    next writer's commit or the process's end takes care of the file."""
    from netkit.engine.context import Context

    return Context(store=_store())


def _mac(ifname: str, netns: str | None = None) -> str:
    if netns is None:
        try:
            with open(f"/sys/class/net/{ifname}/address") as fh:
                return fh.read().strip()
        except OSError:
            return ""
    info = _ip_json(["-n", netns, "link", "show", "dev", ifname])
    return info[0].get("address", "") if info else ""


def _ip_json(args: list[str]) -> list[dict]:
    from netkit.programs import require

    out = subprocess.run([require("ip"), "-j"] + args, capture_output=True, text=True)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def ensure_network(spec: NetworkSpec):
    """The netkit network `spec.name`, created from the spec if missing; a mismatch is an error."""
    ctx = _context()
    try:
        return _ensure_network(ctx, spec)
    finally:
        ctx.close_kernel()


def _ensure_network(ctx, spec: NetworkSpec):
    from netkit.engine import networks

    net = ctx.store.network(spec.name)
    if net is None:
        req = networks.NetworkRequest(spec.name, spec.subnet, spec.gateway, spec.ip_range, spec.bridge,
                                      spec.mtu, spec.internal, True, spec.masquerade)
        try:
            return networks.create(ctx, req)
        except Conflict:
            net = ctx.store.network(spec.name)  # a concurrent ADD made it first
            if net is None:
                raise
    if spec.subnet and net.subnet != _normal_cidr(spec.subnet):
        raise Conflict(f"network '{spec.name}' exists with subnet {net.subnet}, the config says {spec.subnet}")
    if spec.bridge and net.bridge != spec.bridge:
        raise Conflict(f"network '{spec.name}' exists on bridge {net.bridge}, the config says {spec.bridge}")
    return net


def _normal_cidr(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise UserError(f"invalid subnet '{text}': use CIDR notation like 10.22.0.0/16") from None


def attach(network: str, netns_path: str, container_id: str, ifname: str, ip: str | None = None,
           port_mappings: list[dict] | None = None, handover: str | None = None,
           on_handover_ready: Callable[[HandoverReady], None] | None = None) -> Attachment:
    """Wire the runtime's netns onto the network (veth, address, routes, names), then publish
    its port mappings; all or nothing. `handover`: the runtime moves and configures the
    interface itself; its end of the veth is left on the host under that name, and the netns
    at `netns_path` may not exist yet (then pin_netns names it once it does).
    `on_handover_ready(HandoverReady)` runs once the change that made that interface committed
    (on the bridge, with its anti-spoofing and rules), before the names; a failure after it
    leaves the attachment and raises as usual."""
    from netkit.engine import containers

    name = attachment_name(network, container_id, ifname)
    ctx = _context()
    if on_handover_ready is not None:
        ctx.on_handover_ready = lambda c, ep, gateway: on_handover_ready(
            HandoverReady(c.name, ep.host_ifname, ep.mac, gateway))
    try:
        containers.attach(ctx, network, netns_path=netns_path, name=name, ip=ip, ifname=ifname,
                          handover=handover)
        attached = _describe(ctx, network, name)  # this context's state is current: no second open
    finally:
        ctx.close_kernel()
    try:
        for pm in port_mappings or []:
            publish(name, pm)
    except BaseException:
        detach(network, container_id, ifname)
        raise
    return attached


def pin_netns(network: str, container_id: str, ifname: str, netns_path: str) -> bool:
    """Name the runtime's netns after a hand-over attachment once the runtime made it; False if
    the attachment is gone, named already, or `netns_path` is no netns yet."""
    from netkit.engine import containers

    ctx = _context()
    try:
        return containers.pin_runtime_netns(ctx, attachment_name(network, container_id, ifname), netns_path)
    finally:
        ctx.close_kernel()


def publish(name: str, mapping: dict) -> None:
    """A CNI `portMappings` entry ({hostPort, containerPort, protocol, hostIP}) as a netkit publish."""
    publish_spec(name, _mapping_spec(mapping))


def _mapping_spec(mapping: dict) -> str:
    """A CNI `portMappings` entry as a Docker-syntax port spec (`8088:80/tcp`)."""
    try:
        host_port, port = int(mapping["hostPort"]), int(mapping["containerPort"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"port mapping {json.dumps(mapping)} needs integer hostPort and containerPort") from None
    proto = str(mapping.get("protocol") or "tcp").lower()
    host_ip = mapping.get("hostIP") or ""
    return f"{host_ip + ':' if host_ip else ''}{host_port}:{port}/{proto}"


def publish_spec(name: str, spec: str) -> None:
    """Publish a Docker-syntax port spec (`8088:80/tcp`) on attachment `name`."""
    from netkit.engine import publish as pub

    ctx = _context()
    try:
        pub.publish(ctx, spec, name)
    finally:
        ctx.close_kernel()


def unpublish_spec(name: str, spec: str) -> None:
    from netkit.engine import publish as pub

    ctx = _context()
    try:
        pub.unpublish(ctx, spec, name)
    except NotFound:
        pass  # the attachment is gone already: so are its ports
    finally:
        ctx.close_kernel()


def remove_network(name: str) -> bool:
    """Remove a network a runtime made; False if it did not exist."""
    from netkit.engine import networks

    ctx = _context()
    try:
        networks.remove(ctx, name)
        return True
    except NotFound:
        return False
    finally:
        ctx.close_kernel()


def describe(network: str, name: str) -> Attachment:
    ctx = _context()
    try:
        return _describe(ctx, network, name)
    finally:
        ctx.close_kernel()


def _describe(ctx, network: str, name: str) -> Attachment:
    from netkit.engine import containers

    c = containers.get(ctx, name)
    net = ctx.store.network(network)
    ep = c.endpoint(network)
    if ep is None or net is None:
        raise NotFound(f"container '{name}' is not attached to network '{network}'")
    holder = next((e for e in c.endpoints if (n := ctx.store.network(e.network)) and not n.internal), None)
    netns_name = os.path.basename(c.netns)
    return Attachment(container=name, bridge=net.bridge, bridge_mac=_mac(net.bridge), host_ifname=ep.host_ifname,
                      host_mac=_mac(ep.host_ifname), ifname=ep.ifname, mac=ep.mac, netns=netns_name, ip=ep.ip,
                      prefixlen=ep.prefixlen, gateway=ep.gateway, default_route=holder is ep,
                      nameservers=[net.gateway] if not net.default else [])


def find(network: str, container_id: str, ifname: str) -> Attachment | None:
    try:
        return describe(network, attachment_name(network, container_id, ifname))
    except NotFound:
        return None


def detach(network: str, container_id: str, ifname: str, on_committed=None) -> bool:
    """Remove the attachment (veth, address, name, published ports); False if there was none.
    Works after the runtime deleted its netns: netkit's own name for it still holds it.
    `on_committed()` runs once the state no longer holds the attachment (engine.context's
    Context.on_committed), before the kernel objects are deleted."""
    from netkit.engine import containers

    ctx = _context()
    ctx.on_committed = on_committed
    try:
        containers.remove(ctx, attachment_name(network, container_id, ifname))
        return True
    except NotFound:
        return False
    finally:
        ctx.close_kernel()


def interface_addresses(netns: str, ifname: str) -> list[str] | None:
    """"IP/prefix" of ifname inside the named netns, or None if the interface is missing."""
    info = _ip_json(["-n", netns, "addr", "show", "dev", ifname])
    if not info:
        return None
    return [f"{a['local']}/{a['prefixlen']}" for a in info[0].get("addr_info", []) if a.get("family") == "inet"]


def runtime_attachments(network: str) -> list[str]:
    """netkit names of the runtime attachments on a network."""
    ctx = _context()
    try:
        return [m for m in ctx.store.members(network) if m.startswith(RUNTIME_PREFIX)]
    finally:
        ctx.close_kernel()


def remove_attachment(name: str) -> None:
    from netkit.engine import containers

    ctx = _context()
    try:
        containers.remove(ctx, name)
    except NotFound:
        pass
    finally:
        ctx.close_kernel()


def ready() -> None:
    """Raise unless netkit's state can be read (what CNI STATUS asks)."""
    ctx = _context()
    try:
        ctx.store.networks()
    finally:
        ctx.close_kernel()


def add(spec: NetworkSpec, netns_path: str, container_id: str, ifname: str, ip: str | None = None,
        port_mappings: list[dict] | None = None) -> Attachment:
    """CNI ADD on one open state: the network (made from the spec if missing), then the
    attachment with its port mappings, all or nothing; an attachment that exists already is
    described as it is (ADD again is no error). What ensure_network, find and attach do one
    after the other, without opening the state, the config and netlink for each."""
    from netkit.engine import containers
    from netkit.engine import publish as pub

    name = attachment_name(spec.name, container_id, ifname)
    ctx = _context()
    try:
        _ensure_network(ctx, spec)
        try:
            return _describe(ctx, spec.name, name)
        except NotFound:
            pass
        containers.attach(ctx, spec.name, netns_path=netns_path, name=name, ip=ip, ifname=ifname)
        try:
            for mapping in port_mappings or []:
                pub.publish(ctx, _mapping_spec(mapping), name)
        except BaseException:
            try:
                containers.remove(ctx, name)
            except NotFound:
                pass
            raise
        return _describe(ctx, spec.name, name)
    finally:
        ctx.close_kernel()
