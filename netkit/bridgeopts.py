"""Docker's bridge driver options (`docker network create -o KEY=VALUE`), pure: parsed into the
settings a netkit network has (bridge device, icc, masquerade, MTU), with one-line errors."""
from __future__ import annotations

from dataclasses import dataclass

from netkit.errors import UserError

BRIDGE_NAME = "com.docker.network.bridge.name"
ENABLE_ICC = "com.docker.network.bridge.enable_icc"
ENABLE_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
DRIVER_MTU = "com.docker.network.driver.mtu"
KNOWN = (BRIDGE_NAME, ENABLE_ICC, ENABLE_MASQ, DRIVER_MTU)

# Go's strconv.ParseBool, which dockerd uses for these options.
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass
class BridgeOptions:
    bridge: str | None = None
    icc: bool | None = None
    masquerade: bool | None = None
    mtu: int | None = None


def _bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UserError(f"invalid -o {key}={value}: use true or false")


def parse(items: list[str]) -> BridgeOptions:
    """`-o KEY=VALUE` items of the bridge driver; an unknown key is refused, not ignored."""
    out = BridgeOptions()
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"invalid -o '{item}': use KEY=VALUE, e.g. -o {BRIDGE_NAME}=br0")
        if key == BRIDGE_NAME:
            out.bridge = value
        elif key == ENABLE_ICC:
            out.icc = _bool(key, value)
        elif key == ENABLE_MASQ:
            out.masquerade = _bool(key, value)
        elif key == DRIVER_MTU:
            try:
                out.mtu = int(value)
            except ValueError:
                raise UserError(f"invalid -o {key}={value}: give a number of bytes, e.g. 1450") from None
        else:
            raise UserError(f"unknown bridge driver option '{key}': netkit knows {', '.join(KNOWN)}")
    return out
