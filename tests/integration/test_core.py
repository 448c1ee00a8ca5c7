"""Issue 3: networks and containers in Docker's four modes, with real kernel objects and packets."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nettools import foreign_netns_process, send_echo, snapshot, start_echo

pytestmark = pytest.mark.root


def link(sandbox, ifname: str, netns: str | None = None) -> dict:
    prefix = f"ip -n {netns} " if netns else "ip "
    return json.loads(sandbox.sh(f"{prefix}-j -d link show {ifname}").stdout)[0]


def test_two_containers_talk_both_ways_and_host_reaches_them(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "app")
    # A whole create imports no pyroute2 (its veth goes over raw netlink: ~85 ms less to start).
    made = subprocess.run([sys.executable, "-X", "importtime", "-m", "netkit", "container", "create", "b", "--net", "app"],
                          capture_output=True, text=True, env={**os.environ, "NETKIT_DAEMON": "0"})
    assert made.returncode == 0 and "pyroute2" not in made.stderr, made.stderr[-2000:]
    a, b = sandbox.inspect("container", "a"), sandbox.inspect("container", "b")
    ip_a, ip_b = a["endpoints"][0]["ip"], b["endpoints"][0]["ip"]
    assert (ip_a, ip_b) == ("172.20.0.2", "172.20.0.3")

    start_echo(sandbox, "a", "tcp", "0.0.0.0", 7000)
    start_echo(sandbox, "b", "tcp", "0.0.0.0", 7000)
    assert send_echo(sandbox, "b", "tcp", ip_a, 7000, "b2a").stdout.strip() == f"echo:b2a from:{ip_b}"
    assert send_echo(sandbox, "a", "tcp", ip_b, 7000, "a2b").stdout.strip() == f"echo:a2b from:{ip_a}"
    # The host reaches each container through the bridge, whose address is the gateway.
    assert send_echo(sandbox, None, "tcp", ip_a, 7000, "host").stdout.strip() == "echo:host from:172.20.0.1"
    route = sandbox.netkit("exec", "a", "--", "ip", "route").stdout
    assert "default via 172.20.0.1 dev eth0" in route

    sandbox.netkit("network", "create", "other")
    sandbox.netkit("container", "create", "c", "--net", "other")
    other = sandbox.inspect("network", "other")
    c = sandbox.inspect("container", "c")
    # 172.17.0.0/16 stays free for the default network (made later), as Docker's docker0 holds it.
    assert other["subnet"] == "172.18.0.0/16" and c["endpoints"][0]["ip"] == "172.18.0.2"
    assert other["bridge"] == "br-other"


def test_default_network_is_made_on_first_use(sandbox):
    sandbox.netkit("container", "create", "web")
    net = sandbox.inspect("network", "bridge")
    assert net["bridge"] == "netkit0" and net["subnet"] == "172.17.0.0/16" and net["default"]
    assert sandbox.inspect("container", "web")["endpoints"][0]["ip"] == "172.17.0.2"
    info = link(sandbox, "eth0", "web")
    assert info["mtu"] == 1500 and info["address"] == "02:42:ac:11:00:02"
    # IPv6 is off inside the netns and on the host side, so no DAD/MLD floods the bridge.
    assert sandbox.ns("web", "sysctl -n net.ipv6.conf.eth0.disable_ipv6").stdout.strip() == "1"
    host_if = sandbox.inspect("container", "web")["endpoints"][0]["host_interface"]
    assert sandbox.sh(f"sysctl -n net.ipv6.conf.{host_if}.disable_ipv6").stdout.strip() == "1"


def test_none_mode_has_only_lo(sandbox):
    sandbox.netkit("container", "create", "iso", "--net", "none")
    links = json.loads(sandbox.ns("iso", "ip -j link").stdout)
    assert [l["ifname"] for l in links] == ["lo"] and "UP" in links[0]["flags"]
    assert sandbox.inspect("container", "iso")["endpoints"] == []


def test_container_mode_shares_netns_and_lo(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.netkit("container", "create", "b", "--net", "container:a")
    start_echo(sandbox, "a", "tcp", "127.0.0.1", 7001)
    assert send_echo(sandbox, "b", "tcp", "127.0.0.1", 7001, "pod").stdout.strip() == "echo:pod from:127.0.0.1"
    b = sandbox.inspect("container", "b")
    assert b["mode"] == "container" and b["shares"] == "a" and b["endpoints"] == []
    assert b["netns"] == "/run/netns/a"
    # Removing the owner while a sharer exists is refused; after the sharer goes it works.
    r = sandbox.netkit("container", "rm", "a", check=False)
    assert r.returncode == 2 and "shares its network namespace with b" in r.stderr
    sandbox.netkit("container", "rm", "b")
    # a's echo server still runs inside: plain rm refuses, as `docker rm` of a running container does.
    r = sandbox.netkit("container", "rm", "a", check=False)
    assert r.returncode == 2 and "has processes running inside" in r.stderr
    sandbox.netkit("container", "rm", "-f", "a")


def test_host_mode_sees_the_hosts_interfaces(sandbox):
    sandbox.netkit("container", "create", "h", "--net", "host")
    out = sandbox.netkit("exec", "h", "--", "ip", "-br", "addr").stdout
    assert "uplink" in out and "198.18.0.1/24" in out
    assert sandbox.inspect("container", "h")["netns"] is None


def test_exec_passes_exit_code_and_hostname(sandbox):
    sandbox.netkit("container", "create", "web", "--hostname", "web1")
    assert sandbox.netkit("exec", "web", "--", "hostname").stdout.strip() == "web1"
    r = sandbox.netkit("exec", "web", "--", "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7
    assert sandbox.sh("hostname").stdout.strip() != "web1"


def test_connect_and_disconnect_second_network(sandbox):
    sandbox.netkit("network", "create", "front", "--subnet", "10.10.0.0/24")
    sandbox.netkit("network", "create", "back", "--subnet", "10.20.0.0/24", "--ip-range", "10.20.0.128/25")
    sandbox.netkit("container", "create", "app", "--net", "front")
    sandbox.netkit("network", "connect", "back", "app")
    addrs = json.loads(sandbox.ns("app", "ip -j -4 addr show eth1").stdout)
    assert addrs[0]["addr_info"][0]["local"] == "10.20.0.128"
    assert sandbox.inspect("network", "back")["containers"]["app"]["interface"] == "eth1"
    sandbox.netkit("network", "disconnect", "back", "app")
    assert "eth1" not in sandbox.ns("app", "ip -br link").stdout
    assert sandbox.inspect("network", "back")["containers"] == {}
    assert [e["network"] for e in sandbox.inspect("container", "app")["endpoints"]] == ["front"]


def test_host_interface_is_the_peer_of_eth0(sandbox):
    sandbox.netkit("container", "create", "web")
    ep = sandbox.inspect("container", "web")["endpoints"][0]
    inner, outer = link(sandbox, "eth0", "web"), link(sandbox, ep["host_interface"])
    assert inner["link_index"] == outer["ifindex"] and outer["link_index"] == inner["ifindex"]
    assert outer["master"] == "netkit0"
    assert inner["address"] == ep["mac"]


def test_attach_pid_wires_a_foreign_netns(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 7002)
    proc = foreign_netns_process(sandbox)
    out = sandbox.netkit("attach", "--pid", proc.pid, "--network", "app", "--name", "runtime1").stdout
    assert "runtime1 eth0 172.20.0.3/24" in out
    reply = sandbox.sh(f"nsenter -t {proc.pid} -n {sys.executable} {os.path.dirname(__file__)}/echo.py "
                       f"send tcp 172.20.0.2 7002 fromproc").stdout
    assert reply.strip() == "echo:fromproc from:172.20.0.3"
    # Removing the attachment unwires it but never kills the runtime's netns or process.
    sandbox.netkit("container", "rm", "runtime1")
    assert proc.poll() is None
    assert "eth0" not in sandbox.sh(f"nsenter -t {proc.pid} -n ip -br link").stdout


def test_rm_removes_everything(sandbox):
    before = snapshot(sandbox)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "--hostname", "web")
    host_if = sandbox.inspect("container", "web")["endpoints"][0]["host_interface"]
    assert host_if in sandbox.sh("ip -br link").stdout
    sandbox.netkit("container", "rm", "web")
    assert host_if not in sandbox.sh("ip -br link").stdout
    assert "web" not in os.listdir("/run/netns")
    assert sandbox.inspect("network", "app")["containers"] == {}
    # The address went back to the pool.
    sandbox.netkit("container", "create", "web2", "--net", "app")
    assert sandbox.inspect("container", "web2")["endpoints"][0]["ip"] == "172.20.0.2"
    sandbox.netkit("container", "rm", "web2")
    sandbox.netkit("network", "rm", "app")
    assert "br-app" not in sandbox.sh("ip -br link").stdout
    after = snapshot(sandbox)
    assert "br-app" not in after["iptables"] and "172.20." not in after["iptables"]
    # netkit's (now empty) chains and ip_forward stay until `netkit reset`, as Docker's do.
    sandbox.netkit("reset")
    after = snapshot(sandbox)
    assert "NETKIT" not in after.pop("iptables") and not before.pop("iptables").strip()
    assert after == before


def test_concurrent_creates_get_distinct_addresses(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    procs = [subprocess.Popen([sys.executable, "-m", "netkit", "container", "create", f"c{i}", "--net", "app"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(10)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ips = [sandbox.inspect("container", f"c{i}")["endpoints"][0]["ip"] for i in range(10)]
    assert len(set(ips)) == 10
    kernel = sandbox.sh("for n in $(seq 0 9); do ip -n c$n -4 -br addr show eth0; done").stdout
    assert sorted(l.split()[2].split("/")[0] for l in kernel.splitlines()) == sorted(ips)


def test_config_file_sets_the_default_network(sandbox):
    sandbox.sh("ip link add bridge0 type bridge")
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        json.dump({"bridge": "bridge0", "bip": "10.99.0.1/24", "mtu": 1400}, fh)
    cfg = json.loads(sandbox.netkit("config", "show", "--json").stdout)
    assert cfg["bridge"] == "bridge0" and cfg["bip"] == "10.99.0.1/24" and cfg["mtu"] == 1400
    sandbox.netkit("container", "create", "web")
    net = sandbox.inspect("network", "bridge")
    assert (net["bridge"], net["subnet"], net["gateway"], net["mtu"]) == ("bridge0", "10.99.0.0/24", "10.99.0.1", 1400)
    assert link(sandbox, "eth0", "web")["mtu"] == 1400
    assert "10.99.0.1/24" in sandbox.sh("ip -br addr show bridge0").stdout
    sandbox.netkit("container", "rm", "web")
    sandbox.netkit("network", "rm", "bridge")
    assert "bridge0" in sandbox.sh("ip -br link").stdout  # adopted: never deleted


def test_adopted_bridge_survives_network_rm(sandbox):
    sandbox.sh("ip link add br-manual type bridge && ip addr add 172.30.0.1/24 dev br-manual")
    sandbox.netkit("network", "create", "manual", "--bridge", "br-manual")
    net = sandbox.inspect("network", "manual")
    assert net["subnet"] == "172.30.0.0/24" and net["adopted_bridge"]
    sandbox.netkit("container", "create", "x", "--net", "manual")
    sandbox.netkit("container", "rm", "x")
    sandbox.netkit("network", "rm", "manual")
    assert "172.30.0.1/24" in sandbox.sh("ip -br addr show br-manual").stdout  # the user's address stays
    # A bare bridge gets the gateway address from netkit, and loses it again on rm.
    sandbox.sh("ip link add br-bare type bridge")
    sandbox.netkit("network", "create", "bare", "--bridge", "br-bare", "--subnet", "172.31.0.0/24")
    assert "172.31.0.1/24" in sandbox.sh("ip -br addr show br-bare").stdout
    sandbox.netkit("network", "rm", "bare")
    assert "172.31.0.1" not in sandbox.sh("ip -br addr show br-bare").stdout
    assert "br-bare" in sandbox.sh("ip -br link").stdout


def test_default_route_follows_the_networks(sandbox):
    sandbox.netkit("network", "create", "a", "--subnet", "10.1.0.0/24")
    sandbox.netkit("network", "create", "b", "--subnet", "10.2.0.0/24")
    sandbox.netkit("network", "create", "closed", "--subnet", "10.3.0.0/24", "--internal")
    sandbox.netkit("container", "create", "x", "--net", "a")
    sandbox.netkit("network", "connect", "b", "x")
    assert "default via 10.1.0.1" in sandbox.ns("x", "ip route").stdout
    sandbox.netkit("network", "disconnect", "a", "x")
    assert "default via 10.2.0.1 dev eth1" in sandbox.ns("x", "ip route").stdout
    sandbox.netkit("container", "create", "y", "--net", "closed")
    assert "default" not in sandbox.ns("y", "ip route").stdout
    sandbox.netkit("network", "connect", "a", "y")
    assert "default via 10.1.0.1" in sandbox.ns("y", "ip route").stdout


def test_doctor_finds_and_removes_what_a_crash_left(sandbox):
    import sqlite3

    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "lost", "--net", "app")
    host_if = sandbox.inspect("container", "lost")["endpoints"][0]["host_interface"]
    # A process killed between the kernel steps and the state commit leaves objects like these.
    db = sqlite3.connect(os.path.join(sandbox.state_dir, "netkit.db"))
    with db:
        for table in ("containers", "addresses", "dns_names"):
            db.execute(f"DELETE FROM {table} WHERE {'name' if table == 'containers' else 'container'}='lost'")
    db.close()
    r = sandbox.netkit("doctor", check=False)
    assert r.returncode == 1
    for what in ("UTS pin /run/netkit/uts/lost", "netns lost", f"veth {host_if} on br-app"):
        assert f"stray {what} is not in netkit's state" in r.stdout, r.stdout
    fixed = sandbox.netkit("doctor", "--fix", check=False).stdout
    assert f"fix: removed stray veth {host_if} on br-app" in fixed
    assert "lost" not in os.listdir("/run/netns") and host_if not in sandbox.sh("ip -br link").stdout
    sandbox.netkit("container", "create", "lost", "--net", "app")  # the name is usable again


def test_bridge_commands(sandbox):
    sandbox.netkit("bridge", "create", "br0", "--cidr", "172.30.0.1/24", "--mtu", "1450")
    info = link(sandbox, "br0")
    assert info["mtu"] == 1450 and info["linkinfo"]["info_kind"] == "bridge"
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "app")
    sandbox.netkit("container", "create", "b", "--net", "app")
    send_echo(sandbox, "a", "tcp", "172.20.0.3", 9, check=False)  # any traffic teaches the bridge
    show = json.loads(sandbox.netkit("bridge", "show", "--json").stdout)
    by_name = {b["name"]: b for b in show}
    ports = {sandbox.inspect("container", n)["endpoints"][0]["host_interface"] for n in "ab"}
    assert set(by_name["br-app"]["interfaces"]) == ports and by_name["br0"]["interfaces"] == []
    text = sandbox.netkit("bridge", "show").stdout
    assert text.splitlines()[0].split() == ["bridge", "name", "bridge", "id", "STP", "enabled", "interfaces"]
    macs = json.loads(sandbox.netkit("bridge", "macs", "br-app", "--json").stdout)
    learnt = {m["mac"] for m in macs if not m["local"]}
    assert {"02:42:ac:14:00:02", "02:42:ac:14:00:03"} <= learnt
    sandbox.netkit("bridge", "rm", "br0")
    assert "br0 " not in sandbox.sh("ip -br link").stdout
    r = sandbox.netkit("bridge", "rm", "br-app", check=False)
    assert r.returncode == 2 and "belongs to network 'app'" in r.stderr


def test_dry_run_prints_ip_commands_and_changes_nothing(sandbox):
    before = snapshot(sandbox)
    out = sandbox.netkit("container", "create", "web", "--dry-run").stdout
    assert "ip netns add web" in out and "type veth peer name eth0" in out
    assert "ip link add netkit0 address 02:42:" in out and "ip -n web route add default via 172.17.0.1" in out
    out = sandbox.netkit("network", "create", "app", "--dry-run").stdout
    assert "ip link add br-app address 02:42:" in out
    assert snapshot(sandbox) == before


def test_doctor_reports_objects_deleted_behind_netkits_back(sandbox):
    sandbox.netkit("container", "create", "web")
    assert "ok: every bridge, netns and veth in the state exists, and no stray one" in sandbox.netkit("doctor").stdout
    host_if = sandbox.inspect("container", "web")["endpoints"][0]["host_interface"]
    sandbox.sh(f"ip link del {host_if}")
    r = sandbox.netkit("doctor", check=False)
    assert r.returncode == 1 and f"veth '{host_if}' of container 'web' on network 'bridge' is missing" in r.stdout
    sandbox.netkit("container", "rm", "web")  # removal copes with the missing veth
    assert sandbox.netkit("doctor").returncode == 0


def test_gateway_mac_never_changes_as_ports_join(sandbox):
    """A bridge without a fixed MAC takes its lowest port MAC: a new container could then change
    the gateway's MAC under the others' ARP caches (seen as 10 s DNS timeouts)."""
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    mac = link(sandbox, "br-app")["address"]
    for i in range(6):
        sandbox.netkit("container", "create", f"c{i}", "--net", "app")
        assert link(sandbox, "br-app")["address"] == mac
    assert mac.startswith("02:42:")


def test_attach_netns_path(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.sh("ip netns add foreign")  # made by someone else: iproute2
    out = sandbox.netkit("attach", "--netns", "/run/netns/foreign", "--network", "app", "--name", "f1",
                         "--ip", "172.20.0.50").stdout
    assert "f1 eth0 172.20.0.50/24" in out
    assert "172.20.0.50/24" in sandbox.ns("foreign", "ip -br addr show eth0").stdout
    sandbox.netkit("container", "rm", "f1")
    assert "foreign" in os.listdir("/run/netns")  # never deleted: it is not netkit's
    assert "eth0" not in sandbox.ns("foreign", "ip -br link").stdout
