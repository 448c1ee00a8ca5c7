"""netkit's objects in the JSON shapes `docker network inspect`, `docker inspect` and the `ls`
commands print, pure: so that a Docker user's `--format` templates and scripts work unchanged.

Only what netkit has a meaning for is filled; Docker fields without a netkit concept keep their
Docker zero value (e.g. EnableIPv6 false, Attachable false), never invented data.
"""
from __future__ import annotations

import time

from netkit.model import MODE_BRIDGE, MODE_CONTAINER, MODE_HOST, MODE_NONE, Container, Network

BRIDGE_OPTION = "com.docker.network.bridge.name"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
MASQ_OPTION = "com.docker.network.bridge.enable_ip_masquerade"
MTU_OPTION = "com.docker.network.driver.mtu"


def rfc3339(ts: float) -> str:
    """Docker's timestamps: local-time RFC 3339 with nanoseconds."""
    if not ts:
        return "0001-01-01T00:00:00Z"
    frac = f"{ts % 1:.9f}"[1:]
    offset = time.strftime("%z", time.localtime(ts))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) + frac + offset[:3] + ":" + offset[3:]


def network_options(net: Network) -> dict[str, str]:
    opts = {BRIDGE_OPTION: net.bridge, ICC_OPTION: str(net.icc).lower(), MASQ_OPTION: str(net.masquerade).lower()}
    if net.mtu != 1500:
        opts[MTU_OPTION] = str(net.mtu)
    return opts


def network_inspect(net: Network, containers: list[Container]) -> dict:
    """One element of `docker network inspect NET`'s array."""
    members = {}
    for c in sorted(containers, key=lambda c: c.name):
        ep = c.endpoint(net.name)
        if ep is not None:
            members[c.id] = {"Name": c.name, "EndpointID": endpoint_id(c.id, net.id), "MacAddress": ep.mac,
                             "IPv4Address": f"{ep.ip}/{ep.prefixlen}", "IPv6Address": ""}
    config = {"Subnet": net.subnet, "Gateway": net.gateway}
    if net.ip_range:
        config["IPRange"] = net.ip_range
    return {
        "Name": net.name, "Id": net.id, "Created": rfc3339(net.created), "Scope": "local",
        "Driver": net.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
        "Internal": net.internal, "Attachable": False, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": members, "Options": network_options(net), "Labels": dict(net.labels or {}),
    }


def builtin_network_inspect(name: str, containers: list[Container] = ()) -> dict:
    """`host` and `none`: always there in Docker, with nothing to configure; Containers lists the
    containers in that mode, with no address (as Docker does)."""
    net_id = builtin_network_id(name)
    members = {c.id: {"Name": c.name, "EndpointID": endpoint_id(c.id, net_id), "MacAddress": "",
                      "IPv4Address": "", "IPv6Address": ""}
               for c in sorted(containers, key=lambda c: c.name) if c.mode == name and not c.shares}
    return {"Name": name, "Id": net_id, "Created": rfc3339(0), "Scope": "local",
            "Driver": "null" if name == "none" else name, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False, "Attachable": False,
            "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
            "Options": {}, "Labels": {}}


def builtin_network_id(name: str) -> str:
    from netkit.naming import builtin_id

    return builtin_id(name)


def endpoint_id(container_id: str, network_id: str) -> str:
    import hashlib

    return hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()


def port_bindings(c: Container) -> dict[str, list[dict]]:
    """HostConfig.PortBindings / NetworkSettings.Ports: "80/tcp" -> [{HostIp, HostPort}]."""
    out: dict[str, list[dict]] = {}
    for pm in c.ports:
        out.setdefault(f"{pm.container_port}/{pm.proto}", []).append({"HostIp": pm.host_ip, "HostPort": str(pm.host_port)})
    return out


def network_mode(c: Container) -> str:
    if c.mode == MODE_CONTAINER:
        return f"container:{c.shares}"
    if c.mode in (MODE_HOST, MODE_NONE):
        return c.mode
    return c.endpoints[0].network if c.endpoints else MODE_NONE


def container_inspect(c: Container, networks: dict[str, Network]) -> dict:
    """One element of `docker inspect CT`'s array (the network-related part)."""
    ports: dict[str, list[dict] | None] = {p: None for p in c.exposed}
    ports.update(port_bindings(c))
    nets = {}
    for ep in c.endpoints:
        net = networks.get(ep.network)
        nets[ep.network] = {
            "IPAMConfig": None, "Links": None, "Aliases": list(ep.aliases) or None, "MacAddress": ep.mac,
            "NetworkID": net.id if net else "", "EndpointID": endpoint_id(c.id, net.id if net else ep.network),
            "Gateway": ep.gateway, "IPAddress": ep.ip, "IPPrefixLen": ep.prefixlen,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None,
        }
    primary = c.endpoints[0] if c.endpoints and c.mode == MODE_BRIDGE else None
    return {
        "Id": c.id, "Created": rfc3339(c.created), "Name": "/" + c.name,
        "Config": {"Hostname": c.hostname or "", "ExposedPorts": {p: {} for p in sorted(ports)} or None,
                   "Labels": dict(c.labels or {})},
        "HostConfig": {"NetworkMode": network_mode(c), "PortBindings": port_bindings(c),
                       "Links": [f"/{link.split(':')[0]}:/{c.name}/{link.split(':')[-1]}" for link in c.links] or None,
                       "Dns": list(c.dns), "DnsSearch": list(c.dns_search), "DnsOptions": list(c.dns_options),
                       "ExtraHosts": list(c.extra_hosts) or None},
        "NetworkSettings": {
            "SandboxKey": c.netns or "", "Ports": ports,
            "Gateway": primary.gateway if primary else "", "IPAddress": primary.ip if primary else "",
            "IPPrefixLen": primary.prefixlen if primary else 0, "MacAddress": primary.mac if primary else "",
            "Networks": nets,
        },
    }


def network_ls_row(net: Network | None, name: str | None = None) -> dict:
    """The fields `docker network ls --format` offers."""
    if net is None:
        return {"ID": builtin_network_id(name)[:12], "Name": name, "Driver": "null" if name == "none" else name,
                "Scope": "local", "IPv6": "false", "Internal": "false", "Labels": "", "CreatedAt": rfc3339(0)}
    labels = net.labels or {}
    return {"ID": net.id[:12], "Name": net.name, "Driver": net.driver, "Scope": "local", "IPv6": "false",
            "Internal": str(net.internal).lower(), "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "CreatedAt": rfc3339(net.created)}


def ports_column(c: Container) -> str:
    """`docker ps`'s PORTS: "0.0.0.0:8088->80/tcp, 81/tcp" (published first, then exposed)."""
    published = [f"{pm.host_ip}:{pm.host_port}->{pm.container_port}/{pm.proto}" for pm in c.ports]
    mapped = {f"{pm.container_port}/{pm.proto}" for pm in c.ports}
    return ", ".join(published + [p for p in c.exposed if p not in mapped])


def container_ls_row(c: Container) -> dict:
    """The fields `docker ps --format` offers that netkit has a meaning for (plus Mode)."""
    labels = c.labels or {}
    return {"ID": c.id[:12], "Names": c.name, "Networks": ",".join(e.network for e in c.endpoints),
            "Ports": ports_column(c), "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
            "CreatedAt": rfc3339(c.created), "Mode": network_mode(c) if c.mode != MODE_BRIDGE else MODE_BRIDGE}


def overlay_network_inspect(view: dict) -> dict:
    """An overlay network (netkit's cluster-wide view) in Docker's shape, as Docker showed
    KV-store overlays: scope global, the VNI in the options, each container with its node."""
    members = {endpoint_id(name, view["id"]): {
        "Name": name, "EndpointID": endpoint_id(name, view["id"]), "MacAddress": ep.get("mac", ""),
        "IPv4Address": f"{ep['ip']}/{ep.get('prefix_length', '')}", "IPv6Address": "", "Node": ep.get("host", "")}
        for name, ep in sorted((view.get("containers") or {}).items())}
    return {
        "Name": view["name"], "Id": view["id"], "Created": rfc3339(0), "Scope": view.get("scope", "global"),
        "Driver": "overlay", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": view["subnet"], "Gateway": view["gateway"]}]},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": members, "Options": {"com.docker.network.driver.overlay.vxlanid_list": str(view.get("vni", ""))},
        "Labels": {},
    }


def remote_container_inspect(view: dict) -> dict:
    """A container of another host (netkit's view from the cluster store) in Docker's shape,
    as far as the store knows it: its networks, addresses and the node it runs on."""
    nets = {e["network"]: {"IPAMConfig": None, "Links": None, "Aliases": e.get("aliases") or None,
                           "MacAddress": e.get("mac", ""), "NetworkID": "", "EndpointID": "", "Gateway": "",
                           "IPAddress": e["ip"], "IPPrefixLen": 0}
            for e in view.get("endpoints", [])}
    return {"Id": "", "Name": "/" + view["name"], "Node": {"Name": view.get("host", "")},
            "Config": {"Hostname": view["name"]}, "HostConfig": {"NetworkMode": next(iter(nets), "")},
            "NetworkSettings": {"Networks": nets, "Ports": {}}}
