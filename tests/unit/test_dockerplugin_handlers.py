"""Docker's remote network driver protocol: netkit's handlers answer recorded request bodies
(shapes from libnetwork's docs/remote.md) and call the engine adapter with the right values;
the HTTP framing works with keep-alive as Docker's plugin client uses it."""
from __future__ import annotations

import json
import socket
import threading

import pytest

from netkit import adapter
from netkit.dockerplugin import handlers, http

NET_ID = "5a3b1c9e8d7f60112233445566778899aabbccddeeff00112233445566778899"
EP_ID = "e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70"

# Recorded bodies, as dockerd sends them.
CREATE_NETWORK = {
    "NetworkID": NET_ID,
    "Options": {"com.docker.network.enable_ipv6": False,
                "com.docker.network.generic": {"com.docker.network.driver.mtu": "1450"}},
    "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": "172.30.0.0/16", "Gateway": "172.30.0.1/16",
                  "AuxAddresses": {}}],
    "IPv6Data": [],
}
CREATE_ENDPOINT = {"NetworkID": NET_ID, "EndpointID": EP_ID, "Options": {},
                   "Interface": {"Address": "172.30.0.2/16", "AddressIPv6": "", "MacAddress": ""}}
JOIN = {"NetworkID": NET_ID, "EndpointID": EP_ID, "SandboxKey": "/var/run/docker/netns/0123abcd", "Options": {}}
PROGRAM = {"NetworkID": NET_ID, "EndpointID": EP_ID, "Options": {
    "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}, {"Proto": 17, "Port": 53}],
    "com.docker.network.portmap": [
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8088, "HostPortEnd": 8088},
        {"Proto": 17, "IP": "", "Port": 53, "HostIP": "127.0.0.1", "HostPort": 5353, "HostPortEnd": 5353},
        {"Proto": 6, "IP": "", "Port": 443, "HostIP": "", "HostPort": 0, "HostPortEnd": 0},
    ]}}
EP_ONLY = {"NetworkID": NET_ID, "EndpointID": EP_ID}


SANDBOX_READY = {"yes": True}  # whether Docker's netns exists at Join (network connect) or not yet (run)
INTERNAL = {"yes": False}  # whether the network of the attachment is --internal (no default route)
EARLY = {"then": lambda: None}  # what the fake attach does after its early answer


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Every adapter and kernel call the handlers make, logged instead of made: no netns, link or
    mount is touched (unit tests run outside any sandbox)."""
    from netkit.kernel import netns

    monkeypatch.setenv("NETKIT_RUN_DIR", str(tmp_path))
    log: list = []

    def attach(network, path, endpoint_id, ifname, ip, handover=None, on_handover_ready=None):
        log.append(("attach", network, path, endpoint_id, ifname, ip, handover))
        name = adapter.attachment_name(network, endpoint_id, ifname)
        if on_handover_ready is not None:  # as the engine does once the veth exists
            on_handover_ready(adapter.HandoverReady(name, "veth0", "02:42:ac:1e:00:02",
                                                    None if INTERNAL["yes"] else "172.30.0.1"))
            EARLY["then"]()  # the rest of the change (a test may hold it, or fail it)
        return adapter.Attachment(container=name, bridge="nk-x", bridge_mac="", host_ifname="veth0", host_mac="",
                                  ifname=ifname, mac="02:42:ac:1e:00:02", netns=name, ip=ip, prefixlen=16,
                                  gateway="172.30.0.1", default_route=not INTERNAL["yes"])

    monkeypatch.setattr(adapter, "ensure_network", lambda spec: log.append(("ensure_network", spec)))
    monkeypatch.setattr(adapter, "remove_network", lambda name: log.append(("remove_network", name)))
    monkeypatch.setattr(adapter, "attach", attach)
    monkeypatch.setattr(adapter, "detach", lambda *a: log.append(("detach",) + a))
    monkeypatch.setattr(adapter, "publish_spec", lambda *a: log.append(("publish",) + a))
    monkeypatch.setattr(adapter, "unpublish_spec", lambda *a: log.append(("unpublish",) + a))
    monkeypatch.setattr(adapter, "find", lambda *a: None)
    monkeypatch.setattr(handlers, "_pin_later", lambda *a: log.append(("pin_later",) + a))
    # The engine names Docker's netns at Join when it exists (network connect), not before (run).
    monkeypatch.setattr(netns, "is_netns_file", lambda p: SANDBOX_READY["yes"] and p.startswith("/run/netns/rt-"))
    return log


def post(path: str, body) -> tuple[int, dict]:
    return handlers.handle(path, json.dumps(body).encode() if body is not None else b"")


def test_handshake():
    assert post("/Plugin.Activate", None) == (200, {"Implements": ["NetworkDriver"]})
    assert post("/NetworkDriver.GetCapabilities", None) == (200, {"Scope": "local", "ConnectivityScope": "local"})


def test_a_container_lifecycle(calls):
    assert post("/NetworkDriver.CreateNetwork", CREATE_NETWORK) == (200, {})
    (_, spec), = calls
    assert (spec.name, spec.subnet, spec.gateway, spec.bridge, spec.mtu) == \
        ("dk-5a3b1c9e8d7f", "172.30.0.0/16", "172.30.0.1", "nk-5a3b1c9e8d7f", 1450)
    # Docker gave the address: the answer must carry no Interface values.
    assert post("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT) == (200, {"Interface": {}})
    # Join: one engine attach on Docker's netns path, the veth's container end left on the host
    # under SrcName for Docker to move in (no staging netns, no move of netkit's own), the
    # gateway given so that Docker sets the default route and publishes this endpoint's ports.
    SANDBOX_READY["yes"] = True
    assert post("/NetworkDriver.Join", JOIN) == (200, {
        "InterfaceName": {"SrcName": "nke1f2a3b4c5d6e", "DstPrefix": "eth"}, "Gateway": "172.30.0.1",
        "DisableGatewayService": True})
    assert calls[-1] == ("attach", "dk-5a3b1c9e8d7f", JOIN["SandboxKey"], EP_ID, "eth0", "172.30.0.2",
                         "nke1f2a3b4c5d6e")  # network connect: named at once, no waiting child
    name = adapter.attachment_name("dk-5a3b1c9e8d7f", EP_ID, "eth0")
    assert post("/NetworkDriver.ProgramExternalConnectivity", PROGRAM) == (200, {})
    assert calls[-3:] == [("publish", name, "8088:80/tcp"), ("publish", name, "127.0.0.1:5353:53/udp"),
                          ("publish", name, "443/tcp")]
    status, info = post("/NetworkDriver.EndpointOperInfo", EP_ONLY)
    assert status == 200 and info["Value"]["published"] == ["8088:80/tcp", "127.0.0.1:5353:53/udp", "443/tcp"]
    # From what Join recorded (asked twice per connect: no state opened for it).
    assert (info["Value"]["netkit_container"], info["Value"]["host_interface"]) == (name, "veth0")
    assert post("/NetworkDriver.RevokeExternalConnectivity", EP_ONLY) == (200, {})
    assert [c[2] for c in calls[-3:]] == ["443/tcp", "127.0.0.1:5353:53/udp", "8088:80/tcp"]
    assert all(c[0] == "unpublish" for c in calls[-3:])
    assert post("/NetworkDriver.Leave", EP_ONLY) == (200, {})
    assert calls[-1] == ("detach", "dk-5a3b1c9e8d7f", EP_ID, "eth0")
    assert "netkit_container" not in post("/NetworkDriver.EndpointOperInfo", EP_ONLY)[1]["Value"]
    assert post("/NetworkDriver.DeleteEndpoint", EP_ONLY) == (200, {})
    assert post("/NetworkDriver.DeleteNetwork", {"NetworkID": NET_ID}) == (200, {})
    assert calls[-1] == ("remove_network", "dk-5a3b1c9e8d7f")
    # After DeleteEndpoint the endpoint is unknown: an error Docker can show.
    status, answer = post("/NetworkDriver.Join", JOIN)
    assert status == 500 and "unknown to netkit" in answer["Err"]


def test_internal_as_docker_network_create_sends_it(calls):
    # --internal: beside the generic options (libnetwork's NetworkOptionInternalNetwork)
    post("/NetworkDriver.CreateNetwork", {**CREATE_NETWORK, "Options": {
        **CREATE_NETWORK["Options"], "com.docker.network.internal": True}})
    post("/NetworkDriver.CreateNetwork", CREATE_NETWORK)
    assert [spec.internal for _, spec in calls] == [True, False]
    # No way out: no Gateway, so Docker sets no default route.
    post("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT)
    INTERNAL["yes"] = True
    try:
        status, answer = post("/NetworkDriver.Join", JOIN)
    finally:
        INTERNAL["yes"] = False
    assert status == 200 and "Gateway" not in answer and answer["InterfaceName"]["DstPrefix"] == "eth"


def test_join_before_the_netns_exists_pins_later_and_a_failed_attach_is_reported(calls, monkeypatch):
    SANDBOX_READY["yes"] = False  # docker run: runc makes the netns after Join
    post("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT)
    assert post("/NetworkDriver.Join", JOIN)[0] == 200
    assert calls[-1] == ("pin_later", "dk-5a3b1c9e8d7f", EP_ID, "veth0", JOIN["SandboxKey"])
    from netkit.errors import KernelError

    def refuse(*_a, **_k):
        raise KernelError("`ip link add veth0 ...` failed: File exists; nothing was changed")
    monkeypatch.setattr(adapter, "attach", refuse)
    status, answer = post("/NetworkDriver.Join", JOIN)
    assert status == 500 and "File exists" in answer["Err"]  # reported to Docker, not swallowed
    assert calls[-1][0] == "pin_later"  # nothing more was started for the failed Join
    assert post("/NetworkDriver.Leave", EP_ONLY) == (200, {})  # Docker's clean-up after it: safe
    assert post("/NetworkDriver.Join", {**JOIN, "SandboxKey": ""})[0] == 500


def test_refusals_are_err_answers(calls):
    status, answer = post("/NetworkDriver.CreateNetwork", {**CREATE_NETWORK, "IPv6Data": [{"Pool": "fd00::/64"}]})
    assert status == 500 and "IPv4 only" in answer["Err"] and not calls
    status, answer = post("/NetworkDriver.CreateEndpoint", {**CREATE_ENDPOINT, "Interface": {}})
    assert status == 500 and "address" in answer["Err"]
    status, answer = post("/NetworkDriver.CreateEndpoint", {**CREATE_ENDPOINT, "Interface": {
        **CREATE_ENDPOINT["Interface"], "MacAddress": "02:42:0a:37:00:63"}})
    assert status == 500 and "--mac-address" in answer["Err"]
    assert post("/NetworkDriver.Frobnicate", {})[0] == 404
    assert handlers.handle("/NetworkDriver.CreateNetwork", b"{nope")[0] == 400
    assert post("/NetworkDriver.Join", {**JOIN, "EndpointID": "../../etc/passwd"})[0] == 500
    # An engine refusal (NetkitError) reaches Docker as its one-line message.
    from netkit.errors import Conflict

    def clash(spec):
        raise Conflict("subnet 172.30.0.0/16 overlaps network 'app'")
    handlers.adapter.ensure_network = clash
    assert post("/NetworkDriver.CreateNetwork", CREATE_NETWORK) == \
        (500, {"Err": "subnet 172.30.0.0/16 overlaps network 'app'"})


def _http_client(sock: socket.socket):
    reader = sock.makefile("rb")

    def send(path: str, body: dict) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)

    def answer() -> tuple[int, dict]:
        status = int(reader.readline().split()[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, json.loads(reader.read(length))
    return send, answer, reader



def test_http_keep_alive_over_a_unix_socket():
    server, client = socket.socketpair()
    thread = threading.Thread(target=http.serve_connection, args=(server,))
    thread.start()
    send, answer, reader = _http_client(client)

    send("/Plugin.Activate", None)
    assert answer() == (200, {"Implements": ["NetworkDriver"]})
    send("/NetworkDriver.GetCapabilities", {})
    assert answer()[1]["Scope"] == "local"
    send("/Nope", {})
    assert answer()[0] == 404
    reader.close()
    client.close()  # EOF: the server's loop ends
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_join_answers_early_and_a_later_failure_is_the_next_calls_error(calls):
    """Over HTTP, Join is answered when the engine says its change committed, before the change
    ends (names); if the rest then fails, Docker's next call for the endpoint
    (ProgramExternalConnectivity or EndpointOperInfo, which come after it moved the interface) is
    the error. A Join that fails before its answer is answered as an error, once."""
    from netkit.errors import KernelError

    post("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT)
    server, client = socket.socketpair()
    thread = threading.Thread(target=http.serve_connection, args=(server,))
    thread.start()
    send, answer, reader = _http_client(client)
    held, answered = threading.Event(), threading.Event()

    def rest_of_the_change():
        answered.wait(5)
        held.set()
        raise KernelError("cannot bring 'veth0' up: No such device")
    EARLY["then"] = rest_of_the_change
    try:
        send("/NetworkDriver.Join", JOIN)
        status, joined = answer()  # arrives while the change is still held
        answered.set()
        assert status == 200 and joined["InterfaceName"]["SrcName"] == "nke1f2a3b4c5d6e"
        assert joined["Gateway"] == "172.30.0.1"
        send("/NetworkDriver.ProgramExternalConnectivity", PROGRAM)
        status, failed = answer()
        assert held.is_set()
        assert status == 500 and "could not finish joining" in failed["Err"] and "No such device" in failed["Err"]
        send("/NetworkDriver.EndpointOperInfo", EP_ONLY)
        assert answer()[0] == 500
        assert not [c for c in calls if c[0] == "publish"]
        EARLY["then"] = lambda: None
        send("/NetworkDriver.Join", JOIN)  # tried again, it succeeds, and so do the next calls
        assert answer()[0] == 200
        send("/NetworkDriver.EndpointOperInfo", EP_ONLY)
        assert answer()[0] == 200
        EARLY["then"] = rest_of_the_change
        answered.clear()
        send("/NetworkDriver.Join", JOIN)
        assert answer()[0] == 200
        answered.set()
        send("/NetworkDriver.EndpointOperInfo", EP_ONLY)
        assert answer()[0] == 500
        send("/NetworkDriver.Leave", EP_ONLY)  # Docker's undo: the failure is forgotten
        assert answer() == (200, {})
        send("/NetworkDriver.EndpointOperInfo", EP_ONLY)
        assert answer()[0] == 200

        def refuse():
            raise KernelError("no room")
        EARLY["then"] = lambda: None
        handlers.adapter.attach = lambda *a, **k: refuse()  # fails before any answer
        send("/NetworkDriver.Join", JOIN)
        status, refused = answer()
        assert status == 500 and refused["Err"] == "no room"
        send("/Plugin.Activate", {})
        assert answer()[0] == 200  # one answer per request: the stream is still in step
    finally:
        EARLY["then"] = lambda: None
        reader.close()
        client.close()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_failure_after_the_early_answer_outside_the_engine_is_one_answer_and_the_next_error(calls, monkeypatch):
    """Whatever fails after Join's early answer (here the waiting child for `docker run` cannot be
    started) gives no second HTTP response: the stream stays in step and Docker's next call for
    the endpoint carries the error."""
    import errno

    SANDBOX_READY["yes"] = False  # docker run: netkit names the netns later, from a child

    def no_child(*_a):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
    monkeypatch.setattr(handlers, "_pin_later", no_child)
    post("/NetworkDriver.CreateEndpoint", CREATE_ENDPOINT)
    server, client = socket.socketpair()
    thread = threading.Thread(target=http.serve_connection, args=(server,))
    thread.start()
    send, answer, reader = _http_client(client)
    try:
        send("/NetworkDriver.Join", JOIN)
        assert answer()[0] == 200
        send("/Plugin.Activate", {})
        assert answer() == (200, {"Implements": ["NetworkDriver"]})  # not a second answer to the Join
        send("/NetworkDriver.EndpointOperInfo", EP_ONLY)
        status, failed = answer()
        assert status == 500 and "temporarily unavailable" in failed["Err"]
    finally:
        SANDBOX_READY["yes"] = True
        reader.close()
        client.close()
        thread.join(timeout=5)
    assert not thread.is_alive()
