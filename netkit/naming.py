"""Names: validation of user-given names and derivation of interface names (<= 15 bytes)."""
from __future__ import annotations

import hashlib
import re

from netkit.errors import UserError

IFNAMSIZ = 15  # the kernel's limit on interface names, without the trailing NUL
# fullmatch everywhere: `$` would accept a trailing newline ("tn\n" became a netns name).
_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The kernel refuses '/', ':' (alias syntax), whitespace, and the names '.' and '..'.
_IFNAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_OBJECT_NAME = 64
BRIDGE_PREFIX = "br-"


def validate_object_name(kind: str, name: str) -> str:
    """Check a container or network name the way Docker does ([a-zA-Z0-9][a-zA-Z0-9_.-]*)."""
    if not name:
        raise UserError(f"{kind} name must not be empty")
    if len(name) > MAX_OBJECT_NAME:
        raise UserError(f"{kind} name '{name}' is {len(name)} characters; use at most {MAX_OBJECT_NAME}")
    if not _OBJECT_NAME.fullmatch(name):
        raise UserError(
            f"invalid {kind} name '{name}': use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )
    return name


def validate_ifname(name: str, what: str = "interface") -> str:
    raw = name.encode()
    if not name or name in (".", ".."):
        raise UserError(f"invalid {what} name '{name}'")
    if len(raw) > IFNAMSIZ:
        raise UserError(f"{what} name '{name}' is {len(raw)} bytes; Linux allows at most {IFNAMSIZ}")
    if not _IFNAME.fullmatch(name):
        raise UserError(f"invalid {what} name '{name}': use letters, digits, '_', '.' and '-' only")
    return name


def plain_bridge_name(network: str) -> str | None:
    """`br-NAME` when that is a valid interface name within 15 bytes, else None (then the bridge
    takes its name from the network's ID, which only exists once the network is made)."""
    name = BRIDGE_PREFIX + network
    if len(name.encode()) > IFNAMSIZ or not _IFNAME.fullmatch(name):
        return None
    return name


def bridge_name_for(network: str, network_id: str) -> str:
    """`br-NAME` when it fits in 15 bytes (readable), else Docker's own `br-<12 hex of the id>`:
    never a truncated name, which could collide with another network's."""
    return plain_bridge_name(network) or BRIDGE_PREFIX + network_id[:IFNAMSIZ - len(BRIDGE_PREFIX)]


def builtin_id(name: str) -> str:
    """A fixed 64-hex id for a network Docker always has (bridge, host, none): `network ls`
    shows the same id before and after the default network is first made."""
    return hashlib.sha256(f"netkit-builtin/{name}".encode()).hexdigest()


_LABEL_KEY = re.compile(r"[^\s=]+")


def parse_labels(items: list[str], flag: str = "--label") -> dict[str, str]:
    """Docker's `--label KEY=VALUE` (or `--label KEY` for an empty value), repeatable."""
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not _LABEL_KEY.fullmatch(key):
            raise UserError(f"invalid {flag} '{item}': use KEY=VALUE with a key that has no spaces")
        labels[key] = value
    return labels


def veth_name(container_id: str, network_id: str) -> str:
    """Host end of a container's veth: `veth` + 7 hex digits, stable for a container/network pair."""
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return "veth" + digest[:7]


def validate_mtu(mtu: int | None) -> int | None:
    if mtu is not None and not MTU_MIN <= mtu <= MTU_MAX:
        raise UserError(f"invalid MTU {mtu}: use a value from {MTU_MIN} to {MTU_MAX}")
    return mtu


MTU_MIN, MTU_MAX = 68, 65535  # IPv4's minimum; the largest a netdev takes


def container_ifname(index: int) -> str:
    """eth0 for the first network a container joins, eth1 for the second ..."""
    return f"eth{index}"


def new_id(name: str) -> str:
    """A 64-hex id like Docker's; random so that a re-created name gets new veth names."""
    import os

    return hashlib.sha256(name.encode() + os.urandom(16)).hexdigest()


def mac_for_ip(ip: str) -> str:
    """Docker's scheme: 02:42 followed by the IPv4 address bytes (locally administered, unicast)."""
    octets = [int(x) for x in ip.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)


def bridge_mac(bridge: str) -> str:
    """A fixed MAC for a bridge netkit makes. Without one a bridge takes the lowest MAC of its
    ports, so a new port can change the gateway's MAC under the containers' ARP caches."""
    digest = hashlib.sha256(f"bridge/{bridge}".encode()).digest()
    return "02:42:" + ":".join(f"{b:02x}" for b in digest[:4])


_MAC = re.compile(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}")


def validate_mac(mac: str) -> str:
    if not _MAC.fullmatch(mac):
        raise UserError(f"invalid MAC address '{mac}': use six hex pairs like 02:42:ac:11:00:02")
    if int(mac[:2], 16) & 1:
        raise UserError(f"MAC address '{mac}' is a multicast address; the first byte must be even")
    if mac == "00:00:00:00:00:00":
        raise UserError("MAC address 00:00:00:00:00:00 is not usable")
    return mac.lower()


# Docker's check of `docker run -h` (its CLI's regexp): dot-separated labels that start and end
# with a letter or digit and may hold punctuation inside (`docker_test` is fine), 64 bytes at most
# (HOST_NAME_MAX).
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9!-/:-@\[-`{-~]*[A-Za-z0-9])"
_CONTAINER_HOSTNAME = re.compile(rf"(?:{_HOST_LABEL}\.)*{_HOST_LABEL}")
HOST_NAME_MAX = 64


def validate_container_hostname(name: str) -> str:
    if len(name.encode()) > HOST_NAME_MAX:
        raise UserError(f"hostname '{name}' is {len(name.encode())} characters; Linux allows at most {HOST_NAME_MAX}")
    if not _CONTAINER_HOSTNAME.fullmatch(name):
        raise UserError(f"invalid hostname '{name}': use labels of letters and digits separated by dots "
                        "(punctuation such as '-' and '_' only inside a label)")
    return name
