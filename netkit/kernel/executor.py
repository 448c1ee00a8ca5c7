"""Runs plans (lists of netkit.ops steps) against the kernel: one dispatch table from step class to
the adapter function that carries it out, steps in order, and on failure (or Ctrl-C) the finished
steps undone in reverse, with one line naming the step that failed.

`Executor` itself knows nothing of the kernel: it is given the table. `kernel_executor()` builds
the real one (links and namespaces through pyroute2, sysctls through /proc/sys, rule changes
through the firewall backend); unit tests build one over fakes and test the same apply/undo logic.
"""
from __future__ import annotations

from typing import Callable

from netkit import faults, ops
from netkit.errors import KernelError

Handler = Callable[[object], None]


class Executor:
    """Applies steps through `handlers` ({ops class: fn(op)}); `close` frees what they hold."""

    def __init__(self, handlers: dict[type, Handler], close: Callable[[], None] | None = None,
                 describe: Callable[[Exception], str] = str):
        self.handlers = handlers
        self._close = close
        self._describe = describe

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def run(self, op) -> None:
        handler = self.handlers.get(type(op))
        if handler is None:
            raise TypeError(f"no handler for plan step {type(op).__name__}")
        faults.point(type(op).__name__)  # test-only: NETKIT_FAULT_AT (netkit/faults.py)
        handler(op)

    def apply(self, plan: list) -> None:
        """All or nothing: a failing step undoes the finished ones, and KernelError says which failed."""
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
            first = (op.render() or [type(op).__name__])[0]
            raise KernelError(f"`{first}` failed: {self._describe(err)}; {outcome}") from err

    def apply_all(self, plan: list) -> None:
        """Deletions: try every step (each tolerates objects already gone); report the first failure."""
        errors = []
        for op in plan:
            try:
                self.run(op)
            except Exception as err:  # noqa: BLE001
                errors.append(f"`{(op.render() or [type(op).__name__])[0]}` failed: {self._describe(err)}")
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
                    failed.append((inverse.render() or [type(inverse).__name__])[0])
        return failed


def kernel_executor(firewall=None) -> Executor:
    """The executor that changes this host's kernel. `firewall`: the backend for rule changes
    (kernel/fw; default: the legacy one). pyroute2 is imported by the first step that needs it:
    a publish (rule changes only) never pays for it."""
    from netkit.kernel import firewall as fw_mod
    from netkit.lowerdev import SubInterfaceAdd

    handles = None

    def links():
        from netkit.kernel import links as links_mod

        return links_mod

    def shared():
        nonlocal handles
        if handles is None:
            handles = links().Handles()
        return handles

    def link_step(name: str) -> Handler:
        return lambda op: getattr(links(), name)(shared(), op)

    def firewall_change(op: ops.FirewallChange) -> None:
        if firewall is None:
            from netkit.kernel import fw

            backend = fw.get("iptables-legacy")
        else:
            backend = firewall
        backend.apply(list(op.changes), thorough=op.thorough)

    def firewall_reset(op: ops.FirewallReset) -> None:
        from netkit.kernel import fw

        backend = firewall if firewall is not None and firewall.name == op.backend else fw.get(op.backend)
        if backend.available().ok:  # a backend that cannot work here holds nothing of netkit's
            backend.reset(op.forward_policy)

    def sysctl_set(op: ops.SysctlSet) -> None:
        fw_mod.write_sysctl(op.path, op.value)

    def hairpin_on(op: ops.HairpinOn) -> None:
        # Looked up at call time: the one owner of hairpin in the kernel layer is firewall.set_hairpin.
        fw_mod.set_hairpin(list(op.ifnames))

    def conntrack_forget(op: ops.ConntrackForget) -> None:
        from netkit.kernel import conntrack

        try:
            conntrack.delete_mapping(op.proto, op.host_port, op.container_ip, op.container_port)
        except Exception:  # noqa: BLE001 - best effort: the rules are what matters
            pass

    def overlay_add(op: ops.OverlayAdd) -> None:
        from netkit.kernel import vxlan

        vxlan.ensure(op.vni, op.local_ip, op.gateway, op.prefixlen, op.mtu)

    def overlay_del(op: ops.OverlayDel) -> None:
        from netkit.kernel import vxlan

        vxlan.remove(op.vni)

    def subinterface_add(op) -> None:
        from netkit.kernel import lowerdev

        lowerdev.add(op)

    def port_guard(name: str) -> Handler:
        def run(op) -> None:
            from netkit.kernel import antispoof

            if name == "remove_table":
                antispoof.remove_table()
            elif name == "ensure_table":
                antispoof.ensure_table()
            elif name == "forget":
                antispoof.forget(op.ifname)
            else:
                getattr(antispoof, name)(op.ifname, op.mac, op.ip)
        return run

    def cross_isolation(op) -> None:
        from netkit.kernel import xisolation

        if isinstance(op, ops.CrossIsolation):
            xisolation.apply(op.bridges)
        else:
            xisolation.remove()

    def processes_kill(op: ops.ProcessesKill) -> None:
        from netkit.kernel import procs

        procs.kill(op.pids)

    def close() -> None:
        if handles is not None:
            handles.close()

    def describe(err: Exception) -> str:
        return links().describe(err) if not isinstance(err, KernelError) else str(err)

    table: dict[type, Handler] = {
        ops.NetnsAdd: link_step("netns_add"),
        ops.NetnsAttach: link_step("netns_attach"),
        ops.NetnsDel: link_step("netns_del"),
        ops.BridgeAdd: link_step("bridge_add"),
        ops.BridgeDel: link_step("bridge_del"),
        ops.AddrAdd: link_step("addr_add"),
        ops.AddrDel: link_step("addr_del"),
        ops.EndpointAdd: link_step("endpoint_add"),
        ops.RouteReplace: link_step("route_replace"),
        ops.LinkDel: link_step("link_del"),
        ops.UtsAdd: link_step("uts_add"),
        ops.UtsDel: link_step("uts_del"),
        ops.HairpinOn: hairpin_on,
        ops.ProcessesKill: processes_kill,
        ops.SysctlSet: sysctl_set,
        ops.FirewallChange: firewall_change,
        ops.FirewallReset: firewall_reset,
        ops.ConntrackForget: conntrack_forget,
        ops.OverlayAdd: overlay_add,
        ops.OverlayDel: overlay_del,
        SubInterfaceAdd: subinterface_add,
        ops.PortGuardAdd: port_guard("guard"),
        ops.PortGuardDel: port_guard("unguard"),
        ops.PortGuardTableDel: port_guard("remove_table"),
        ops.PortGuardTable: port_guard("ensure_table"),
        ops.PortGuardForget: port_guard("forget"),
        ops.BridgeNfCall: lambda op: fw_mod.write_sysctl(ops.bridge_nf_call_path(op.bridge), op.value),
        ops.CrossIsolation: cross_isolation,
        ops.CrossIsolationDel: cross_isolation,
    }
    return Executor(table, close=close, describe=describe)
