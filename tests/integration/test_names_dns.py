"""Issue 6: hostnames, /etc/hosts, resolv.conf and DNS between containers, resolved for real."""
from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

import pytest
from nettools import foreign_netns_process
from waiting import wait_for

from netkit.kernel import nsutil

pytestmark = pytest.mark.root


def resolve(sandbox, container: str, name: str) -> str | None:
    """What getaddrinfo inside the container answers (None when the name does not resolve)."""
    code = ("import socket,sys\ntry:\n print(socket.getaddrinfo(sys.argv[1], None, socket.AF_INET)[0][4][0])\n"
            "except socket.gaierror:\n print('NONE')")
    out = sandbox.netkit("exec", container, "--", "python3", "-c", code, name).stdout.strip()
    return None if out == "NONE" else out


def etc_digest() -> str:
    h = hashlib.sha256()
    for f in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
        with open(f, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def is_dns_server(pid: int) -> bool:
    """PID runs netkit's DNS server (a zombie has an empty cmdline: it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline") as fh:
            return "netkit.dns.server" in fh.read().replace("\0", " ")
    except (FileNotFoundError, ProcessLookupError):
        return False


def dns_pid(network: str) -> int:
    with open(f"/run/netkit/dns/{network}.pid") as fh:
        return int(fh.read())


def test_names_aliases_links_and_extra_hosts(sandbox):
    host_etc = etc_digest()
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "other", "--subnet", "172.21.0.0/24")
    sandbox.netkit("container", "create", "db", "--net", "app", "--network-alias", "database")
    sandbox.netkit("container", "create", "web", "--net", "app", "--hostname", "www1", "--link", "db:sql",
                   "--add-host", "legacy.example:10.9.8.7", "--dns-search", "corp.example")
    sandbox.netkit("container", "create", "stranger", "--net", "other")

    # DNS server of the network: names and aliases, changes visible at once.
    assert resolve(sandbox, "web", "db") == "172.20.0.2"
    assert resolve(sandbox, "web", "database") == "172.20.0.2"
    assert resolve(sandbox, "db", "www1") == "172.20.0.3"
    # /etc/hosts: own name, link alias, --add-host.
    assert resolve(sandbox, "web", "sql") == "172.20.0.2"
    assert resolve(sandbox, "web", "legacy.example") == "10.9.8.7"
    assert resolve(sandbox, "web", "www1") == "172.20.0.3"
    assert sandbox.netkit("exec", "web", "--", "hostname").stdout.strip() == "www1"
    # Another network's containers are not resolvable, and vice versa.
    assert resolve(sandbox, "stranger", "db") is None
    assert resolve(sandbox, "web", "stranger") is None

    resolv = sandbox.netkit("exec", "web", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 172.20.0.1" in resolv and "search corp.example" in resolv
    # iproute2's convention: plain `ip netns exec` sees the same files.
    assert sandbox.ns("web", "cat /etc/resolv.conf").stdout == resolv
    assert "10.9.8.7\tlegacy.example" in sandbox.ns("web", "cat /etc/hosts").stdout

    info = sandbox.inspect("container", "web")
    assert info["hostname"] == "www1" and info["dns_search"] == ["corp.example"]
    assert info["extra_hosts"] == ["legacy.example:10.9.8.7"] and info["links"] == ["db:sql"]
    assert sandbox.inspect("container", "db")["endpoints"][0]["aliases"] == ["database"]

    sandbox.netkit("container", "create", "late", "--net", "app")
    assert resolve(sandbox, "web", "late") == "172.20.0.4"
    sandbox.netkit("container", "rm", "late")
    assert resolve(sandbox, "web", "late") is None
    assert etc_digest() == host_etc  # the host's own /etc never changes


def test_default_network_has_no_embedded_dns_and_files_follow_host(sandbox):
    sandbox.netkit("container", "create", "a", "--dns", "198.18.0.2", "--dns-option", "ndots:3")
    resolv = sandbox.netkit("exec", "a", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 198.18.0.2" in resolv and "options ndots:3" in resolv
    sandbox.netkit("container", "create", "b")
    plain = sandbox.netkit("exec", "b", "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 198.18.0.2" in plain  # the sandbox's host resolver (its outside host)
    assert resolve(sandbox, "a", "b") is None  # like Docker's default bridge: no names
    assert not os.path.exists("/run/netkit/dns/bridge.pid")


def test_connect_disconnect_update_records(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "back", "--subnet", "172.22.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    sandbox.netkit("container", "create", "api", "--net", "back")
    assert resolve(sandbox, "api", "web") is None
    sandbox.netkit("network", "connect", "back", "web", "--alias", "frontend")
    assert resolve(sandbox, "api", "web") == "172.22.0.3"
    assert resolve(sandbox, "api", "frontend") == "172.22.0.3"
    sandbox.netkit("network", "disconnect", "back", "web")
    assert resolve(sandbox, "api", "web") is None


def test_dns_server_survives_the_cli_and_goes_with_the_network(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    pid = dns_pid("app")
    assert os.path.exists(f"/proc/{pid}")  # every netkit process has exited by now
    assert "netkit.dns.server" in open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    # doctor --fix brings a dead server back (kill it ourselves: it is our own process).
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not is_dns_server(pid), what=f"the killed DNS server (PID {pid}) to be gone")
    broken = sandbox.netkit("doctor", check=False)
    assert broken.returncode == 1 and "DNS server of network 'app' is not running" in broken.stdout
    fixed = sandbox.netkit("doctor", "--fix", check=False)
    assert "restarted DNS server of network 'app'" in fixed.stdout, fixed.stdout
    assert dns_pid("app") != pid
    assert resolve(sandbox, "web", "web") == "172.20.0.2"
    sandbox.netkit("container", "rm", "web")
    sandbox.netkit("network", "rm", "app")
    assert not os.path.exists("/run/netkit/dns/app.pid")
    wait_for(lambda: not any(is_dns_server(int(p)) for p in os.listdir("/proc") if p.isdigit()),
             what="every DNS server process to be gone")


@pytest.mark.parametrize("args,message", [
    (["--add-host", "nocolon"], "expected NAME:IP"),
    (["--add-host", "db:not-an-ip"], "is not an IP address"),
    (["--dns", "8.8.8"], "invalid DNS server"),
    (["--hostname", "-bad"], "hostname"),
    (["--link", "ghost"], "container 'ghost' not found"),
])
def test_malformed_name_options(sandbox, args, message):
    r = sandbox.netkit("container", "create", "x", *args, check=False)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sandbox.netkit("container", "ls", "--json").stdout.strip() == "[]"
    assert not os.path.exists("/etc/netns/x")


def test_attach_gets_name_files_and_dns(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    proc = foreign_netns_process(sandbox)
    sandbox.netkit("attach", "--pid", proc.pid, "--network", "app", "--name", "job",
                   "--add-host", "cache.example:10.0.0.9", "--network-alias", "worker")
    assert resolve(sandbox, "web", "worker") == "172.20.0.3"
    assert resolve(sandbox, "job", "web") == "172.20.0.2"
    assert resolve(sandbox, "job", "cache.example") == "10.0.0.9"


def test_dns_server_answers_only_its_network(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    # argv[1]: how long to wait for the answer; generous where one must come (a loaded CI box).
    query = ("import socket,sys\nfrom dnslib import DNSRecord\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "s.settimeout(float(sys.argv[1]))\ns.sendto(DNSRecord.question('web').pack(),('172.20.0.1',53))\n"
             "try:\n print(DNSRecord.parse(s.recv(4096)).short())\nexcept socket.timeout:\n print('TIMEOUT')")
    inside = sandbox.netkit("exec", "web", "--", sys.executable, "-c", query, "20").stdout.strip()
    assert inside == "172.20.0.2"
    # A neighbour that routes to the gateway address must not get answers (no open resolver).
    sandbox.ns("outside", "ip route add 172.20.0.0/24 via 198.18.0.1")
    outside = sandbox.ns("outside", f"{sys.executable} -c \"{query}\" 1").stdout.strip()
    assert outside == "TIMEOUT"


def test_dns_server_ignores_queries_forged_from_outside(sandbox):
    """The outside host forges web's address as the source of a query to the gateway: the answer
    would be reflected at web. The server hears only what arrives through the network's bridge."""
    import socket
    import struct

    from dnslib import DNSRecord
    from publish_helpers import mac_of, send_frame

    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    with nsutil.entered_netns("/run/netns/web"):
        sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sniff.bind(("eth0", 0))
    sniff.settimeout(0.2)

    def answers_at_web(window: float) -> int:
        count, end = 0, time.monotonic() + window
        while time.monotonic() < end:
            try:
                ip = sniff.recv(2048)[14:]
            except socket.timeout:
                continue
            ihl = (ip[0] & 0xF) * 4
            if ip[9] == 17 and struct.unpack("!H", ip[ihl:ihl + 2])[0] == 53:
                count += 1
        return count

    def forged_query(src: str) -> bytes:
        payload = DNSRecord.question("web").pack()
        udp = struct.pack("!HHHH", 41053, 53, 8 + len(payload), 0) + payload  # checksum 0: none
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton("172.20.0.1"))
        total = sum(struct.unpack("!10H", ip))
        total = (total & 0xFFFF) + (total >> 16)
        return ip[:10] + struct.pack("!H", ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF) + ip[12:] + udp

    # the control: the same query from web itself is answered, and the sniffer sees the answer
    query = ("import socket\nfrom dnslib import DNSRecord\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             "s.settimeout(2)\ns.sendto(DNSRecord.question('web').pack(),('172.20.0.1',53))\n"
             "print(DNSRecord.parse(s.recv(4096)).short())")
    assert sandbox.netkit("exec", "web", "--", sys.executable, "-c", query).stdout.strip() == "172.20.0.2"
    assert answers_at_web(0.5) >= 1
    for _ in range(3):
        send_frame("outside", "eth0", mac_of("uplink"), forged_query("172.20.0.2"))
    assert answers_at_web(1.0) == 0
    sniff.close()
