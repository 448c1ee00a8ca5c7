"""Applies plan steps (netkit.ops) to the kernel with pyroute2, undoing on failure; and reads
links, bridges and forwarding tables back for inspect/show commands."""
from __future__ import annotations

import errno
import os
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netkit import ops
from netkit.errors import KernelError
from netkit.kernel import netns, nsutil


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


class Executor:
    """Runs ops in order; on failure undoes the finished ones in reverse and raises KernelError."""

    def __init__(self):
        self._host: IPRoute | None = None
        self._ns: dict[str, IPRoute] = {}
        self._ns_fd: dict[str, int] = {}

    # handles
    def host(self) -> IPRoute:
        if self._host is None:
            self._host = IPRoute()
        return self._host

    def in_netns(self, name: str) -> IPRoute:
        if name not in self._ns:
            sock = netns.open_socket(netns.netns_path(name))
            self._ns[name] = IPRoute(fileno=sock.detach())
        return self._ns[name]

    def netns_fd(self, name: str) -> int:
        if name not in self._ns_fd:
            self._ns_fd[name] = os.open(netns.netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        return self._ns_fd[name]

    def close(self) -> None:
        for ipr in self._ns.values():
            ipr.close()
        self._ns.clear()
        for fd in self._ns_fd.values():
            os.close(fd)
        self._ns_fd.clear()
        if self._host is not None:
            self._host.close()
            self._host = None

    def _forget(self, name: str) -> None:
        ipr = self._ns.pop(name, None)
        if ipr is not None:
            ipr.close()
        fd = self._ns_fd.pop(name, None)
        if fd is not None:
            os.close(fd)

    # applying
    def apply(self, plan: list) -> None:
        done = []
        try:
            for op in plan:
                self.run(op)
                done.append(op)
        except BaseException as err:  # Ctrl-C too: never leave half a plan behind
            failed = self.undo(done)
            if not isinstance(err, Exception):
                raise
            outcome = "nothing was changed" if not failed else \
                f"undo failed for `{failed[0]}`: run `netkit doctor`"
            raise KernelError(f"`{op.render()[0]}` failed: {_describe(err)}; {outcome}") from err

    def apply_all(self, plan: list) -> None:
        """Deletions: try every step (each tolerates objects already gone); report the first failure."""
        errors = []
        for op in plan:
            try:
                self.run(op)
            except Exception as err:  # noqa: BLE001
                errors.append(f"`{op.render()[0]}` failed: {_describe(err)}")
        if errors:
            raise KernelError(errors[0])

    def undo(self, done: list) -> list[str]:
        """Undo finished steps in reverse; return the commands whose undo failed."""
        failed = []
        for op in reversed(done):
            inverse = op.undo()
            if inverse is not None:
                try:
                    self.run(inverse)
                except Exception:  # noqa: BLE001 - keep undoing the rest
                    failed.append(inverse.render()[0])
        return failed

    def run(self, op) -> None:
        getattr(self, "_" + type(op).__name__)(op)

    def _NetnsAdd(self, op: ops.NetnsAdd) -> None:
        ns_fd, sock = netns.create(op.name, ipv6=op.ipv6)
        self._ns_fd[op.name] = ns_fd
        self._ns[op.name] = IPRoute(fileno=sock.detach())

    def _NetnsAttach(self, op: ops.NetnsAttach) -> None:
        netns.attach(op.name, op.source)

    def _NetnsDel(self, op: ops.NetnsDel) -> None:
        self._forget(op.name)
        netns.delete(op.name)

    def _BridgeAdd(self, op: ops.BridgeAdd) -> None:
        ipr = self.host()
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
            self._LinkDel(ops.LinkDel(op.name))
            raise

    def _AddrAdd(self, op: ops.AddrAdd) -> None:
        ip, plen = op.address.split("/")
        idx = _ifindex(op.ifname)
        self.host().addr("add", index=idx, address=ip, prefixlen=int(plen))
        try:
            self.host().link("set", index=idx, state="up")
        except BaseException:
            self._AddrDel(ops.AddrDel(op.ifname, op.address))
            raise

    def _AddrDel(self, op: ops.AddrDel) -> None:
        ip, plen = op.address.split("/")
        try:
            self.host().addr("del", index=_ifindex(op.ifname), address=ip, prefixlen=int(plen))
        except (NetlinkError, KernelError) as err:
            if not _gone(err):
                raise

    def _BridgeDel(self, op: ops.BridgeDel) -> None:
        self._LinkDel(ops.LinkDel(op.name))

    def _LinkDel(self, op: ops.LinkDel) -> None:
        ipr = self.in_netns(op.netns) if op.netns else self.host()
        try:
            ipr.link("del", ifname=op.ifname)
        except NetlinkError as err:
            if not _gone(err):
                raise

    def _EndpointAdd(self, op: ops.EndpointAdd) -> None:
        host = self.host()
        # Created down: IPv6 must be off before the link comes up, or its MLD reports are
        # flooded to every port of the bridge and each attach gets slower (docs/facts.md, "IPv6 flooding").
        host.link(
            "add", ifname=op.host_ifname, kind="veth", mtu=op.mtu, master=_ifindex(op.bridge),
            peer={"ifname": op.ifname, "net_ns_fd": self.netns_fd(op.netns), "mtu": op.mtu, "address": op.mac},
        )
        try:
            _sysctl_disable_ipv6(op.host_ifname)
            index = _ifindex(op.host_ifname)
            host.brport("set", index=index, mode=1)  # hairpin
            host.link("set", index=index, state="up")
            inner = self.in_netns(op.netns)
            with nsutil.entered_netns(netns.netns_path(op.netns)):
                idx = _ifindex(op.ifname)
                nsutil.set_link_up(op.ifname)
            inner.addr("add", index=idx, address=op.ip, prefixlen=op.prefixlen)
            if op.gateway:
                inner.route("add", dst="0.0.0.0/0", gateway=op.gateway)
        except BaseException:
            self._LinkDel(ops.LinkDel(op.host_ifname))
            raise

    def _RouteReplace(self, op: ops.RouteReplace) -> None:
        self.in_netns(op.netns).route("replace", dst="0.0.0.0/0", gateway=op.gateway)

    def _UtsAdd(self, op: ops.UtsAdd) -> None:
        from netkit.kernel import uts

        uts.create(op.path, op.hostname)

    def _UtsDel(self, op: ops.UtsDel) -> None:
        from netkit.kernel import uts

        uts.delete(op.path)


def _gone(err: Exception) -> bool:
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    return code in (errno.ENODEV, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ESRCH)


def _describe(err: Exception) -> str:
    if isinstance(err, KernelError):
        return str(err)
    if isinstance(err, NetlinkError):
        return os.strerror(err.code) if err.code else str(err)
    if isinstance(err, OSError) and err.strerror:
        return err.strerror if not err.filename else f"{err.strerror} ({err.filename})"
    return str(err)


# ---- reading back -----------------------------------------------------------------------

def link_info(ifname: str, netns_name: str | None = None) -> dict | None:
    """kind, ifindex, iflink (peer index for veth), master, mtu, address, state, ipv4 addrs."""
    if netns_name:
        ipr = IPRoute(fileno=netns.open_socket(netns.netns_path(netns_name)).detach())
    else:
        ipr = IPRoute()
    try:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return None
        msg = ipr.get_links(found[0])[0]
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=found[0], family=socket.AF_INET)]
        return {
            "ifname": ifname,
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
