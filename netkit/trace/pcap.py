"""Write what was captured as files Wireshark and tcpdump open: one pcap per interface
(named NETNS-IFACE.pcap), one merged pcap in time order, and a merged pcapng whose interface
blocks carry the "netns:iface" names, so Wireshark shows on which hop each packet was seen.

Written by hand (the formats are a few fixed headers): nanosecond timestamps, nothing to import.
"""
from __future__ import annotations

import os
import re
import struct

from netkit.trace.capture import SNAPLEN, Result

PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def file_name(netns: str, ifname: str) -> str:
    return f"{_safe(netns)}-{_safe(ifname)}.pcap"


def _pcap_header() -> bytes:
    return struct.pack("<IHHiIII", PCAP_MAGIC_NS, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)


def _pcap_record(ts_ns: int, data: bytes) -> bytes:
    sec, nsec = divmod(ts_ns, 1_000_000_000)
    return struct.pack("<IIII", sec, nsec, len(data), len(data)) + data


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _pcapng(result: Result) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))
    out = [shb]
    for p in result.points:
        opts = _option(2, p.label.encode()) + _option(9, bytes([9])) + _option(0, b"")  # if_name, if_tsresol=ns
        out.append(_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + opts))
    for r in result.records:
        flags = _option(2, struct.pack("<I", 2 if r.outgoing else 1)) + _option(0, b"")  # epb_flags: direction
        body = struct.pack("<IIIII", r.point, r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, len(r.data), len(r.data))
        body += r.data + b"\0" * (-len(r.data) % 4) + flags
        out.append(_block(6, body))
    return b"".join(out)


def write(result: Result, directory: str) -> list[str]:
    """Write every file; return their paths (per-interface files first, merged last)."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    per_point: list[list[bytes]] = [[] for _ in result.points]
    for r in result.records:
        per_point[r.point].append(_pcap_record(r.ts_ns, r.data))
    for p, recs in zip(result.points, per_point):
        path = os.path.join(directory, file_name(p.netns, p.ifname))
        with open(path, "wb") as fh:
            fh.write(_pcap_header() + b"".join(recs))
        paths.append(path)
    merged = os.path.join(directory, "merged.pcap")
    with open(merged, "wb") as fh:
        fh.write(_pcap_header() + b"".join(_pcap_record(r.ts_ns, r.data) for r in result.records))
    paths.append(merged)
    merged_ng = os.path.join(directory, "merged.pcapng")
    with open(merged_ng, "wb") as fh:
        fh.write(_pcapng(result))
    paths.append(merged_ng)
    return paths
