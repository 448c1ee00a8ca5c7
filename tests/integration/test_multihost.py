"""Issue 15: several hosts in one sandbox, overlay networks over VXLAN on an etcd store.

Each test builds its own world of three hosts (h1..h3, a `sleep` process each holding a netns,
mount and UTS namespace), the underlay bridge and an etcd server, from the pytest process
(which the suite's sandbox already isolates), and runs commands on the hosts through
`netkit sandbox on hK`, as a user would. Run just these with `-m multihost`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from netkit import multihost as mh
from netkit import sandbox as sb
from required import need
from waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.multihost]

NETKIT = [sys.executable, "-m", "netkit"]
CLUSTER = [sys.executable, "-m", "netkit.cluster"]


class World:
    def __init__(self, cluster: mh.Cluster):
        self.cluster = cluster

    def on(self, host: str, argv: list[str], check=True, timeout=60, env=None) -> subprocess.CompletedProcess:
        proc = subprocess.run(NETKIT + ["sandbox", "on", host, "--"] + [str(a) for a in argv],
                              capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"on {host}: {' '.join(map(str, argv))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def kit(self, host: str, *args, check=True) -> subprocess.CompletedProcess:
        return self.on(host, CLUSTER + list(args), check=check)

    def host_sh(self, host: str, cmd: str, check=True, timeout=60) -> subprocess.CompletedProcess:
        return self.on(host, ["bash", "-c", cmd], check=check, timeout=timeout)

    def create(self, host: str, name: str, net: str = "ov") -> str:
        out = self.kit(host, "container", "create", name, "--net", net).stdout.split()
        return out[1]  # "NAME IP MAC on HOST"

    def pings(self, host: str, container: str, targets: list[str]) -> list[str]:
        """The targets that did NOT answer a ping from `container` on `host` within ~10 s each:
        a remote host's agent programs the entries from a watch, which lags on a loaded machine."""
        loop = "; ".join(f"ping -c1 -W1 -q {ip} >/dev/null || ping -c1 -W1 -w10 -q {ip} >/dev/null || echo {ip}"
                         for ip in targets)
        return self.host_sh(host, f"ip netns exec {container} bash -c '{loop}'").stdout.split()

    def status(self, host: str = "h1") -> dict:
        return json.loads(self.kit(host, "status").stdout)

    def disagreement(self, host: str) -> str:
        """`cluster check` on the host: '' when its kernel and the store agree, else its report."""
        proc = self.kit(host, "check", check=False)
        out = proc.stdout.strip()
        return "" if proc.returncode == 0 and out == f"{host}: kernel and store agree" else out + proc.stderr

    def wait_agreement(self, hosts, timeout: float = 60) -> None:
        """Every host's kernel agrees with the store (exactly: nothing missing, nothing stray).
        The other hosts' agents program a change from their etcd watch, asynchronously and late on a
        loaded machine: a check made at once tests the scheduler, not the agents."""
        last: dict[str, str] = {}

        def agreed() -> bool:
            last.clear()
            last.update({h: r for h in hosts if (r := self.disagreement(h))})
            return not last

        try:
            wait_for(agreed, timeout=timeout, interval=0.3, what=f"kernel and store to agree on {', '.join(hosts)}")
        except AssertionError as err:
            raise AssertionError(f"{err}; still disagreeing: {last}") from None


@pytest.fixture
def world(monkeypatch):
    if not sb.in_sandbox():
        pytest.skip("needs the sandbox: run the suite with scripts/test")
    need("etcd", "sleep", "ip", "ping", "bash")
    from netkit.kernel import nsutil

    monkeypatch.setenv("NETKIT_CLUSTER_TTL", "3")  # the host-death test waits for one lease
    home = nsutil.current_netns_fd()
    state = tempfile.mkdtemp(prefix="netkit-hosts-test-")
    nsutil.unshare(nsutil.CLONE_NEWNET)
    cluster = mh.Cluster(state)
    try:
        sb.mount_private_dirs()
        cluster.build(3)
        yield World(cluster)
    finally:
        cluster.destroy()
        sb.unmount_private_dirs()
        nsutil.setns(home, nsutil.CLONE_NEWNET)
        os.close(home)
        shutil.rmtree(state, ignore_errors=True)


def test_hosts_have_own_namespaces_state_and_config(world):
    seen = {}
    for k in (1, 2, 3):
        host = f"h{k}"
        out = world.host_sh(host, "hostname; ip -4 -o addr show uplink | awk '{print $4}'; "
                             f"{sys.executable} -m netkit config show | grep ^cluster_; echo $NETKIT_STATE_DIR").stdout.split("\n")
        assert out[0] == host
        assert out[1] == f"198.18.1.{10 + k}/24"
        assert out[2] == "cluster_store: etcd://198.18.1.1:2379"
        assert out[3] == f"cluster_advertise: 198.18.1.{10 + k}"
        seen[host] = out[4]
    assert len(set(seen.values())) == 3  # a state folder each
    # Every host reaches the others and the store over the underlay.
    assert world.host_sh("h1", "ping -c1 -W2 198.18.1.13 >/dev/null && ping -c1 -W2 198.18.1.1 >/dev/null && "
                          "ping -c1 -W2 198.18.1.2 >/dev/null").returncode == 0
    # A netns made on one host is not seen on another.
    world.host_sh("h2", "ip netns add only-on-h2")
    assert "only-on-h2" not in world.host_sh("h1", "ip netns list").stdout
    assert "only-on-h2" in world.host_sh("h2", "ip netns list").stdout
    bad = world.on("h1", ["true"], check=False)
    assert bad.returncode == 0
    missing = subprocess.run(NETKIT + ["sandbox", "on", "h7", "--", "true"], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "netkit: no host 'h7' in this sandbox; hosts: h1 h2 h3"


def test_sandbox_command_builds_hosts_and_runs_on_h1():
    """The real `netkit sandbox --hosts 2` command, nested in the suite's sandbox."""
    if not sb.in_sandbox():
        pytest.skip("needs the sandbox: run the suite with scripts/test")
    need("etcd", "bash", "hostname")
    cmd = "hostname; netkit sandbox on h2 -- hostname; netkit config show | grep cluster_store"
    proc = subprocess.run(NETKIT + ["sandbox", "--hosts", "2", "--", "bash", "-c", cmd],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:3] == ["h1", "h2", "cluster_store: etcd://198.18.1.1:2379"]
    bad = subprocess.run(NETKIT + ["sandbox", "--hosts", "0", "--", "true"], capture_output=True, text=True)
    assert (bad.returncode, bad.stderr.strip()) == (2, "netkit: --hosts 0: give a number of hosts from 1 to 9")


def test_containers_on_three_hosts_reach_each_other_over_vxlan_only(world):
    need("tcpdump")
    out = world.kit("h1", "network", "create", "ov", "--subnet", "10.10.0.0/24").stdout
    assert out.strip() == "ov vni 4096 10.10.0.0/24 gateway 10.10.0.1"
    # network ls on another host shows it, with scope global
    assert "ov               overlay  global      4096 10.10.0.0/24" in world.kit("h3", "network", "ls").stdout
    where = {}
    for k in range(9):
        host = f"h{k % 3 + 1}"
        where[f"c{k}"] = (host, world.create(host, f"c{k}"))
    ips = [ip for _, ip in where.values()]
    assert len(set(ips)) == 9

    pcap = os.path.join(mh.HOSTS_DIR, "underlay.pcap")
    # --immediate-mode: libpcap's ring otherwise hands packets over when a block fills or its 1 s
    # timeout passes, and a capture stopped within that second (fast pings) writes nothing.
    dump = subprocess.Popen(["tcpdump", "-n", "-U", "--immediate-mode", "-i", mh.UNDERLAY, "-w", pcap],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert b"listening" in dump.stderr.readline()
        for name, (host, ip) in where.items():
            others = [other for other in ips if other != ip]
            assert world.pings(host, name, others) == [], f"{name} on {host} cannot reach them"
    finally:
        time.sleep(0.2)
        dump.terminate()
        dump.wait()
    hosts = " or ".join(f"host 198.18.1.{10 + k}" for k in (1, 2, 3))
    between_hosts = f"ip and src net 198.18.1.0/24 and dst net 198.18.1.0/24 and not host 198.18.1.1 and not host 198.18.1.2"
    other = subprocess.run(["tcpdump", "-n", "-r", pcap, f"{between_hosts} and not udp dst port 4789"],
                           capture_output=True, text=True)
    assert other.stdout == "", f"non-VXLAN traffic between hosts:\n{other.stdout[:2000]}"
    vxlan = subprocess.run(["tcpdump", "-n", "-r", pcap, f"({hosts}) and udp dst port 4789"],
                           capture_output=True, text=True).stdout
    # Inner headers: each container pair's ICMP, inside VXLAN with the network's VNI.
    assert "VXLAN, flags [I] (0x08), vni 4096" in vxlan
    c0, c1 = where["c0"][1], where["c1"][1]
    assert f"{c0} > {c1}: ICMP echo request" in vxlan
    # 8 remote peers per container: 2 with a host key per other host... every host agrees.
    world.wait_agreement(("h1", "h2", "h3"))
    fdb = world.host_sh("h1", "bridge fdb show dev vxlan4096 | grep ' dst ' | wc -l").stdout.strip()
    assert fdb == "6"  # the six containers of h2 and h3, nothing for h1's own, no all-zeros flood entry
    mtu = world.host_sh("h2", "ip netns exec c1 cat /sys/class/net/eth0/mtu").stdout.strip()
    assert mtu == "1450"


def test_concurrent_creates_on_three_hosts_get_distinct_addresses(world):
    world.kit("h1", "network", "create", "ov", "--subnet", "10.20.0.0/24")
    script = ("import sys\nfrom netkit.cluster import overlay\nm = overlay.membership()\n"
              "for i in range(20):\n    overlay.create_container(m, f'{m.host}-{i}', 'ov')\n")
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(host: str) -> None:
        results[host] = world.on(host, [sys.executable, "-c", script], check=False, timeout=180)

    threads = [threading.Thread(target=run, args=(f"h{k}",)) for k in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for host, proc in results.items():
        assert proc.returncode == 0, f"{host}: {proc.stderr}"
    endpoints = world.status()["endpoints"]
    ips = [ep["ip"] for ep in endpoints]
    assert len(endpoints) == 60 and len(set(ips)) == 60
    for k in (1, 2, 3):
        host = f"h{k}"
        mine = {ep["container"]: ep["ip"] for ep in endpoints if ep["host"] == host}
        assert len(mine) == 20
        # The kernel holds what the store says: each container's address, and the 40 remote entries.
        listing = world.host_sh(host, "for n in $(ip netns list | cut -d' ' -f1); do "
                                 "echo $n $(ip -n $n -4 -o addr show eth0 | awk '{print $4}'); done").stdout
        kernel = dict(line.split() for line in listing.strip().split("\n"))
        assert {n: ip.split("/")[0] for n, ip in kernel.items()} == mine
    # The other hosts' agents program the last creates from their watch: wait (bounded) until every
    # kernel agrees exactly with the store, then count: 40 remote entries each, no duplicate.
    world.wait_agreement(("h1", "h2", "h3"))
    for host in ("h1", "h2", "h3"):
        assert world.host_sh(host, "ip neigh show dev vxlan4096 | wc -l").stdout.strip() == "40"
        assert world.host_sh(host, "bridge fdb show dev vxlan4096 | grep -c ' dst '", check=False).stdout.strip() == "40"


def test_store_down_then_back(world):
    world.kit("h1", "network", "create", "ov", "--subnet", "10.30.0.0/24")
    ip1 = world.create("h1", "c1")
    ip2 = world.create("h2", "c2")
    assert world.pings("h1", "c1", [ip2]) == []

    world.cluster.stop_store()  # as a crash: SIGKILL
    # Overlay changes fail with one clear line, exit 1, and leave nothing behind.
    for argv in (["container", "create", "c3", "--net", "ov"], ["network", "create", "ov2"], ["network", "ls"]):
        proc = world.kit("h1", *argv, check=False)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().split("\n")
        assert len(lines) == 1 and "cluster store etcd://198.18.1.1:2379 is unreachable" in lines[0], proc.stderr
    assert "c3" not in world.host_sh("h1", "ip netns list").stdout
    # Existing containers keep forwarding, both ways.
    assert world.pings("h1", "c1", [ip2]) == []
    assert world.pings("h2", "c2", [ip1]) == []
    # Single-host networks do not depend on the store. (On h3, which has no overlay container:
    # the FORWARD policy DROP that a local network brings would also apply to the overlay
    # bridge's traffic until the engine writes rules for overlay networks too, phase 2.)
    world.on("h3", NETKIT + ["network", "create", "local", "--subnet", "172.30.0.0/24"])
    world.on("h3", NETKIT + ["container", "create", "l1", "--net", "local"])
    world.on("h3", NETKIT + ["container", "create", "l2", "--net", "local"])
    assert world.host_sh("h3", "ip netns exec l1 ping -c1 -W2 172.30.0.3 >/dev/null").returncode == 0

    world.cluster.start_store()
    # Each agent notices and re-syncs; then a change made anywhere reaches everyone.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        logs = [world.host_sh(f"h{k}", "cat /run/netkit/cluster/agent.log", check=False).stdout for k in (1, 2)]
        if all("re-synced" in log for log in logs):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"agents did not re-sync: {logs}")
    ip3 = world.create("h2", "c3")
    assert world.pings("h1", "c1", [ip2, ip3]) == []
    assert world.pings("h2", "c3", [ip1]) == []
    world.wait_agreement(("h1", "h2", "h3"))


def test_dead_host_disappears_from_the_others_within_a_lease(world):
    world.kit("h1", "network", "create", "ov", "--subnet", "10.40.0.0/24")
    world.create("h1", "c1")
    ip3 = world.create("h3", "c3")
    # h1's agent programs c3 from its watch, a moment after the create returns on h3.
    wait_for(lambda: ip3 in world.host_sh("h1", "ip neigh show dev vxlan4096").stdout,
             what=f"h3's container {ip3} programmed on h1")
    world.cluster.kill_host("h3")
    start = time.monotonic()
    while ip3 in world.host_sh("h1", "ip neigh show dev vxlan4096").stdout:
        assert time.monotonic() - start < 3 * 3, "h3's container still programmed on h1 after 3 lease TTLs"
        time.sleep(0.2)
    assert "h3" not in world.status()["hosts"]
    world.wait_agreement(("h1",))  # the FDB entry goes out just after the neighbour entry
