"""Issue 14: a real dockerd (Debian's docker.io) uses netkit's remote network driver, served by
netkitd on /run/docker/plugins/netkit.sock. dockerd runs in the test's sandbox with private
files and cgroups (scripts/dockerbox.py); the image is busybox-static, imported locally.

One dockerd for the whole story (it takes seconds to start): network create, run with a
published port, real traffic from the outside host and between containers (by IP and through
Docker's embedded DNS), out through netkit's NAT, network connect/disconnect, network rm, and netkit's own view
(network ls, the attachment's netns, rules) agreeing with Docker's at each step."""
from __future__ import annotations

import json
import os
import sys

import pytest

from fswatch import created_names
from netkit import adapter
from nettools import start_echo
from required import need
from waiting import wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts"))
import dockerbox  # noqa: E402

pytestmark = pytest.mark.root


def docker_ip(box, container: str, network: str) -> tuple[str, str]:
    """(IP address, EndpointID) of a container on a network, as Docker reports them."""
    nets = json.loads(box.docker("inspect", container, "--format", "{{json .NetworkSettings.Networks}}").stdout)
    return nets[network]["IPAddress"], nets[network]["EndpointID"]


def netkit_networks(sandbox) -> dict:
    return {n["name"]: n for n in json.loads(sandbox.netkit("network", "ls", "--json").stdout)}


def attachment(network_id: str, endpoint_id: str) -> str:
    from netkit.dockerplugin.handlers import network_name

    return adapter.attachment_name(network_name(network_id), endpoint_id, "eth0")


def test_real_dockerd_runs_containers_on_netkit_networks(sandbox):
    need("dockerd", "containerd", dockerbox.DOCKER, dockerbox.BUSYBOX, "curl")
    box = dockerbox.DockerBox()
    box.start()
    try:
        sandbox.netkit("daemon", "start", "--docker-socket", dockerbox.PLUGIN_SOCKET)
        image = box.import_busybox()
        n1 = box.docker("network", "create", "-d", "netkit", "n1").stdout.strip()
        net1 = netkit_networks(sandbox)[f"dk-{n1[:12]}"]
        assert net1["driver"] == "bridge" and net1["bridge"] == f"nk-{n1[:12]}"
        sandbox.sh(f"ip link show nk-{n1[:12]}")

        # A web server with a published port, reached from the outside host through netkit's DNAT.
        box.docker("run", "-d", "--network", "n1", "-p", "8088:80", "--name", "web", image,
                   "sh", "-c", "echo hello-from-web >/www/index.html; exec httpd -f -p 80 -h /www")
        web_ip, web_ep = docker_ip(box, "web", "n1")
        got = sandbox.ns("outside", f"curl -s --max-time 10 http://{sandbox.uplink}:8088/").stdout
        assert got.strip() == "hello-from-web"
        assert f"--to-destination {web_ip}:80" in sandbox.netkit("rules").stdout
        # netkit's attachment is the container's real netns (re-pinned once Docker made it).
        web_att = attachment(n1, web_ep)
        assert sandbox.inspect("container", web_att)["endpoints"][0]["ip"] == web_ip
        wait_for(lambda: f"{web_ip}/" in sandbox.ns(web_att, "ip -br addr", check=False).stdout,
                 what="netkit's netns name for web to show the container's interface")

        # Container to container, by IP and by name (Docker's embedded DNS on a remote driver's network).
        box.docker("run", "-d", "--network", "n1", "--name", "client", image, "sleep", "600")
        for target in (web_ip, "web"):
            got = box.docker("exec", "client", "wget", "-q", "-O", "-", f"http://{target}/").stdout
            assert got.strip() == "hello-from-web", target
        # Out to the outside host through netkit's MASQUERADE (dockerd's FORWARD policy is DROP).
        start_echo(sandbox, None, "tcp", "0.0.0.0", 9000, netns="outside")
        got = box.docker("exec", "client", "sh", "-c", f"printf dk | nc {sandbox.outside} 9000").stdout
        assert got.strip() == f"echo:dk from:{sandbox.uplink}"

        # Isolated both ways from a network of Docker's own bridge driver (netkit/xisolation.py),
        # even with an accept-all rule first in Docker's chains (it rewrites them as it likes).
        box.docker("network", "create", "dbr")
        box.docker("run", "-d", "--network", "dbr", "--name", "other", image, "sh", "-c",
                   "mkdir -p /www; echo other >/www/index.html; exec httpd -f -p 80 -h /www")
        other_ip, _ = docker_ip(box, "other", "dbr")
        got = box.docker("exec", "other", "sh", "-c", f"printf dbr | nc {sandbox.outside} 9000").stdout
        assert got.strip() == f"echo:dbr from:{sandbox.uplink}"  # it does reach out (Docker's NAT)
        fetch = "busybox timeout 1 wget -q -O - http://{}/ || echo blocked"
        assert box.docker("exec", "other", "sh", "-c", fetch.format(other_ip)).stdout.strip() == "other"
        sandbox.sh("iptables -I DOCKER-USER -j ACCEPT")
        # netkit -> Docker; Docker -> netkit, by IP and through the published port (tried at once).
        got = box.docker("exec", "client", "sh", "-c", fetch.format(other_ip)).stdout.split()
        got += box.docker("exec", "other", "sh", "-c", f"({fetch.format(web_ip)}) & "
                          f"({fetch.format(sandbox.uplink + ':8088')}); wait").stdout.split()
        assert got == ["blocked"] * 3, got
        sandbox.sh("iptables -D DOCKER-USER -j ACCEPT")
        box.docker("rm", "-f", "other")
        box.docker("network", "rm", "dbr")

        # docker network connect / disconnect, on a second netkit network, an --internal one.
        n2 = box.docker("network", "create", "-d", "netkit", "--internal", "n2").stdout.strip()
        assert sandbox.inspect("network", f"dk-{n2[:12]}")["internal"] is True
        with created_names("/run/netns") as made:
            box.docker("network", "connect", "n2", "web")
            box.docker("network", "connect", "n2", "client")
        web_ip2, web_ep2 = docker_ip(box, "web", "n2")
        client_ip2, client_ep2 = docker_ip(box, "client", "n2")
        # Join makes the veth on the host for dockerd to move in, as Docker's bridge driver does:
        # the only netns names made are netkit's names for the containers' netns (no staging netns).
        assert sorted(made) == sorted([attachment(n2, web_ep2), attachment(n2, client_ep2)]), made
        assert f"inet {client_ip2}/" in box.docker("exec", "client", "ip", "addr").stdout
        gateway1 = sandbox.inspect("network", f"dk-{n1[:12]}")["gateway"]
        assert box.docker("exec", "client", "ip", "route").stdout.startswith(f"default via {gateway1} ")
        assert box.docker("exec", "client", "wget", "-q", "-O", "-", f"http://{web_ip2}/").stdout.strip() == "hello-from-web"
        assert len(sandbox.inspect("network", f"dk-{n2[:12]}")["containers"]) == 2
        # A container on Docker's default bridge, connected to n1: Docker keeps its default route
        # on `bridge` (its own order). Docker names the interfaces eth1 ...: doctor finds each
        # attachment's by the veth's peer and leaves the default route to Docker.
        box.docker("run", "-d", "--name", "plain", image, "sleep", "600")
        box.docker("network", "connect", "n1", "plain")
        assert not box.docker("exec", "plain", "ip", "route").stdout.startswith(f"default via {gateway1} ")
        report = sandbox.netkit("doctor", check=False)
        assert report.returncode == 0, report.stdout
        # --fix puts an address back on the interface Docker named, and leaves Docker's route.
        routes = box.docker("exec", "plain", "ip", "route").stdout
        plain_ip, plain_ep = docker_ip(box, "plain", "n1")
        plain_ns = attachment(n1, plain_ep)  # netkit's name for the container's netns
        plain_if = next(line.split()[1] for line in sandbox.sh(f"ip -n {plain_ns} -o addr").stdout.splitlines()
                        if f"{plain_ip}/" in line)
        sandbox.sh(f"ip -n {plain_ns} addr flush dev {plain_if}")
        fixed = sandbox.netkit("doctor", "--fix").stdout
        assert f"back on {plain_if} of container" in fixed and "default route" not in fixed, fixed
        assert f"inet {plain_ip}/" in box.docker("exec", "plain", "ip", "addr", "show", plain_if).stdout
        assert box.docker("exec", "plain", "ip", "route").stdout == routes
        box.docker("rm", "-f", "plain")
        box.docker("network", "disconnect", "n2", "client")
        assert f"inet {client_ip2}/" not in box.docker("exec", "client", "ip", "addr").stdout
        assert attachment(n2, client_ep2) not in sandbox.netkit("container", "ls", "--all").stdout
        assert len(sandbox.inspect("network", f"dk-{n2[:12]}")["containers"]) == 1

        # Removal: containers, then networks; netkit's view and the kernel empty again.
        box.docker("rm", "-f", "web", "client")
        assert "--dport 8088" not in sandbox.netkit("rules").stdout
        box.docker("network", "rm", "n1", "n2")
        assert not [n for n in netkit_networks(sandbox) if n.startswith("dk-")]
        assert "nk-" not in sandbox.sh("ip -br link").stdout
        assert not [f for f in os.listdir("/run/netkit/docker-plugin") if f.endswith(".json")]
    finally:
        box.stop()  # while netkitd still answers: dockerd may call the driver on its way out
        sandbox.netkit("daemon", "stop", check=False)
    assert box.launcher.returncode == 0, f"dockerbox did not stop cleanly:\n{box.log_tail()}"
