"""The daemon.json of netkit: settings of the default network and of netkit as a whole.

Read from /etc/netkit/config.json (NETKIT_CONFIG overrides), validated key by key so that a
mistake is reported in one line naming the file, the key and what is expected.
"""
from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from netkit.errors import UserError
from netkit.ipam import DEFAULT_POOLS

DEFAULT_CONFIG_PATH = "/etc/netkit/config.json"
DEFAULT_BRIDGE = "netkit0"


@dataclass
class Config:
    bridge: str = DEFAULT_BRIDGE  # device of the default network; another name adopts that bridge
    bip: str | None = None  # gateway address/prefix of the default network, e.g. 172.17.0.1/16
    mtu: int = 1500
    icc: bool = True
    iptables: bool = True  # false: netkit writes no firewall rules at all
    firewall_backend: str = "auto"  # auto | iptables-legacy | iptables-nft | nftables | none (kernel/fw)
    ip_forward: bool = True
    anti_spoofing: bool = True  # of the default network (others: `network create --no-anti-spoofing`)
    ip_masq: bool = True
    ip: str = "0.0.0.0"  # default host address of published ports (-p 8080:80), as daemon.json's "ip"
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    host_gateway_ip: str | None = None  # what --add-host NAME:host-gateway names (daemon.json host-gateway-ip)
    default_address_pools: list[dict] = field(default_factory=lambda: [dict(p) for p in DEFAULT_POOLS])
    # Several hosts (docs/multihost.md): the shared store of overlay networks, and this host's
    # address on the underlay that the others send VXLAN to. Unset: netkit is single-host.
    cluster_store: str | None = None  # etcd://ADDRESS:PORT
    cluster_advertise: str | None = None  # an IPv4 address of this host
    source: str = "(defaults)"  # which file the values came from

    def as_dict(self) -> dict:
        return asdict(self)


def config_path() -> str:
    return os.environ.get("NETKIT_CONFIG", DEFAULT_CONFIG_PATH)


def _bad(path: str, key: str, expected: str, value) -> UserError:
    return UserError(f"{path}: bad value for '{key}': {json.dumps(value)}; expected {expected}")


def _ipv4(path: str, key: str, value) -> str:
    # A string only: ipaddress takes the integer 5 as 0.0.0.5, which became "nameserver 5".
    if isinstance(value, str):
        try:
            if ipaddress.ip_address(value).version == 4:
                return value
        except ValueError:
            pass
    raise _bad(path, key, "an IPv4 address as a string", value)


def parse_store_url(url: str) -> tuple[str, int]:
    """etcd://HOST:PORT (or http://HOST:PORT) -> (host, port); UserError for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port or 2379
    except ValueError:
        port = None
    if parts.scheme not in ("etcd", "http") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise UserError(f"bad cluster store '{url}': expected etcd://ADDRESS:PORT, e.g. etcd://198.18.1.1:2379")
    return parts.hostname, port


def _validate(path: str, raw: dict) -> Config:
    cfg = Config(source=path)
    for key, value in raw.items():
        if key == "bridge":
            from netkit.naming import validate_ifname

            if not isinstance(value, str):
                raise _bad(path, key, "a bridge interface name", value)
            try:
                validate_ifname(value, "bridge")
            except UserError as err:
                raise UserError(f"{path}: bad value for 'bridge': {err}") from None
            cfg.bridge = value
        elif key == "bip":
            from netkit.ipam import parse_interface_cidr

            if not isinstance(value, str):
                raise _bad(path, key, "ADDRESS/PREFIX like 172.30.0.1/24", value)
            try:
                parse_interface_cidr(value, "bip")
            except UserError:
                raise _bad(path, key, "ADDRESS/PREFIX like 172.30.0.1/24", value) from None
            cfg.bip = value
        elif key == "mtu":
            from netkit.naming import MTU_MAX, MTU_MIN

            if not isinstance(value, int) or isinstance(value, bool) or not MTU_MIN <= value <= MTU_MAX:
                raise _bad(path, key, f"an integer from {MTU_MIN} to {MTU_MAX}", value)
            cfg.mtu = value
        elif key in ("icc", "iptables", "ip_forward", "ip_masq", "anti_spoofing"):
            if not isinstance(value, bool):
                raise _bad(path, key, "true or false", value)
            setattr(cfg, key, value)
        elif key == "firewall_backend":
            choices = ("auto", "iptables-legacy", "iptables-nft", "nftables", "none")
            if value not in choices:
                raise _bad(path, key, " or ".join(f'"{c}"' for c in choices), value)
            cfg.firewall_backend = value
        elif key == "ip":  # dockerd's --ip: the host address -p binds to when the spec names none
            cfg.ip = _ipv4(path, key, value)
        elif key == "dns":
            if not isinstance(value, list):
                raise _bad(path, key, "a list of IPv4 addresses", value)
            cfg.dns = [_ipv4(path, key, v) for v in value]
        elif key == "dns_search":
            from netkit.names import validate_hostname

            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise _bad(path, key, "a list of domain names", value)
            for domain in value:  # each becomes a word of resolv.conf's search line
                try:
                    validate_hostname(domain.removesuffix("."))
                except UserError:
                    raise _bad(path, key, "a list of domain names like example.com", value) from None
            cfg.dns_search = list(value)
        elif key == "host_gateway_ip":
            cfg.host_gateway_ip = _ipv4(path, key, value)
        elif key == "default_address_pools":
            cfg.default_address_pools = _pools(path, value)
        elif key == "cluster_store":

            if not isinstance(value, str):
                raise _bad(path, key, "etcd://ADDRESS:PORT", value)
            try:
                parse_store_url(value)
            except UserError:
                raise _bad(path, key, "etcd://ADDRESS:PORT", value) from None
            cfg.cluster_store = value
        elif key == "cluster_advertise":
            cfg.cluster_advertise = _ipv4(path, key, value)
        else:
            known = ", ".join(f.name for f in Config.__dataclass_fields__.values() if f.name != "source")
            raise UserError(f"{path}: unknown key '{key}'; known keys: {known}")
    return cfg


def _pools(path: str, value) -> list[dict]:
    expected = 'a list of {"base": CIDR, "size": PREFIXLEN}'
    if not isinstance(value, list) or not value:
        raise _bad(path, "default_address_pools", expected, value)
    pools = []
    for pool in value:
        if not isinstance(pool, dict) or set(pool) != {"base", "size"}:
            raise _bad(path, "default_address_pools", expected, pool)
        try:
            base = ipaddress.ip_network(pool["base"])
        except (ValueError, TypeError):
            raise _bad(path, "default_address_pools", expected, pool) from None
        size = pool["size"]
        if base.version != 4 or not isinstance(size, int) or not base.prefixlen <= size <= 30:
            raise _bad(path, "default_address_pools", expected + " with size between the base's prefix and 30", pool)
        pools.append({"base": str(base), "size": size})
    return pools


def load(path: str | None = None) -> Config:
    path = path or config_path()
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        return Config()
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8 JSON") from None
    try:
        raw = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise UserError(f"{path}: the JSON is nested too deeply; the config is one flat object") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the config must be a JSON object like {{\"mtu\": 1450}}")
    cfg = _validate(path, raw)
    if cfg.cluster_store and not cfg.cluster_advertise:
        raise UserError(f"{path}: 'cluster_store' needs 'cluster_advertise' too: this host's underlay "
                        "address, which the other hosts send VXLAN packets to")
    return cfg
