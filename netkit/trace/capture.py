"""Capture on many interfaces in many network namespaces at once, losing nothing.

One raw AF_PACKET socket per capture point, opened inside the point's netns (the socket keeps
that netns after the thread steps back), with a BPF filter compiled by libpcap and run in the
kernel, a TPACKET_V3 receive ring shared with the kernel (ring.py; plain recvmsg with 8 MiB of
receive buffer and kernel timestamps where a ring cannot be had). A single epoll loop stores
(timestamp, point, direction, bytes) and does nothing else: dissecting happens after the
capture (docs/facts.md, "Packet capture": per-packet dissection loses most packets above ~4k pps).
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import struct
import threading
import time
import zlib
from netkit.errors import EnvError, UserError
from netkit.trace.model import Point, Record, Result

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # SO_TIMESTAMPNS_OLD: a struct timespec of two native longs
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
RCVBUF = 8 << 20
SNAPLEN = 262144  # a GSO super-packet on a veth can be ~64 KiB; this never truncates one
DLT_EN10MB = 1  # Linux gives loopback frames a (zeroed) Ethernet header too
_TIMESPEC = struct.Struct("@qq")
_ANCBUF = socket.CMSG_SPACE(_TIMESPEC.size)


# ---- BPF through libpcap ------------------------------------------------------------------

class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn))]


_libpcap = None


def _pcap():
    global _libpcap
    if _libpcap is None:
        # Known sonames first: ctypes.util.find_library runs ldconfig/gcc (slow: docs/facts.md, "CLI start-up").
        for name in ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so"):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise EnvError("libpcap is not installed (needed to compile capture filters): apt-get install libpcap0.8")
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _libpcap = lib
    return _libpcap


def compile_filter(expr: str) -> bytes:
    """tcpdump filter syntax -> classic BPF instructions (8 bytes each), as libpcap (and Scapy) do.

    Called directly through ctypes rather than via scapy.arch: importing Scapy costs 0.3-0.9 s,
    all of it before the capture would be live.
    """
    lib = _pcap()
    handle = lib.pcap_open_dead(DLT_EN10MB, SNAPLEN)
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            reason = lib.pcap_geterr(handle).decode(errors="replace")
            raise UserError(f"bad capture filter '{expr}': {reason}")
        code = ctypes.string_at(prog.bf_insns, prog.bf_len * ctypes.sizeof(_BpfInsn))
        lib.pcap_freecode(ctypes.byref(prog))
        return code
    finally:
        lib.pcap_close(handle)


def _attach(sock: socket.socket, code: bytes) -> None:
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# ---- a cheap identity of a packet, the same on every hop --------------------------------

def quick_key(data: bytes):
    """What NAT and routing leave alone, read with slicing only (used by --count in the loop).

    IPv4: protocol, IP id and total length, plus TCP seq/ack or a CRC of the UDP/ICMP payload
    after its header; ARP: the whole ARP body. Good enough to count distinct packets.
    """
    if len(data) < 14:
        return data
    etype = data[12:14]
    if etype == b"\x08\x00" and len(data) >= 34:
        ihl = (data[14] & 0x0F) * 4
        proto = data[23]
        l4 = 14 + ihl
        if proto == 6:
            return (6, data[18:20], data[16:18], data[l4 + 4:l4 + 13])
        if proto == 17 and data[l4 + 2:l4 + 4] == b"\x12\xb5" and len(data) >= l4 + 30:
            return quick_key(data[l4 + 16:])  # VXLAN (UDP 4789): the frame it carries
        return (proto, data[18:20], data[16:18], zlib.crc32(data[l4 + 8:]))
    if etype == b"\x08\x06":
        return data[14:42]
    return zlib.crc32(data[12:])


# ---- the capture ----------------------------------------------------------------------------

class Capture:
    """Open sockets on every point, then run one receive loop until a limit or a stop."""

    def __init__(self, points: list[Point], bpf: str = "", use_ring: bool = True, tunnel_bpf: str | None = None):
        self.points = points
        self.use_ring = use_ring
        self.filter = bpf
        self.tunnel_filter = tunnel_bpf  # for the underlay interfaces of a trace across hosts
        self.socks: list[socket.socket] = []
        self.rings: list = []  # per socket: its ring.Ring, or None (recvmsg)
        self.records: list[Record] = []
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_w, False)
        self.stopped_by = "stop"
        self._thread: threading.Thread | None = None
        self.result: Result | None = None

    # opening
    def open(self) -> None:
        code = compile_filter(self.filter) if self.filter else None
        tunnel = compile_filter(self.tunnel_filter) if self.tunnel_filter else None
        try:
            for point in self.points:
                self.socks.append(self._open_one(point, tunnel if tunnel and point.role == "uplink" else code))
        except BaseException:
            self.close()
            raise

    def _open_one(self, point: Point, code: bytes | None) -> socket.socket:
        from netkit.kernel import nsutil
        from netkit.trace import ring as ring_mod

        def make() -> socket.socket:
            # Protocol 0: the socket receives nothing until bind() hooks it to one interface,
            # so no other interface's traffic is queued in between.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            ring = None
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                if self.use_ring:
                    try:
                        ring = ring_mod.Ring(sock)
                    except OSError:
                        ring = None  # no PACKET_MMAP here: recvmsg it is
                if code:
                    _attach(sock, code)
                sock.bind((point.ifname, ETH_P_ALL))
            except OSError as err:
                if ring is not None:
                    ring.close()
                sock.close()
                if err.errno == errno.ENODEV:
                    raise EnvError(f"interface {point.ifname} not found in netns {point.netns}; "
                                   "is the container still there? (netkit container ls)") from None
                if err.errno == errno.EPERM:
                    raise EnvError("capturing packets needs root (CAP_NET_RAW): try sudo") from None
                raise EnvError(f"cannot capture on {point.label}: {err.strerror}") from None
            sock.setblocking(False)
            # docs/facts.md, "Packet capture": a socket bound after creation may hold packets queued before bind.
            _drain(sock)
            self.rings.append(ring)
            return sock

        if point.path:
            try:
                with nsutil.entered_netns(point.path):
                    return make()
            except FileNotFoundError:
                raise EnvError(f"network namespace {point.path} does not exist") from None
        return make()

    def close(self) -> None:
        for ring in self.rings:
            if ring is not None:
                ring.close()
        self.rings = []
        for sock in self.socks:
            sock.close()
        self.socks = []
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stop_r = self._stop_w = -1

    # stopping from elsewhere (another thread, a signal handler)
    def stop(self, reason: str = "stop") -> None:
        if self.stopped_by == "stop":
            self.stopped_by = reason
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass

    # the loop
    def run(self, duration: float | None = None, count: int | None = None,
            max_frames: int = 2_000_000, handle_signals: bool = False) -> Result:
        """Receive until `duration` seconds, `count` distinct packets, stop() or SIGINT/SIGTERM."""
        if not self.socks:
            self.open()
        started_wall, started = time.time(), time.monotonic()
        deadline = started + duration if duration else None
        old_handlers = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
                self.stop("interrupt")
            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, on_signal)
        ep = select.epoll()
        for i, sock in enumerate(self.socks):
            ep.register(sock.fileno(), select.EPOLLIN)
        ep.register(self._stop_r, select.EPOLLIN)
        fd_index = {sock.fileno(): i for i, sock in enumerate(self.socks)}
        stop_fd = self._stop_r
        records = self.records
        append = records.append
        buf = bytearray(SNAPLEN)
        view = memoryview(buf)
        seen: dict = {}  # --count: distinct packets, in order of first sighting
        blocks: list = []  # (point, ring block) copied during the capture, parsed after it
        ring_frames = 0
        count_reached_at = None
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.stopped_by = "duration" if self.stopped_by == "stop" else self.stopped_by
                    break
                if count_reached_at is not None and now - count_reached_at > 0.05:
                    break  # a short grace so the last packet's later hops are caught too
                if len(records) + ring_frames >= max_frames:
                    self.stopped_by = "limit"
                    break
                timeout = 0.2
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - now))
                if count_reached_at is not None:
                    timeout = 0.01
                events = ep.poll(timeout)
                stop = False
                for fd, _ in events:
                    if fd == stop_fd:
                        stop = True
                        continue
                    idx = fd_index[fd]
                    ring = self.rings[idx]
                    if ring is not None:
                        if count is None:  # whole blocks now, frames after the capture
                            ring_frames += ring.take(lambda b, i=idx: blocks.append((i, b)))
                            continue
                        start = len(records)
                        ring.drain(idx, append, Record)
                        if count_reached_at is None:
                            count_reached_at = self._count(records, start, seen, count, count_reached_at)
                        continue
                    sock = self.socks[idx]
                    recv = sock.recvmsg_into
                    while True:
                        try:
                            n, anc, _flags, addr = recv([buf], _ANCBUF)
                        except BlockingIOError:
                            break
                        except InterruptedError:
                            continue
                        pkttype = addr[2]
                        # lo shows each packet twice (sent and received); keep one, as libpcap does.
                        if pkttype == PACKET_OUTGOING and addr[3] == ARPHRD_LOOPBACK:
                            continue
                        ts = _timestamp(anc)
                        data = bytes(view[:n])
                        append(Record(ts, idx, pkttype == PACKET_OUTGOING, data))
                        if count is not None and count_reached_at is None:
                            key = quick_key(data)
                            if key not in seen:
                                seen[key] = len(seen)
                                if len(seen) >= count:
                                    count_reached_at = time.monotonic()
                                    self.stopped_by = "count"
                if stop:
                    # Frames the kernel queued after this poll returned are ours too: sweep
                    # every socket once more, so a stop never races the last hops.
                    for idx, sock in enumerate(self.socks):
                        while True:
                            try:
                                n, anc, _flags, addr = sock.recvmsg_into([buf], _ANCBUF)
                            except BlockingIOError:
                                break
                            except InterruptedError:
                                continue
                            if addr[2] == PACKET_OUTGOING and addr[3] == ARPHRD_LOOPBACK:
                                continue
                            append(Record(_timestamp(anc), idx, addr[2] == PACKET_OUTGOING, bytes(view[:n])))
                    break
        finally:
            ep.close()
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
        if any(r is not None for r in self.rings):
            # Frames in a ring block not yet handed over: the kernel retires it within RETIRE_MS.
            from netkit.trace.ring import RETIRE_MS

            time.sleep(2 * RETIRE_MS / 1000)
            for idx, ring in enumerate(self.rings):
                if ring is not None:
                    ring.take(lambda b, i=idx: blocks.append((i, b)))
            from netkit.trace.ring import parse

            for idx, block in blocks:
                parse(block, idx, append, Record)
        duration_s = time.monotonic() - started
        lost = [_kernel_drops(s) for s in self.socks]
        if count is not None:
            # Keep the first `count` packets on all their hops; drop what the grace period let in.
            records[:] = [r for r in records if quick_key(r.data) in seen]
        ranks = [(_tie_rank(p, False), _tie_rank(p, True)) for p in self.points]
        records.sort(key=lambda r: (r.ts_ns, ranks[r.point][r.outgoing]))
        frames = [0] * len(self.points)
        for r in records:
            frames[r.point] += 1
        self.result = Result(self.points, records, started_wall, duration_s, self.stopped_by, self.filter,
                             frames, lost)
        return self.result

    def _count(self, records, start, seen, count, reached_at):
        if _count_new(records, start, seen, count):
            self.stopped_by = "count"
            return time.monotonic()
        return reached_at

    # running in a background thread (demos, tests)
    def start(self, **kwargs) -> None:
        if not self.socks:
            self.open()
        self._thread = threading.Thread(target=self.run, kwargs=kwargs, name="netkit-capture", daemon=True)
        self._thread.start()

    def finish(self, grace: float = 0.1) -> Result:
        """Let in-flight packets arrive, stop the background loop, return what it caught."""
        time.sleep(grace)
        self.stop()
        if self._thread is not None:
            self._thread.join()
        return self.result


def _tie_rank(point: Point, outgoing: bool) -> int:
    """Order of hops that carry the very same timestamp. Within one netns the kernel keeps a
    frame's timestamp as it goes from a bridge port to the bridge, or is routed from one interface
    to another; frames read from rings come in blocks per interface, so arrival order cannot
    break such ties: causality does. A frame enters (0-1), the bridge device sees it (2), it leaves
    (3-4). VXLAN: a frame arrives on the uplink (0) before the VXLAN device hands out what it
    carried (1), and the VXLAN device sends (3) before the uplink sends it encapsulated (4)."""
    if point.role == "bridge":
        return 2
    if outgoing:
        return 4 if point.role == "uplink" else 3
    return 0 if point.role == "uplink" else 1


def _timestamp(ancillary) -> int:
    """The kernel's receive time (SO_TIMESTAMPNS) of a frame, in ns; 0 if absent."""
    for level, kind, cdata in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack(cdata)
            return sec * 1_000_000_000 + nsec
    return 0


def _count_new(records, start, seen, count):
    """--count over frames from a ring: (reached, ...) by the distinct packets among records[start:]."""
    for r in records[start:]:
        key = quick_key(r.data)
        if key not in seen:
            seen[key] = len(seen)
            if len(seen) >= count:
                return True
    return False


def _drain(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            sock.recv(SNAPLEN, socket.MSG_DONTWAIT)
            n += 1
        except (BlockingIOError, InterruptedError):
            return n


def _kernel_drops(sock: socket.socket) -> int:
    """Packets the kernel matched but had to drop because our buffer was full (tp_drops)."""
    try:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return struct.unpack("II", raw)[1]
    except OSError:
        return 0


def build_filter(proto: str | None = None, ports: list[int] | None = None, extra: str | None = None) -> str:
    """The BPF expression for --proto/--port (ports widened by path.py to the NATed ones)."""
    parts = []
    if proto:
        proto = proto.lower()
        if proto not in ("tcp", "udp", "icmp", "arp"):
            raise UserError(f"unknown protocol '{proto}': use tcp, udp, icmp or arp")
        if proto in ("icmp", "arp") and ports:
            raise UserError(f"--port makes no sense with --proto {proto}")
        parts.append(proto)
    if ports:
        for p in ports:
            if not 1 <= p <= 65535:
                raise UserError(f"invalid port {p}: use 1-65535")
        expr = " or ".join(f"port {p}" for p in sorted(set(ports)))
        # ICMP errors (port unreachable, host unreachable) explain failed attempts: keep them.
        parts.append(f"(({expr}) or icmp[0] == 3 or icmp[0] == 11)" if not proto else f"({expr})")
    if extra:
        parts.append(f"({extra})")
    return " and ".join(parts)


VXLAN_INNER = 50  # outer Ethernet 14 + IPv4 20 (Linux's VXLAN sends no IP options) + UDP 8 + VXLAN 8
_IP_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def tunnel_filter(proto: str | None = None, ports: list[int] | None = None) -> str:
    """The BPF expression for an underlay interface of a trace across hosts: VXLAN frames only
    (the underlay also carries the store's traffic), and of those the ones whose inner frame
    passes --proto/--port (libpcap 1.10 has no `vxlan` keyword: inner fields by offset).
    Call build_filter() first: it validates proto and ports."""
    b = VXLAN_INNER
    ip = f"ether[{b + 12}:2] = 0x0800"
    parts = ["udp dst port 4789"]
    proto = proto.lower() if proto else None
    if proto == "arp":
        parts.append(f"ether[{b + 12}:2] = 0x0806")
    elif proto:
        parts.append(f"{ip} and ether[{b + 23}] = {_IP_PROTO[proto]}")
    if ports:
        l4 = f"(ether[{b + 14}] & 0xf) * 4"
        expr = " or ".join(f"ether[{b + 14} + {l4} : 2] = {p} or ether[{b + 16} + {l4} : 2] = {p}"
                           for p in sorted(set(ports)))
        if proto:
            parts.append(f"({expr})")
        else:
            icmp_err = (f"({ip} and ether[{b + 23}] = 1 and (ether[{b + 14} + {l4}] = 3 or "
                        f"ether[{b + 14} + {l4}] = 11))")
            parts.append(f"(({ip} and (ether[{b + 23}] = 6 or ether[{b + 23}] = 17) and ({expr})) or {icmp_err})")
    return " and ".join(parts)
