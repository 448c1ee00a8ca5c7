"""Every use case planned and applied against a fake host (tests/unit/fakekernel.py): no root, no
sandbox. What is checked is what a use case decides: the steps it plans, the state it saves, the
rules and host settings the reconciler makes, and what it refuses."""
import pytest

from netkit.state import Store


from netkit import ops, rules
from netkit.engine import containers, doctor, networks, ports, reconcile
from netkit.engine.containers import ContainerRequest
from netkit.engine.networks import NetworkRequest
from netkit.errors import Conflict, KernelError, NotFound, UserError

FORWARD = "/proc/sys/net/ipv4/ip_forward"


def steps(kernel, cls):
    return [op for op in kernel.log if isinstance(op, cls)]


def app(ctx, **kw):
    return networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24", **kw))


# ---- networks -------------------------------------------------------------------------------

def test_network_create_plans_bridge_and_turns_forwarding_on(ctx, kernel):
    net = app(ctx)
    [bridge] = steps(kernel, ops.BridgeAdd)
    assert (bridge.name, bridge.address, bridge.mtu) == ("br-app", "172.20.0.1/24", 1500)
    assert bridge.mac.startswith("02:42:")
    assert ctx.store.network("app") == net
    assert kernel.probe.sysctls[FORWARD] == "1"
    assert kernel.firewall.policies["filter"]["FORWARD"] == "DROP"
    assert kernel.probe.sysctls["/proc/sys/net/ipv4/conf/br-app/route_localnet"] == "1"
    meta = ctx.store.meta(reconcile.META)
    assert meta["ip_forward_was"] == "0" and meta["forward_policy_was"] == "ACCEPT" and meta["active"]


def test_network_create_refuses_existing_interface_and_overlap(ctx, kernel):
    kernel.probe.links["br-app"] = {"kind": "bridge", "ifindex": 99, "ipv4": []}
    with pytest.raises(Conflict, match="already exists; adopt it with --bridge br-app"):
        app(ctx)
    networks.create(ctx, NetworkRequest("other", subnet="172.20.0.0/16"))
    with pytest.raises(Conflict, match="overlaps 172.20.0.0/16 of network 'other'"):
        networks.create(ctx, NetworkRequest("third", subnet="172.20.5.0/24"))
    assert [n.name for n in ctx.store.networks()] == ["other"]


def test_network_adopts_bridge_and_its_address(ctx, kernel):
    kernel.probe.links["br0"] = {"kind": "bridge", "ifindex": 99, "ipv4": ["10.9.0.1/24"]}
    net = networks.create(ctx, NetworkRequest("lan", bridge="br0"))
    assert (net.subnet, net.gateway, net.adopted, net.address_added) == ("10.9.0.0/24", "10.9.0.1", True, False)
    assert not steps(kernel, ops.BridgeAdd) and not steps(kernel, ops.AddrAdd)
    kernel.probe.links["eth9"] = {"kind": None, "ifindex": 98, "ipv4": []}
    with pytest.raises(UserError, match="is a plain interface, not a bridge"):
        networks.create(ctx, NetworkRequest("bad", bridge="eth9"))


def test_network_without_subnet_avoids_host_routes(ctx, kernel):
    from ipaddress import ip_network

    kernel.probe.routes = [ip_network("172.17.0.0/16")]
    net = networks.create(ctx, NetworkRequest("auto"))
    # 172.18 is the first free pool: kept for the default network, made later (Docker's docker0 holds it).
    assert net.subnet == "172.19.0.0/16"
    assert networks.get(ctx, "bridge").subnet == "172.18.0.0/16"


def test_network_rm(ctx, kernel):
    app(ctx)
    containers.create(ctx, ContainerRequest("web", net="app"))
    with pytest.raises(Conflict, match="still has containers: web"):
        networks.remove(ctx, "app")
    containers.remove(ctx, "web")
    networks.remove(ctx, "app")
    assert steps(kernel, ops.BridgeDel) == [ops.BridgeDel("br-app")]
    assert "br-app" not in kernel.firewall.save()
    with pytest.raises(NotFound, match="network 'app' not found"):
        networks.remove(ctx, "app")


# ---- containers -----------------------------------------------------------------------------

def test_bridge_mode_create(ctx, kernel):
    app(ctx)
    kernel.log.clear()
    c = containers.create(ctx, ContainerRequest("web", net="app"))
    assert [type(op) for op in kernel.log[:4]] == [ops.NetnsAdd, ops.UtsAdd, ops.EndpointAdd, ops.HairpinOn]
    ep = c.endpoints[0]
    assert (ep.ifname, ep.ip, ep.gateway, ep.mac) == ("eth0", "172.20.0.2", "172.20.0.1", "02:42:ac:14:00:02")
    assert steps(kernel, ops.EndpointAdd)[0].gateway == "172.20.0.1"
    assert kernel.probe.hairpin[ep.host_ifname]
    assert ctx.store.addresses("app") == {"172.20.0.2": "web"}
    assert "-A NETKIT-RAW -d 172.20.0.2/32 ! -i br-app -j DROP" in kernel.firewall.save()
    # the fast path: one container's rules, without reading the whole rule set back
    change = steps(kernel, ops.FirewallChange)[-1]
    assert change == ops.FirewallChange((rules.Op("raw", "A", "NETKIT-RAW", "-d 172.20.0.2/32 ! -i br-app -j DROP"),),
                                        thorough=False)


def test_default_network_is_made_on_first_use(ctx, kernel):
    c = containers.create(ctx, ContainerRequest("web"))
    assert c.endpoints[0].network == "bridge" and ctx.store.network("bridge").bridge == "netkit0"
    assert steps(kernel, ops.BridgeAdd)[0].name == "netkit0"


def test_host_none_and_container_modes(ctx, kernel):
    app(ctx)
    host = containers.create(ctx, ContainerRequest("h", net="host"))
    assert host.netns is None and not host.endpoints
    none = containers.create(ctx, ContainerRequest("n", net="none"))
    assert none.netns == "/run/netns/n" and not none.endpoints and "n" in kernel.probe.netns
    web = containers.create(ctx, ContainerRequest("web", net="app"))
    kernel.log.clear()
    side = containers.create(ctx, ContainerRequest("side", net="container:web"))
    assert (side.shares, side.netns, side.uts) == ("web", web.netns, web.uts)
    assert not [op for op in kernel.log if not isinstance(op, (ops.HairpinOn, ops.FirewallChange))]
    with pytest.raises(Conflict, match="shares its network namespace with side"):
        containers.remove(ctx, "web")
    with pytest.raises(UserError, match="--ip and --mac need a bridge network"):
        containers.create(ctx, ContainerRequest("x", net="none", ip="172.20.0.9"))


def test_create_refuses_duplicates_and_static_ip_clash(ctx, kernel):
    app(ctx)
    containers.create(ctx, ContainerRequest("a", net="app", ip="172.20.0.10"))
    with pytest.raises(Conflict, match="already in use by container 'a'"):
        containers.create(ctx, ContainerRequest("b", net="app", ip="172.20.0.10"))
    with pytest.raises(Conflict, match="container 'a' already exists"):
        containers.create(ctx, ContainerRequest("a", net="app"))
    kernel.probe.netns.add("taken")
    with pytest.raises(Conflict, match="network namespace named 'taken' already exists"):
        containers.create(ctx, ContainerRequest("taken", net="app"))
    assert [c.name for c in ctx.store.containers()] == ["a"]


def test_failed_step_undoes_the_plan_and_saves_nothing(ctx, kernel):
    app(ctx)
    kernel.fail_on = ops.EndpointAdd
    with pytest.raises(KernelError, match=r"^`ip link add veth\w+ mtu 1500 type veth .*` failed: .*nothing was changed"):
        containers.create(ctx, ContainerRequest("web", net="app"))
    assert "web" not in kernel.probe.netns and ctx.store.container("web") is None
    assert [type(op) for op in kernel.log[-4:]] == [ops.NetnsAdd, ops.UtsAdd, ops.UtsDel, ops.NetnsDel]


def test_container_rm_runs_deletions_after_the_commit(ctx, kernel):
    app(ctx)
    c = containers.create(ctx, ContainerRequest("web", net="app", publish=["8080:80"]))
    kernel.log.clear()
    containers.remove(ctx, "web")
    host_if = c.endpoints[0].host_ifname
    assert [type(op) for op in kernel.log] == [ops.FirewallChange, ops.ConntrackForget, ops.LinkDel,
                                               ops.PortGuardDel, ops.NetnsDel, ops.UtsDel]
    assert kernel.log[1] == ops.ConntrackForget("tcp", 8080, "172.20.0.2", 80)
    assert host_if not in kernel.probe.links and "web" not in kernel.probe.netns
    assert "172.20.0.2" not in kernel.firewall.save() and ctx.store.published("tcp") == []


def test_connect_and_disconnect_move_the_default_route(ctx, kernel):
    app(ctx)
    networks.create(ctx, NetworkRequest("db", subnet="172.21.0.0/24"))
    containers.create(ctx, ContainerRequest("web", net="app"))
    ep = containers.connect(ctx, "db", "web", aliases=["store"])
    assert (ep.ifname, ep.ip, ep.aliases) == ("eth1", "172.21.0.2", ["store"])
    assert steps(kernel, ops.EndpointAdd)[-1].gateway is None  # the first network keeps the route
    with pytest.raises(Conflict, match="already connected to network 'db'"):
        containers.connect(ctx, "db", "web")
    kernel.log.clear()
    containers.disconnect(ctx, "app", "web")
    assert ops.RouteReplace("web", "172.21.0.1") in kernel.log
    assert kernel.probe.gateways["web"] == "172.21.0.1"
    assert [e.network for e in ctx.store.container("web").endpoints] == ["db"]
    with pytest.raises(UserError, match="is not connected to network 'app'"):
        containers.disconnect(ctx, "app", "web")


# ---- ports ----------------------------------------------------------------------------------

def test_publish_and_unpublish(ctx, kernel):
    app(ctx)
    containers.create(ctx, ContainerRequest("web", net="app"))
    [m] = ports.publish(ctx, "127.0.0.1:8088:80", "web")
    assert (m.host_ip, m.host_port, m.container_port) == ("127.0.0.1", 8088, 80)
    saved = kernel.firewall.save()
    assert "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in saved
    assert "-A NETKIT-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8088 -j DROP" in saved
    assert ports.port_lines(ctx, "web") == ["80/tcp -> 127.0.0.1:8088"]
    kernel.log.clear()
    assert ports.unpublish(ctx, "80", "web") == [m]
    assert ops.ConntrackForget("tcp", 8088, "172.20.0.2", 80) in kernel.log
    assert "8088" not in kernel.firewall.save()
    with pytest.raises(UserError, match="has no published port matching '80'"):
        ports.unpublish(ctx, "80", "web")


def test_publish_conflicts(ctx, kernel):
    app(ctx)
    containers.create(ctx, ContainerRequest("a", net="app", publish=["8080:80"]))
    containers.create(ctx, ContainerRequest("b", net="app"))
    with pytest.raises(Conflict, match="already published by container 'a'"):
        ports.publish(ctx, "127.0.0.1:8080:80", "b")  # 0.0.0.0 covers every address
    ports.publish(ctx, "8080:80/udp", "b")  # another protocol is another port
    kernel.probe.busy.add(("tcp", "0.0.0.0", 9000))
    with pytest.raises(Conflict, match="is in use by a program on the host"):
        ports.publish(ctx, "9000:80", "b")
    with pytest.raises(Conflict, match="given twice in this command"):
        containers.create(ctx, ContainerRequest("c", net="app", publish=["7000:80", "7000:81"]))
    with pytest.raises(UserError, match="10.1.2.3 is not an address of this host"):
        ports.publish(ctx, "10.1.2.3:7001:80", "b")
    host = containers.create(ctx, ContainerRequest("h", net="host"))
    with pytest.raises(UserError, match="uses the host's network"):
        ports.publish(ctx, "7002:80", host.name)


def test_ephemeral_ports_come_from_the_probe_and_skip_busy_ones(ctx, kernel):
    app(ctx)
    kernel.probe.ephemeral = (40000, 40002)
    kernel.probe.busy.add(("tcp", "0.0.0.0", 40000))
    containers.create(ctx, ContainerRequest("web", net="app", publish=["80", "81"]))
    assert ports.port_lines(ctx, "web") == ["80/tcp -> 0.0.0.0:40001", "81/tcp -> 0.0.0.0:40002"]
    with pytest.raises(Conflict, match="no free host port for 82/tcp in 40000-40002"):
        ports.publish(ctx, "82", "web")


def test_publish_all_and_expose(ctx, kernel):
    app(ctx)
    kernel.probe.ephemeral = (41000, 41010)
    c = containers.create(ctx, ContainerRequest("web", net="app", expose=["5000-5001/udp"], publish_all=True,
                                                publish=["8080:80"]))
    assert c.exposed == ["5000-5001/udp", "80/tcp"]
    assert sorted(ports.port_lines(ctx, "web")) == ["5000/udp -> 0.0.0.0:41000", "5001/udp -> 0.0.0.0:41001",
                                                    "80/tcp -> 0.0.0.0:8080"]


# ---- attach ---------------------------------------------------------------------------------

def test_attach_checks_what_it_is_given(ctx, kernel):
    app(ctx)
    with pytest.raises(NotFound, match="no process with PID 4242"):
        containers.attach(ctx, "app", pid=4242)
    kernel.probe.files["/tmp/plain"] = "file"
    with pytest.raises(UserError, match="^/tmp/plain is not a network namespace"):
        containers.attach(ctx, "app", netns_path="/tmp/plain")
    kernel.probe.files["/proc/1/ns/net"] = "host-netns"
    kernel.probe.processes.add(1)
    with pytest.raises(UserError, match="process 1 is in the host's network namespace"):
        containers.attach(ctx, "app", pid=1)
    with pytest.raises(UserError, match="exactly one of --pid PID or --netns PATH"):
        containers.attach(ctx, "app")
    assert ctx.store.containers() == []


def test_attach_wires_a_foreign_netns(ctx, kernel):
    app(ctx)
    kernel.probe.processes.add(777)
    kernel.log.clear()
    c = containers.attach(ctx, "app", pid=777, ip="172.20.0.50")
    assert c.name == "pid777" and c.external and c.endpoints[0].ip == "172.20.0.50"
    assert kernel.log[0] == ops.NetnsAttach("pid777", "/proc/777/ns/net", 777)
    assert kernel.probe.netns_links["pid777"]["eth0"]["ipv4"] == ["172.20.0.50/24"]
    kernel.probe.files["/var/run/foreign"] = "netns"
    c = containers.attach(ctx, "app", netns_path="/var/run/foreign")
    assert c.name == "foreign" and ops.NetnsAttach("foreign", "/var/run/foreign", None) in kernel.log


def test_attach_with_a_handover_leaves_the_peer_on_the_host_and_names_the_netns_later(ctx, kernel):
    # Docker's remote driver: the runtime moves the veth's container end in itself.
    app(ctx)
    kernel.log.clear()
    sandbox = "/var/run/docker/netns/0123abcd"  # docker run: not made yet at Join
    c = containers.attach(ctx, "app", netns_path=sandbox, name="rt-a", ip="172.20.0.9", handover="nkabc")
    assert c.external and c.netns == "/run/netns/rt-a" and c.endpoints[0].ip == "172.20.0.9"
    (add,) = [op for op in kernel.log if isinstance(op, ops.EndpointAdd)]
    assert add.handover == "nkabc" and not any(isinstance(op, (ops.NetnsAdd, ops.NetnsAttach)) for op in kernel.log)
    assert kernel.probe.links["nkabc"]["address"] == c.endpoints[0].mac and "rt-a" not in kernel.probe.netns
    assert kernel.probe.links[c.endpoints[0].host_ifname]["master_name"] == "br-app"
    assert containers.pin_runtime_netns(ctx, "rt-a", sandbox) is False  # still no netns there
    kernel.probe.files[sandbox] = "netns"
    assert containers.pin_runtime_netns(ctx, "rt-a", sandbox) is True
    assert kernel.log[-1] == ops.NetnsAttach("rt-a", sandbox) and "rt-a" in kernel.probe.netns
    assert containers.pin_runtime_netns(ctx, "rt-a", sandbox) is False  # named already
    containers.remove(ctx, "rt-a")
    assert "nkabc" not in kernel.probe.links and "rt-a" not in kernel.probe.netns
    assert containers.pin_runtime_netns(ctx, "rt-a", sandbox) is False  # gone: nothing to name
    # The runtime is told (the hook) once the change committed: the port made and guarded by its
    # rules, the state holding it; the derived steps (names) go on while it works on its end.
    seen = []

    def ready(c, ep, gateway):
        committed = Store(ctx.store.directory).container(c.name)  # another reader sees it
        seen.append((c.name, gateway, committed is not None, [type(op) for op in kernel.log[start:]]))
    ctx.on_handover_ready = ready
    start = len(kernel.log)
    containers.attach(ctx, "app", netns_path=sandbox, name="rt-z", ip="172.20.0.10", handover="nkzzz")
    ((name, gateway, committed, before),) = seen
    assert (name, gateway, committed) == ("rt-z", "172.20.0.1", True)
    assert before.index(ops.EndpointAdd) < before.index(ops.PortGuardAdd) < before.index(ops.FirewallChange)
    assert ctx.store.container("rt-z") and ctx.on_handover_ready is None
    containers.remove(ctx, "rt-z")
    # Network connect: the netns exists, named at once; a failing step leaves nothing behind.
    kernel.fail_on = ops.HairpinOn
    with pytest.raises(KernelError, match="injected failure"):
        containers.attach(ctx, "app", netns_path=sandbox, name="rt-b", handover="nkdef")
    assert "nkdef" not in kernel.probe.links and "rt-b" not in kernel.probe.netns and ctx.store.container("rt-b") is None
    kernel.fail_on = None
    containers.attach(ctx, "app", netns_path=sandbox, name="rt-b", handover="nkdef")
    assert ops.NetnsAttach("rt-b", sandbox, None) in kernel.log and "nkdef" in kernel.probe.links
    with pytest.raises(UserError, match="hand-over interface name"):
        containers.attach(ctx, "app", netns_path=sandbox, name="rt-c", handover="x" * 16)


# ---- dry run, reconcile, doctor -------------------------------------------------------------

def test_dry_run_prints_and_changes_nothing(kernel, tmp_path):
    real = kernel.context(str(tmp_path))
    app(real)
    before = (kernel.firewall.save(), dict(kernel.probe.links), set(kernel.probe.netns), len(kernel.log))
    dry = kernel.context(str(tmp_path), dry_run=True)
    containers.create(dry, ContainerRequest("web", net="app", publish=["127.0.0.1:8088:80"]))
    assert "ip netns add web" in dry.printed and "ip -n web route add default via 172.20.0.1" in dry.printed
    assert "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in dry.printed
    assert any(line.startswith("bridge link set dev veth") for line in dry.printed)
    assert (kernel.firewall.save(), dict(kernel.probe.links), set(kernel.probe.netns), len(kernel.log)) == before
    assert dry.store.container("web") is None
    dry2 = kernel.context(str(tmp_path), dry_run=True)
    networks.create(dry2, NetworkRequest("more", subnet="172.22.0.0/24"))
    assert "sysctl -qw net.ipv4.conf.br-more.route_localnet=1" in dry2.printed
    assert "-A NETKIT-ISOLATION-2 -o br-more -j DROP" in "\n".join(dry2.printed)


def test_failure_after_rules_restores_policy_forwarding_and_state(ctx, kernel):
    kernel.fail_on = ops.HairpinOn
    with pytest.raises(KernelError, match="injected failure"):
        app(ctx)
    assert kernel.firewall.save() == ""  # every chain and hook gone again
    assert kernel.firewall.policies["filter"]["FORWARD"] == "ACCEPT"
    assert kernel.probe.sysctls[FORWARD] == "0"
    assert "br-app" not in kernel.probe.links and ctx.store.network("app") is None
    kernel.fail_on = None
    app(ctx)  # and a retry works
    assert kernel.firewall.policies["filter"]["FORWARD"] == "DROP"


def test_full_sync_repairs_drift_and_reset_restores(ctx, kernel):
    app(ctx)
    containers.create(ctx, ContainerRequest("web", net="app", publish=["8080:80"]))
    good = kernel.firewall.save()
    kernel.firewall.tables["filter"]["NETKIT-FORWARD"].reverse()  # someone moved rules around
    kernel.firewall.tables["nat"]["NETKIT"].clear()
    lines, problems = doctor.firewall(ctx)
    assert problems and any(line.startswith("missing rule (nat): -A NETKIT -p tcp") for line in lines)
    doctor.firewall(ctx, fix=True)
    assert kernel.firewall.save() == good
    assert doctor.firewall(ctx)[1] == 0
    done = reconcile.reset(ctx)
    assert done[0] == "removed 8 netkit chain(s) and their hooks, and the anti-spoofing table"
    assert kernel.firewall.save() == "" and kernel.firewall.policies["filter"]["FORWARD"] == "ACCEPT"
    assert kernel.probe.sysctls[FORWARD] == "0"
    assert kernel.probe.sysctls["/proc/sys/net/ipv4/conf/br-app/route_localnet"] == "0"


def test_networks_are_isolated_from_bridges_not_netkits_through_their_own_table(ctx, kernel):
    # netkit/xisolation.py: the set follows netkit's networks; a lost table comes back; reset drops it.
    app(ctx)
    assert kernel.probe.cross_isolation_set == ("br-app",)
    networks.create(ctx, NetworkRequest("other", subnet="172.21.0.0/24"))
    assert kernel.probe.cross_isolation_set == ("br-app", "br-other")
    networks.remove(ctx, "other")
    assert kernel.probe.cross_isolation_set == ("br-app",)
    kernel.probe.cross_isolation_set = None  # someone's `nft flush ruleset`
    assert doctor.firewall(ctx)[1]
    doctor.firewall(ctx, fix=True)
    assert kernel.probe.cross_isolation_set == ("br-app",)
    reconcile.reset(ctx)
    assert kernel.probe.cross_isolation_set is None


def test_doctor_checks_endpoints_as_deep_as_cni_check(ctx, kernel):
    app(ctx)
    networks.create(ctx, NetworkRequest("other", subnet="172.21.0.0/24"))
    c = containers.create(ctx, ContainerRequest("web", net="app"))
    assert doctor.kernel_objects(ctx) == (["ok: every bridge, netns and veth in the state exists, and no stray one"], 0)
    host_if = c.endpoints[0].host_ifname
    probe = kernel.probe
    probe.links[host_if]["master"] = probe.links["br-other"]["ifindex"]
    probe.netns_links["web"]["eth0"]["address"] = "02:42:00:00:00:99"
    probe.netns_links["web"]["eth0"]["ipv4"] = []
    del probe.gateways["web"]
    lines, problems = doctor.kernel_objects(ctx)
    assert problems == 4
    assert f"problem: veth '{host_if}' of container 'web' on network 'app' is not a port of bridge 'br-app'" in lines[0]
    assert "lacks its address 172.20.0.2/24" in lines[1] and "has MAC 02:42:00:00:00:99" in lines[2]
    assert "no default route via 172.20.0.1" in lines[3]
    probe.netns_links["web"]["eth0"]["iflink"] = 12345
    assert any("is not peered with its 'eth0'" in line for line in doctor.kernel_objects(ctx)[0])


def test_doctor_finds_and_removes_strays(ctx, kernel):
    app(ctx)
    kernel.probe.links["vethdead001"] = {"kind": "veth", "ifindex": 77, "master": kernel.probe.links["br-app"]["ifindex"]}
    kernel.probe.files[f"{ctx.run_dir}/uts/ghost"] = "uts"
    kernel.probe.netns.add("ghost")
    lines, problems = doctor.kernel_objects(ctx)
    assert problems == 3 and "problem: stray veth vethdead001 on br-app is not in netkit's state" in lines[2]
    doctor.kernel_objects(ctx, fix=True)
    assert "vethdead001" not in kernel.probe.links and "ghost" not in kernel.probe.netns
    assert doctor.kernel_objects(ctx)[1] == 0


def test_iptables_false_writes_no_rules(kernel, tmp_path):
    ctx = kernel.context(str(tmp_path), iptables=False)
    app(ctx)
    containers.create(ctx, ContainerRequest("web", net="app"))
    assert kernel.firewall.save() == "" and kernel.probe.sysctls[FORWARD] == "0"
    with pytest.raises(UserError, match='"iptables": false'):
        ports.publish(ctx, "8080:80", "web")
