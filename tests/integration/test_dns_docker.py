"""Issue 17, names and DNS as a Docker user expects, with real queries from inside containers:
`--dns X` forwarded for that container only, the host's resolv.conf followed when it changes,
`name.network`, and `--add-host NAME:host-gateway` (CLI and compose `extra_hosts`).

Upstream resolvers are tests/integration/fakedns.py in the sandbox's `outside` namespace; the
"host's resolv.conf" is the sandbox's own copy (netkit.sandbox.SANDBOX_RESOLV), never /etc's.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
from required import need
from waiting import first_line

from netkit.sandbox import SANDBOX_RESOLV

pytestmark = pytest.mark.root

FAKEDNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakedns.py")
HOST_DNS, OWN_DNS, NEW_HOST_DNS = "198.18.0.2", "198.18.0.53", "198.18.0.54"
# which upstream answered, by the address it gives for any *.example name
FROM_HOST, FROM_OWN, FROM_NEW_HOST = "192.0.2.1", "192.0.2.53", "192.0.2.54"


def upstreams(sandbox) -> None:
    """Three resolvers on the outside host: the sandbox host's, a container's own, the host's next."""
    for ip in (OWN_DNS, NEW_HOST_DNS):
        sandbox.ns("outside", f"ip addr add {ip}/24 dev eth0")
    proc = sandbox.spawn([sys.executable, FAKEDNS, f"{HOST_DNS}={FROM_HOST}", f"{OWN_DNS}={FROM_OWN}",
                          f"{NEW_HOST_DNS}={FROM_NEW_HOST}"], netns="outside")
    assert first_line(proc.stdout, what="the fake upstream resolvers").strip() == "ready"


def getent(sandbox, container: str, name: str) -> str | None:
    """`getent hosts NAME` inside the container: the address, or None if it does not resolve."""
    r = sandbox.netkit("exec", container, "--", "getent", "hosts", name, check=False)
    return r.stdout.split()[0] if r.returncode == 0 else None


def resolv_conf(container: str) -> str:
    with open(f"/etc/netns/{container}/resolv.conf") as fh:
        return fh.read()


def test_dns_servers_per_container_and_the_hosts_resolv_conf_followed(sandbox):
    need("getent")
    upstreams(sandbox)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "own", "--net", "app", "--dns", OWN_DNS)
    sandbox.netkit("container", "create", "plain", "--net", "app")
    sandbox.netkit("container", "create", "legacy", "--dns", OWN_DNS)  # default bridge
    sandbox.netkit("container", "create", "follower")  # default bridge, host's resolvers
    sandbox.netkit("container", "create", "edited")

    # Docker's shape: on a user network the embedded resolver, its upstreams in a comment ...
    text = resolv_conf("own")
    assert "nameserver 172.20.0.1\n" in text and f"# ExtServers: [{OWN_DNS}]" in text
    assert "nameserver" not in text.replace("nameserver 172.20.0.1", "")
    # ... on the default bridge no embedded DNS: --dns written as the nameserver itself
    assert f"nameserver {OWN_DNS}\n" in resolv_conf("legacy") and "172.17.0.1" not in resolv_conf("legacy")

    # --dns is forwarded for that container only; names are still answered locally
    assert getent(sandbox, "own", "ext.example") == FROM_OWN
    assert getent(sandbox, "plain", "ext.example") == FROM_HOST
    assert getent(sandbox, "own", "plain") == "172.20.0.3"
    assert getent(sandbox, "own", "nosuch.invalid") is None  # the upstream's NXDOMAIN, relayed
    assert getent(sandbox, "legacy", "ext.example") == FROM_OWN
    assert getent(sandbox, "follower", "ext.example") == FROM_HOST
    # Forwarded from the container's own namespace, as Docker's resolver dials: a --dns on
    # loopback is the container's own (a resolver running inside it) ...
    sandbox.netkit("container", "create", "selfdns", "--net", "app", "--dns", "127.0.0.1")
    inner = sandbox.spawn([sys.executable, FAKEDNS, "127.0.0.1=192.0.2.127"], netns="selfdns")
    assert first_line(inner.stdout, what="the resolver inside selfdns").strip() == "ready"
    assert getent(sandbox, "selfdns", "ext.example") == "192.0.2.127"
    assert getent(sandbox, "selfdns", "own") == "172.20.0.2"
    # ... and an --internal network reaches no outside resolver, while its names still resolve
    sandbox.netkit("network", "create", "sealed", "--internal", "--subnet", "172.29.0.0/24")
    sandbox.netkit("container", "create", "cut", "--net", "sealed")
    assert getent(sandbox, "cut", "ext.example") is None
    assert getent(sandbox, "cut", "cut.sealed") == "172.29.0.2"

    # The host's resolv.conf changes (a DHCP lease, a VPN): the sandbox's copy only.
    with open(f"/etc/netns/edited/resolv.conf", "a") as fh:
        fh.write("options timeout:1\n")  # the user's own edit: netkit must leave this file alone
    edited = resolv_conf("edited")
    with open(SANDBOX_RESOLV, "w") as fh:
        fh.write(f"nameserver {NEW_HOST_DNS}\n")
    # the embedded resolver re-reads it at the next query, with no netkit command in between
    assert getent(sandbox, "plain", "ext.example") == FROM_NEW_HOST
    assert getent(sandbox, "own", "ext.example") == FROM_OWN  # its own --dns stays
    # files follow at the next netkit change (Docker: at a container's next start); doctor tells
    lag = sandbox.netkit("doctor", check=False)
    assert lag.returncode == 1 and "/etc/netns/follower/resolv.conf is not what netkit writes now" in lag.stdout
    assert "/etc/netns/edited/" not in lag.stdout
    sandbox.netkit("container", "create", "late", "--net", "app")
    assert f"nameserver {NEW_HOST_DNS}\n" in resolv_conf("follower")
    assert getent(sandbox, "follower", "ext.example") == FROM_NEW_HOST
    assert f"# ExtServers: [{NEW_HOST_DNS}]" in resolv_conf("plain")
    assert f"nameserver {OWN_DNS}\n" in resolv_conf("legacy")
    assert resolv_conf("edited") == edited and HOST_DNS in edited
    assert sandbox.netkit("doctor", check=False).returncode == 0


COMPOSE = """\
services:
  api:
    networks: [back]
    extra_hosts: ["gw:host-gateway", "db=10.9.9.9"]
networks:
  back:
    ipam: {config: [{subnet: 172.31.5.0/24}]}
"""


def test_name_dot_network_and_host_gateway(sandbox, tmp_path):
    need("getent")
    upstreams(sandbox)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("network", "create", "other", "--subnet", "172.21.0.0/24")
    sandbox.netkit("container", "create", "db", "--net", "app", "--network-alias", "database")
    sandbox.netkit("container", "create", "web", "--net", "app", "--add-host", "gw:host-gateway")
    sandbox.netkit("container", "create", "stranger", "--net", "other")
    sandbox.netkit("network", "connect", "other", "web", "--alias", "front")

    # `name.network`, aliases too, on every network of the container
    assert getent(sandbox, "web", "db.app") == "172.20.0.2"
    assert getent(sandbox, "web", "database.app") == "172.20.0.2"
    assert getent(sandbox, "stranger", "web.other") == "172.21.0.3"
    assert getent(sandbox, "stranger", "front.other") == "172.21.0.3"
    assert getent(sandbox, "db", "web.app") == "172.20.0.3"
    assert getent(sandbox, "db", "web.other") is None  # db is not on `other`
    # web asks app's server, which knows web's other network too (Docker: all of them)
    assert getent(sandbox, "web", "stranger.other") == "172.21.0.2"
    assert getent(sandbox, "web", "stranger") == "172.21.0.2"
    assert getent(sandbox, "db", "stranger") is None
    # a new container on `other` reaches the records web's server holds for it
    sandbox.netkit("container", "create", "late", "--net", "other")
    assert getent(sandbox, "web", "late.other") == "172.21.0.4"
    sandbox.netkit("network", "disconnect", "other", "web")
    assert getent(sandbox, "web", "late.other") is None and getent(sandbox, "stranger", "web.other") is None

    # --add-host NAME:host-gateway: the host's address as the container sees it
    assert getent(sandbox, "web", "gw") == "172.20.0.1"
    assert sandbox.netkit("container", "inspect", "web", "-f", "{{json .HostConfig.ExtraHosts}}"
                          ).stdout.strip() == '["gw:host-gateway"]'
    lone = sandbox.netkit("container", "create", "lone", "--net", "none", "--add-host", "gw:host-gateway",
                          check=False)
    assert lone.returncode == 2 and "host_gateway_ip" in lone.stderr and len(lone.stderr.splitlines()) == 1
    assert not os.path.exists("/etc/netns/lone")
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        json.dump({"host_gateway_ip": "198.18.0.1"}, fh)  # daemon.json's host-gateway-ip
    sandbox.netkit("container", "create", "lone", "--net", "none", "--add-host", "gw:host-gateway")
    assert "198.18.0.1\tgw\n" in open("/etc/netns/lone/hosts").read()
    os.unlink(os.environ["NETKIT_CONFIG"])

    # compose extra_hosts
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    sandbox.netkit("up", "-f", tmp_path / "compose.yaml", "-p", "proj")
    name = sandbox.netkit("container", "ls", "--filter", "network=proj_back", "--format", "{{.Names}}"
                          ).stdout.split()[0]
    assert getent(sandbox, name, "gw") == "172.31.5.1"
    assert getent(sandbox, name, "db") == "10.9.9.9"
    assert getent(sandbox, name, f"{name}.proj_back") == "172.31.5.2"
