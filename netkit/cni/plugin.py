"""The CNI plugin protocol: a runtime runs `netkit-cni` with CNI_* variables and the network
config on stdin; the plugin prints a result (or an error object) on stdout and exits.

Commands: ADD, DEL, CHECK, VERSION (CNI 1.0) and STATUS, GC (CNI 1.1). Config keys, beside
`cniVersion`, `name` (the netkit network) and `type`:

    bridge, subnet, gateway, ipRange, mtu, ipMasq (default true), internal
    ipam: {subnet, gateway} or {ranges: [[{subnet, gateway}]]}   (host-local's spelling)
    runtimeConfig: {portMappings: [...], ips: ["10.1.0.5/24"]}    (capabilities)

netkit is its own IPAM (the address is allocated under netkit's state lock), so an `ipam`
section only names the subnet. A static address comes from `runtimeConfig.ips` or CNI_ARGS
`IP=`. Errors use the spec's codes; DEL succeeds when there is nothing left to delete.
"""
from __future__ import annotations

import json
import os
import sys

SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
# Error codes from the spec; 100 and above are ours.
E_INCOMPATIBLE = 1
E_UNSUPPORTED_FIELD = 2
E_UNKNOWN_CONTAINER = 3
E_INVALID_ENV = 4
E_IO = 5
E_DECODE = 6
E_INVALID_CONFIG = 7
E_NOT_AVAILABLE = 50
E_NETKIT = 100  # the engine refused: its one-line message says why
E_CHECK_FAILED = 101


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _version_key(v: str) -> tuple:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


def _env(name: str, required: bool = True) -> str:
    value = os.environ.get(name, "")
    if required and not value:
        raise CniError(E_INVALID_ENV, f"{name} is not set", "runtimes set CNI_COMMAND, CNI_CONTAINERID, "
                                                          "CNI_NETNS, CNI_IFNAME and CNI_PATH")
    return value


def _cni_args() -> dict[str, str]:
    pairs = {}
    for item in filter(None, os.environ.get("CNI_ARGS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise CniError(E_INVALID_ENV, f"CNI_ARGS item '{item}' is not KEY=VALUE")
        pairs[key] = value
    return pairs


def read_config(text: str) -> dict:
    try:
        conf = json.loads(text)
    except ValueError as err:
        raise CniError(E_DECODE, f"network config on stdin is not JSON: {err}") from None
    if not isinstance(conf, dict):
        raise CniError(E_DECODE, "network config on stdin must be a JSON object")
    return conf


def _check_config(conf: dict) -> str:
    version = conf.get("cniVersion")
    if not version:
        raise CniError(E_INVALID_CONFIG, "the network config has no cniVersion")
    if version not in SUPPORTED:
        raise CniError(E_INCOMPATIBLE, f"cniVersion {version} is not supported",
                       f"supported: {', '.join(SUPPORTED)}")
    if not conf.get("name"):
        raise CniError(E_INVALID_CONFIG, "the network config has no name")
    return version


def network_spec(conf: dict):
    from netkit.adapter import NetworkSpec

    ipam = conf.get("ipam") or {}
    subnet, gateway = conf.get("subnet"), conf.get("gateway")
    ranges = ipam.get("ranges") or []
    if not subnet and ranges and ranges[0]:
        subnet, gateway = ranges[0][0].get("subnet"), gateway or ranges[0][0].get("gateway")
    subnet = subnet or ipam.get("subnet")
    gateway = gateway or ipam.get("gateway")
    mtu = conf.get("mtu")
    if mtu is not None and not isinstance(mtu, int):
        raise CniError(E_INVALID_CONFIG, f"mtu must be an integer, not {mtu!r}")
    return NetworkSpec(name=conf["name"], subnet=subnet, gateway=gateway, ip_range=conf.get("ipRange"),
                       bridge=conf.get("bridge"), mtu=mtu, masquerade=bool(conf.get("ipMasq", True)),
                       internal=bool(conf.get("internal", False)))


def _static_ip(conf: dict) -> str | None:
    ips = (conf.get("runtimeConfig") or {}).get("ips") or []
    ip = ips[0] if ips else _cni_args().get("IP")
    return ip.split("/")[0] if ip else None


def build_result(version: str, att, netns_path: str, prev: dict | None) -> dict:
    """The spec's result: previous plugins' entries first, then the bridge, the host veth and
    the container interface (the reference bridge plugin's order), the address and routes."""
    result = json.loads(json.dumps(prev)) if prev else {}
    result["cniVersion"] = version
    interfaces = result.setdefault("interfaces", [])
    base = len(interfaces)
    interfaces += [{"name": att.bridge, "mac": att.bridge_mac},
                   {"name": att.host_ifname, "mac": att.host_mac},
                   {"name": att.ifname, "mac": att.mac, "sandbox": netns_path}]
    ip = {"address": f"{att.ip}/{att.prefixlen}", "interface": base + 2}
    if att.gateway:
        ip["gateway"] = att.gateway
    if _version_key(version) < (1, 0, 0):
        ip["version"] = "4"
    result.setdefault("ips", []).append(ip)
    if att.default_route and att.gateway:
        result.setdefault("routes", []).append({"dst": "0.0.0.0/0", "gw": att.gateway})
    if att.nameservers:
        dns = result.setdefault("dns", {})
        dns["nameservers"] = list(dict.fromkeys((dns.get("nameservers") or []) + att.nameservers))
    return result


def cmd_add(conf: dict) -> dict:
    from netkit import adapter

    version = _check_config(conf)
    cid, netns, ifname = _env("CNI_CONTAINERID"), _env("CNI_NETNS"), _env("CNI_IFNAME")
    if not os.path.exists(netns):
        raise CniError(E_INVALID_ENV, f"CNI_NETNS {netns} does not exist")
    mappings = (conf.get("runtimeConfig") or {}).get("portMappings") or []
    att = adapter.add(network_spec(conf), netns, cid, ifname, _static_ip(conf), mappings)
    return build_result(version, att, netns, conf.get("prevResult"))


def cmd_del(conf: dict) -> None:
    from netkit import adapter, answer

    _check_config(conf)
    cid, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    # Under netkitd the runtime hears "done" once the state is committed; the veth's deletion
    # (~20 ms of kernel RCU barrier) finishes after, under the state lock (netkit/answer.py).
    # Nothing there: already deleted, which is success.
    adapter.detach(conf["name"], cid, ifname, on_committed=lambda: answer.now(0))


def cmd_check(conf: dict) -> None:
    from netkit import adapter

    version = _check_config(conf)
    if _version_key(version) < (0, 4, 0):
        raise CniError(E_INCOMPATIBLE, f"CHECK needs cniVersion 0.4.0 or later, the config says {version}")
    cid, netns, ifname = _env("CNI_CONTAINERID"), _env("CNI_NETNS"), _env("CNI_IFNAME")
    att = adapter.find(conf["name"], cid, ifname)
    if att is None:
        raise CniError(E_UNKNOWN_CONTAINER, f"container {cid} has no interface {ifname} on network {conf['name']}")
    want = f"{att.ip}/{att.prefixlen}"
    have = adapter.interface_addresses(att.netns, ifname)
    if have is None:
        raise CniError(E_CHECK_FAILED, f"interface {ifname} is missing in {netns}")
    if want not in have:
        raise CniError(E_CHECK_FAILED, f"interface {ifname} in {netns} lacks {want} (has {', '.join(have) or 'none'})")
    prev = conf.get("prevResult")
    if prev is not None:
        ours = {ip.get("address") for ip in prev.get("ips", [])}
        if want not in ours:
            raise CniError(E_CHECK_FAILED, f"prevResult does not list {want}")


def cmd_status(conf: dict) -> None:
    from netkit import adapter

    _check_config(conf)
    try:
        adapter.ready()
    except Exception as err:  # noqa: BLE001 - any reason means "not ready"
        raise CniError(E_NOT_AVAILABLE, f"netkit is not ready: {err}") from None


def cmd_gc(conf: dict) -> None:
    """Remove this network's attachments that the runtime no longer lists as valid."""
    from netkit import adapter

    _check_config(conf)
    valid = conf.get("cni.dev/valid-attachments")
    if valid is None:
        raise CniError(E_INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
    keep = {adapter.attachment_name(conf["name"], a.get("containerID", ""), a.get("ifname", "")) for a in valid}
    for name in adapter.runtime_attachments(conf["name"]):
        if name not in keep:
            adapter.remove_attachment(name)


def cmd_version(conf: dict) -> dict:
    return {"cniVersion": conf.get("cniVersion") or SUPPORTED[-1], "supportedVersions": SUPPORTED}


COMMANDS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "VERSION": cmd_version, "STATUS": cmd_status,
            "GC": cmd_gc}


def run(command: str, stdin_text: str) -> tuple[int, dict | None]:
    """(exit code, JSON to print) for one invocation."""
    from netkit.errors import NetkitError

    conf: dict = {}
    try:
        handler = COMMANDS.get(command)
        if handler is None:
            raise CniError(E_INVALID_ENV, f"CNI_COMMAND '{command}' is not one of {', '.join(COMMANDS)}")
        conf = read_config(stdin_text) if stdin_text.strip() or command != "VERSION" else {}
        return 0, handler(conf)
    except CniError as err:
        return 1, _error(conf, err.code, err.msg, err.details)
    except NetkitError as err:
        return err.exit_code, _error(conf, E_INVALID_CONFIG if err.exit_code == 2 else E_NETKIT, str(err))
    except KeyboardInterrupt:
        return 130, _error(conf, E_NETKIT, "interrupted")


def _error(conf: dict, code: int, msg: str, details: str = "") -> dict:
    out = {"cniVersion": conf.get("cniVersion") if conf.get("cniVersion") in SUPPORTED else SUPPORTED[-1],
           "code": code, "msg": msg}
    if details:
        out["details"] = details
    return out


def main() -> None:
    """The `netkit-cni` executable (in-process, or in netkitd when the client forwarded it)."""
    command = os.environ.get("CNI_COMMAND", "")
    stdin_text = sys.stdin.read() if command != "VERSION" or not sys.stdin.isatty() else ""
    code, output = run(command, stdin_text)
    if output is not None:
        json.dump(output, sys.stdout)
        sys.stdout.write("\n")
    sys.stdout.flush()
    sys.exit(code)
