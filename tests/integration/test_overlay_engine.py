"""Issue 15, phase 2: overlay networks through the engine (`netkit network create --driver overlay`,
`netkit container create --net OVERLAY`) on three hosts, with real VXLAN packets on the underlay.

Every host also has a local bridge network, so the FORWARD policy is DROP and br_netfilter sends
the overlay bridge's frames through netkit's rules: the overlay only works if the engine's rule
set covers the overlay bridges too. The world (hosts, underlay, etcd) is test_multihost's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from netkit import multihost as mh
from required import need
from test_multihost import NETKIT, World, world  # noqa: F401 - `world` is the fixture

pytestmark = [pytest.mark.root, pytest.mark.multihost]

HOSTS = ("h1", "h2", "h3")


def netkit(w: World, host: str, *args, check=True) -> subprocess.CompletedProcess:
    return w.on(host, NETKIT + list(args), check=check)


def unreachable(w: World, host: str, container: str, targets: list[str]) -> list[str]:
    """Targets (addresses or names) that did not answer one ping from `container`, all pinged at once."""
    loop = " ".join(f"(ping -c1 -W3 -q {t} >/dev/null 2>&1 || echo {t}) &" for t in targets)
    return w.host_sh(host, f"ip netns exec {container} bash -c '{loop} wait'", timeout=120).stdout.split()


def test_thirty_containers_on_three_hosts_reach_each_other_by_ip_and_name(world):
    need("tcpdump", "ping")
    for k, host in enumerate(HOSTS):
        # A local network first: FORWARD policy DROP on every host from now on.
        netkit(world, host, "network", "create", "loc", "--subnet", f"172.30.{k}.0/24")
        netkit(world, host, "container", "create", "l1", "--net", "loc")
    out = netkit(world, "h1", "network", "create", "--driver", "overlay", "ov", "--subnet", "10.50.0.0/24").stdout
    assert len(out.strip()) == 64  # the id, as for any network
    # Every host lists it, scope global, before any container of its own is on it.
    for host in HOSTS:
        views = {v["name"]: v for v in json.loads(netkit(world, host, "network", "ls", "--json").stdout)}
        assert (views["ov"]["driver"], views["ov"]["scope"], views["ov"]["subnet"]) == ("overlay", "global", "10.50.0.0/24")
        assert views["loc"]["scope"] == "local"
    assert "overlay   global" in netkit(world, "h2", "network", "ls").stdout

    # 30 containers, 10 per host, the three hosts creating at the same time (one IPAM, in etcd).
    where: dict[str, str] = {}
    errors: list[str] = []

    def create_all(host: str) -> None:
        script = "; ".join(f"{sys.executable} -m netkit container create {host}c{i} --net ov >/dev/null || exit 1" for i in range(10))
        proc = world.host_sh(host, script, check=False, timeout=300)
        if proc.returncode != 0:
            errors.append(f"{host}: {proc.stderr}")

    threads = [threading.Thread(target=create_all, args=(h,)) for h in HOSTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    net = json.loads(netkit(world, "h3", "network", "inspect", "--netkit", "ov").stdout)
    for name, ep in net["containers"].items():
        where[name] = ep["ip"]
        assert ep["host"] == name[:2]
    assert len(where) == 30 and len(set(where.values())) == 30
    # Each host's agent programs the others' last containers from its etcd watch, after their
    # creates returned: wait (bounded) until every kernel agrees exactly with the store.
    world.wait_agreement(HOSTS)

    pcap = os.path.join(mh.HOSTS_DIR, "overlay-engine.pcap")
    # --immediate-mode: libpcap's ring otherwise hands packets over when a block fills or its 1 s
    # timeout passes, and a capture stopped within that second (fast pings) writes nothing.
    dump = subprocess.Popen(["tcpdump", "-n", "-U", "--immediate-mode", "-i", mh.UNDERLAY, "-w", pcap],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert b"listening" in dump.stderr.readline()
        # All pairs, 30 x 29 = 870 by address and 870 by name; each source pings its 29 at once.
        failures = []
        for name, ip in sorted(where.items()):
            host = name[:2]
            others = [n for n in where if n != name]
            failures += [f"{name} -> {t}" for t in unreachable(world, host, name, [where[n] for n in others])]
            failures += [f"{name} -> {t}" for t in unreachable(world, host, name, others)]
        assert failures == [], f"{len(failures)} pairs failed: {failures[:20]}"
    finally:
        time.sleep(0.2)
        dump.terminate()
        dump.wait()
    between = ("ip and src net 198.18.1.0/24 and dst net 198.18.1.0/24 "
               "and not host 198.18.1.1 and not host 198.18.1.2")
    other = subprocess.run(["tcpdump", "-n", "-r", pcap, f"{between} and not udp dst port 4789"],
                           capture_output=True, text=True)
    assert other.stdout == "", f"non-VXLAN traffic between hosts:\n{other.stdout[:2000]}"
    vxlan = subprocess.run(["tcpdump", "-n", "-r", pcap, f"{between} and udp dst port 4789"],
                           capture_output=True, text=True).stdout
    assert "VXLAN, flags [I] (0x08), vni 4096" in vxlan
    assert f"{where['h1c0']} > {where['h2c0']}: ICMP echo request" in vxlan

    # Egress through the host's own bridge (MASQUERADE out of the uplink), local networks intact.
    world.host_sh("h2", "ip netns exec h2c3 ping -c1 -W2 198.18.1.2 >/dev/null")
    world.host_sh("h2", "ip netns exec l1 ping -c1 -W2 172.30.1.1 >/dev/null")
    # The engine's rules include the overlay bridge, and each host's share agrees with the store.
    rules = world.host_sh("h1", "iptables-save -t filter").stdout  # backend auto: what `iptables` is
    assert "-A NETKIT-FORWARD -i ovbr4096 -o ovbr4096 -j ACCEPT" in rules
    for host in HOSTS:
        report = netkit(world, host, "doctor").stdout
        assert "ok: this host's overlay data plane agrees with the cluster store" in report, report
        assert "problem" not in report, report
    # inspect says where a container runs, from any host.
    assert json.loads(netkit(world, "h1", "container", "inspect", "--netkit", "h3c4").stdout)["host"] == "h3"
    assert json.loads(netkit(world, "h3", "container", "inspect", "--netkit", "h3c4").stdout)["host"] == "h3"
    # and in Docker's shape: the node, and the network cluster-wide with its VNI
    docker = json.loads(netkit(world, "h1", "container", "inspect", "h3c4").stdout)[0]
    assert docker["Node"]["Name"] == "h3" and docker["NetworkSettings"]["Networks"]["ov"]["IPAddress"] == where["h3c4"]
    dnet = json.loads(netkit(world, "h1", "network", "inspect", "ov").stdout)[0]
    assert (dnet["Scope"], dnet["Driver"], len(dnet["Containers"])) == ("global", "overlay", 30)
    assert dnet["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4096"


def test_remove_releases_and_the_last_container_takes_the_devices(world):
    netkit(world, "h1", "network", "create", "--driver", "overlay", "ov", "--subnet", "10.60.0.0/24")
    netkit(world, "h1", "container", "create", "a1", "--net", "ov")
    netkit(world, "h2", "container", "create", "b1", "--net", "ov")
    ip = json.loads(netkit(world, "h2", "container", "inspect", "--netkit", "b1").stdout)["endpoints"][0]["ip"]
    world.host_sh("h1", f"ip netns exec a1 ping -c1 -W2 {ip} >/dev/null && ip netns exec a1 ping -c1 -W2 b1 >/dev/null")
    # A second network under running agents: h1's agent skipped ov2 while h1 had no device for
    # it, so the create that makes h1's devices programs them itself (reachable on return).
    netkit(world, "h2", "network", "create", "--driver", "overlay", "ov2", "--subnet", "10.61.0.0/24")
    netkit(world, "h2", "container", "create", "b2", "--net", "ov2", "--ip", "10.61.0.20")
    netkit(world, "h1", "container", "create", "a2", "--net", "ov2")
    world.host_sh("h1", "ip netns exec a2 ping -c1 -W1 10.61.0.20 >/dev/null")
    netkit(world, "h1", "container", "rm", "a2")
    netkit(world, "h2", "container", "rm", "b2")
    netkit(world, "h2", "network", "rm", "ov2")
    busy = netkit(world, "h3", "network", "rm", "ov", check=False)
    assert (busy.returncode, busy.stderr.strip()) == \
        (2, "netkit: overlay network 'ov' has 2 container(s) (a1, b1): remove them first")
    netkit(world, "h2", "container", "rm", "b1")
    assert "vxlan4096" not in world.host_sh("h2", "ip -o link").stdout  # h2's last one: devices gone
    assert "b1" not in netkit(world, "h1", "network", "inspect", "ov").stdout
    # The address is free again: the next container anywhere may get it.
    netkit(world, "h3", "container", "create", "c1", "--net", "ov", "--ip", ip, "--hostname", "cache")
    # By name and by its own hostname, from another host (h1's DNS, rewritten by h1's agent).
    world.host_sh("h1", "ip netns exec a1 ping -c1 -W2 c1 >/dev/null && ip netns exec a1 ping -c1 -W2 cache >/dev/null")
    # and qualified with the network's name, as Docker answers `c1.ov` (issue 17)
    world.host_sh("h1", "ip netns exec a1 ping -c1 -W2 c1.ov >/dev/null && ip netns exec a1 ping -c1 -W2 cache.ov >/dev/null")
    netkit(world, "h1", "container", "rm", "a1")
    netkit(world, "h3", "container", "rm", "c1")
    netkit(world, "h2", "network", "rm", "ov")
    for host in HOSTS:
        assert "ov" not in netkit(world, host, "network", "ls").stdout
        assert "ovbr" not in world.host_sh(host, "ip -o link").stdout


def test_store_down_overlay_changes_fail_with_one_line(world):
    netkit(world, "h1", "network", "create", "--driver", "overlay", "ov", "--subnet", "10.70.0.0/24")
    netkit(world, "h1", "container", "create", "a1", "--net", "ov")
    world.cluster.stop_store()
    proc = netkit(world, "h1", "container", "create", "a2", "--net", "ov", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("netkit: cluster store etcd://198.18.1.1:2379 is unreachable"), proc.stderr
    assert len(proc.stderr.strip().split("\n")) == 1
    assert "a2" not in world.host_sh("h1", "ip netns list").stdout
    assert "a2" not in netkit(world, "h1", "container", "ls").stdout
    # Local networks keep working on the same host.
    netkit(world, "h1", "network", "create", "loc", "--subnet", "172.31.0.0/24")
    netkit(world, "h1", "container", "create", "l1", "--net", "loc")
    world.cluster.start_store()
    netkit(world, "h1", "container", "create", "a2", "--net", "ov")
    world.host_sh("h1", "ip netns exec a2 ping -c1 -W2 a1 >/dev/null")
