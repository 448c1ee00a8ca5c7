"""Delete the conntrack entries of a port mapping that went away (pyroute2's Conntrack).

Without this, a UDP flow keeps following its old entry to the old container for as long as the
traffic refreshes the timeout (docs/facts.md, "UDP and conntrack"), even after unpublish or a re-publish elsewhere.
"""
from __future__ import annotations

import socket

PROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}


def delete_mapping(proto: str, host_port: int, container_ip: str, container_port: int) -> int:
    """Remove entries whose original destination port is `host_port` and that were DNATed to
    container_ip:container_port (what the reply tuple says). Returns how many were deleted."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    number = PROTO[proto]
    deleted = 0
    with Conntrack() as ct:
        victims = [
            e for e in ct.dump_entries(tuple_reply=NFCTAttrTuple(proto=number, saddr=container_ip))
            if e.tuple_orig.dport == host_port and e.tuple_reply.sport == container_port
        ]
        for entry in victims:
            try:
                ct.delete(entry)
                deleted += 1
            except Exception:  # noqa: BLE001 - it may have expired meanwhile
                pass
    return deleted
