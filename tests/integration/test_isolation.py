"""Isolation with real traffic: MASQUERADE out, --no-masquerade, --internal, --no-icc with --link,
networks apart, ip_forward with FORWARD policy DROP, NETKIT-USER first; each with every kernel
firewall backend (the `backend` fixture), rules read with that backend's own tools."""
import json

import pytest

from fwbackend import USER_DROP, backend, forward_policy, show  # noqa: F401 - backend: a fixture
from publish_helpers import ask
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name

pytestmark = pytest.mark.root
UP, OUT = "198.18.0.1", "198.18.0.2"


def test_way_out_masquerade_nomasquerade_internal(sandbox, backend, servers):
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "0"
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "raw", "--subnet", "172.21.0.0/24", "--no-masquerade")
    sandbox.netkit("network", "create", "int", "--subnet", "172.22.0.0/24", "--internal")
    for name, net in (("a", "app"), ("r", "raw"), ("i", "int")):
        sandbox.netkit("container", "create", name, "--net", net)
    servers("outside", "tcp", 7000)
    assert ask("a", "tcp", OUT, 7000) == f"outside {UP}"  # source seen outside: the uplink address
    assert ask("r", "tcp", OUT, 7000, timeout=0.7) is None  # no route back to 172.21.0.0/24 yet
    assert ask("i", "tcp", OUT, 7000, timeout=0.7) is None
    # With a route back, the outside host answers r's own connections (its address unchanged)...
    sandbox.sh("ip netns exec outside ip route add 172.21.0.0/24 via 198.18.0.1")
    assert ask("r", "tcp", OUT, 7000) == "outside 172.21.0.2"
    assert sandbox.netkit("exec", "r", "--", "ping", "-c1", "-W5", OUT, check=False).returncode == 0
    # ...but what it opens itself towards r, or a, routed straight to their addresses, is dropped,
    # by netkit's own rules, not by the FORWARD policy (a host that routed before keeps ACCEPT).
    set_policy = {"nftables": "nft add chain ip netkit filter-FORWARD '{ policy accept; }'"}
    sandbox.sh(set_policy.get(backend, f"{backend} -w -P FORWARD ACCEPT"))
    assert forward_policy(sandbox, backend) == "ACCEPT"
    servers("r", "tcp", 7001)
    servers("a", "tcp", 7001)
    assert ask("outside", "tcp", "172.21.0.2", 7001, timeout=0.7) is None
    sandbox.sh("ip netns exec outside ip route add 172.20.0.0/24 via 198.18.0.1")
    assert ask("outside", "tcp", "172.20.0.2", 7001, timeout=0.7) is None
    sandbox.sh(set_policy.get(backend, f"{backend} -w -P FORWARD ACCEPT").replace("accept", "drop").replace("ACCEPT", "DROP"))
    p = sandbox.netkit("publish", "80", "i", check=False)
    assert p.returncode == 2 and "internal" in p.stderr
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
    assert forward_policy(sandbox, backend) == "DROP"
    assert "set the FORWARD policy to DROP" in sandbox.netkit("doctor").stdout
    sandbox.netkit("reset")
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "0"
    assert forward_policy(sandbox, backend) == "ACCEPT"


def test_no_icc_links_and_networks_apart(sandbox, backend, servers):
    sandbox.netkit("network", "create", "quiet", "--subnet", "172.23.0.0/24", "--no-icc")
    sandbox.netkit("network", "create", "other", "--subnet", "172.24.0.0/24")
    sandbox.netkit("container", "create", "db", "--net", "quiet", "--expose", "5432")
    sandbox.netkit("container", "create", "app", "--net", "quiet", "--link", "db:database")
    sandbox.netkit("container", "create", "stranger", "--net", "quiet")
    sandbox.netkit("container", "create", "far", "--net", "other")
    servers("db", "tcp", 5432)
    servers("db", "tcp", 5433)
    servers("app", "tcp", 5432)
    servers("stranger", "tcp", 5432)
    # on a user network --link is a name alias only, as in Docker (the default network's link holes:
    # test_security.py::test_link_on_the_default_network_with_icc_off_opens_the_port)
    assert ask("app", "tcp", "172.23.0.2", 5432, timeout=0.7) is None
    assert ask("app", "tcp", "172.23.0.2", 5433, timeout=0.7) is None
    assert ask("db", "tcp", "172.23.0.3", 5432, timeout=0.7) is None  # not the other way round
    assert ask("stranger", "tcp", "172.23.0.2", 5432, timeout=0.7) is None  # no icc
    assert ask("app", "tcp", "172.23.0.4", 5432, timeout=0.7) is None
    servers("far", "tcp", 5432)
    assert ask("far", "tcp", "172.23.0.2", 5432, timeout=0.7) is None  # networks apart
    assert ask("db", "tcp", "172.24.0.2", 5432, timeout=0.7) is None


def test_netkit_user_chain_first_and_kept(sandbox, backend, servers):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    servers("web", "tcp", 80)
    assert ask("outside", "tcp", UP, 8088) == f"web {OUT}"
    save = show(sandbox, backend, "filter")
    if backend == "nftables":
        assert "chain NETKIT-USER {\n\t}" in save
        assert save.index("jump NETKIT-USER") < save.index("jump NETKIT-ISOLATION-1")
    else:
        assert ":NETKIT-USER - " in save and "-A NETKIT-USER" not in save
        assert save.index("-A NETKIT-FORWARD -j NETKIT-USER") < save.index("-A NETKIT-FORWARD -j NETKIT-ISOLATION-1")
    add, user_rule = (text.format(ip=OUT) for text in USER_DROP[backend])
    sandbox.sh(add)
    assert ask("outside", "tcp", UP, 8088, timeout=0.7) is None
    # Full syncs (the whole plan diffed against the kernel): a new network, and doctor --fix.
    sandbox.netkit("network", "create", "other", "--subnet", "172.21.0.0/24")
    assert "br-other" in show(sandbox, backend, "filter")
    assert user_rule in show(sandbox, backend, "filter")
    sandbox.netkit("doctor", "--fix")
    assert user_rule in show(sandbox, backend, "filter")
    # Fast paths (one container's rules only): container create and publish.
    sandbox.netkit("container", "create", "web2", "--net", "app", "-p", "8089:80")
    sandbox.netkit("publish", "8090:80", "web")
    assert user_rule in show(sandbox, backend, "filter")
    assert ask("outside", "tcp", UP, 8088, timeout=0.7) is None  # the user's DROP still comes first
    assert sandbox.netkit("doctor").returncode == 0
    # reset keeps the user's chain (with its rule) and removes everything else of netkit's
    sandbox.netkit("reset")
    assert user_rule in show(sandbox, backend, "filter")
    assert json.loads(sandbox.netkit("rules", "--json").stdout)["tables"]["filter"]["NETKIT-USER"] != []


def test_apart_from_docker_named_bridges_only(sandbox, servers):
    """inet netkit_isolation cuts netkit's networks off from bridges named as Docker's bridge driver
    names them (here br-<12 hex>, not netkit's), both ways, published ports included; an uplink
    that is itself a bridge (vmbr0) keeps routing netkit's containers out and in."""
    for br, net, ns in (("vmbr0", "10.77.0", "lan"), ("br-0123456789ab", "10.78.0", "dock")):
        sandbox.sh(f"ip link add {br} type bridge && ip addr add {net}.1/24 dev {br} && ip link set {br} up && "
                   f"ip netns add {ns} && ip link add {ns}0 type veth peer name eth0 netns {ns} && "
                   f"ip link set {ns}0 master {br} up && ip -n {ns} addr add {net}.2/24 dev eth0 && "
                   f"ip -n {ns} link set eth0 up && ip -n {ns} link set lo up && "
                   f"ip -n {ns} route add default via {net}.1")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "app")
    sandbox.netkit("publish", "8088:7001", "a")
    servers("lan", "tcp", 7000)
    servers("dock", "tcp", 7000)
    servers("a", "tcp", 7001)
    assert ask("a", "tcp", "10.77.0.2", 7000) == "lan 10.77.0.1"  # out through the uplink bridge
    assert ask("lan", "tcp", "10.77.0.1", 8088) == "a 10.77.0.2"  # and in to the published port
    assert ask("a", "tcp", "10.78.0.2", 7000, timeout=0.7) is None
    assert ask("dock", "tcp", "10.78.0.1", 8088, timeout=0.7) is None
    # Without netkit's isolation table both would pass: it is what cuts them.
    sandbox.sh("nft delete table inet netkit_isolation")
    assert ask("a", "tcp", "10.78.0.2", 7000) == "dock 10.78.0.1"
    assert ask("dock", "tcp", "10.78.0.1", 8088) == "a 10.78.0.2"
    assert "netkit_isolation" in sandbox.netkit("doctor", check=False).stdout
    sandbox.netkit("doctor", "--fix")
    assert ask("a", "tcp", "10.78.0.2", 7000, timeout=0.7) is None
