"""Links, addresses, routes and namespaces: one function per plan step (netkit.ops;
kernel/executor.py dispatches to them), and read-backs of links, bridges, routes and forwarding
tables for inspect, show and doctor. A container's veth goes over raw rtnetlink
(kernel/rtlink.py); the rest through pyroute2, imported at its first use, so that a container
create without netkitd does not pay for its import (~85 ms)."""
from __future__ import annotations

import errno
import os
import socket
import sys

from netkit import ops
from netkit.errors import KernelError
from netkit.kernel import netns


def IPRoute(*args, **kwargs):  # noqa: N802 - stands for pyroute2's class, imported on first use
    from netkit.kernel.pyroute2_loader import IPRoute as iproute

    return iproute(*args, **kwargs)


class _NotRaised(Exception):
    """What _netlink_error() gives while pyroute2 is not imported: nothing can raise its error then."""


def _netlink_error() -> type[Exception]:
    """pyroute2's NetlinkError, for `except` clauses, without importing pyroute2 to name it."""
    loader = sys.modules.get("netkit.kernel.pyroute2_loader")
    return loader.NetlinkError if loader is not None else _NotRaised


def _sysctl_disable_ipv6(ifname: str) -> None:
    # /proc/sys/net follows the calling thread's netns: this is the host side.
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as fh:
            fh.write("1")
    except FileNotFoundError:
        pass  # kernel without IPv6


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise KernelError(f"interface '{name}' does not exist") from None


class Handles:
    """Netlink sockets and netns fds kept open for one command: one IPRoute on the host, one per
    container netns, so that a plan of many steps pays for each only once. Beside them, a raw
    rtnetlink socket per container netns for kernel/rtlink.py (the regular endpoint's batch):
    `netns_add` gives its own, made while its thread was in the new netns, so a container's
    create makes no pyroute2 handle in its netns at all."""

    def __init__(self):
        self._host: IPRoute | None = None
        self._ns: dict[str, IPRoute] = {}
        self._ns_fd: dict[str, int] = {}
        self._rt: dict[str, socket.socket] = {}

    def host(self) -> IPRoute:
        if self._host is None:
            self._host = IPRoute()
        return self._host

    def in_netns(self, name: str) -> IPRoute:
        if name not in self._ns:
            sock = netns.open_socket(netns.netns_path(name))
            self._ns[name] = IPRoute(fileno=sock.detach())
        return self._ns[name]

    def rt_socket(self, name: str) -> socket.socket:
        """A raw NETLINK_ROUTE socket inside the netns (its own, not the IPRoute's: pyroute2
        reads its socket its own way, and the replies must not cross)."""
        if name not in self._rt:
            self._rt[name] = netns.open_socket(netns.netns_path(name))
        return self._rt[name]

    def netns_fd(self, name: str) -> int:
        if name not in self._ns_fd:
            self._ns_fd[name] = os.open(netns.netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        return self._ns_fd[name]

    def adopt(self, name: str, ns_fd: int, sock: socket.socket) -> None:
        self._ns_fd[name] = ns_fd
        self._rt[name] = sock

    def forget(self, name: str) -> None:
        ipr = self._ns.pop(name, None)
        if ipr is not None:
            ipr.close()
        sock = self._rt.pop(name, None)
        if sock is not None:
            sock.close()
        fd = self._ns_fd.pop(name, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for name in set(self._ns) | set(self._rt) | set(self._ns_fd):
            self.forget(name)
        if self._host is not None:
            self._host.close()
            self._host = None


# ---- one function per link/netns step (kernel/executor.py maps each ops class to one) --------

def netns_add(h: Handles, op: ops.NetnsAdd) -> None:
    ns_fd, sock = netns.create(op.name, ipv6=op.ipv6)
    h.adopt(op.name, ns_fd, sock)


def netns_attach(h: Handles, op: ops.NetnsAttach) -> None:
    netns.attach(op.name, op.source)


def netns_del(h: Handles, op: ops.NetnsDel) -> None:
    h.forget(op.name)
    netns.delete(op.name)


def bridge_add(h: Handles, op: ops.BridgeAdd) -> None:
    ipr = h.host()
    extra = {"address": op.mac} if op.mac else {}
    ipr.link("add", ifname=op.name, kind="bridge", mtu=op.mtu, **extra)
    try:
        _sysctl_disable_ipv6(op.name)
        idx = _ifindex(op.name)
        if op.address:
            ip, plen = op.address.split("/")
            ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
        ipr.link("set", index=idx, state="up")
    except BaseException:
        link_del(h, ops.LinkDel(op.name))
        raise


def _where(h: Handles, ifname: str, name: str | None) -> tuple[IPRoute, int]:
    """The netlink socket of the netns (host if None) and the interface's index there."""
    if name is None:
        return h.host(), _ifindex(ifname)
    ipr = h.in_netns(name)
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise KernelError(f"interface '{ifname}' does not exist in netns {name}")
    return ipr, found[0]


def addr_add(h: Handles, op: ops.AddrAdd) -> None:
    ip, plen = op.address.split("/")
    ipr, idx = _where(h, op.ifname, op.netns)
    ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
    try:
        ipr.link("set", index=idx, state="up")
    except BaseException:
        addr_del(h, ops.AddrDel(op.ifname, op.address, op.netns))
        raise


def addr_del(h: Handles, op: ops.AddrDel) -> None:
    ip, plen = op.address.split("/")
    try:
        ipr, idx = _where(h, op.ifname, op.netns)
        ipr.addr("del", index=idx, address=ip, prefixlen=int(plen))
    except (_netlink_error(), KernelError) as err:
        if not _gone(err):
            raise


def bridge_del(h: Handles, op: ops.BridgeDel) -> None:
    link_del(h, ops.LinkDel(op.name))


def link_del(h: Handles, op: ops.LinkDel) -> None:
    ipr = h.in_netns(op.netns) if op.netns else h.host()
    try:
        ipr.link("del", ifname=op.ifname)
    except _netlink_error() as err:
        if not _gone(err):
            raise


def endpoint_add(h: Handles, op: ops.EndpointAdd) -> None:
    """The veth with its peer made directly in the container's netns, then that end configured
    from a rtnetlink socket inside the netns: raw netlink requests (kernel/rtlink.py), no pyroute2,
    and no thread in the netns but for opening that socket when netns_add did not give one
    (netns.open_socket steps back on every path). A failure once the veth exists deletes it
    (and so its peer, with the address and route on it): all or nothing."""
    if op.handover:
        _endpoint_handover_add(h, op)
        return
    from netkit.kernel import rtlink

    # Created down: IPv6 must be off before the link comes up, or its MLD reports are
    # flooded to every port of the bridge and each attach gets slower (docs/facts.md, "IPv6 flooding").
    try:
        rtlink.veth_on_bridge(op.host_ifname, op.ifname, _ifindex(op.bridge), op.mtu, op.mac,
                              peer_netns_fd=h.netns_fd(op.netns))
    except rtlink.LinkError as err:
        raise KernelError(f"cannot make veth '{op.host_ifname}' (peer '{op.ifname}' in netns {op.netns}) "
                          f"on bridge '{op.bridge}': {err.strerror}") from None
    try:
        _sysctl_disable_ipv6(op.host_ifname)
        try:
            rtlink.port_up(_ifindex(op.host_ifname))
        except rtlink.LinkError as err:
            raise KernelError(f"cannot bring '{op.host_ifname}' up: {err.strerror}") from None
        try:
            rtlink.configure(h.rt_socket(op.netns), op.ifname, op.ip, op.prefixlen, op.gateway)
        except rtlink.LinkError as err:
            raise KernelError(f"cannot {err.step} in netns {op.netns}: {err.strerror}") from None
    except BaseException:
        link_del(h, ops.LinkDel(op.host_ifname))
        raise


def _endpoint_handover_add(h: Handles, op: ops.EndpointAdd) -> None:
    """Both ends in the host netns, the peer down under `op.handover` for the runtime to move: raw
    netlink requests (kernel/rtlink.py), no netns entered, no netns move (each move waits for an
    RCU grace period). Nothing crosses the port before the runtime has the peer, and the runtime
    gets it only once the port's rules exist (Context.on_handover_ready)."""
    from netkit.kernel import rtlink

    try:
        rtlink.veth_on_bridge(op.host_ifname, op.handover, _ifindex(op.bridge), op.mtu, op.mac)
    except rtlink.LinkError as err:
        raise KernelError(f"cannot make veth '{op.host_ifname}' (peer '{op.handover}') on bridge "
                          f"'{op.bridge}': {err.strerror}") from None
    try:
        _sysctl_disable_ipv6(op.host_ifname)  # before it comes up (docs/facts.md, "IPv6 flooding")
        rtlink.port_up(_ifindex(op.host_ifname))
    except BaseException as err:
        link_del(h, ops.LinkDel(op.host_ifname))
        if isinstance(err, rtlink.LinkError):
            raise KernelError(f"cannot bring '{op.host_ifname}' up: {err.strerror}") from None
        raise


def route_replace(h: Handles, op: ops.RouteReplace) -> None:
    h.in_netns(op.netns).route("replace", dst="0.0.0.0/0", gateway=op.gateway)


def uts_add(h: Handles, op: ops.UtsAdd) -> None:
    from netkit.kernel import uts

    uts.create(op.path, op.hostname)


def uts_del(h: Handles, op: ops.UtsDel) -> None:
    from netkit.kernel import uts

    uts.delete(op.path)


def set_hairpin(ifnames) -> None:
    """hairpin_mode on for bridge ports (IFLA_BRPORT_MODE, one raw netlink request each)."""
    from netkit.kernel import rtlink

    for name in ifnames:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            continue  # gone meanwhile: nothing to set
        try:
            rtlink.hairpin_on(index)
        except rtlink.LinkError as err:
            if not rtlink.gone(err):  # else gone between the two calls
                raise KernelError(f"cannot set hairpin mode on '{name}': {err.strerror}") from None


def _gone(err: Exception) -> bool:
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    return code in (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ESRCH)


def describe(err: Exception) -> str:
    """One line for a failed kernel call."""
    if isinstance(err, KernelError):
        return str(err)
    if isinstance(err, _netlink_error()):
        return os.strerror(err.code) if err.code else str(err)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror if not err.filename else f"{err.strerror} ({err.filename})"
    return str(err)


# ---- reading back -----------------------------------------------------------------------

def link_info(ifname: str, netns_name: str | None = None, index: int | None = None) -> dict | None:
    """kind, ifindex, iflink (peer index for veth), master, mtu, address, state, ipv4 addrs; of the
    link named `ifname`, or with `index` (a veth's peer found by its iflink, whatever its name)."""
    if netns_name:
        ipr = IPRoute(fileno=netns.open_socket(netns.netns_path(netns_name)).detach())
    else:
        ipr = IPRoute()
    try:
        found = [index] if index is not None else ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        try:
            msg = ipr.get_links(found[0])[0]
        except _netlink_error() as err:
            if _gone(err):
                return None
            raise
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=found[0], family=socket.AF_INET)]
        return {
            "ifname": msg.get_attr("IFLA_IFNAME"),
            "ifindex": msg["index"],
            "iflink": msg.get_attr("IFLA_LINK") or msg["index"],
            "kind": kind,
            "master": msg.get_attr("IFLA_MASTER"),
            "mtu": msg.get_attr("IFLA_MTU"),
            "address": msg.get_attr("IFLA_ADDRESS"),
            "up": bool(msg["flags"] & 1),
            "ipv4": addrs,
        }
    finally:
        ipr.close()


def bridges() -> list[dict]:
    """Every bridge in this netns with its id, STP state and ports (what `brctl show` prints)."""
    with IPRoute() as ipr:
        links = ipr.get_links()
        by_index = {m["index"]: m.get_attr("IFLA_IFNAME") for m in links}
        result = []
        for m in links:
            info = m.get_attr("IFLA_LINKINFO")
            if not info or info.get_attr("IFLA_INFO_KIND") != "bridge":
                continue
            data = info.get_attr("IFLA_INFO_DATA")
            bid = data.get_attr("IFLA_BR_BRIDGE_ID") if data else None
            stp = data.get_attr("IFLA_BR_STP_STATE") if data else 0
            ports = sorted(by_index[p["index"]] for p in links if p.get_attr("IFLA_MASTER") == m["index"])
            result.append({
                "name": m.get_attr("IFLA_IFNAME"),
                "id": _bridge_id(bid, m.get_attr("IFLA_ADDRESS")),
                "stp": bool(stp),
                "interfaces": ports,
            })
        return sorted(result, key=lambda b: b["name"])


def _bridge_id(bid, mac: str | None) -> str:
    """brctl's form: priority in hex, a dot, the MAC without colons (8000.02420a000001)."""
    prio = 0x8000
    if isinstance(bid, dict):
        prio = bid.get("priority", prio)
        mac = bid.get("addr", mac)
    return f"{prio:04x}." + (mac or "00:00:00:00:00:00").replace(":", "")


def bridge_ports(bridge: str) -> list[str]:
    """Names of the interfaces enslaved to `bridge` (sysfs-free: follows the caller's netns)."""
    with IPRoute() as ipr:
        index = _ifindex(bridge)
        return sorted(m.get_attr("IFLA_IFNAME") for m in ipr.get_links() if m.get_attr("IFLA_MASTER") == index)


def bridge_macs(bridge: str) -> list[dict]:
    """The bridge's forwarding database (what `brctl showmacs` prints)."""
    NUD_PERMANENT = 0x80
    with IPRoute() as ipr:
        br_index = _ifindex(bridge)
        ports = {}
        for m in ipr.get_links():
            if m.get_attr("IFLA_MASTER") == br_index:
                ports[m["index"]] = m.get_attr("IFLA_IFNAME")
        rows = []
        for n in ipr.fdb("dump"):
            if n["ifindex"] not in ports:
                continue
            # Entries without NDA_MASTER are the port device's own ("self") list, not the bridge's.
            if n.get_attr("NDA_MASTER") != br_index:
                continue
            cache = n.get_attr("NDA_CACHEINFO") or {}
            local = bool(n["state"] & NUD_PERMANENT)
            rows.append({
                "port": _port_no(ports[n["ifindex"]]),
                "interface": ports[n["ifindex"]],
                "mac": n.get_attr("NDA_LLADDR"),
                "local": local,
                "ageing": 0.0 if local else round(cache.get("ndm_updated", 0) / 100.0, 2),
            })
        uniq = {(r["interface"], r["mac"]): r for r in rows}
        return sorted(uniq.values(), key=lambda r: (r["port"], r["mac"]))


def _port_no(ifname: str) -> int:
    try:
        with open(f"/sys/class/net/{ifname}/brport/port_no") as fh:
            return int(fh.read().strip(), 16)
    except (OSError, ValueError):
        return 0


def default_gateway(netns_name: str) -> str | None:
    """The gateway of the IPv4 default route inside a named netns (None: no default route)."""
    with IPRoute(fileno=netns.open_socket(netns.netns_path(netns_name)).detach()) as ipr:
        for route in ipr.get_routes(family=socket.AF_INET, table=254):
            if route["dst_len"] == 0:
                return route.get_attr("RTA_GATEWAY")
    return None


def veth_to_netns(host_ifname: str, host_addr: str, netns_name: str, peer_ifname: str, peer_addr: str,
                  prefixlen: int) -> None:
    """A new netns joined to this one by a veth pair, both ends addressed and up, lo up on both
    sides (the sandbox's `outside` host behind `uplink`)."""
    ns_fd, sock = netns.create(netns_name)
    with IPRoute() as host, IPRoute(fileno=sock.detach()) as inside:
        host.link("set", index=1, state="up")
        inside.link("set", index=1, state="up")
        host.link("add", ifname=host_ifname, kind="veth", peer={"ifname": peer_ifname, "net_ns_fd": ns_fd})
        os.close(ns_fd)
        up = host.link_lookup(ifname=host_ifname)[0]
        host.addr("add", index=up, address=host_addr, prefixlen=prefixlen)
        host.link("set", index=up, state="up")
        peer = inside.link_lookup(ifname=peer_ifname)[0]
        inside.addr("add", index=peer, address=peer_addr, prefixlen=prefixlen)
        inside.link("set", index=peer, state="up")
