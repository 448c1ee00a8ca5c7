"""Issue 14: netkitd serving Docker's remote network driver protocol on its plugin socket, driven
here the way dockerd drives it (recorded request bodies; this test moves the handed-over
interface in as dockerd does), on a real netns, with real traffic through the published port.
test_dockerd.py does the same with a real dockerd."""
from __future__ import annotations

import json
import os
import socket

import pytest

from fswatch import created_names
from nettools import send_echo, start_echo

pytestmark = pytest.mark.root

PLUGIN_SOCKET = "/run/netkit/docker/plugins/netkit.sock"
NET_ID = "5a3b1c9e8d7f60112233445566778899aabbccddeeff00112233445566778899"
EP_ID = "e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70"


def post(path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body or {}).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(PLUGIN_SOCKET)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        reader = sock.makefile("rb")
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, json.loads(reader.read(length))


def test_docker_driver_protocol_end_to_end(sandbox):
    sandbox.netkit("daemon", "start", "--docker-socket", PLUGIN_SOCKET)
    assert post("/Plugin.Activate") == (200, {"Implements": ["NetworkDriver"]})
    assert post("/NetworkDriver.GetCapabilities")[1]["Scope"] == "local"
    net = {"NetworkID": NET_ID, "Options": {"com.docker.network.generic": {}}, "IPv6Data": [],
           "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16"}]}
    assert post("/NetworkDriver.CreateNetwork", net) == (200, {})
    assert sandbox.inspect("network", "dk-5a3b1c9e8d7f")["bridge"] == "nk-5a3b1c9e8d7f"
    ep = {"NetworkID": NET_ID, "EndpointID": EP_ID,
          "Interface": {"Address": "172.30.0.5/16", "AddressIPv6": "", "MacAddress": ""}, "Options": {}}
    assert post("/NetworkDriver.CreateEndpoint", ep) == (200, {"Interface": {}})
    sandbox.sh("ip netns add dockerbox")  # stands in for /var/run/docker/netns/<sandbox>
    join = {"NetworkID": NET_ID, "EndpointID": EP_ID, "SandboxKey": "/run/netns/dockerbox", "Options": {}}
    with created_names("/run/netns") as made:
        status, answer = post("/NetworkDriver.Join", join)
    assert status == 200 and answer["Gateway"] == "172.30.0.1", answer
    src = answer["InterfaceName"]["SrcName"]
    # As Docker's bridge driver: the container end is made on the host, down, for Docker to move
    # in; no staging netns on the way (the one name made is netkit's name for Docker's netns).
    assert [n[:3] for n in made] == ["rt-"], made
    assert json.loads(sandbox.sh(f"ip -j link show {src}").stdout)[0]["operstate"] == "DOWN"
    # What dockerd does with the answer: move the interface in, name it, address, default route.
    sandbox.sh(f"ip link set {src} netns dockerbox name eth0 && ip -n dockerbox addr add 172.30.0.5/16 dev eth0"
               " && ip -n dockerbox link set eth0 up && ip -n dockerbox route add default via 172.30.0.1")
    # netkit's name for the attachment now shows the container's netns (re-pinned at Join).
    att = sandbox.inspect("network", "dk-5a3b1c9e8d7f")["containers"]
    (att_name,) = att
    assert "172.30.0.5/16" in sandbox.ns(att_name, "ip -br addr show eth0").stdout
    portmap = [{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8088, "HostPortEnd": 8088}]
    ids = {"NetworkID": NET_ID, "EndpointID": EP_ID}
    assert post("/NetworkDriver.ProgramExternalConnectivity",
                {**ids, "Options": {"com.docker.network.portmap": portmap}}) == (200, {})
    start_echo(sandbox, None, "tcp", "0.0.0.0", 80, netns="dockerbox")
    out = send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 8088, "dk").stdout.strip()
    assert out == f"echo:dk from:{sandbox.outside}"
    status, info = post("/NetworkDriver.EndpointOperInfo", ids)
    assert status == 200 and info["Value"]["published"] == ["8088:80/tcp"]
    assert info["Value"]["netkit_container"] == att_name and info["Value"]["mac"] == \
        sandbox.inspect("container", att_name)["endpoints"][0]["mac"]
    assert post("/NetworkDriver.RevokeExternalConnectivity", ids) == (200, {})
    assert "--dport 8088" not in sandbox.netkit("rules").stdout
    # A refusal from the engine reaches Docker as {"Err": ...}.
    status, err = post("/NetworkDriver.CreateNetwork", {**net, "NetworkID": "ab" * 32})
    assert status == 500 and "overlaps" in err["Err"]
    assert post("/NetworkDriver.Leave", ids) == (200, {})
    assert "eth0" not in sandbox.ns("dockerbox", "ip -br link").stdout
    assert post("/NetworkDriver.DeleteEndpoint", ids) == (200, {})
    # A Join whose veth cannot be made (its name is taken on the host) leaves nothing behind,
    # and Docker's clean-up after it (Leave, DeleteEndpoint) is answered.
    ids2 = {"NetworkID": NET_ID, "EndpointID": "f" + EP_ID[1:]}
    post("/NetworkDriver.CreateEndpoint", {**ep, **ids2, "Interface": {**ep["Interface"], "Address": "172.30.0.6/16"}})
    sandbox.sh("ip link add nkf1f2a3b4c5d6e type bridge")
    status, err = post("/NetworkDriver.Join", {**join, **ids2})
    assert status == 500 and "File exists" in err["Err"], err
    assert not sandbox.inspect("network", "dk-5a3b1c9e8d7f")["containers"]
    assert not [n for n in os.listdir("/run/netns") if n.startswith("rt-")]
    assert sandbox.sh("ip link show master nk-5a3b1c9e8d7f").stdout == ""
    assert "172.30.0.6" not in sandbox.netkit("rules").stdout
    assert post("/NetworkDriver.Leave", ids2) == (200, {})
    assert post("/NetworkDriver.DeleteEndpoint", ids2) == (200, {})
    sandbox.sh("ip link del nkf1f2a3b4c5d6e")
    assert post("/NetworkDriver.DeleteNetwork", {"NetworkID": NET_ID}) == (200, {})
    assert "nk-5a3b1c9e8d7f" not in sandbox.sh("ip -br link").stdout
    assert json.loads(sandbox.netkit("network", "ls", "--json").stdout) == []


def test_join_answers_at_its_commit_and_a_later_failure_is_docker_next_answer(sandbox, monkeypatch):
    """Join answers Docker once its change has committed, before the names (docs/facts.md,
    "Docker's remote driver"): at that moment the port is on the bridge and up, its anti-spoofing
    elements and its rule are in the kernel, the state holds it, and the endpoint's file names it.
    A failure after the answer (a derived step) leaves the attachment and is the answer to
    Docker's next call for the endpoint; Docker's Leave then removes it. A failure before the
    answer (at the commit) is Join's own error and leaves nothing. In-process, as netkitd's
    plugin child runs it."""
    from netkit.dockerplugin import handlers
    from netkit.state import Store

    def call(path: str, body: dict, early=None):
        return handlers.handle(path, json.dumps(body).encode(), early)

    net = {"NetworkID": NET_ID, "Options": {}, "IPv6Data": [],
           "IPv4Data": [{"Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16"}]}
    assert call("/NetworkDriver.CreateNetwork", net) == (200, {})
    sandbox.sh("ip netns add dockerbox")
    firewall = "iptables-nft-save -t raw; iptables-legacy-save -t raw"
    seen = {}

    def at_answer(status, answer):
        peer = json.loads(sandbox.sh(f"ip -j link show {answer['InterfaceName']['SrcName']}").stdout)[0]
        (port,) = [link for link in json.loads(sandbox.sh("ip -j link show master nk-5a3b1c9e8d7f").stdout)
                   if link["ifname"] == peer["link"]]  # the veth's host end
        with open(handlers._endpoint_file(ids["EndpointID"])) as fh:
            record = json.load(fh)
        seen.update(status=status, answer=answer, peer_state=peer["operstate"], port_flags=port["flags"],
                    guarded=sandbox.sh("nft list set bridge netkit ip_ok").stdout, rules=sandbox.sh(firewall).stdout,
                    committed=[c.name for c in Store(os.environ["NETKIT_STATE_DIR"], read_only=True).containers()],
                    record=record.get("netkit_container"))

    def members() -> list[str]:
        return sorted(sandbox.inspect("network", "dk-5a3b1c9e8d7f")["containers"])
    for i, (ip, fault) in enumerate((("172.30.0.9", None), ("172.30.0.10", "after-commit"), ("172.30.0.11", "commit"))):
        ids = {"NetworkID": NET_ID, "EndpointID": f"{i + 1:x}" + EP_ID[1:]}
        assert call("/NetworkDriver.CreateEndpoint", {**ids, "Interface": {"Address": f"{ip}/16"}})[0] == 200
        seen.clear()
        before = members()
        if fault:
            monkeypatch.setenv("NETKIT_FAULT_AT", fault)
            monkeypatch.setenv("NETKIT_FAULT_MODE", "raise")
        result = call("/NetworkDriver.Join", {**ids, "SandboxKey": "/run/netns/dockerbox"}, at_answer)
        monkeypatch.delenv("NETKIT_FAULT_AT", raising=False)
        if fault == "commit":  # before the answer: Join's own error, nothing left
            assert not seen and result[0] == 500 and "injected fault" in result[1]["Err"], result
            assert members() == before and len(sandbox.sh("ip -br link show master nk-5a3b1c9e8d7f").stdout.splitlines()) == 1
            assert ip not in sandbox.sh("nft list set bridge netkit ip_ok").stdout
            assert f"-d {ip}/32" not in sandbox.sh(firewall).stdout
            assert len([n for n in os.listdir("/run/netns") if n.startswith("rt-")]) == 1
            assert call("/NetworkDriver.DeleteEndpoint", ids) == (200, {})
            continue
        assert result is None and seen["status"] == 200 and seen["answer"]["Gateway"] == "172.30.0.1"
        (made,) = set(members()) - set(before)
        assert seen["peer_state"] == "DOWN" and "UP" in seen["port_flags"]
        assert ip in seen["guarded"] and f"-d {ip}/32" in seen["rules"]
        assert made in seen["committed"] and seen["record"] == made
        if fault is None:
            assert call("/NetworkDriver.EndpointOperInfo", ids)[1]["Value"]["netkit_container"] == made
            sandbox.sh(f"ip link set {seen['answer']['InterfaceName']['SrcName']} netns dockerbox name eth0 && ip -n "
                       f"dockerbox addr add {ip}/16 dev eth0 && ip -n dockerbox link set eth0 up && ip -n dockerbox "
                       "route add default via 172.30.0.1")  # what dockerd does with the answer
            joined = ids
            continue
        status, err = call("/NetworkDriver.EndpointOperInfo", ids)
        assert status == 500 and "could not finish joining" in err["Err"] and "injected fault" in err["Err"]
        assert call("/NetworkDriver.ProgramExternalConnectivity", {**ids, "Options": {}})[0] == 500
        assert call("/NetworkDriver.Leave", ids) == (200, {})  # Docker's undo removes the attachment
        assert made not in members() and ip not in sandbox.sh("nft list set bridge netkit ip_ok").stdout
        assert seen["answer"]["InterfaceName"]["SrcName"] not in sandbox.sh("ip -br link").stdout
        assert call("/NetworkDriver.DeleteEndpoint", ids) == (200, {})
    assert sandbox.netkit("doctor").returncode == 0
    # DeleteEndpoint with no Leave before it (Docker never got a Join's answer) removes the attachment.
    assert call("/NetworkDriver.DeleteEndpoint", joined) == (200, {})
    assert members() == [] and "eth0" not in sandbox.ns("dockerbox", "ip -br link").stdout
    assert sandbox.netkit("doctor").returncode == 0
