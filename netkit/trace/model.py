"""The tracer's plain data, with no I/O: where to capture (Point), what was captured (Record,
Result), what the report needs to name things (Topology), one dissected frame (Frame), one
sighting of a packet on one hop (Hop), and why a packet died (Drop).

Every other tracer module passes these around; only capture.py fills Records, only
kernel adapters fill the kernel facts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass
class Point:
    """One interface to capture on: `label` is what reports and file names show."""

    netns: str  # display name: "host", a container's netns name, "outside"
    ifname: str
    path: str | None = None  # netns file; None: the caller's own netns (the host)
    role: str = "other"  # container | veth | bridge | vxlan | uplink | outside | lo | other
    bridge: str | None = None  # for a bridge port: its bridge; for a bridge: itself
    peer: str | None = None  # label of the other end of a veth pair, when known
    owner: str | None = None  # for a veth: the container (names) it leads to

    @property
    def label(self) -> str:
        return f"{self.netns}:{self.ifname}"


@dataclass
class Record:
    ts_ns: int
    point: int  # index into Result.points
    outgoing: bool  # sent by this interface (PACKET_OUTGOING), else received
    data: bytes


@dataclass
class Result:
    points: list[Point]
    records: list[Record]  # time-ordered
    started: float  # wall clock, for the report header
    duration: float
    stopped_by: str  # duration | count | interrupt | stop | limit
    filter: str
    frames: list[int] = field(default_factory=list)  # per point
    lost: list[int] = field(default_factory=list)  # per point: the kernel's tp_drops


@dataclass
class Topology:
    """The capture points plus what the report needs to name things and diagnose drops."""

    points: list[Point]
    ports: list[int] = field(default_factory=list)  # --port widened to the container ports it maps to
    notes: list[str] = field(default_factory=list)
    containers: dict = field(default_factory=dict)  # netns name -> container names living there
    modes: dict = field(default_factory=dict)  # container name -> mode
    # engine facts, read from the state before the capture (trace/world.py):
    networks: dict = field(default_factory=dict)  # bridge -> {name, subnet, icc, internal, masquerade}
    published: list = field(default_factory=list)  # [{container, proto, host_ip, host_port, container_port}]
    exposed: dict = field(default_factory=dict)  # container -> ["80/tcp", ...]
    # kernel facts, filled after the capture by path.enrich():
    addresses: dict = field(default_factory=dict)  # netns name -> {ip: ifname}
    macs: dict = field(default_factory=dict)  # mac -> "netns:ifname"
    fdb: dict = field(default_factory=dict)  # fdb_key(bridge point) -> {mac: port ifname}
    forwarding: dict = field(default_factory=dict)  # netns name -> net.ipv4.ip_forward is on
    settings: dict = field(default_factory=dict)  # netns name -> {sysctl name: value}
    mtu: dict = field(default_factory=dict)  # "netns:ifname" -> MTU
    neighbours: dict = field(default_factory=dict)  # netns name -> {ip: state name}
    # a trace across the hosts of a multi-host sandbox (trace/hosts.py): host netns name ->
    # {address: its underlay IP, local: this host}; empty for a one-host trace ("host")
    hosts: dict = field(default_factory=dict)
    tunnel_filter: str | None = None  # BPF for the underlay interfaces of such a trace (VXLAN only)

    def fdb_key(self, p: "Point") -> str:
        """A bridge's key in `fdb`: its name, or `hK:name` on another host (every host of an
        overlay network has a bridge of the same name)."""
        return f"{p.netns}:{p.bridge}" if p.path and p.netns in self.hosts else str(p.bridge)

    def learnt(self, p: "Point", mac: str) -> str | None:
        """The port of bridge p.bridge where `mac` was learnt."""
        return self.fdb.get(self.fdb_key(p), {}).get(mac)

    def is_host(self, ns: str | None) -> bool:
        """A host's own netns (not a container's, not outside)."""
        return ns == "host" or ns in self.hosts


@dataclass
class Frame:
    """One frame reduced to the fields the report uses (see dissect.py)."""

    src_mac: str = ""
    dst_mac: str = ""
    kind: str = "other"  # arp | ipv4 | other
    proto: str = ""  # tcp | udp | icmp | arp | ip<N> | ethertype 0x....
    src: str | None = None  # IPv4 (ARP: sender IP)
    dst: str | None = None  # IPv4 (ARP: target IP)
    sport: int | None = None
    dport: int | None = None
    ttl: int | None = None
    ip_id: int | None = None
    df: bool = False  # IPv4 don't-fragment bit
    ip_len: int = 0  # IPv4 total length
    flags: str = ""  # TCP flags as Scapy writes them: S, SA, A, PA, FA, R ...
    seq: int | None = None
    ack: int | None = None
    arp_op: str | None = None  # who-has | is-at
    arp_hwsrc: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    icmp_mtu: int | None = None  # ICMP frag-needed: the next hop's MTU
    inner: tuple | None = None  # ICMP error: (proto, src, sport, dst, dport) of the packet it is about
    inner_key: tuple | None = None  # ICMP error: identity of the packet it is about (see key())
    length: int = 0
    payload_len: int = 0
    payload_crc: int = 0
    # A VXLAN-encapsulated frame is dissected as the frame it carries (so that it correlates with
    # that frame's other hops); the tunnel's own headers are here: {src_mac, dst_mac, src, dst,
    # sport, dport, ttl, ip_id, length, vni}. None for a frame that is not encapsulated.
    outer: dict | None = None

    @property
    def broadcast(self) -> bool:
        return self.dst_mac == BROADCAST or bool(int(self.dst_mac[:2] or "0", 16) & 1)

    def key(self):
        """The packet's identity on every hop: fields neither NAT nor routing rewrite."""
        if self.kind == "arp":
            return ("arp", self.arp_op, self.arp_hwsrc, self.src, self.dst)
        if self.kind == "ipv4":
            if self.proto == "tcp":
                return ("tcp", self.ip_id, self.seq, self.ack, self.flags, self.payload_len, self.payload_crc)
            if self.proto == "icmp":
                # The echo id is left out: MASQUERADE may rewrite it like a port.
                return ("icmp", self.ip_id, self.icmp_type, self.icmp_code, self.icmp_seq, self.payload_crc)
            return (self.proto, self.ip_id, self.payload_len, self.payload_crc)
        return ("other", self.proto, self.length, self.payload_crc)

    def tuple(self):
        """(proto, src, sport, dst, dport) of this hop; ICMP echo uses its id as both ports."""
        return (self.proto, self.src, self.sport, self.dst, self.dport)

    def info(self) -> str:
        """One short human description of the packet (the same on every hop)."""
        if self.kind == "arp":
            if self.arp_op == "who-has":
                return f"ARP who-has {self.dst} tell {self.src}"
            return f"ARP {self.src} is-at {self.arp_hwsrc}"
        if self.proto == "tcp":
            text = f"TCP [{self.flags}] seq={self.seq}"
            if "A" in self.flags:
                text += f" ack={self.ack}"
            if self.payload_len:
                text += f" len={self.payload_len}"
            return text
        if self.proto == "udp":
            return f"UDP len={self.payload_len}"
        if self.proto == "icmp":
            return icmp_info(self.icmp_type, self.icmp_code, self.icmp_id, self.icmp_seq, self.icmp_mtu)
        return self.proto or "frame"


ICMP_TYPES = {0: "echo-reply", 8: "echo-request", 3: "unreachable", 11: "time-exceeded"}
ICMP_UNREACH = {0: "net", 1: "host", 3: "port", 4: "frag-needed", 9: "net-prohibited", 10: "host-prohibited",
                13: "admin-prohibited"}


def icmp_info(itype, code, ident=None, seq=None, mtu=None) -> str:
    """ICMP as type/code (and id/seq for echo), never as ports."""
    name = ICMP_TYPES.get(itype, f"type {itype}")
    text = f"ICMP {name} type={itype}/code={code}"
    if itype in (0, 8):
        text += f" id={ident} seq={seq}"
    elif itype == 3:
        text = f"ICMP {ICMP_UNREACH.get(code, code)} unreachable type=3/code={code}"
        if code == 4 and mtu:
            text += f" mtu={mtu}"
    elif itype == 11:
        text = f"ICMP time-exceeded type=11/code={code}"
    return text


@dataclass
class Hop:
    t_ns: int
    point: Point
    outgoing: bool
    frame: Frame
    changes: list = field(default_factory=list)  # [(tag, text)]; tag '' for a plain note
    pred: int | None = None  # index of the hop this one follows from
    record: int = -1  # index of its Record in Result.records (frame number - 1 in merged.pcapng)

    @property
    def direction(self) -> str:
        return "out" if self.outgoing else "in"


@dataclass
class Drop:
    """Why a packet died: `reason` is a short code, `text` the sentence, `setting` what to change.

    reason codes: rule (a firewall rule's counter moved), policy (a chain policy), ip_forward,
    rp_filter, no_route, neighbour, ttl, mtu, refused (an RST or ICMP unreachable answered it),
    lost (no cause found: `text` says where it was last seen)."""

    reason: str
    text: str
    where: str  # point label of the last sighting
    setting: str | None = None  # icc=false | internal | isolation | unpublished port | 127.x bind | ...
    rule: dict | None = None  # {backend, table, chain, rule, packets}
    evidence: list = field(default_factory=list)  # [text]: counters that moved, ICMP seen, ...

    def as_dict(self) -> dict:
        return {"reason": self.reason, "text": self.text, "where": self.where, "setting": self.setting,
                "rule": self.rule, "evidence": list(self.evidence)}
