"""Add or delete elements of nft sets straight over netlink: one nf_tables batch of NEWSETELEM or
DELSETELEM messages on a socket this process keeps open.

Why not libnftables (kernel/fw/libnft.py), which netkit uses for everything else nft: a context
fetches its cache on its first command, ~2 ms here, and every command netkitd runs is a freshly
forked process with a fresh context. The anti-spoofing elements of each container endpoint
(kernel/antispoof.py) are on the path of every create, CNI ADD and DEL; written here they cost a
fraction of a millisecond. The table and its sets are still made by libnftables (text is clearer
there, and it happens once); a missing table or set is a refusal the caller answers by making it.

A key is the set's key type in the kernel's layout: each part of a concatenation takes a whole
number of 32-bit registers (ifname 16 bytes, ether_addr 6 + 2 bytes of padding, ipv4_addr 4), as
nft itself sends it.
"""
from __future__ import annotations

import errno
import os
import socket
import struct

from netkit.kernel import nlmsg

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM, NFTA_SET_ELEM_KEY, NFTA_DATA_VALUE = 1, 1, 1
NLA_F_NESTED = 0x8000
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
FAMILIES = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}
TIMEOUT = 2.0
IFNAMSIZ = 16


def ifname_key(name: str) -> bytes:
    return name.encode().ljust(IFNAMSIZ, b"\0")


def ether_key(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) + b"\0\0"


def ipv4_key(ip: str) -> bytes:
    return socket.inet_aton(ip)


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind | (NLA_F_NESTED if nested else 0)) + payload + b"\0" * ((4 - length % 4) % 4)


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def batch(family: str, table: str, elements: list[tuple[str, bytes]], delete: bool = False, seq: int = 1) -> bytes:
    """The bytes of one batch: per set, one message with its elements (set name, key) in order."""
    fam = FAMILIES[family]
    kind = (NFNL_SUBSYS_NFTABLES << 8) | (NFT_MSG_DELSETELEM if delete else NFT_MSG_NEWSETELEM)
    flags = NLM_F_REQUEST | NLM_F_ACK | (0 if delete else NLM_F_CREATE)
    by_set: dict[str, list[bytes]] = {}
    for set_name, key in elements:
        by_set.setdefault(set_name, []).append(key)
    parts = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b"")]
    for set_name, keys in by_set.items():
        seq += 1
        listed = b"".join(_attr(NFTA_LIST_ELEM, _attr(NFTA_SET_ELEM_KEY, _attr(NFTA_DATA_VALUE, key), True), True)
                          for key in keys)
        parts.append(_message(kind, flags, seq, fam, 0, _attr(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
                              + _attr(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
                              + _attr(NFTA_SET_ELEM_LIST_ELEMENTS, listed, True)))
    parts.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(parts)


_sockets: dict[tuple[int, int], socket.socket] = {}
_seq = 0


def _socket() -> socket.socket:
    # One per process and netns (a netlink socket speaks for the netns it was made in; a forked
    # child makes its own). Kept open: closing a NETLINK_NETFILTER socket right after a commit
    # waits for nf_tables to release what the commit replaced.
    key = (os.getpid(), os.stat("/proc/thread-self/ns/net").st_ino)
    sock = _sockets.get(key)
    if sock is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.bind((0, 0))
        sock.settimeout(TIMEOUT)
        _sockets[key] = sock
    return sock


def change(family: str, table: str, elements: list[tuple[str, bytes]], delete: bool = False) -> int:
    """Add (or delete) the elements in one transaction: 0, or the errno of the first message the
    kernel refused (then nothing changed: e.g. ENOENT for a missing table, set or element)."""
    global _seq
    if not elements:
        return 0
    sock = _socket()
    start = _seq + 1
    data = batch(family, table, elements, delete, start)
    sets = len({name for name, _ in elements})
    _seq = start + sets + 1
    waiting = set(range(start + 1, start + 1 + sets))
    sock.send(data)
    while waiting:
        try:
            reply = sock.recv(65536)
        except socket.timeout:
            return errno.ETIMEDOUT
        for kind, seq, _, payload in nlmsg.messages(reply):
            if kind != NLMSG_ERROR or len(payload) < 4 or not (seq == start or seq in waiting):
                continue  # e.g. the rest of an earlier refused batch's answers (other sequence numbers)
            code = -struct.unpack_from("=i", payload)[0]
            if code:  # one refusal aborts the whole batch
                return code
            waiting.discard(seq)
    return 0
