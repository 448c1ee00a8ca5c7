"""Raw rtnetlink requests for the links on a runtime's hot path (Docker's Join): a veth pair on a
bridge made in one request, a link brought up, hairpin mode on a bridge port.

pyroute2 spends ~0.7 ms of Python per request around ~0.15 ms of kernel work, and a Join made
three of them plus a fourth, on a handle of its own, for hairpin: 3.4 ms of the 7.3 ms a Join
took in-process. These requests are a few packed structs on a socket made for the call
(socket + bind ~0.02 ms); measured here, a veth pair on a bridge, IPv6 off on its host end, that
end up and hairpin on take ~0.5 ms in all (docs/facts.md, "Docker's remote driver").
"""
from __future__ import annotations

import errno
import os
import socket
import struct

from netkit.kernel import nlmsg

RTM_NEWLINK = 16
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFF_UP = 0x1

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO = 1, 3, 4, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin

IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change


class LinkError(OSError):
    """The kernel refused a link request; errno and strerror are the kernel's."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length & 3)


def _name(kind: int, name: str) -> bytes:
    return _attr(kind, name.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _hairpin() -> bytes:
    """Bridge-port options of an enslaved link, set with RTM_NEWLINK on it (no AF_BRIDGE request)."""
    return _attr(IFLA_LINKINFO, _name(IFLA_INFO_SLAVE_KIND, "bridge")
                 + _attr(IFLA_INFO_SLAVE_DATA, _attr(IFLA_BRPORT_MODE, b"\1")))


def _request(flags: int, payload: bytes) -> None:
    """Send one RTM_NEWLINK and wait for its acknowledgement; LinkError if refused."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(nlmsg.HEADER.pack(nlmsg.HEADER.size + len(payload), RTM_NEWLINK,
                                    NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0) + payload)
        while True:
            for kind, seq, _port, body in nlmsg.messages(sock.recv(65536)):
                if kind == NLMSG_ERROR and seq == 1:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise LinkError(code, os.strerror(code))
                    return


def veth_on_bridge(host: str, peer: str, master_index: int, mtu: int, peer_mac: str) -> None:
    """A veth pair in this netns: `host` enslaved to the bridge, `peer` with `peer_mac`; both
    down (the caller brings `host` up once the port's rules exist: port_up)."""
    peer_info = (IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu)
                 + _attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", ""))))
    kind = _name(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
    _request(NLM_F_CREATE | NLM_F_EXCL,
             IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, host) + _u32(IFLA_MTU, mtu)
             + _u32(IFLA_MASTER, master_index) + _attr(IFLA_LINKINFO, kind))


def port_up(index: int) -> None:
    """The link with this index up."""
    _request(0, IFINFO.pack(0, 0, index, IFF_UP, IFF_UP))


def hairpin_on(index: int) -> None:
    """hairpin_mode on for the bridge port with this index."""
    _request(0, IFINFO.pack(0, 0, index, 0, 0) + _hairpin())


def gone(err: OSError) -> bool:
    """The link went away meanwhile."""
    return err.errno in (errno.ENODEV, errno.ENOENT)
