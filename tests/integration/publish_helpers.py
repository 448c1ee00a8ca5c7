"""Traffic helpers for the publish/isolation/firewall tests: servers and clients as threads and
sockets of the pytest process, opened inside a container's or the outside netns (setns on the
calling thread), so no helper process has to start. Every wait is bounded."""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading

import pytest

from netkit.kernel import nsutil


def ns_socket(ns: str | None, kind: int, proto: int = 0) -> socket.socket:
    if ns is None:
        return socket.socket(socket.AF_INET, kind, proto)
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        return socket.socket(socket.AF_INET, kind, proto)


class Server:
    """Answers every TCP connection / UDP datagram with "TAG PEER_IP"."""

    def __init__(self, ns: str | None, proto: str, port: int, tag: str = "", ip: str = "0.0.0.0"):
        self.tag = tag or (ns or "host")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = ns_socket(ns, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        if proto == "tcp":
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.proto = proto
        self.peers: list[str] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                if self.proto == "tcp":
                    conn, peer = self.sock.accept()
                    with conn:
                        self.peers.append(peer[0])
                        conn.sendall(f"{self.tag} {peer[0]}\n".encode())
                else:
                    data, peer = self.sock.recvfrom(2048)
                    self.peers.append(peer[0])
                    self.sock.sendto(f"{self.tag} {peer[0]}".encode(), peer)
            except (socket.timeout, OSError):
                continue

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def servers():
    """start(ns, proto, port, ...) -> a Server, stopped when the test ends. Import it into a test
    module (`from publish_helpers import servers`) to use it there."""
    made = []

    def start(*args, **kw):
        s = Server(*args, **kw)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()


def ask(ns: str | None, proto: str, ip: str, port: int, timeout: float = 10, sport: int = 0) -> str | None:
    """One request from netns `ns` (None: the sandbox host); the reply, or None if nothing came back.
    The default timeout is for answers that must come (generous: a loaded CI box); a check that
    nothing answers passes a short one, as waiting longer for silence proves no more."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = ns_socket(ns, kind)
    s.settimeout(timeout)
    try:
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", sport))
        if proto == "tcp":
            s.connect((ip, port))
            return s.recv(200).decode().strip()
        s.sendto(b"hi", (ip, port))
        return s.recvfrom(200)[0].decode().strip()
    except OSError:
        return None
    finally:
        s.close()


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def crafted_syn(src: str, dst: str, dport: int, sport: int = 40000) -> bytes:
    """An IPv4 TCP SYN as raw bytes (what a hostile neighbour would forge)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp


def send_frame(ns: str, ifname: str, dst_mac: str, payload: bytes) -> None:
    """Send an IPv4 packet in an Ethernet frame to dst_mac out of ns's ifname, bypassing routing."""
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        src = s.getsockname()[4]
        frame = bytes.fromhex(dst_mac.replace(":", "")) + src + b"\x08\x00" + payload
        s.send(frame)
    finally:
        s.close()


@contextlib.contextmanager
def one_cpu():
    """Pin the calling thread to one CPU: frames it sends then sit in one CPU's backlog, which the
    kernel processes in order, so a later frame's arrival proves an earlier one had its turn."""
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


class Sniffer:
    """Records the source ports of TCP packets to `dport` seen on ns's ifname (AF_PACKET, in a thread)."""

    def __init__(self, ns: str, ifname: str, dport: int):
        with nsutil.entered_netns(f"/run/netns/{ns}"):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.1)
        self.dport = dport
        self.sports: list[int] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                frame = self.sock.recv(2048)
            except (socket.timeout, OSError):
                continue
            ip = frame[14:]
            if len(ip) >= 24 and ip[9] == 6:
                ihl = (ip[0] & 0xF) * 4
                sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
                if dport == self.dport:
                    self.sports.append(sport)

    def stop(self) -> list[int]:
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        return self.sports


def mac_of(ifname: str, ns: str | None = None) -> str:
    if ns is None:
        return open(f"/sys/class/net/{ifname}/address").read().strip()
    with nsutil.entered_netns(f"/run/netns/{ns}"):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((ifname, 0))
        return s.getsockname()[4].hex(":")
    finally:
        s.close()


def legacy_save(sandbox) -> str:
    """iptables-legacy-save without the lines that change by themselves (comments, counters)."""
    import re

    out = sandbox.sh("iptables-legacy-save").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))


def nk_rules(sandbox) -> str:
    return sandbox.netkit("rules").stdout

