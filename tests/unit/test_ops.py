"""Plan steps: what each renders as (the commands --dry-run prints), what undoes it, and the one
executor's apply/undo behaviour over a dispatch table."""
import pytest

from fakekernel import FakeFirewall

from netkit import ops, rules
from netkit.errors import KernelError
from netkit.kernel.executor import Executor

EP = ops.EndpointAdd("web", "veth1234567", "eth0", "br-app", 1400, "02:42:ac:14:00:02", "172.20.0.2", 24, "172.20.0.1")


@pytest.mark.parametrize("step, lines, undo", [
    (ops.NetnsAdd("web"), ["ip netns add web", "ip netns exec web sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                           "net.ipv6.conf.default.disable_ipv6=1", "ip -n web link set lo up"], ops.NetnsDel("web")),
    (ops.NetnsAdd("v6", ipv6=True), ["ip netns add v6", "ip -n v6 link set lo up"], ops.NetnsDel("v6")),
    (ops.NetnsAttach("p", "/proc/7/ns/net", 7), ["ip netns attach p 7"], ops.NetnsDel("p")),
    (ops.NetnsAttach("f", "/x/f"), ["touch /run/netns/f", "mount --bind /x/f /run/netns/f"], ops.NetnsDel("f")),
    (ops.NetnsDel("web"), ["ip netns del web"], None),
    (ops.BridgeAdd("br-app", 1500, "172.20.0.1/24", "02:42:00:00:00:01"),
     ["ip link add br-app address 02:42:00:00:00:01 type bridge", "ip link set br-app mtu 1500",
      "sysctl -qw net.ipv6.conf.br-app.disable_ipv6=1", "ip addr add 172.20.0.1/24 dev br-app", "ip link set br-app up"],
     ops.BridgeDel("br-app")),
    (ops.BridgeDel("br-app"), ["ip link del br-app"], None),
    (ops.AddrAdd("br0", "10.0.0.1/24"), ["ip addr add 10.0.0.1/24 dev br0", "ip link set br0 up"],
     ops.AddrDel("br0", "10.0.0.1/24")),
    (ops.AddrDel("br0", "10.0.0.1/24"), ["ip addr del 10.0.0.1/24 dev br0"], None),
    (EP, ["ip link add veth1234567 mtu 1400 type veth peer name eth0 mtu 1400 address 02:42:ac:14:00:02 netns web",
          "sysctl -qw net.ipv6.conf.veth1234567.disable_ipv6=1", "ip link set veth1234567 master br-app up",
          "ip -n web addr add 172.20.0.2/24 dev eth0", "ip -n web link set eth0 up",
          "ip -n web route add default via 172.20.0.1"], ops.LinkDel("veth1234567")),
    (ops.RouteReplace("web", "172.21.0.1"), ["ip -n web route replace default via 172.21.0.1"], None),
    (ops.LinkDel("eth1", "web"), ["ip -n web link del eth1"], None),
    (ops.UtsAdd("/run/netkit/uts/web", "web"), ["touch /run/netkit/uts/web",
                                                 "unshare --uts=/run/netkit/uts/web hostname web"],
     ops.UtsDel("/run/netkit/uts/web")),
    (ops.UtsDel("/run/netkit/uts/web"), ["umount /run/netkit/uts/web", "rm /run/netkit/uts/web"], None),
    (ops.HairpinOn(("veth1", "veth2")), ["bridge link set dev veth1 hairpin on", "bridge link set dev veth2 hairpin on"],
     None),
    (ops.HairpinOn(()), [], None),
    (ops.SysctlSet("/proc/sys/net/ipv4/ip_forward", "1", was="0"), ["sysctl -qw net.ipv4.ip_forward=1"],
     ops.SysctlSet("/proc/sys/net/ipv4/ip_forward", "0")),
    (ops.SysctlSet("/proc/sys/net/ipv4/conf/br.x/route_localnet", "1", was=None),
     ["sysctl -qw net.ipv4.conf.br.x.route_localnet=1"], None),
    (ops.ConntrackForget("udp", 53, "172.20.0.2", 5353),
     ["conntrack -D -p udp --orig-port-dst 53 --reply-src 172.20.0.2 --reply-port-src 5353"], None),
])
def test_render_and_undo(step, lines, undo):
    assert step.render() == lines
    assert step.undo() == undo


def test_firewall_change_renders_iptables_save_and_undoes_on_a_firewall():
    change = ops.FirewallChange((
        rules.Op("nat", "N", "NETKIT"),
        rules.Op("nat", "I", "PREROUTING", "-m addrtype --dst-type LOCAL -j NETKIT", 1),
        rules.Op("nat", "A", "NETKIT", "-p tcp -m tcp --dport 80 -j DNAT --to-destination 172.20.0.2:80"),
        rules.Op("filter", "P", "FORWARD", "DROP", was="ACCEPT"),
    ))
    assert change.render() == ["*nat", "-N NETKIT", "-I PREROUTING 1 -m addrtype --dst-type LOCAL -j NETKIT",
                               "-A NETKIT -p tcp -m tcp --dport 80 -j DNAT --to-destination 172.20.0.2:80", "COMMIT",
                               "*filter", "-P FORWARD DROP", "COMMIT"]
    fw = FakeFirewall()
    fw.tables["nat"]["PREROUTING"].append("-j FOREIGN-RULE-STAYS")
    before = fw.snapshot()
    fw.apply(list(change.changes))
    assert fw.snapshot() != before and fw.policies["filter"]["FORWARD"] == "DROP"
    fw.apply(list(change.undo().changes))
    assert fw.snapshot() == before


def test_a_policy_without_a_known_previous_value_is_not_undone():
    assert ops.FirewallChange((rules.Op("filter", "P", "FORWARD", "ACCEPT"),)).undo() is None


def _recording(log, fail=None):
    def handler(op):
        if op == fail:
            raise OSError(1, "Operation not permitted")
        log.append(op)
    return handler


def test_executor_undoes_finished_steps_in_reverse_and_names_the_failed_one():
    log = []
    table = {cls: _recording(log, fail=EP) for cls in (ops.NetnsAdd, ops.UtsAdd, ops.EndpointAdd, ops.NetnsDel,
                                                          ops.UtsDel)}
    ex = Executor(table, describe=lambda err: err.strerror)
    plan = [ops.NetnsAdd("web"), ops.UtsAdd("/u/web", "web"), EP]
    with pytest.raises(KernelError) as err:
        ex.apply(plan)
    assert str(err.value) == ("`ip link add veth1234567 mtu 1400 type veth peer name eth0 mtu 1400 address "
                              "02:42:ac:14:00:02 netns web` failed: Operation not permitted; nothing was changed")
    assert log == [ops.NetnsAdd("web"), ops.UtsAdd("/u/web", "web"), ops.UtsDel("/u/web"), ops.NetnsDel("web")]


def test_executor_reports_a_failed_undo_and_an_unknown_step():
    log = []
    table = {ops.NetnsAdd: _recording(log), ops.UtsAdd: _recording(log, fail=ops.UtsAdd("/u", "h")),
             ops.NetnsDel: _recording(log, fail=ops.NetnsDel("web"))}
    with pytest.raises(KernelError, match=r"undo failed for `ip netns del web`: run `netkit doctor`"):
        Executor(table).apply([ops.NetnsAdd("web"), ops.UtsAdd("/u", "h")])
    with pytest.raises(KernelError, match="no handler for plan step RouteReplace"):
        Executor(table).apply([ops.RouteReplace("web", "10.0.0.1")])


def test_apply_all_tries_every_step():
    log = []
    table = {ops.LinkDel: _recording(log, fail=ops.LinkDel("a")), ops.NetnsDel: _recording(log)}
    with pytest.raises(KernelError, match="^`ip link del a` failed"):
        Executor(table).apply_all([ops.LinkDel("a"), ops.NetnsDel("web")])
    assert log == [ops.NetnsDel("web")]


def test_every_step_class_has_a_kernel_handler():
    import inspect

    from netkit.kernel import executor

    source = inspect.getsource(executor.kernel_executor)
    steps = [obj for obj in vars(ops).values() if inspect.isclass(obj) and hasattr(obj, "render")
             and obj.__module__ == ops.__name__]
    missing = [cls.__name__ for cls in steps if f"ops.{cls.__name__}:" not in source]
    assert len(steps) >= 16 and missing == []


def test_the_kernel_executor_imports_pyroute2_only_for_link_steps():
    """A publish runs rule changes only: its whole process must not pay for importing pyroute2."""
    import subprocess
    import sys

    code = ("import sys; from netkit.kernel.executor import kernel_executor; kernel_executor(); "
            "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
