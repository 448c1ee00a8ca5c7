"""A network's embedded DNS server (what Docker's 127.0.0.11 resolver and aardvark-dns do): answers
for the container names in a records file, forwards every other query to upstream resolvers; UDP and TCP.

Upstreams, like Docker's "ExtServers": a container created with `--dns X` has its queries forwarded
to X (the records file maps its address to its servers); every other container's go to the host's
resolvers, re-read from the host's resolv.conf whenever that file changes. As Docker's resolver
does, a forwarded query leaves from the asking container's network namespace (the records file
names it), so it takes the container's routes and rules: an --internal network resolves no
outside names, and a --dns server on loopback is the container's own.

    python -m netkit.dns.server --listen IP [--port 53] --records FILE [--ready-fd N] [--network NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from typing import NamedTuple

from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSError, DNSRecord

# TTL 0: container names come and go (and an IP is reused by the next container), and the
# server is one local hop away, so answers are not worth caching. Docker uses 600 s, which
# lets a caching client (nscd, a JVM) keep a removed container's address for ten minutes.
TTL = 0
UPSTREAM_TIMEOUT = 2.0  # per upstream, then the next one
MAX_FORWARDS = 64  # forwards in flight; beyond this answer SERVFAIL at once rather than queue
MAX_TCP = 64  # TCP connections served at once
TCP_IDLE = 10.0  # seconds a TCP client may stay silent


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} netkit-dns[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def parse_upstream(text: str) -> tuple[str, int]:
    """Upstream "198.18.0.2" or "fd00::1" -> port 53; "127.0.0.2:5353" or "[::1]:5353" name a port (tests)."""
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        pass
    host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


class Client(NamedTuple):
    """What one container (by source address) gets beyond the network's own records."""

    names: dict[str, list[str]]  # the names of its other networks (Docker resolves on all of them)
    upstreams: list[tuple[str, int]] | None  # its own --dns servers; None: the network's
    netns: str | None = None  # its network namespace, where forwarded queries leave from


class Route(NamedTuple):
    """Where one forwarded query goes, and from which network namespace (None: this one)."""

    upstreams: list[tuple[str, int]]
    netns: str | None


class Snapshot(NamedTuple):
    """One consistent reading of the records file (replaced whole, never changed in place)."""

    names: dict[str, list[str]]  # name -> addresses
    reverse: dict[str, str]  # "2.0.18.172.in-addr.arpa" -> name, for PTR queries
    upstreams: list[tuple[str, int]]  # the host's resolvers as the engine last wrote them
    clients: list  # networks allowed to ask (the network's subnet); empty: anyone
    per_client: dict[str, Client] = {}  # source address -> its netns, own names and upstreams
    host_resolv: tuple[str, ...] = ()  # files to read the host's resolvers from (first with any)

    def allows(self, addr: str) -> bool:
        if not self.clients:
            return True
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.clients)


def _file_key(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _servers_in(path: str) -> list[str]:
    """The non-loopback nameservers of a resolv.conf: queries leave from the container's netns,
    where the host's loopback is not reachable (Docker asks such a host resolver from the host's
    namespace; netkit does not, and reads systemd-resolved's real upstreams instead)."""
    from netkit.names import upstream_servers

    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return upstream_servers(f.read())
    except OSError:
        return []


class HostResolvers:
    """The host's resolvers, from the first of some resolv.conf files that names one, re-read when
    any of the files changes (a stat each per query): a DHCP lease or a VPN that rewrites the
    host's resolv.conf reaches the containers at their next query, as Docker's resolver does."""

    def __init__(self):
        self._key: tuple | None = None
        self.servers: list[tuple[str, int]] = []

    def current(self, paths: tuple[str, ...], fallback: list[tuple[str, int]]) -> list[tuple[str, int]]:
        if not paths:
            return fallback
        key = (paths, tuple(_file_key(p) for p in paths))
        if key != self._key:
            found: list[str] = []
            for p in paths:
                found = _servers_in(p)
                if found:
                    break
            self.servers = [(ip, 53) for ip in found]
            if self._key is not None:
                log(f"host resolvers now {found} (from {' or '.join(paths)})")
            self._key = key
        return self.servers


class Records:
    """The records file, re-read when its inode, size or mtime changes (one stat per query),
    so containers the engine adds or removes resolve at once, with no signal or restart."""

    def __init__(self, path: str, listen: tuple[str, int]):
        self.path = path
        self.listen = listen
        self._lock = threading.Lock()  # TCP and forward threads read it too
        self._key: tuple | None = ()  # matches no stat result, so the first query loads
        self.snap = Snapshot({}, {}, [], [])
        self.host = HostResolvers()

    def route_for(self, recs: Snapshot, addr: str) -> Route:
        """Where a query from `addr` that no record answers goes: the container's own --dns
        servers if it has some, else the host's current resolvers; from the container's netns."""
        client = recs.per_client.get(addr)
        netns = client.netns if client is not None else None
        if client is not None and client.upstreams is not None:
            ups = client.upstreams
            if netns is None:  # from here a loopback address is the host's, not the container's
                ups = [u for u in ups if not ipaddress.ip_address(u[0]).is_loopback]
        else:
            with self._lock:
                ups = self.host.current(recs.host_resolv, recs.upstreams)
        if netns is None:
            ups = [u for u in ups if u != self.listen]  # forwarding to ourselves would loop
        return Route(ups, netns)

    def current(self) -> Snapshot:
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key = None
        with self._lock:
            if key != self._key:
                self._load(key)
            return self.snap

    def _load(self, key: tuple | None) -> None:
        per_client: dict[str, Client] = {}
        host_resolv: tuple[str, ...] = ()
        if key is None:  # no file (yet, or the network is going away): nothing to answer
            names, ups, clients = {}, [], []
        else:
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                names = _names(data.get("records", {}))
                ups = [parse_upstream(u) for u in data.get("upstreams", [])]
                # Only the network's own containers may ask: the gateway address is reachable
                # from elsewhere too, and an open forwarder leaks names and amplifies.
                clients = [ipaddress.ip_network(c) for c in data.get("clients", [])]
                host_resolv = tuple(str(p) for p in data.get("host_resolv", []))
                for ip, entry in data.get("per_client", {}).items():
                    own = entry.get("upstreams")
                    per_client[str(ipaddress.ip_address(ip))] = Client(
                        _names(entry.get("names", {})),
                        None if own is None else [parse_upstream(u) for u in own],
                        entry.get("netns") or None)
            except (OSError, ValueError, AttributeError, TypeError) as err:
                # The engine renames a complete file into place, so this is a real error:
                # keep serving the last good records and try again on the next query.
                log(f"cannot read {self.path}, keeping previous records: {err}")
                return
        reverse: dict[str, str] = {}
        for name, ips in names.items():
            for ip in ips:
                reverse.setdefault(ipaddress.ip_address(ip).reverse_pointer, name)
        self.snap, self._key = Snapshot(names, reverse, ups, clients, per_client, host_resolv), key
        own = sum(1 for c in per_client.values() if c.upstreams is not None)
        log(f"records of {os.path.basename(self.path)}: {len(names)} names, upstreams "
            f"{'the host resolv.conf' if host_resolv else [f'{h}:{p}' for h, p in ups]}, "
            f"{own} container(s) with their own --dns")


def _names(table: dict) -> dict[str, list[str]]:
    return {k.lower().rstrip("."): [str(ipaddress.ip_address(ip)) for ip in v] for k, v in table.items()}


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_socket(family: int, kind: int, netns: str | None) -> socket.socket:
    """A socket of the network namespace at `netns` (this one if None). A socket keeps the netns
    it was made in, so only this thread steps in for the call (setns is per thread) and back."""
    if netns is None:
        return socket.socket(family, kind)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)  # gone with its container: OSError
        try:
            _setns(target)
            try:
                return socket.socket(family, kind)
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


SIOCGIFADDR = 0x8915


def device_of(ip: str) -> str | None:
    """The interface that holds `ip` (the network's bridge holds its gateway address)."""
    import fcntl

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _index, name in socket.if_nameindex():
            try:
                req = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
            except OSError:
                continue  # no IPv4 address
            if socket.inet_ntoa(req[20:24]) == ip:
                return name
    finally:
        probe.close()
    return None


class Server:
    def __init__(self, listen_ip: str, port: int, records_path: str):
        self.family = socket.AF_INET6 if ":" in listen_ip else socket.AF_INET
        self.records = Records(records_path, (str(ipaddress.ip_address(listen_ip)), port))
        self.forward_slots = threading.BoundedSemaphore(MAX_FORWARDS)
        self.tcp_slots = threading.BoundedSemaphore(MAX_TCP)
        # Bound to the bridge: a query must really arrive from the network's own port. Checking
        # the source address alone let a routed neighbour forge a container's address and have
        # the answer reflected at that container.
        self.device = device_of(listen_ip) if self.family == socket.AF_INET else None
        self.udp = socket.socket(self.family, socket.SOCK_DGRAM)
        self.tcp = socket.socket(self.family, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart despite TIME_WAIT
        try:
            for sock in (self.udp, self.tcp):
                # The next owner of the port (the DNS host taking the network over, or its own
                # server getting it back) binds beside this one before this one goes: no gap.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if self.device:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.device.encode())
                sock.bind((listen_ip, port))
            self.tcp.listen(64)
        except OSError:
            self.close()
            raise

    # -- answering ---------------------------------------------------------------------------

    def local(self, q: DNSRecord, recs: Snapshot, client: str = "") -> DNSRecord | None:
        """Our answer if the name is one of the network's (or of the asking container's other
        networks), else None (to be forwarded)."""
        qname = str(q.q.qname).rstrip(".").lower()
        extra = recs.per_client.get(client)
        found = recs.names.get(qname) or (extra.names.get(qname) if extra else None)
        if found:
            r = q.reply()
            for ip in found:
                v6 = ":" in ip
                if q.q.qtype in (QTYPE.ANY, QTYPE.AAAA if v6 else QTYPE.A):
                    r.add_answer(RR(q.q.qname, QTYPE.AAAA if v6 else QTYPE.A,
                                    rdata=AAAA(ip) if v6 else A(ip), ttl=TTL))
            return r  # other types of a known name: NOERROR, no answers
        if qname in recs.reverse and q.q.qtype in (QTYPE.PTR, QTYPE.ANY):
            r = q.reply()
            r.add_answer(RR(q.q.qname, QTYPE.PTR, rdata=PTR(recs.reverse[qname] + "."), ttl=TTL))
            return r
        return None

    def forward(self, q: DNSRecord, data: bytes, route: Route, tcp: bool) -> bytes:
        """The first upstream's reply, relayed as is; NXDOMAIN with no upstreams, SERVFAIL if all fail."""
        if not route.upstreams:
            return self.error(q, RCODE.NXDOMAIN)
        for host, port in route.upstreams:
            try:
                out = udp_query(data, host, port, route.netns)
                if tcp and out[2] & 0x02:  # truncated: a TCP client can take the full answer
                    out = tcp_query(data, host, port, route.netns)
                return out
            except OSError:  # timeout, refused, unreachable: try the next one
                continue
        return self.error(q, RCODE.SERVFAIL)

    @staticmethod
    def error(q: DNSRecord, rcode: int) -> bytes:
        r = q.reply(aa=0)
        r.header.rcode = rcode
        return r.pack()

    @staticmethod
    def parse(data: bytes) -> DNSRecord | None:
        try:
            q = DNSRecord.parse(data)
        except DNSError:
            return None
        # Drop replies and empty questions: answering them invites reflection loops.
        return q if not q.header.qr and q.questions else None

    # -- transports --------------------------------------------------------------------------

    def on_udp(self, raise_empty: bool = False) -> None:
        try:
            data, addr = self.udp.recvfrom(65535)
        except OSError:
            if raise_empty:
                raise
            return
        q = self.parse(data)
        if q is None:
            return
        if q.header.opcode != 0:
            self.udp.sendto(self.error(q, RCODE.NOTIMP), addr)
            return
        recs = self.records.current()
        if not recs.allows(addr[0]):
            return
        r = self.local(q, recs, addr[0])
        if r is not None:
            self.udp.sendto(fit_udp(r, q), addr)
            return
        route = self.records.route_for(recs, addr[0])
        if not route.upstreams:
            self.udp.sendto(self.error(q, RCODE.NXDOMAIN), addr)
        elif self.forward_slots.acquire(blocking=False):
            # A slow upstream holds only its own thread; the loop goes on answering.
            threading.Thread(target=self._udp_forward, args=(q, data, route, addr), daemon=True).start()
        else:
            self.udp.sendto(self.error(q, RCODE.SERVFAIL), addr)

    def _udp_forward(self, q, data, route, addr) -> None:
        try:
            self.udp.sendto(self.forward(q, data, route, tcp=False), addr)
        except OSError:
            pass
        finally:
            self.forward_slots.release()

    def on_tcp(self) -> None:
        try:
            conn, peer = self.tcp.accept()
        except OSError:
            return
        if not self.records.current().allows(peer[0]):
            conn.close()
            return
        if not self.tcp_slots.acquire(blocking=False):
            conn.close()
            return
        threading.Thread(target=self._tcp_conn, args=(conn, peer[0]), daemon=True).start()

    def _tcp_conn(self, conn: socket.socket, client: str = "") -> None:
        try:
            conn.settimeout(TCP_IDLE)
            while (head := recv_exact(conn, 2)) is not None:
                data = recv_exact(conn, struct.unpack("!H", head)[0])
                q = self.parse(data) if data is not None else None
                if q is None:
                    break
                if q.header.opcode != 0:
                    out = self.error(q, RCODE.NOTIMP)
                else:
                    recs = self.records.current()
                    r = self.local(q, recs, client)
                    out = r.pack() if r is not None else \
                        self.forward(q, data, self.records.route_for(recs, client), tcp=True)
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            pass
        finally:
            conn.close()
            self.tcp_slots.release()

    def register(self, sel: selectors.BaseSelector) -> None:
        """Serve from `sel`'s loop (one loop can serve many networks: the DNS host)."""
        sel.register(self.udp, selectors.EVENT_READ, self.on_udp)
        sel.register(self.tcp, selectors.EVENT_READ, self.on_tcp)

    def unregister(self, sel: selectors.BaseSelector) -> None:
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(KeyError, ValueError):
                sel.unregister(sock)

    def drain(self, timeout: float = UPSTREAM_TIMEOUT) -> None:
        """Before closing: answer the queries already queued on the UDP socket (a successor bound
        beside it gets the new ones) and let forwards in flight send their answers."""
        self.udp.setblocking(False)
        while True:
            try:
                self.on_udp(raise_empty=True)
            except OSError:
                break  # nothing more queued
            except Exception as err:  # noqa: BLE001 - one bad query must not stop the drain
                log(f"error handling a query: {err!r}")
        deadline = time.monotonic() + timeout
        taken = 0
        while taken < MAX_FORWARDS and self.forward_slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            taken += 1
        for _ in range(taken):
            self.forward_slots.release()

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def run(sel: selectors.BaseSelector, running=lambda: True, timeout: float | None = None) -> None:
    """The loop: each registered object's data is the callable that handles it being readable;
    `running()` is asked after each round (at least every `timeout` seconds)."""
    while running():
        for key, _ in sel.select(timeout=timeout):
            try:
                key.data()
            except Exception as err:  # noqa: BLE001 - one bad query must not stop the server
                log(f"error handling a query: {err!r}")


def fit_udp(r: DNSRecord, q: DNSRecord) -> bytes:
    """Pack `r` for a UDP client: truncated (TC set, so it retries over TCP) if too big."""
    limit = 512
    for rr in q.ar:
        if rr.rtype == QTYPE.OPT:  # EDNS0 advertises a larger buffer in the class field
            limit = max(512, rr.rclass)
    out = r.pack()
    return out if len(out) <= limit else r.truncate().pack()


def udp_query(data: bytes, host: str, port: int, netns: str | None = None) -> bytes:
    with open_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM, netns) as s:
        s.connect((host, port))  # a connected socket only accepts datagrams from the upstream
        s.send(data)
        deadline = time.monotonic() + UPSTREAM_TIMEOUT
        while True:
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            out = s.recv(65535)
            if len(out) >= 12 and out[:2] == data[:2]:  # same query ID; ignore strays
                return out


def tcp_query(data: bytes, host: str, port: int, netns: str | None = None) -> bytes:
    with open_socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, netns) as s:
        s.settimeout(UPSTREAM_TIMEOUT)
        s.connect((host, port))
        s.sendall(struct.pack("!H", len(data)) + data)
        head = recv_exact(s, 2)
        out = recv_exact(s, struct.unpack("!H", head)[0]) if head else None
        if out is None:
            raise ConnectionError("upstream closed the TCP connection")
        return out


def recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netkit.dns.server", description=__doc__.splitlines()[0])
    p.add_argument("--listen", required=True, help="address to bind (the network's gateway)")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--records", required=True, help="JSON records file, re-read when it changes")
    p.add_argument("--ready-fd", type=int, help="write one byte to this fd once bound, then close it")
    p.add_argument("--network", help="network name; lets the supervisor recognise this process")
    args = p.parse_args(argv)

    # SIGTERM from the supervisor (or SIGINT): finish the round in hand, then drain and go. The
    # handler only flags it, so no query is cut off halfway through its answer.
    sel = selectors.DefaultSelector()
    stopping = stop_signals(sel)
    try:
        server = Server(args.listen, args.port, args.records)
    except OSError as err:
        log(f"cannot listen on {args.listen}:{args.port}: {err}")
        return 1
    server.records.current()
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"R")
        os.close(args.ready_fd)
    log(f"listening on {args.listen}:{args.port} (udp, tcp) on {server.device or 'any device'} "
        f"for network {args.network or '?'}")
    server.register(sel)
    run(sel, lambda: not stopping)
    server.unregister(sel)
    server.drain()
    server.close()
    log("stopped")
    return 0


class _Flag:
    def __init__(self):
        self.up = False

    def __bool__(self) -> bool:
        return self.up


def stop_signals(sel: selectors.BaseSelector) -> _Flag:
    """A flag that SIGTERM, SIGINT and SIGHUP raise; they also wake `sel`'s loop at once."""
    flag = _Flag()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)

    def on_stop(*_):
        flag.up = True

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_stop)
    sel.register(wake_r, selectors.EVENT_READ, lambda: os.read(wake_r, 512))
    return flag

if __name__ == "__main__":
    sys.exit(main())
