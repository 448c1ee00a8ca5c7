"""Publishing with real traffic: outside, host and 127.0.0.1, hairpin, address binds, direct-routing
hole, conflicts, bad input, UDP conntrack, -P, --dry-run, removal; each with every kernel firewall
backend (the `backend` fixture) but -P, which does not depend on it."""
import json
import os
import socket

import pytest

from fwbackend import backend, show  # noqa: F401 - backend: a fixture
from publish_helpers import Sniffer, ask, crafted_syn, mac_of, one_cpu, send_frame
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name
from required import need
from waiting import wait_for

pytestmark = pytest.mark.root
UP, OUT = "198.18.0.1", "198.18.0.2"


def _net(sandbox, name="app", subnet="172.20.0.0/24", *extra):
    sandbox.netkit("network", "create", name, "--subnet", subnet, *extra)


def rule_lines(sandbox) -> list[str]:
    """netkit's rules read back (`netkit rules --json`: iptables-save text for every backend)."""
    tables = json.loads(sandbox.netkit("rules", "--json").stdout)["tables"]
    return [f"-A {chain} {spec}" for chains in tables.values() for chain, specs in chains.items() for spec in specs]


# How the DNAT of 8088 -> 172.20.0.2:80 reads in each backend's own listing.
NATIVE_DNAT = {"iptables-legacy": "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
               "iptables-nft": "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
               "nftables": "tcp . 8088 : 172.20.0.2 . 80"}


def test_outside_host_and_localhost(sandbox, backend, servers):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80", "-p", "8053:53/udp")
    servers("web", "tcp", 80)
    servers("web", "udp", 53)
    # outside -> uplink: reaches the container, which sees the real client address
    assert ask("outside", "tcp", UP, 8088) == f"web {OUT}"
    assert ask("outside", "udp", UP, 8053) == f"web {OUT}"
    # the host itself, by its address and by 127.0.0.1, with no proxy process listening
    assert ask(None, "tcp", UP, 8088).startswith("web ")
    assert ask(None, "tcp", "127.0.0.1", 8088).startswith("web ")
    assert ask(None, "udp", "127.0.0.1", 8053).startswith("web ")
    assert ":8088" not in sandbox.sh("ss -Hltnp").stdout
    assert sandbox.netkit("port", "web").stdout.split("\n")[:2] == ["53/udp -> 0.0.0.0:8053", "80/tcp -> 0.0.0.0:8088"]
    assert sandbox.netkit("port", "web", "80").stdout.strip() == "0.0.0.0:8088"  # Docker's form for one port
    assert "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in rule_lines(sandbox)
    assert NATIVE_DNAT[backend] in show(sandbox, backend)
    assert open("/proc/sys/net/ipv4/conf/br-app/route_localnet").read().strip() == "1"
    assert open("/proc/sys/net/ipv4/conf/all/route_localnet").read().strip() == "0"


# Docker's hairpin rule (userland-proxy=false) for web's port 80, in each backend's own listing.
NATIVE_HAIRPIN = {
    "iptables-legacy": ["-A NETKIT-POSTROUTING -s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"],
    "iptables-nft": ["-A NETKIT-POSTROUTING -s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"],
    "nftables": ["ip saddr . ip daddr . meta l4proto . th dport @hairpin masquerade",
                 "172.20.0.2 . 172.20.0.2 . tcp . 80"],
}


def test_hairpin_self_sibling_and_gateway(sandbox, backend, servers):
    """As Docker with userland-proxy=false: a container calling its own published port through the
    host is masqueraded (it sees the gateway); a sibling keeps its own address, because the server's
    reply, bridged straight back to it, meets conntrack through br_netfilter (netkit turns the
    bridge's nf_call_iptables on, so that holds even with the global switch off)."""
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80", "-p", "8053:53/udp")
    sandbox.netkit("container", "create", "web2", "--net", "app")
    servers("web", "tcp", 80)
    servers("web", "udp", 53)
    for ep in sandbox.inspect("container", "web")["endpoints"] + sandbox.inspect("container", "web2")["endpoints"]:
        assert open(f"/sys/class/net/{ep['host_interface']}/brport/hairpin_mode").read().strip() == "1"
    assert open("/sys/class/net/br-app/bridge/nf_call_iptables").read().strip() == "1"
    assert ask("web", "tcp", UP, 8088) == "web 172.20.0.1"  # itself, through the host: masqueraded
    assert ask("web", "udp", UP, 8053) == "web 172.20.0.1"
    assert ask("web2", "tcp", UP, 8088) == "web 172.20.0.3"  # a sibling: its own address
    assert ask("web2", "udp", UP, 8053) == "web 172.20.0.3"
    assert ask("web2", "tcp", "172.20.0.1", 8088) == "web 172.20.0.3"  # via the gateway address
    # the rules, read back with the backend's own tool: Docker's per-port rule, no blanket masquerade
    native = show(sandbox, backend)
    assert all(line in native for line in NATIVE_HAIRPIN[backend]), native
    assert "ctstate DNAT -j MASQUERADE" not in native and "ct status dnat masquerade" not in native
    # the global br_netfilter switch off: the bridge's own switch still brings the reply to conntrack
    sandbox.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0")
    assert ask("web2", "tcp", UP, 8088) == "web 172.20.0.3"
    # both off: the bridged reply skips conntrack and the sibling gets no answer (why netkit keeps
    # the switch on); doctor names it and --fix turns it back on
    with open("/sys/class/net/br-app/bridge/nf_call_iptables", "w") as fh:
        fh.write("0")
    assert ask("web2", "tcp", UP, 8088, timeout=2) is None
    assert ask("web", "tcp", UP, 8088) == "web 172.20.0.1"  # its own port: masqueraded, routed back
    doctor = sandbox.netkit("doctor", check=False).stdout
    assert "bridge br-app does not pass its frames to iptables" in doctor, doctor
    sandbox.netkit("doctor", "--fix", check=False)
    assert ask("web2", "tcp", UP, 8088) == "web 172.20.0.3"
    # unpublish takes the port's hairpin rule away with its DNAT
    sandbox.netkit("unpublish", "8088:80", "web")
    native = show(sandbox, backend)
    assert not any(line in native for line in NATIVE_HAIRPIN[backend][-1:]), native


def test_address_bound_publishes(sandbox, backend, servers):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "127.0.0.1:8090:80", "-p", f"{UP}:8091:80")
    servers("web", "tcp", 80)
    assert ask(None, "tcp", "127.0.0.1", 8090).startswith("web ")
    assert ask(None, "tcp", UP, 8090, timeout=0.5) is None
    assert ask("outside", "tcp", UP, 8090, timeout=0.5) is None
    assert ask("outside", "tcp", UP, 8091) == f"web {OUT}"
    assert ask(None, "tcp", "127.0.0.1", 8091, timeout=0.5) is None
    # A neighbour forging a SYN to 127.0.0.1 at the host's MAC must not reach the container,
    # while the same SYN to the uplink-bound port does (the control).
    up_mac = mac_of("uplink")
    sniff = Sniffer("web", "eth0", 80)
    sandbox.ns("outside", "ip route add 127.0.0.9/32 dev eth0", check=False)
    with one_cpu():  # the forged SYN first, the control after it, handled in that order
        send_frame("outside", "eth0", up_mac, crafted_syn(OUT, "127.0.0.1", 8090, sport=40000))
        send_frame("outside", "eth0", up_mac, crafted_syn(OUT, UP, 8091, sport=40001))
    wait_for(lambda: 40001 in sniff.sports, what="the control SYN (to the uplink-bound port) in the container")
    assert 40000 not in sniff.stop()


def test_unpublished_ports_closed_to_routed_neighbours(sandbox, backend, servers):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    servers("web", "tcp", 80)
    servers("web", "tcp", 81)
    sandbox.ns("outside", f"ip route add 172.20.0.0/24 via {UP}")
    assert ask(None, "tcp", "172.20.0.2", 81) is not None  # the host itself may
    assert ask("outside", "tcp", "172.20.0.2", 81, timeout=0.7) is None
    assert ask("outside", "tcp", "172.20.0.2", 80, timeout=0.7) is None
    assert ask("outside", "tcp", UP, 8088) == f"web {OUT}"


def test_conflicts_are_refused_naming_the_holder(sandbox, backend):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "127.0.0.1:8088:80")
    before = show(sandbox, backend)
    for spec in ("8088:80", "127.0.0.1:8088:80"):
        p = sandbox.netkit("container", "create", "web2", "--net", "app", "-p", spec, check=False)
        assert p.returncode == 2 and "already published by container 'web'" in p.stderr
        assert p.stderr.count("\n") == 1
    p = sandbox.netkit("container", "create", "web3", "--net", "app", "-p", "8080:80", "-p", "8080:81", check=False)
    assert p.returncode == 2 and "8080/tcp is given twice in this command" in p.stderr and "web3'" not in p.stderr
    assert "web2" not in sandbox.netkit("container", "ls").stdout
    assert "web3" not in sandbox.netkit("container", "ls").stdout
    assert sandbox.netkit("publish", "8088:80/udp", "web").returncode == 0  # other protocol: fine
    sandbox.netkit("unpublish", "8088:80/udp", "web")
    holder = socket.socket()
    holder.bind(("0.0.0.0", 8095))
    holder.listen()
    try:
        p = sandbox.netkit("publish", "8095:80", "web", check=False)
        assert p.returncode == 2 and "listening socket" in p.stderr
    finally:
        holder.close()
    assert show(sandbox, backend) == before


BAD = ["8088:", ":80", "80:abc", "70000", "0-5:80", "90-80", "8000-8002:80-81", "80/icmp",
       "localhost:8088:80", "[::1]:8088:80"]


def test_bad_input_one_line_exit_2_nothing_changed(sandbox, backend):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app")
    sandbox.netkit("container", "create", "h", "--net", "host")
    sandbox.netkit("container", "create", "n", "--net", "none")
    sandbox.netkit("container", "create", "s", "--net", "container:web")
    before = show(sandbox, backend)
    cases = [("publish", spec, "web") for spec in BAD] + [
        ("publish", "80", "h"), ("publish", "80", "n"), ("publish", "80", "s"), ("publish", "80", "ghost"),
        ("unpublish", "80", "web")]
    for cmd, spec, name in cases:
        p = sandbox.netkit(cmd, spec, name, check=False)
        assert p.returncode == 2, (spec, name, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("netkit: "), p.stderr
    assert "ports are the host's ports already" in sandbox.netkit("publish", "80", "h", check=False).stderr
    assert "IPv6" in sandbox.netkit("publish", "[::1]:8088:80", "web", check=False).stderr
    p = sandbox.netkit("container", "create", "bad", "--net", "app", "-p", "8088:", check=False)
    assert p.returncode == 2 and "bad" not in sandbox.netkit("container", "ls").stdout
    assert show(sandbox, backend) == before


def test_udp_conntrack_follows_the_new_mapping(sandbox, backend, servers):
    _net(sandbox)
    sandbox.netkit("container", "create", "a", "--net", "app", "-p", "5353:53/udp")
    sandbox.netkit("container", "create", "b", "--net", "app")
    servers("a", "udp", 53)
    servers("b", "udp", 53)
    for _ in range(3):
        assert ask("outside", "udp", UP, 5353, sport=41000) == f"a {OUT}"
    sandbox.netkit("unpublish", "5353:53/udp", "a")
    sandbox.netkit("publish", "5353:53/udp", "b")
    assert ask("outside", "udp", UP, 5353, sport=41000) == f"b {OUT}"
    need("conntrack")
    listing = sandbox.sh("conntrack -L -p udp")  # check=True: a failing conntrack fails the test
    assert "172.20.0.2" not in listing.stdout


def test_publish_all_uses_the_ephemeral_range(sandbox, servers):
    _net(sandbox)
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("45000 45100")
    sandbox.netkit("container", "create", "web", "--net", "app", "--expose", "80", "--expose", "53/udp", "-P")
    lines = sandbox.netkit("port", "web").stdout.splitlines()
    assert [line.split(" -> ")[0] for line in lines] == ["53/udp", "80/tcp"]
    assert all(45000 <= int(line.split(":")[-1]) <= 45100 for line in lines), lines
    tcp_port = int(sandbox.netkit("port", "web", "80/tcp").stdout.split(":")[-1])
    servers("web", "tcp", 80)
    assert ask("outside", "tcp", UP, tcp_port) == f"web {OUT}"
    out = sandbox.netkit("publish", "8000-8010:80", "web").stdout.strip()
    assert out == "80/tcp -> 0.0.0.0:8000"


DRY_PUBLISH = {
    "iptables": ["*raw", "-A NETKIT-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8088 -j DROP", "COMMIT",
                 "*nat", "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
                 "-A NETKIT-POSTROUTING -s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
                 "COMMIT"],
    "nftables": ["add element ip netkit dnat_addr { 127.0.0.1 . tcp . 8088 : 172.20.0.2 . 80 }",
                 "add element ip netkit raw_lo { 127.0.0.1 . tcp . 8088 }",
                 "add element ip netkit hairpin { 172.20.0.2 . 172.20.0.2 . tcp . 80 }"],
}
DRY_CREATE = {
    "iptables": ["-A NETKIT -p tcp -m tcp --dport 9000 -j DNAT --to-destination 172.20.0.3:90",
                 "-A NETKIT-RAW -d 172.20.0.3/32 ! -i br-app -j DROP",
                 "-A NETKIT-POSTROUTING -s 172.20.0.3/32 -d 172.20.0.3/32 -p tcp -m tcp --dport 90 -j MASQUERADE"],
    "nftables": ["add element ip netkit dnat_any { tcp . 9000 : 172.20.0.3 . 90 }",
                 "add element ip netkit raw_ep_addrs { 172.20.0.3 }",
                 "add element ip netkit hairpin { 172.20.0.3 . 172.20.0.3 . tcp . 90 }"],
}


def test_dry_run_prints_the_backends_syntax(sandbox, backend):
    _net(sandbox)
    sandbox.netkit("container", "create", "web", "--net", "app")
    before = show(sandbox, backend)
    syntax = "nftables" if backend == "nftables" else "iptables"
    out = sandbox.netkit("publish", "127.0.0.1:8088:80", "web", "--dry-run").stdout.splitlines()
    assert out == DRY_PUBLISH[syntax]
    out = sandbox.netkit("container", "create", "web2", "--net", "app", "-p", "9000:90", "--dry-run").stdout
    assert all(line in out for line in DRY_CREATE[syntax]), out
    assert show(sandbox, backend) == before


def test_removal_removes_exactly_its_rules(sandbox, backend):
    _net(sandbox)
    _net(sandbox, "other", "172.21.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "app", "-p", "8088:80", "-p", "127.0.0.1:8089:80")
    sandbox.netkit("container", "create", "b", "--net", "app", "-p", "9088:80")
    with_a = rule_lines(sandbox)
    sandbox.netkit("container", "rm", "a")
    without_a = rule_lines(sandbox)
    gone = [line for line in with_a if line not in without_a]
    assert sorted(gone) == sorted([
        "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
        "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8089 -j DNAT --to-destination 172.20.0.2:80",
        "-A NETKIT-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8089 -j DROP",
        "-A NETKIT-RAW -d 172.20.0.2/32 ! -i br-app -j DROP",
        # one hairpin rule for container port 80, whichever host ports lead there
        "-A NETKIT-POSTROUTING -s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE"])
    assert not [line for line in without_a if line not in with_a]
    sandbox.netkit("network", "rm", "other")
    after = show(sandbox, backend)
    assert "br-other" not in after and "172.21.0.0" not in after and "br-app" in after
    assert os.path.exists("/proc/sys/net/ipv4/conf/br-app")
