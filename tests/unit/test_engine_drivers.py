"""Issue 15 phase 2, planned against a fake host: the overlay driver without a cluster store,
macvlan networks through the engine (no bridge, no rules, one sub-interface step), the firewall
rules of an overlay network's local reference row, and the names an overlay DNS serves."""
import pytest

from fakekernel import FakeKernel

from netkit import lowerdev, rules
from netkit.cluster import dnsnames
from netkit.cluster.store import Endpoint, Network as StoreNetwork, View
from netkit.engine import containers, networks
from netkit.engine.containers import ContainerRequest
from netkit.engine.networks import NetworkRequest
from netkit.errors import UserError
from netkit.model import Network


@pytest.fixture
def kernel():
    k = FakeKernel()
    # The macvlan step, recorded like the others (its kernel adapter is tested with root).
    k.executor.handlers[lowerdev.SubInterfaceAdd] = k.log.append
    return k


def test_overlay_without_a_cluster_store_is_one_line_and_changes_nothing(ctx):
    with pytest.raises(UserError, match=r"^--driver overlay needs a cluster store: set cluster_store "
                                        r"\(etcd://ADDRESS:PORT\) and cluster_advertise in "):
        networks.create(ctx, NetworkRequest("ov", subnet="10.0.9.0/24", driver="overlay"))
    assert ctx.store.networks() == []


def test_unknown_driver_names_the_four(ctx):
    with pytest.raises(UserError, match="^unknown network driver 'vlan': use one of bridge, overlay, macvlan, ipvlan$"):
        networks.create(ctx, NetworkRequest("x", driver="vlan"))


def test_macvlan_network_has_no_bridge_no_rules_and_a_sub_interface_per_container(ctx, kernel):
    with pytest.raises(UserError, match=r"^parent interface 'eth9' does not exist on this host \(-o parent=IF\)$"):
        networks.create(ctx, NetworkRequest("mv", subnet="192.168.50.0/24", driver="macvlan", options=["parent=eth9"]))
    kernel.probe.links["eth9"] = {"kind": None, "ifindex": 50, "ipv4": []}
    net = networks.create(ctx, NetworkRequest("mv", subnet="192.168.50.0/24", driver="macvlan",
                                              options=["parent=eth9"]))
    assert (net.driver, net.parent, net.driver_mode, net.bridge, net.iptables) == ("macvlan", "eth9", "bridge", "", False)
    c = containers.create(ctx, ContainerRequest("m1", net="mv"))
    [sub] = [op for op in kernel.log if isinstance(op, lowerdev.SubInterfaceAdd)]
    assert (sub.parent, sub.driver, sub.mode, sub.ip, sub.gateway, sub.netns) == \
        ("eth9", "macvlan", "bridge", "192.168.50.2", "192.168.50.1", "m1")
    assert c.endpoints[0].host_ifname == ""
    assert "eth9" not in kernel.firewall.save() and "192.168.50" not in kernel.firewall.save()
    assert networks.inspect(ctx, "mv")["driver"] == "macvlan"
    containers.remove(ctx, "m1")
    networks.remove(ctx, "mv")
    assert ctx.store.networks() == []


def test_overlay_reference_row_gets_the_bridge_rules():
    """The clash of phase 1: with FORWARD policy DROP, the overlay bridge needs netkit's accepts."""
    ov = Network(name="ov", id="x", bridge="ovbr4096", subnet="10.50.0.0/24", gateway="10.50.0.1", mtu=1450,
                 driver="overlay", vni=4096)
    fwd = rules.plan([ov], []).rules[(rules.FILTER, rules.CHAIN_FWD)]
    assert "-i ovbr4096 -o ovbr4096 -j ACCEPT" in fwd  # container to container, local or by VXLAN
    assert "-i ovbr4096 ! -o ovbr4096 -j ACCEPT" in fwd  # egress
    assert "-s 10.50.0.0/24 ! -o ovbr4096 -j MASQUERADE" in rules.plan([ov], []).rules[(rules.NAT, rules.CHAIN_POST)]


def test_overlay_names_are_every_live_container_on_the_network():
    view = View(networks={"ov": StoreNetwork("ov", 4096, "10.50.0.0/24", "10.50.0.1", 1450)},
                hosts={"h1": {}, "h2": {}})
    for net, name, host, ip, aliases in (("ov", "a", "h1", "10.50.0.2", ("web",)), ("ov", "b", "h2", "10.50.0.3", ()),
                                         ("ov", "c", "h3", "10.50.0.4", ()), ("other", "d", "h2", "10.60.0.2", ())):
        view.endpoints[(net, name)] = Endpoint(net, name, host, "198.18.1.1", ip, "02:42:00:00:00:00", aliases)
    # h3 is dead (no host key): its container is left out, as from the data plane
    # each name also as NAME.NETWORK, as Docker answers `web.ov`
    assert dnsnames.records(view, "ov", "h1") == {"a": ["10.50.0.2"], "b": ["10.50.0.3"], "web": ["10.50.0.2"],
                                                  "a.ov": ["10.50.0.2"], "b.ov": ["10.50.0.3"],
                                                  "web.ov": ["10.50.0.2"]}
    # ... except on h3 itself, which still serves its own
    assert "c" in dnsnames.records(view, "ov", "h3")


def test_records_rewrite_keeps_upstreams(tmp_path):
    path = tmp_path / "ov.json"
    assert not dnsnames.rewrite(str(path), {"a": ["10.0.0.2"]})  # no file: no DNS server here
    path.write_text('{"records":{},"upstreams":["198.18.1.2"],"clients":["10.50.0.0/24"]}')
    assert dnsnames.rewrite(str(path), {"a": ["10.0.0.2"]})
    assert path.read_text() == '{"records":{"a":["10.0.0.2"]},"upstreams":["198.18.1.2"],"clients":["10.50.0.0/24"]}'
    assert not dnsnames.rewrite(str(path), {"a": ["10.0.0.2"]})
