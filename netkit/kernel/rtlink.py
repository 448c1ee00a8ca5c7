"""Raw rtnetlink requests for the links on netkit's hot paths: a veth pair made in one request
(its peer in the host netns for Docker's Join, or directly in the container's netns for a regular
endpoint), a link brought up, hairpin mode on a bridge port, and a container's end configured
(up, IPv4 address, default route) in one batch on a socket inside its netns.

pyroute2 spends ~0.7 ms of Python per request around ~0.15 ms of kernel work, and a Join made
three of them plus a fourth, on a handle of its own, for hairpin: 3.4 ms of the 7.3 ms a Join
took in-process. These requests are a few packed structs on a socket made for the call
(socket + bind ~0.02 ms); measured here, a veth pair on a bridge, IPv6 off on its host end, that
end up and hairpin on take ~0.5 ms in all (docs/facts.md, "Docker's remote driver").
"""
from __future__ import annotations

import errno
import itertools
import os
import socket
import struct

from netkit.kernel import nlmsg

RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 18, 20, 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
IFF_UP = 0x1

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

IFINFO = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBi")  # struct ifaddrmsg: family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # struct rtmsg: family, dst/src len, tos, table, protocol, scope, type, flags

# Sequence numbers unique in the process: a socket kept open (Handles.rt_socket) may still hold
# the acks of a batch cut short (Ctrl-C between send and recv); they never match a later batch.
_sequence = itertools.count(1)


class LinkError(OSError):
    """The kernel refused a link request; errno and strerror are the kernel's, `step` (when set)
    says which request of a batch it was."""

    step = ""


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


def _batch(sock: socket.socket, requests: list[tuple[int, int, bytes]]) -> list[tuple[int, list[bytes]]]:
    """Send requests (type, flags, payload) in one datagram and wait for every ack; per request,
    (the kernel's errno, 0 if done; the bodies of its replies). The kernel runs the requests of a
    datagram in order and goes on after a refused one, so every one of them gets its own answer."""
    seqs = [next(_sequence) for _ in requests]
    sock.send(b"".join(nlmsg.HEADER.pack(nlmsg.HEADER.size + len(payload), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                                         seq, 0) + payload
                       for (kind, flags, payload), seq in zip(requests, seqs)))
    answers: dict[int, tuple[int, list[bytes]]] = {}
    replies: dict[int, list[bytes]] = {seq: [] for seq in seqs}
    while len(answers) < len(seqs):
        for kind, seq, _port, body in nlmsg.messages(sock.recv(65536)):
            if seq not in replies:
                continue  # a stale ack of an earlier batch on this socket
            if kind == NLMSG_ERROR:
                answers[seq] = (-struct.unpack_from("=i", body)[0], replies[seq])
            else:
                replies[seq].append(body)
    return [answers[seq] for seq in seqs]


def _request(flags: int, payload: bytes) -> None:
    """Send one RTM_NEWLINK on a socket of this netns made for the call; LinkError if refused."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        ((code, _),) = _batch(sock, [(RTM_NEWLINK, flags, payload)])
    if code:
        raise LinkError(code, os.strerror(code))


def veth_on_bridge(host: str, peer: str, master_index: int, mtu: int, peer_mac: str,
                   peer_netns_fd: int | None = None) -> None:
    """A veth pair: `host` in this netns, enslaved to the bridge; `peer` with `peer_mac`, in this
    netns or made directly in the netns of `peer_netns_fd` (no move afterwards); both down (the
    caller brings `host` up once IPv6 is off on it: port_up)."""
    peer_info = (IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu)
                 + _attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", ""))))
    if peer_netns_fd is not None:
        peer_info += _u32(IFLA_NET_NS_FD, peer_netns_fd)
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


def configure(sock: socket.socket, ifname: str, ip: str, prefixlen: int, gateway: str | None) -> None:
    """On `sock`, a rtnetlink socket inside the container's netns: `ifname` up, `ip`/`prefixlen`
    on it and, with a gateway, the default route via it; what `ip addr add`, `ip link set up` and
    `ip route add default via` make there. LinkError (with `step`) for the first request refused.

    Two round trips: the interface's index first (an address is given by index, and the netns is
    not this thread's, so if_nametoindex cannot tell it), then the three requests in one datagram,
    in the order that lets each succeed: the link up, its address (whose subnet route is how the
    gateway is reached), the route."""
    ((code, replies),) = _batch(sock, [(RTM_GETLINK, 0, IFINFO.pack(0, 0, 0, 0, 0) + _name(IFLA_IFNAME, ifname))])
    if code:
        _refused(code, f"find '{ifname}'")
    index = IFINFO.unpack_from(replies[0])[2]
    address = socket.inet_aton(ip)
    # IFA_LOCAL and IFA_ADDRESS both the address, no broadcast: as `ip addr add A/N dev X` (and
    # pyroute2 before) set it; scope universe ("scope global").
    steps = {f"bring '{ifname}' up": (RTM_NEWLINK, 0, IFINFO.pack(0, 0, index, IFF_UP, IFF_UP)),
             f"add address {ip}/{prefixlen} to '{ifname}'": (
                 RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                 IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
                 + _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address))}
    if gateway:
        # Main table, unicast, scope universe, "proto static" as netkit's routes always showed.
        steps[f"add the default route via {gateway}"] = (
            RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
            RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
            + _attr(RTA_GATEWAY, socket.inet_aton(gateway)))
    for step, (code, _replies) in zip(steps, _batch(sock, list(steps.values()))):
        if code:
            _refused(code, step)


def _refused(code: int, step: str):
    err = LinkError(code, os.strerror(code))
    err.step = step
    raise err


def gone(err: OSError) -> bool:
    """The link went away meanwhile."""
    return err.errno in (errno.ENODEV, errno.ENOENT)
