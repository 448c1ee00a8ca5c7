"""Security planning without root: the anti-spoofing table's text and read-back, the steps
attach/rm plan for it, doctor's findings on it, per-bridge nf_call_iptables for icc=off networks,
the loopback guard in NETKIT-INPUT (and its nftables form), --link holes on the default network
only, and the ip_forward=false warning. Real packets: tests/integration/test_security.py."""
import pytest

from fakekernel import FakeKernel

from netkit import antispoof, nftrules, ops, rules, rulespec
from netkit.engine import containers, doctor, networks, reconcile
from netkit.engine.containers import ContainerRequest
from netkit.engine.networks import NetworkRequest

NF = "/proc/sys/net/bridge/bridge-nf-call-iptables"


@pytest.fixture
def kernel():
    k = FakeKernel()
    k.probe.sysctls[NF] = "1"
    return k


def test_table_script_is_idempotent_text_and_elements_are_three():
    script = antispoof.table_script()
    assert script[0] == "add table bridge netkit"
    assert "flush chain bridge netkit prerouting" in script  # the rules are rewritten exactly
    assert script[-4:] == [f"add rule bridge netkit prerouting {r}" for r in antispoof.RULES]
    assert antispoof.element_lines("add", "veth1", "02:42:AC:14:00:02", "172.20.0.2") == [
        'add element bridge netkit guarded { "veth1" }',
        'add element bridge netkit mac_ok { "veth1" . 02:42:ac:14:00:02 }',
        'add element bridge netkit ip_ok { "veth1" . 02:42:ac:14:00:02 . 172.20.0.2 }']


def _listing(guarded, macs, ips, rules_n=4):
    def s(name, elems):
        return {"set": {"family": "bridge", "name": name, "table": "netkit", "elem": elems}}
    items = [s("guarded", guarded), s("mac_ok", [{"concat": m} for m in macs]),
             s("ip_ok", [{"concat": i} for i in ips])]
    items += [{"rule": {"chain": "prerouting", "expr": []}}] * rules_n
    return {"nftables": items}


def test_read_listing_counts_only_complete_guards():
    full = _listing(["veth1", "veth2"], [["veth1", "02:42:ac:14:00:02"]],
                    [["veth1", "02:42:ac:14:00:02", "172.20.0.2"], ["veth2", "02:42:ac:14:00:03", "172.20.0.3"]])
    guards, intact = antispoof.read_listing(full)
    assert guards == {("veth1", "02:42:ac:14:00:02", "172.20.0.2")} and intact
    assert antispoof.partial(full) == {"veth1", "veth2"}
    assert antispoof.forget_lines(full, {"veth2"}) == [
        'delete element bridge netkit guarded { "veth2" }',
        'delete element bridge netkit ip_ok { "veth2" . 02:42:ac:14:00:03 . 172.20.0.3 }']
    assert antispoof.read_listing(_listing([], [], [], rules_n=3)) == (set(), False)
    assert antispoof.read_listing(None) == (set(), False)


def test_attach_guards_the_port_and_rm_unguards_it(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    c = containers.create(ctx, ContainerRequest("web", net="app"))
    ep = c.endpoints[0]
    assert (ep.host_ifname, ep.mac, ep.ip) in kernel.probe.guards
    kinds = [type(op) for op in kernel.log]
    assert kinds.index(ops.PortGuardAdd) > kinds.index(ops.EndpointAdd)  # undone with the veth
    containers.remove(ctx, "web")
    assert kernel.probe.guards == set()


def test_a_failing_guard_undoes_the_whole_create(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    kernel.fail_on = ops.PortGuardAdd
    with pytest.raises(Exception, match="nothing was changed"):
        containers.create(ctx, ContainerRequest("web", net="app"))
    assert ctx.store.container("web") is None and "web" not in kernel.probe.netns


def test_opted_out_network_plans_no_guard(ctx, kernel):
    networks.create(ctx, NetworkRequest("open", subnet="172.21.0.0/24", anti_spoofing=False))
    containers.create(ctx, ContainerRequest("a", net="open"))
    assert not [op for op in kernel.log if isinstance(op, (ops.PortGuardAdd, ops.PortGuardTable))]
    assert networks.inspect(ctx, "open")["anti_spoofing"] is False
    containers.remove(ctx, "a")
    assert not [op for op in kernel.log if isinstance(op, ops.PortGuardDel)]


def test_default_network_takes_anti_spoofing_from_the_config(kernel, tmp_path):
    ctx = kernel.context(str(tmp_path), anti_spoofing=False)
    containers.create(ctx, ContainerRequest("a"))
    assert ctx.store.network("bridge").anti_spoofing is False and kernel.probe.guards == set()
    ctx.store.close()


def test_doctor_reports_and_fixes_guards(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    c = containers.create(ctx, ContainerRequest("web", net="app"))
    ep = c.endpoints[0]
    assert doctor.port_guards(ctx) == (["ok: anti-spoofing holds for 1 container port(s)"], 0)
    kernel.probe.guards.clear()
    kernel.probe.guards.add(("vethstale", "02:00:00:00:00:01", "172.20.0.99"))
    lines, problems = doctor.port_guards(ctx)
    assert problems == 2
    assert any(f"anti-spoofing missing for container 'web' on network 'app' (port {ep.host_ifname}" in x for x in lines)
    assert any("stale anti-spoofing elements of port vethstale" in x for x in lines)
    doctor.port_guards(ctx, fix=True)
    assert kernel.probe.guards == {(ep.host_ifname, ep.mac, ep.ip)}
    kernel.probe.guard_table = False  # chain damaged
    assert doctor.port_guards(ctx)[1] == 1
    doctor.port_guards(ctx, fix=True)
    assert doctor.port_guards(ctx)[1] == 0


def test_reset_removes_the_guard_table(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    containers.create(ctx, ContainerRequest("web", net="app"))
    reconcile.reset(ctx)
    assert not kernel.probe.guard_table and kernel.probe.guards == set()


def test_no_icc_bridge_gets_nf_call_iptables_and_doctor_checks_it(ctx, kernel):
    networks.create(ctx, NetworkRequest("quiet", subnet="172.23.0.0/24", icc=False))
    networks.create(ctx, NetworkRequest("loud", subnet="172.24.0.0/24"))
    path = ops.bridge_nf_call_path("br-quiet")
    assert kernel.probe.sysctls.get(path) == "1"
    # icc on: needed too, for hairpin (a server's reply to a sibling is bridged, conntrack un-DNATs it)
    assert kernel.probe.sysctls[ops.bridge_nf_call_path("br-loud")] == "1"
    kernel.probe.sysctls[NF] = "0"
    lines, _ = doctor.firewall(ctx)
    assert any(x.startswith("ok: bridged frames of loud, quiet go through iptables") for x in lines)
    kernel.probe.sysctls[path] = "0"
    kernel.probe.sysctls[ops.bridge_nf_call_path("br-loud")] = "0"
    lines, problems = doctor.firewall(ctx)
    assert problems == 2 and any("--no-icc on 'quiet' does not isolate" in x for x in lines)
    assert any("a container calling a port published on 'loud' through a host address gets no reply" in x
               for x in lines)
    del kernel.probe.sysctls[NF]  # br_netfilter not loaded
    lines, _ = doctor.firewall(ctx)
    assert any("br_netfilter is not loaded" in x and "modprobe br_netfilter" in x for x in lines)


def test_without_br_netfilter_hairpin_falls_back_to_masquerade(ctx, kernel):
    del kernel.probe.sysctls[NF]  # br_netfilter not loaded
    networks.create(ctx, NetworkRequest("loud", subnet="172.24.0.0/24"))
    post = reconcile.desired(ctx).rules[(rules.NAT, rules.CHAIN_POST)]
    assert "-s 172.24.0.0/24 -o br-loud -m conntrack --ctstate DNAT -j MASQUERADE" in post
    lines, problems = doctor.firewall(ctx)
    assert problems == 0 and any("hairpin masquerades every published flow into loud" in x for x in lines)
    kernel.probe.sysctls[NF] = "1"
    assert not [p for p in reconcile.desired(ctx).rules[(rules.NAT, rules.CHAIN_POST)] if "ctstate DNAT" in p]


def test_no_icc_is_refused_without_br_netfilter(ctx, kernel):
    from netkit.errors import EnvError

    del kernel.probe.sysctls[NF]
    with pytest.raises(EnvError, match=r"^--no-icc needs br_netfilter .*modprobe br_netfilter"):
        networks.create(ctx, NetworkRequest("quiet", subnet="172.23.0.0/24", icc=False))
    assert ctx.store.network("quiet") is None and "br-quiet" not in kernel.probe.links
    networks.create(ctx, NetworkRequest("loud", subnet="172.24.0.0/24"))  # icc on: no need


def test_ip_forward_false_warns_and_doctor_says_so(kernel, tmp_path):
    ctx = kernel.context(str(tmp_path), ip_forward=False)
    kernel.probe.sysctls["/proc/sys/net/ipv4/ip_forward"] = "0"
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    c = containers.create(ctx, ContainerRequest("web", net="app"))
    assert containers.forwarding_warning(ctx, c) == "WARNING: IPv4 forwarding is disabled. Networking will not work."
    lines, problems = doctor.firewall(ctx)
    assert problems and any('"ip_forward": false' in x for x in lines)
    networks.create(ctx, NetworkRequest("int", subnet="172.25.0.0/24", internal=True))
    assert containers.forwarding_warning(ctx, containers.create(ctx, ContainerRequest("i", net="int"))) is None
    ctx.store.close()


def test_loopback_guard_rules_and_their_nft_form():
    rs = rules.plan([], [])
    assert rs.rules[("filter", rules.CHAIN_INPUT)] == [
        "-d 127.0.0.0/8 ! -i lo -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-d 127.0.0.0/8 ! -i lo -j DROP"]
    assert ("filter", "INPUT", "-j NETKIT-INPUT") in rs.hooks
    bodies = [nftrules.statement(rulespec.parse(s)) for s in rs.rules[("filter", rules.CHAIN_INPUT)]]
    assert bodies == ['ip daddr 127.0.0.0/8 iifname != "lo" ct state related,established return',
                      'ip daddr 127.0.0.0/8 iifname != "lo" drop']
    assert nftrules.BASE_CHAINS[("filter", "INPUT")] == ("filter-INPUT", "filter", "input", 0)
