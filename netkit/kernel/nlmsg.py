"""Splitting a buffer read from a raw netlink socket into its messages. Shared by the small raw
netlink clients (kernel/conntrack.py, kernel/fw/nfthandles.py) that skip pyroute2 because they run
on the publish/unpublish fast path."""
from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, sequence, port id, payload) of each message in `data`, in order; a truncated or
    malformed header ends the walk (the kernel never sends one; a short read would)."""
    i = 0
    while i + HEADER.size <= len(data):
        length, kind, _, seq, portid = HEADER.unpack_from(data, i)
        if length < HEADER.size:
            return
        yield kind, seq, portid, data[i + HEADER.size:i + length]
        i += (length + 3) & ~3
