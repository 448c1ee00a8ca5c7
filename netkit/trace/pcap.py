"""Write what was captured as files Wireshark and tcpdump open: one pcap per interface
(named NETNS-IFACE.pcap), one merged pcap in time order, and a merged pcapng with one interface
block per hop (if_name "netns:iface", if_description the hop's role name) and a comment on every
packet (flow, hop, direction, NAT, drop) that Wireshark shows as the packet comment.

Wireshark's TCP analysis keys conversations by addresses and ports, so the same segment seen on
five hops looks like four retransmissions unless conversations are told apart by interface:
Preferences → Protocols → "Deinterlacing conversations key" set to the interface-based choice
(`protocols.conversation_deinterlacing_key`, Wireshark 4.2 and later). The distinct interface
blocks written here are what makes that work.

Written by hand (the formats are a few fixed headers): nanosecond timestamps, nothing to import.
"""
from __future__ import annotations

import os
import re
import struct

from netkit.trace.capture import SNAPLEN
from netkit.trace.model import Result

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


def comments(report: dict | None, n_records: int) -> list[str]:
    """One comment per captured frame (index = frame number - 1), from the report's hops."""
    out = [""] * n_records
    if not report:
        return out
    for flow in report["flows"]:
        for pkt in flow["packets"]:
            hops = pkt["hops"]
            for i, h in enumerate(hops):
                k = h.get("frame")
                if not k or k > n_records:
                    continue
                name = h["name"] + (f" ({h['detail']})" if h.get("detail") else "")
                text = f"flow {flow['id']} #{pkt['n']} {pkt['info']} | hop {i + 1}/{len(hops)} {name} {h['direction']}"
                if h["changes"]:
                    text += " | " + "; ".join(h["changes"])
                if i == len(hops) - 1 and pkt.get("drop"):
                    text += f" | DROPPED: {pkt['drop']['text']}"
                out[k - 1] = text
    return out


def _pcapng(result: Result, report: dict | None = None) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))
    out = [shb]
    names = {p["point"]: p for p in (report or {}).get("points", [])}
    for p in result.points:
        opts = _option(2, p.label.encode())  # if_name
        info = names.get(p.label)
        if info and info.get("name"):
            desc = info["name"] + (f" ({info['detail']})" if info.get("detail") else "") + f", role {p.role}"
            opts += _option(3, desc.encode())  # if_description
        opts += _option(9, bytes([9])) + _option(0, b"")  # if_tsresol = ns
        out.append(_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + opts))
    notes = comments(report, len(result.records))
    for r, note in zip(result.records, notes):
        opts = _option(2, struct.pack("<I", 2 if r.outgoing else 1))  # epb_flags: direction
        if note:
            opts += _option(1, note.encode())  # opt_comment
        opts += _option(0, b"")
        body = struct.pack("<IIIII", r.point, r.ts_ns >> 32, r.ts_ns & 0xFFFFFFFF, len(r.data), len(r.data))
        body += r.data + b"\0" * (-len(r.data) % 4) + opts
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
    return paths


def write_pcapng(result: Result, directory: str, report: dict | None = None) -> str:
    """merged.pcapng: every hop its own interface, every packet its comment."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "merged.pcapng")
    with open(path, "wb") as fh:
        fh.write(_pcapng(result, report))
    return path
