"""Security probes with real packets, for every firewall backend: what a hostile container (root
in its netns, so CAP_NET_RAW) can forge, and that netkit stops it.

- loopback exposure (CVE-2020-8558's class): a SYN / UDP datagram to 127.0.0.1 sent at the
  gateway's MAC must not reach a host service bound to loopback, from any network; host ->
  127.0.0.1:PORT publishes (TCP and UDP) keep working.
- spoofing: another container's IP, an arbitrary source (8.8.8.8, which would leave the uplink
  un-NATed), another container's MAC, an ARP lie about the gateway: dropped on networks with
  anti-spoofing (the default), passing on a `--no-anti-spoofing` network (which shows each probe
  can see the hole it guards).
- `--link` on a `--no-icc` user network is a name alias only; on the default network it opens
  the linked ports, as in Docker.
- br_netfilter: with net.bridge.bridge-nf-call-iptables=0, --no-icc still isolates (per-bridge
  nf_call_iptables) and doctor reports a bridge that lost it; `ip_forward: false` is reported
  by doctor and warned about by `container create`.

The backend is chosen through the config key `firewall_backend` (written per test below).
"""
import json
import os
import socket
import struct
import time

import pytest

from publish_helpers import _csum, ask, crafted_syn, mac_of, ns_socket
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name

from netkit.kernel import nsutil
from required import need
from waiting import wait_for

pytestmark = pytest.mark.root
BACKENDS = ("iptables-legacy", "iptables-nft", "nftables")
OUT = "198.18.0.2"


@pytest.fixture(params=BACKENDS)
def backend(request, sandbox):
    """Writes the sandbox config with `firewall_backend`; returns a writer for more keys."""
    need("ip", "nft", "ping", "bridge", "getent")
    def write(**more):
        with open(os.environ["NETKIT_CONFIG"], "w") as fh:
            json.dump({"firewall_backend": request.param, **more}, fh)

    write()
    return write


# ---- raw frames ------------------------------------------------------------------------------

def _raw(ns: str) -> socket.socket:
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind(("eth0", 0))
    return s


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:] + payload


def _udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    return _ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def _arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, _mac(sha), socket.inet_aton(spa),
                       _mac(tha), socket.inet_aton(tpa))


def send(ns: str, dst_mac: str, src_mac: str, ethertype: int, payload: bytes) -> None:
    s = _raw(ns)
    try:
        s.send(_mac(dst_mac) + _mac(src_mac) + struct.pack("!H", ethertype) + payload)
    finally:
        s.close()


def syn_ack_from_loopback(ns: str, gw_mac: str, port: int) -> bool:
    """Forge a SYN from `ns` to 127.0.0.1:port at the gateway's MAC; True if a SYN-ACK comes back.
    A fresh source port each time: conntrack and SYN-ACK retransmissions confound repeats."""
    me = ns_ip(ns)
    sport = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
    s = _raw(ns)
    try:
        s.send(_mac(gw_mac) + _mac(mac_of("eth0", ns)) + b"\x08\x00" + crafted_syn(me, "127.0.0.1", port, sport))
        s.settimeout(0.2)
        end = time.time() + 1.5
        while time.time() < end:
            try:
                frame = s.recv(2048)
            except socket.timeout:
                continue
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0xF) * 4
            if ip[9] == 6 and ip[12:16] == socket.inet_aton("127.0.0.1") and \
                    struct.unpack("!H", ip[ihl + 2:ihl + 4])[0] == sport and ip[ihl + 13] & 0x12 == 0x12:
                return True
        return False
    finally:
        s.close()


def ns_ip(ns: str) -> str:
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        out = os.popen("ip -4 -o addr show eth0").read().split()
    return next(w for w in out if "/" in w).split("/")[0]


# Each probe checks both ways. Where something must arrive (no guard), the test waits for it
# (bounded, tests/waiting.py). Where nothing may arrive (guarded), it allows NOTHING_WITHIN
# seconds: frames dropped by netfilter/the bridge are dropped as they are sent, so a late
# arrival could only make a guarded test pass wrongly, never fail spuriously.
NOTHING_WITHIN = 0.6


# ---- loopback exposure -----------------------------------------------------------------------

def test_containers_cannot_reach_host_loopback_services(sandbox, backend, servers):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "other", "--subnet", "172.21.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "127.0.0.1:8090:80",
                   "-p", "127.0.0.1:8091:81/udp")
    sandbox.netkit("container", "create", "evil", "--net", "app")
    sandbox.netkit("container", "create", "evil2", "--net", "other")
    secret_tcp = servers(None, "tcp", 9999, tag="SECRET", ip="127.0.0.1")
    secret_udp = servers(None, "udp", 9998, tag="SECRET", ip="127.0.0.1")
    servers("web", "tcp", 80)
    servers("web", "udp", 81)
    for ns, br in (("evil", "br-app"), ("evil2", "br-other")):
        gw = mac_of(br)
        sandbox.ns(ns, f"ping -c1 -W1 {'172.20.0.1' if br == 'br-app' else '172.21.0.1'}", check=False)
        assert not syn_ack_from_loopback(ns, gw, 9999), f"{ns} completed a handshake with 127.0.0.1:9999"
        send(ns, gw, mac_of("eth0", ns), 0x0800, _udp(ns_ip(ns), "127.0.0.1", 40000, 9998, b"x"))
    time.sleep(NOTHING_WITHIN)
    assert secret_udp.peers == [] and secret_tcp.peers == []
    # the 127.x publishes still work, TCP and UDP
    assert ask(None, "tcp", "127.0.0.1", 8090) == "web 172.20.0.1"
    assert ask(None, "udp", "127.0.0.1", 8091) == "web 172.20.0.1"
    # and the host's own loopback is untouched
    assert ask(None, "tcp", "127.0.0.1", 9999) == "SECRET 127.0.0.1"


# ---- spoofing --------------------------------------------------------------------------------

def _pair(sandbox, net: str, subnet: str, *flags):
    sandbox.netkit("network", "create", net, "--subnet", subnet, *flags)
    sandbox.netkit("container", "create", f"{net}-a", "--net", net)
    sandbox.netkit("container", "create", f"{net}-b", "--net", net)
    prefix = subnet.rsplit(".", 1)[0]
    return f"{net}-a", f"{net}-b", prefix


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "no-anti-spoofing"])
def test_ip_and_source_spoofing(sandbox, backend, servers, guarded):
    a, b, p = _pair(sandbox, "app", "172.20.0.0/24", *([] if guarded else ["--no-anti-spoofing"]))
    sink = servers(b, "udp", 7777)
    outside = servers("outside", "udp", 7778)
    assert ask(a, "udp", f"{p}.3", 7777) == f"{b} {p}.2"  # legit traffic passes
    sandbox.ns(a, f"ping -c1 -W1 {p}.1", check=False)
    me, gw, bmac = mac_of("eth0", a), mac_of("br-app"), mac_of("eth0", b)
    send(a, bmac, me, 0x0800, _udp(f"{p}.9", f"{p}.3", 5555, 7777, b"spoof-ip"))  # a neighbour's IP
    send(a, gw, me, 0x0800, _udp(f"{p}.3", OUT, 5555, 7778, b"spoof-sibling"))  # the sibling's, outwards
    send(a, gw, me, 0x0800, _udp("8.8.8.8", OUT, 5555, 7778, b"spoof-8888"))  # arbitrary, un-NATed
    if guarded:
        time.sleep(NOTHING_WITHIN)
        assert sink.peers == [f"{p}.2"]
        assert outside.peers == []
    else:  # the probe sees the hole when there is no guard
        wait_for(lambda: f"{p}.9" in sink.peers, what=f"the spoofed {p}.9 datagram at {b}")
        wait_for(lambda: "8.8.8.8" in outside.peers, what="the un-NATed 8.8.8.8 datagram outside")


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "no-anti-spoofing"])
def test_mac_takeover(sandbox, backend, servers, guarded):
    a, b, p = _pair(sandbox, "app", "172.20.0.0/24", *([] if guarded else ["--no-anti-spoofing"]))
    servers(b, "udp", 7777)
    sandbox.ns(b, f"ping -c1 -W1 {p}.1")  # the bridge learns b's MAC on b's port
    bmac, gw = mac_of("eth0", b), mac_of("br-app")
    vb = sandbox.inspect("container", b)["endpoints"][0]["host_interface"]
    va = sandbox.inspect("container", a)["endpoints"][0]["host_interface"]
    for _ in range(3):  # a claims b's MAC (and IP): the bridge would move b's MAC to a's port
        send(a, gw, bmac, 0x0800, _udp(f"{p}.3", f"{p}.1", 5555, 9, b"takeover"))
    def fdb() -> str:
        return sandbox.sh(f"bridge fdb show br br-app | grep -i '^{bmac} '", check=False).stdout

    if guarded:
        time.sleep(NOTHING_WITHIN)
        assert f"dev {vb}" in fdb() and f"dev {va}" not in fdb()
        assert ask(a, "udp", f"{p}.3", 7777) == f"{b} {p}.2"
    else:
        wait_for(lambda: f"dev {va}" in fdb(), what=f"the bridge to learn b's MAC on a's port {va}")


@pytest.mark.parametrize("guarded", [True, False], ids=["guarded", "no-anti-spoofing"])
def test_arp_spoof_of_the_gateway(sandbox, backend, guarded):
    a, b, p = _pair(sandbox, "app", "172.20.0.0/24", *([] if guarded else ["--no-anti-spoofing"]))
    gw_ip, gw = f"{p}.1", mac_of("br-app")
    sandbox.ns(b, f"ping -c1 -W1 {gw_ip}")  # b has an entry for the gateway
    me, bmac = mac_of("eth0", a), mac_of("eth0", b)
    time.sleep(1.1)  # past the neighbour locktime (1 s), so that a lie would be taken
    for op, dst in ((1, bmac), (2, bmac), (2, "ff:ff:ff:ff:ff:ff")):  # request to b, reply, gratuitous
        send(a, dst, me, 0x0806, _arp(op, me, gw_ip, bmac if dst == bmac else "00:00:00:00:00:00",
                                      f"{p}.3" if dst == bmac else gw_ip))
    def entry() -> str:
        return sandbox.ns(b, f"ip neigh show {gw_ip}").stdout

    if guarded:
        time.sleep(NOTHING_WITHIN)
        assert gw in entry() and me not in entry()
    else:
        wait_for(lambda: me in entry(), what=f"b to take a's lie about {gw_ip}")


def test_anti_spoofing_doctor_and_reset(sandbox, backend):
    a, b, p = _pair(sandbox, "app", "172.20.0.0/24")
    va = sandbox.inspect("container", a)["endpoints"][0]["host_interface"]
    assert "ok: anti-spoofing holds for 2 container port(s)" in sandbox.netkit("doctor", check=False).stdout
    sandbox.sh(f'nft delete element bridge netkit guarded {{ "{va}" }}')
    doc = sandbox.netkit("doctor", check=False)
    assert doc.returncode == 1 and f"anti-spoofing missing for container '{a}'" in doc.stdout
    sandbox.netkit("doctor", "--fix", check=False)
    assert "ok: anti-spoofing holds for 2 container port(s)" in sandbox.netkit("doctor", check=False).stdout
    sandbox.netkit("container", "rm", a)
    assert va not in sandbox.sh("nft list table bridge netkit").stdout
    sandbox.netkit("reset")
    assert sandbox.sh("nft list table bridge netkit", check=False).returncode != 0


# ---- --link ----------------------------------------------------------------------------------

def test_link_on_no_icc_user_network_is_a_name_only(sandbox, backend, servers):
    sandbox.netkit("network", "create", "quiet", "--subnet", "172.23.0.0/24", "--no-icc")
    sandbox.netkit("container", "create", "q1", "--net", "quiet", "--expose", "80")
    sandbox.netkit("container", "create", "q2", "--net", "quiet", "--link", "q1")
    servers("q1", "tcp", 80)
    assert ask("q2", "tcp", "172.23.0.2", 80, timeout=0.7) is None
    assert "172.23.0.2" in sandbox.ns("q2", "getent hosts q1").stdout  # the name still resolves


def test_link_on_the_default_network_with_icc_off_opens_the_port(sandbox, backend, servers):
    backend(icc=False)
    sandbox.netkit("container", "create", "d1", "--expose", "80")
    sandbox.netkit("container", "create", "d2", "--link", "d1")
    sandbox.netkit("container", "create", "d3")
    ip1 = sandbox.inspect("container", "d1")["endpoints"][0]["ip"]
    servers("d1", "tcp", 80)
    servers("d1", "tcp", 81)
    assert ask("d2", "tcp", ip1, 80) is not None
    assert ask("d2", "tcp", ip1, 81, timeout=0.7) is None  # exactly the exposed port
    assert ask("d3", "tcp", ip1, 80, timeout=0.7) is None


# ---- br_netfilter and ip_forward -------------------------------------------------------------

NF_CALL = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def test_no_icc_isolates_with_bridge_nf_call_iptables_off(sandbox, backend, servers):
    if not os.path.exists(NF_CALL):
        pytest.skip("br_netfilter is not loaded in this kernel")
    with open(NF_CALL, "w") as fh:  # this sandbox's netns only
        fh.write("0")
    sandbox.netkit("network", "create", "quiet", "--subnet", "172.23.0.0/24", "--no-icc")
    sandbox.netkit("container", "create", "q1", "--net", "quiet")
    sandbox.netkit("container", "create", "q2", "--net", "quiet")
    servers("q1", "tcp", 80)
    assert ask("q2", "tcp", "172.23.0.2", 80, timeout=0.7) is None
    assert "ok: bridged frames of quiet go through iptables" in sandbox.netkit("doctor", check=False).stdout
    sandbox.sh("ip link set br-quiet type bridge nf_call_iptables 0")
    assert ask("q2", "tcp", "172.23.0.2", 80) is not None  # the hole doctor must name
    doc = sandbox.netkit("doctor", check=False)
    assert doc.returncode == 1 and "--no-icc on 'quiet' does not isolate" in doc.stdout
    sandbox.netkit("doctor", "--fix", check=False)
    assert ask("q2", "tcp", "172.23.0.2", 80, timeout=0.7) is None


def test_ip_forward_false_is_reported_and_warned(sandbox, backend):
    backend(ip_forward=False)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    made = sandbox.netkit("container", "create", "web", "--net", "app")
    assert "WARNING: IPv4 forwarding is disabled. Networking will not work." in made.stderr
    doc = sandbox.netkit("doctor", check=False)
    assert doc.returncode == 1 and "\"ip_forward\": false" in doc.stdout
