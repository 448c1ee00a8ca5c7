"""Docker's remote network driver protocol (libnetwork's "remote" driver), answered with
netkit's engine: `docker network create -d netkit` gets a netkit network on a netkit bridge,
and each container joining it a netkit attachment with its published ports.

Docker's IPAM picks the subnet, gateway and each endpoint's address; netkit plumbs them. As
with Docker's own bridge driver, Join makes the veth pair in the host netns: the host end on
netkit's bridge with netkit's rules, the container end down under the name Join answers
(InterfaceName.SrcName), with the Gateway. Docker moves that end into the container's netns
(at once for `docker network connect`; for `docker run` once runc made the netns, after Join),
names it eth<N>, sets the address and the default route, and calls
ProgramExternalConnectivity only for the endpoint that holds the default route. netkit's name
for the attachment's netns (`rt-...`) is Docker's netns: pinned at Join when it exists, else by
a waiting child once it does. What Docker tells us between calls (an endpoint's address, its
port map) is kept in small JSON files, because each connection is served by a fresh child of
netkitd.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import Callable

from netkit import adapter
from netkit.errors import NetkitError

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
PROTO_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}
OPT_GENERIC = "com.docker.network.generic"
OPT_PORTMAP = "com.docker.network.portmap"
OPT_INTERNAL = "com.docker.network.internal"


class PluginError(Exception):
    """Answered as {"Err": message} with HTTP 500: Docker shows the message to the user."""


def network_name(network_id: str) -> str:
    return "dk-" + network_id[:12]


def bridge_name(network_id: str) -> str:
    return "nk-" + network_id[:12]  # 15 bytes: Linux's limit


def _state_dir() -> str:
    from netkit.state import run_dir

    path = os.path.join(run_dir(), "docker-plugin")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _endpoint_file(endpoint_id: str) -> str:
    if not endpoint_id or not all(c in "0123456789abcdefABCDEF" for c in endpoint_id):
        raise PluginError(f"invalid EndpointID {endpoint_id!r}")
    return os.path.join(_state_dir(), f"{endpoint_id}.json")


def _load(endpoint_id: str) -> dict:
    try:
        with open(_endpoint_file(endpoint_id)) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise PluginError(f"endpoint {endpoint_id[:12]} is unknown to netkit") from None


def _save(endpoint_id: str, data: dict) -> None:
    path = _endpoint_file(endpoint_id)
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


def activate(_body: dict) -> dict:
    return {"Implements": ["NetworkDriver"]}


def capabilities(_body: dict) -> dict:
    return {"Scope": "local", "ConnectivityScope": "local"}


def create_network(body: dict) -> dict:
    ipv4 = body.get("IPv4Data") or []
    if not ipv4 or not ipv4[0].get("Pool"):
        raise PluginError("netkit needs an IPv4 pool from Docker's IPAM")
    if body.get("IPv6Data"):
        raise PluginError("netkit networks are IPv4 only: create the network without --ipv6")
    options = body.get("Options") or {}
    generic = options.get(OPT_GENERIC) or {}
    mtu = generic.get("com.docker.network.driver.mtu")
    # `docker network create --internal` sets the label beside the driver's options, not among them.
    internal = any(str(where.get(OPT_INTERNAL, "")).lower() == "true" for where in (options, generic))
    gateway = (ipv4[0].get("Gateway") or "").split("/")[0] or None
    spec = adapter.NetworkSpec(name=network_name(body["NetworkID"]), subnet=ipv4[0]["Pool"], gateway=gateway,
                               bridge=generic.get("com.docker.network.bridge.name") or bridge_name(body["NetworkID"]),
                               mtu=int(mtu) if mtu else None,
                               internal=internal)
    adapter.ensure_network(spec)
    return {}


def delete_network(body: dict) -> dict:
    adapter.remove_network(network_name(body["NetworkID"]))
    return {}


def create_endpoint(body: dict) -> dict:
    iface = body.get("Interface") or {}
    address = iface.get("Address") or ""
    if not address:
        raise PluginError("netkit needs the endpoint's IPv4 address from Docker's IPAM")
    if iface.get("AddressIPv6"):
        raise PluginError("netkit networks are IPv4 only")
    if iface.get("MacAddress"):
        # netkit's anti-spoofing binds the MAC it chose to the port: another one would be dropped.
        raise PluginError("netkit chooses the MAC address of its endpoints: run the container without --mac-address")
    _save(body["EndpointID"], {"network": network_name(body["NetworkID"]), "address": address,
                               "mac": iface.get("MacAddress") or "", "published": []})
    return {"Interface": {}}  # Docker gave the address: it must get nothing back


JOINED_KEYS = ("netkit_container", "host_interface", "mac")  # what Join records for EndpointOperInfo


def endpoint_info(body: dict) -> dict:
    """Asked twice per connect: answered from the endpoint's file, without opening netkit's state."""
    ep = _settled(body["EndpointID"])
    value = {"address": ep["address"], "published": ep["published"]}
    if ep.get("netkit_container"):
        value.update({key: ep[key] for key in JOINED_KEYS})
    return {"Value": value}


def delete_endpoint(body: dict) -> dict:
    """The endpoint's file, and an attachment no Leave removed (Docker calls no Leave after a
    Join whose answer it never got)."""
    path = _endpoint_file(body["EndpointID"])
    with _endpoints_lock(exclusive=False):
        if os.path.exists(path):
            adapter.detach(network_name(body["NetworkID"]), body["EndpointID"], "eth0")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return {}


def handover_name(endpoint_id: str) -> str:
    return "nk" + endpoint_id[:13]  # 15 bytes: Linux's limit


def _join_answer(src: str, gateway: str | None) -> dict:
    answer: dict = {"InterfaceName": {"SrcName": src, "DstPrefix": "eth"}, "DisableGatewayService": True}
    if gateway:  # an --internal network gives no way out
        answer["Gateway"] = gateway
    return answer


@contextlib.contextmanager
def _endpoints_lock(exclusive: bool):
    """Held by a Join until its change has ended and the endpoint's file says how; calls that read
    what a Join left (EndpointOperInfo, ProgramExternalConnectivity, Leave, DeleteEndpoint) wait
    for it, even from another connection than the Join's (whose own calls come one by one)."""
    fd = os.open(os.path.join(_state_dir(), "join.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _settled(endpoint_id: str) -> dict:
    """The endpoint's file once no Join is half-way; a Join that failed after its early answer is
    this call's error (Docker then fails the connect)."""
    with _endpoints_lock(exclusive=False):
        ep = _load(endpoint_id)
    if ep.get("failed"):
        raise PluginError(f"netkit could not finish joining endpoint {endpoint_id[:12]}: {ep['failed']}")
    return ep


def join(body: dict, answer_early: Callable[[dict], None] | None = None) -> dict | None:
    """The veth for Docker to move in. With `answer_early` (the HTTP server), Docker is answered
    as soon as the change has committed (the veth on the bridge with its anti-spoofing elements
    and rule, the state holding it) and moves the interface in while names are written: ~2.5 of
    the Join's ~5 ms are on Docker's path (docs/facts.md, "Docker's remote driver"). Nothing after the
    answer undoes the attachment; a failure then (names) is the answer to Docker's next call for
    the endpoint, which waits for the Join's end."""
    from netkit.kernel import netns

    endpoint_id = body["EndpointID"]
    ep = {k: v for k, v in _load(endpoint_id).items() if k != "failed"}  # a new try starts clean
    sandbox = body.get("SandboxKey") or ""
    if not sandbox:
        raise PluginError("Docker sent no SandboxKey")
    src = handover_name(endpoint_id)
    answered = False

    def ready(made: adapter.HandoverReady) -> None:
        nonlocal answered
        # Recorded before the answer: if this process dies after it, the endpoint still names
        # the committed attachment (EndpointOperInfo, and Leave removes it).
        _save(endpoint_id, {**ep, **_joined(made.container, made.host_ifname, made.mac)})
        if answer_early is not None:
            answer_early(_join_answer(src, made.gateway))
            answered = True

    with _endpoints_lock(exclusive=True):
        try:
            att = adapter.attach(ep["network"], sandbox, endpoint_id, "eth0", ep["address"].split("/")[0],
                                 handover=src, on_handover_ready=ready)
            if not netns.is_netns_file(netns.netns_path(att.netns)):  # docker run: named once runc made it
                _pin_later(ep["network"], endpoint_id, att.host_ifname, sandbox)
            _save(endpoint_id, {**ep, **_joined(att.container, att.host_ifname, att.mac)})
        except Exception as err:  # noqa: BLE001 - after the early answer, Docker's next call reports it
            if not answered:
                raise
            with contextlib.suppress(OSError):
                _save(endpoint_id, {**ep, "failed": str(err) or type(err).__name__})
            return None
    return None if answered else _join_answer(src, att.gateway if att.default_route else None)


def _joined(container: str, host_ifname: str, mac: str) -> dict:
    return dict(zip(JOINED_KEYS, (container, host_ifname, mac)))


def _pin_later(network: str, endpoint_id: str, host_ifname: str, sandbox: str) -> None:
    """Start netkit.dockerplugin.pin, detached, to name Docker's netns once runc made it."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    subprocess.Popen([sys.executable, "-m", "netkit.dockerplugin.pin", network, endpoint_id, host_ifname, sandbox],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True, env=env)


def leave(body: dict) -> dict:
    with _endpoints_lock(exclusive=False):
        ep = _load(body["EndpointID"])
    adapter.detach(ep["network"], body["EndpointID"], "eth0")
    _save(body["EndpointID"], {**{k: v for k, v in ep.items() if k not in JOINED_KEYS + ("failed",)}, "mac": ""})
    return {}


def _spec(pm: dict) -> str:
    proto = PROTO_NAMES.get(int(pm.get("Proto", 6)))
    if proto is None:
        raise PluginError(f"unknown protocol number {pm.get('Proto')} in the port map")
    host_ip = pm.get("HostIP") or ""
    host_port, end = int(pm.get("HostPort") or 0), int(pm.get("HostPortEnd") or 0)
    port = int(pm["Port"])
    hp = "" if not host_port else f"{host_port}" if not end or end == host_port else f"{host_port}-{end}"
    return f"{host_ip + ':' if host_ip else ''}{hp}:{port}/{proto}" if hp or host_ip else f"{port}/{proto}"


def program_external(body: dict) -> dict:
    ep = _settled(body["EndpointID"])
    name = adapter.attachment_name(ep["network"], body["EndpointID"], "eth0")
    for pm in (body.get("Options") or {}).get(OPT_PORTMAP) or []:
        spec = _spec(pm)
        adapter.publish_spec(name, spec)
        ep["published"].append(spec)
        _save(body["EndpointID"], ep)
    return {}


def revoke_external(body: dict) -> dict:
    ep = _load(body["EndpointID"])
    name = adapter.attachment_name(ep["network"], body["EndpointID"], "eth0")
    for spec in reversed(ep["published"]):
        adapter.unpublish_spec(name, spec)
    ep["published"] = []
    _save(body["EndpointID"], ep)
    return {}


def _nothing(_body: dict) -> dict:
    return {}


HANDLERS = {
    "/Plugin.Activate": activate,
    "/NetworkDriver.GetCapabilities": capabilities,
    "/NetworkDriver.CreateNetwork": create_network,
    "/NetworkDriver.DeleteNetwork": delete_network,
    "/NetworkDriver.CreateEndpoint": create_endpoint,
    "/NetworkDriver.EndpointOperInfo": endpoint_info,
    "/NetworkDriver.DeleteEndpoint": delete_endpoint,
    "/NetworkDriver.Join": join,
    "/NetworkDriver.Leave": leave,
    "/NetworkDriver.ProgramExternalConnectivity": program_external,
    "/NetworkDriver.RevokeExternalConnectivity": revoke_external,
    "/NetworkDriver.DiscoverNew": _nothing,
    "/NetworkDriver.DiscoverDelete": _nothing,
}


def handle(path: str, body: bytes, answer_early: Callable[[int, dict], None] | None = None) -> tuple[int, dict] | None:
    """(HTTP status, JSON answer) for one POST; None if the handler answered through
    `answer_early(status, answer)` before it finished (a Join: see join)."""
    handler = HANDLERS.get(path)
    if handler is None:
        return 404, {"Err": f"netkit does not implement {path}"}
    try:
        data = json.loads(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise PluginError("the request body must be a JSON object")
        if handler is join and answer_early is not None:
            answer = join(data, lambda ok: answer_early(200, ok))
            return None if answer is None else (200, answer)
        return 200, handler(data)
    except (PluginError, NetkitError) as err:
        return 500, {"Err": str(err)}
    except OSError as err:  # the kernel refused (a mount, a netns): Docker shows the reason
        return 500, {"Err": f"netkit: {path}: {err}"}
    except (KeyError, ValueError, TypeError) as err:
        return 400, {"Err": f"malformed {path} request: {err!r}"}
