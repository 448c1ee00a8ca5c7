"""Why a packet died, with real packets in a sandbox: for each cause a scenario whose report (JSON
and text) names it: the firewall rule and the netkit setting behind it (icc=false, internal,
network isolation, unpublished port, 127.x bind), a refusal, or the kernel's reason read from
the netns (ip_forward off, rp_filter, no route, neighbour failure, TTL, MTU), and the note when
br_netfilter is off."""
import json
import signal
import subprocess
import sys
import time

import pytest

from nettools import send_echo, start_echo

from netkit.kernel import fw

pytestmark = pytest.mark.root
NETKIT = [sys.executable, "-m", "netkit"]

# One UDP datagram: dst, port, [ttl], [size], [df], [source address]; fire and forget.
UDP = r"""
import socket, sys
dst, port, ttl, size, df, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if src:
    s.bind((src, 0))
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
if df:
    s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF set, never fragment
try:
    s.sendto(b"x" * size, (dst, port))
except OSError as e:
    print("send failed:", e)
"""


def udp(sandbox, where, dst, port=9, ttl=64, size=16, df=False, src=""):
    args = [sys.executable, "-c", UDP, dst, str(port), str(ttl), str(size), "1" if df else "0", src]
    if where.startswith("ns:"):
        return subprocess.run(["ip", "netns", "exec", where[3:]] + args, capture_output=True, text=True, timeout=30)
    return subprocess.run(NETKIT + ["exec", where, "--"] + args, capture_output=True, text=True, timeout=30)


def trace(action, *args, wait=0.2):
    """Run `netkit trace capture ARGS --json` around action(); the report and its text rendering."""
    from netkit.trace import report

    proc = subprocess.Popen(NETKIT + ["trace", "capture", *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "capturing on" in line, line + proc.stderr.read()
    action()
    time.sleep(wait)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    rep = json.loads(out)
    return rep, report.to_text(rep)


def the_drop(rep, reason):
    found = [d for d in rep["drops"] if d["reason"] == reason]
    assert found, json.dumps(rep["drops"], indent=1)
    d = found[0]
    pkt = rep["flows"][d["flow"] - 1]["packets"][d["packet"] - 1]
    assert pkt["drop"]["reason"] == reason and pkt["drop"]["text"] == d["text"]
    return d


def ip_of(sandbox, name, network=None):
    eps = sandbox.inspect("container", name)["endpoints"]
    return next(e["ip"] for e in eps if network is None or e["network"] == network)


def test_icc_false_names_the_forward_rule(sandbox):
    sandbox.netkit("network", "create", "quiet", "--subnet", "172.30.0.0/24", "--no-icc")
    sandbox.netkit("container", "create", "a", "--net", "quiet")
    sandbox.netkit("container", "create", "b", "--net", "quiet")
    start_echo(sandbox, "b", "tcp", "0.0.0.0", 80)
    rep, text = trace(lambda: send_echo(sandbox, "a", "tcp", ip_of(sandbox, "b"), 80, check=False), "a", "b",
                      "--proto", "tcp")
    d = the_drop(rep, "rule")
    assert d["setting"] == "icc=false"
    assert d["rule"]["chain"] == "NETKIT-FORWARD" and d["rule"]["table"] == "filter"
    assert d["rule"]["rule"].endswith("-j DROP") and d["rule"]["backend"] == fw.choose().name  # the active one
    assert d["rule"]["packets"] >= 1
    assert "--no-icc (icc=false)" in d["text"] and "setting behind it: icc=false" in text
    assert "NETKIT-FORWARD" in text


def test_internal_network_names_the_isolation_rule(sandbox):
    sandbox.netkit("container", "create", "x")  # a normal network first: ip_forward on, as on any real host
    sandbox.netkit("network", "create", "inner", "--subnet", "172.31.0.0/24", "--internal")
    sandbox.netkit("container", "create", "a", "--net", "inner")
    # An internal network gives no default route; a container that adds one itself still gets nowhere.
    sandbox.ns("a", "ip route add default via 172.31.0.1")
    rep, text = trace(lambda: udp(sandbox, "a", sandbox.outside), "a", "--proto", "udp")
    d = the_drop(rep, "rule")
    assert d["setting"] == "internal" and d["rule"]["chain"] == "NETKIT-ISOLATION-1"
    assert "network inner is internal" in d["text"] and "setting behind it: internal" in text


def test_network_isolation_names_the_rule(sandbox):
    sandbox.netkit("network", "create", "n1", "--subnet", "172.28.0.0/24")
    sandbox.netkit("network", "create", "n2", "--subnet", "172.29.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "n1")
    sandbox.netkit("container", "create", "b", "--net", "n2")
    rep, text = trace(lambda: udp(sandbox, "a", ip_of(sandbox, "b")), "a", "b", "--proto", "udp")
    d = the_drop(rep, "rule")
    # raw PREROUTING comes first: the rule that lets only n2's bridge deliver to b drops it there
    assert d["setting"] == "network isolation" and d["rule"]["chain"] == "NETKIT-RAW"
    assert "from network n1" in d["text"] and "on network n2" in d["text"]
    assert "setting behind it: network isolation" in text


def test_direct_routing_to_a_container_is_an_unpublished_port(sandbox):
    sandbox.netkit("container", "create", "web")
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 80)
    web = ip_of(sandbox, "web")
    sandbox.ns("outside", f"ip route add 172.17.0.0/16 via {sandbox.uplink}")
    rep, text = trace(lambda: send_echo(sandbox, "ns:outside", "tcp", web, 80, check=False), "web", "--proto", "tcp")
    d = the_drop(rep, "rule")
    assert d["setting"] == "unpublished port"
    assert d["rule"]["table"] == "raw" and d["rule"]["chain"] == "NETKIT-RAW"
    assert f"-d {web}/32" in d["rule"]["rule"] and "container web's address" in d["text"]
    assert "setting behind it: unpublished port" in text


def test_unpublished_port_is_refused_by_the_host(sandbox):
    sandbox.netkit("container", "create", "web", "--expose", "80")
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 80)
    rep, text = trace(lambda: send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 80, check=False), "web",
                      "--proto", "tcp")
    d = the_drop(rep, "refused")
    assert d["setting"] == "unpublished port"
    assert "no container publishes host port 80/tcp" in d["text"] and "web exposes it" in d["text"]
    assert "REFUSED" in text and "setting behind it: unpublished port" in text


def test_port_published_on_127_only_is_refused_from_outside(sandbox):
    sandbox.netkit("container", "create", "web", "-p", "127.0.0.1:8088:80")
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 80)
    rep, text = trace(lambda: send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 8088, check=False), "web",
                      "--proto", "tcp")
    d = the_drop(rep, "refused")
    assert d["setting"] == "127.x bind" and "published on 127.0.0.1 only" in d["text"]
    assert "setting behind it: 127.x bind" in text


def test_ip_forward_off(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.sh("sysctl -qw net.ipv4.ip_forward=0")
    rep, text = trace(lambda: udp(sandbox, "a", sandbox.outside), "a", "--proto", "udp")
    d = the_drop(rep, "ip_forward")
    assert d["setting"] == "ip_forward off" and "net.ipv4.ip_forward=0" in d["text"]
    assert "IPv4 forwarding is off in host" in text


def test_rp_filter(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.sh("sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.uplink.rp_filter=1")
    sandbox.ns("outside", "ip addr add 10.99.0.2/32 dev eth0")
    # The host would drop the ARP request from 10.99.0.2 by rp_filter too: give outside the MAC.
    mac = open("/sys/class/net/uplink/address").read().strip()
    sandbox.ns("outside", f"ip neigh replace {sandbox.uplink} lladdr {mac} dev eth0")
    rep, text = trace(lambda: udp(sandbox, "ns:outside", sandbox.uplink, src="10.99.0.2"), "a", "--proto", "udp")
    d = the_drop(rep, "rp_filter")
    assert d["setting"] == "rp_filter" and "reverse-path filtering" in d["text"] and d["where"] == "host:uplink"
    assert "rp_filter=1" in d["text"] and "reverse-path filtering" in text


def test_no_route(sandbox):
    sandbox.netkit("container", "create", "a")
    rep, text = trace(lambda: udp(sandbox, "a", "203.0.113.5"), "a")
    d = the_drop(rep, "no_route")
    assert "host has no route to 203.0.113.5" in d["text"] and "no route" in text
    assert d["where"] == "host:netkit0"


def test_neighbour_failure(sandbox):
    sandbox.netkit("container", "create", "a")
    # Nobody has 198.18.0.99 on the uplink's subnet: the host's ARP goes unanswered (3 tries, ~3 s).
    rep, text = trace(lambda: udp(sandbox, "a", "198.18.0.99"), "a", wait=3.6)
    d = the_drop(rep, "neighbour")
    assert "nobody answered ARP for 198.18.0.99 on uplink" in d["text"] and "neighbour failure" in text
    pkt = rep["flows"][d["flow"] - 1]["packets"][d["packet"] - 1]
    assert any("ARP who-has 198.18.0.99 unanswered" in e or "FAILED" in e or "INCOMPLETE" in e
               for e in pkt["drop"]["evidence"]), pkt["drop"]


def test_ttl_expired(sandbox):
    sandbox.netkit("container", "create", "a")
    rep, text = trace(lambda: udp(sandbox, "a", sandbox.outside, ttl=1), "a")
    d = the_drop(rep, "ttl")
    assert "TTL expired in host" in d["text"] and "TTL expired" in text
    pkt = rep["flows"][d["flow"] - 1]["packets"][d["packet"] - 1]
    assert any("time-exceeded" in e for e in pkt["drop"]["evidence"])


def test_mtu_fragmentation_needed(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.sh("ip link set uplink mtu 1280")
    sandbox.ns("outside", "ip link set eth0 mtu 1280")
    rep, text = trace(lambda: udp(sandbox, "a", sandbox.outside, size=1400, df=True), "a")
    d = the_drop(rep, "mtu")
    assert d["setting"] == "MTU" and "don't-fragment" in d["text"] and "1280" in d["text"]
    assert "too big for the next hop" in text
    icmp = [p for f in rep["flows"] for p in f["packets"] if p["info"].startswith("ICMP frag-needed")]
    assert icmp and icmp[0]["hops"][0]["icmp"] == {"type": 3, "code": 4, "id": None, "seq": None}


def test_br_netfilter_off_explains_why_icc_false_lets_packets_through(sandbox):
    sandbox.netkit("network", "create", "quiet", "--subnet", "172.30.0.0/24", "--no-icc")
    sandbox.netkit("container", "create", "a", "--net", "quiet")
    sandbox.netkit("container", "create", "b", "--net", "quiet")
    sandbox.sh("sysctl -qw net.bridge.bridge-nf-call-iptables=0")
    # netkit turned on the bridge's own switch (nf_call_iptables): icc=false still holds
    rep, text = trace(lambda: udp(sandbox, "a", ip_of(sandbox, "b")), "a", "b", "--proto", "udp")
    assert rep["drops"] and not any("br_netfilter is off" in n for f in rep["flows"] for n in f["notes"])
    sandbox.sh("ip link set br-quiet type bridge nf_call_iptables 0")
    rep, text = trace(lambda: udp(sandbox, "a", ip_of(sandbox, "b")), "a", "b", "--proto", "udp")
    assert not rep["drops"]
    (flow,) = rep["flows"]
    assert any("bridge-nf-call-iptables=0" in n and "icc=false on quiet is not enforced" in n for n in flow["notes"])
    assert "br_netfilter is off in host" in text


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
def test_a_rule_of_another_backend_is_named_too(sandbox, backend):
    from required import need

    sandbox.netkit("container", "create", "a")
    if backend == "iptables-nft":
        need("iptables-nft")
        sandbox.sh("iptables-nft -I FORWARD -d 198.18.0.2/32 -p udp --dport 9 -j DROP")
    else:
        need("nft")
        sandbox.sh("nft add table ip lab && nft add chain ip lab gate '{ type filter hook forward priority 0; }' && "
                   "nft add rule ip lab gate ip daddr 198.18.0.2 udp dport 9 counter drop")
    rep, text = trace(lambda: udp(sandbox, "a", sandbox.outside), "a", "--proto", "udp")
    d = the_drop(rep, "rule")
    assert d["rule"]["backend"] == backend and d["setting"] is None
    if backend == "iptables-nft":
        assert d["rule"]["rule"] == "-A FORWARD -d 198.18.0.2/32 -p udp -m udp --dport 9 -j DROP"
    else:
        assert (d["rule"]["table"], d["rule"]["chain"]) == ("ip lab", "gate")
        assert d["rule"]["rule"] == "ip daddr 198.18.0.2 udp dport 9 drop"
    assert "a rule netkit did not write" in d["text"] and backend in text
