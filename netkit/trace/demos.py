"""The six trace demos (bridge, publish, outbound, host, container, none): each builds its
scenario with the netkit CLI inside a sandbox, starts a real small server and client, traces
the traffic on every hop, and removes what it made.

Each demo is a class with setup / traffic / teardown so that tests can run a second tool
(tcpdump) between setup and traffic.

A demo shares the sandbox with whatever the user made there: before setup it picks names and
ports nobody holds (its usual ones when free, else `demo-NAME` and the next free port) and it
removes only the containers it created. Demos create no network (the default one is shared),
so no subnet can collide.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

from netkit.errors import EnvError, UserError

MODES = ("bridge", "publish", "outbound", "host", "container", "none")
NETKIT = [sys.executable, "-m", "netkit"]
PY = [sys.executable, "-S", "-c"]  # -S: the servers need only the standard library; starts faster

SERVER = r"""
import socket, sys
host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.settimeout(10)
    try:
        c.recv(1024)
        c.sendall(("hello from %s, you are %s:%d\n" % (name, peer[0], peer[1])).encode())
    except OSError:
        pass
    c.close()
"""

CLIENT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.settimeout(10)  # generous: demos also run on loaded CI machines
try:
    s.connect((host, port))
    s.sendall(b"hello\n")
    data = b""
    while True:
        chunk = s.recv(1024)
        if not chunk:
            break
        data += chunk
    print(data.decode().strip())
except OSError as e:
    print("connect to %s:%d failed: %s" % (host, port, e.strerror or e))
    sys.exit(1)
"""


# /proc/net/tcp states (include/net/tcp_states.h) in which packets are still to come: all but
# TIME_WAIT (06), CLOSE (07) and LISTEN (0A).
_TCP_MOVING = {"01", "02", "03", "04", "05", "08", "09", "0B"}


def settle_tcp(netns_paths, timeout: float = 10.0) -> bool:
    """Wait until no TCP connection in these netns (None: this one) is opening or closing;
    False if that took longer than `timeout` s (the report then shows what was caught)."""
    from netkit.kernel import nsutil

    def moving(path) -> bool:
        def states():
            # thread-self: the netns this thread is in (entered_netns moves the thread only).
            with open("/proc/thread-self/net/tcp") as fh:
                return {line.split()[3] for line in fh.read().splitlines()[1:]}

        if path is None:
            return bool(states() & _TCP_MOVING)
        with nsutil.entered_netns(path):
            return bool(states() & _TCP_MOVING)

    deadline = time.monotonic() + timeout
    while any(moving(path) for path in netns_paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _bindable(port: int, netns: str | None = None) -> bool:
    """Whether a TCP server could listen on 0.0.0.0:port in this netns (None) or a named one."""
    from netkit.kernel import nsutil

    def attempt() -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                return False
            return True

    if netns is None:
        return attempt()
    with nsutil.entered_netns(f"/run/netns/{netns}"):
        return attempt()


# A host port in `docker ps`'s PORTS column: "0.0.0.0:8088->80/tcp", "127.0.0.1:7000-7001->...".
_HOST_PORTS = re.compile(r":(\d+)(?:-(\d+))?->")


class Demo:
    mode = ""
    title = ""
    containers: list[str] = []  # what to trace (the usual names; an instance holds the ones it uses)
    uplinks = True  # trace the host's uplinks (and `outside`) too
    port: int | None = None  # a published host port (the tracer follows its DNAT)
    host_port: int | None = None  # the port of a server in the host's netns (host mode)
    outside_port: int | None = None  # the port of a server in the `outside` netns
    bpf = ""  # may name {port}, {host_port} and {outside_port}
    grace = 0.2  # in-flight hops arrive within microseconds; 0.2 s covers a slow CI box

    def __init__(self, say=print):
        self.say = say
        self.procs: list[subprocess.Popen] = []
        self.made: list[str] = []
        self.client_output = ""
        self.client_ok = False
        self.names = {n: n for n in type(self).containers}
        self.containers = list(type(self).containers)

    # free names and ports, chosen before setup
    def choose(self) -> None:
        """Pick names and ports that nothing in this sandbox holds: the user's containers, their
        published ports, anything listening, a netns of the same name."""
        rows = self.netkit_quiet("container", "ls", "--format", "{{.Names}}\t{{.Ports}}").splitlines()
        taken = {row.split("\t")[0] for row in rows if row}
        published: set[int] = set()
        for row in rows:
            for low, high in _HOST_PORTS.findall(row.partition("\t")[2]):
                published.update(range(int(low), int(high or low) + 1))
        for usual in type(self).containers:
            name, n = f"demo-{usual}", 1
            if usual not in taken and not os.path.exists(f"/run/netns/{usual}"):
                name = usual
            while name != usual and (name in taken or os.path.exists(f"/run/netns/{name}")):
                n += 1
                name = f"demo-{usual}-{n}"
            if name != usual:
                self.say(f"# '{usual}' is taken in this sandbox: this demo uses '{name}' (and removes only what it made)")
            self.names[usual] = name
            taken.add(name)
        self.containers = [self.names[u] for u in type(self).containers]
        if self.port is not None:
            self.port = self._free_port(self.port, lambda p: p not in published and _bindable(p))
        if self.host_port is not None:
            self.host_port = self._free_port(self.host_port, lambda p: p not in published and _bindable(p))
        if self.outside_port is not None:
            from netkit import sandbox as sb

            self.outside_port = self._free_port(self.outside_port, lambda p: _bindable(p, sb.OUTSIDE))
        self.bpf = type(self).bpf.format(port=self.port, host_port=self.host_port, outside_port=self.outside_port)

    def _free_port(self, usual: int, free) -> int:
        port = usual
        while not free(port):
            port += 1
            if port > 65535:
                raise EnvError(f"demo {self.mode}: no free TCP port from {usual} up")
        if port != usual:
            self.say(f"# port {usual} is in use in this sandbox: this demo uses {port}")
        return port

    def n(self, usual: str) -> str:
        """The name this demo uses for its container `usual`."""
        return self.names[usual]

    # helpers
    @staticmethod
    def netkit_quiet(*args: str) -> str:
        proc = subprocess.run(NETKIT + list(args), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise EnvError(f"demo step `netkit {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout.strip()

    def netkit(self, *args: str) -> str:
        self.say("$ netkit " + " ".join(args))
        proc = subprocess.run(NETKIT + list(args), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise EnvError(f"demo step `netkit {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout.strip()

    def create(self, name: str, *opts: str) -> None:
        self.netkit("container", "create", name, *opts)
        self.made.append(name)

    def ip_of(self, name: str) -> str:
        import json

        data = json.loads(self.netkit("container", "inspect", "--netkit", name))
        return data["endpoints"][0]["ip"]

    def server(self, where: list[str], host: str, port: int, name: str) -> None:
        """Start SERVER (where = command prefix that puts it in place); wait until it listens."""
        self.say(f"# server: {name} listens on {host}:{port}")
        proc = subprocess.Popen(where + PY + [SERVER, host, str(port), name], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.poll() is not None else ""
            raise EnvError(f"demo server {name} did not start: {err.strip() or line.strip()}")

    def client(self, where: list[str], host: str, port: int, who: str) -> None:
        self.say(f"# client: {who} connects to {host}:{port}")
        proc = subprocess.run(where + PY + [CLIENT, host, str(port)], capture_output=True, text=True, timeout=20)
        self.client_output = (proc.stdout + proc.stderr).strip()
        self.client_ok = proc.returncode == 0
        self.say(f"# {who} got: {self.client_output}")

    @staticmethod
    def in_container(name: str) -> list[str]:
        return NETKIT + ["exec", name, "--"]

    @staticmethod
    def in_netns(ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    # the three phases
    def setup(self) -> None:
        raise NotImplementedError

    def traffic(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        for proc in self.procs:  # only the servers this demo started, by their PIDs
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self.procs = []
        # Sharers first: a container whose netns is shared cannot go before its guests.
        for name in reversed(self.made):
            subprocess.run(NETKIT + ["container", "rm", name], capture_output=True, timeout=60)
        self.made = []

    def summary(self) -> dict:
        ports = {k: v for k, v in (("port", self.port), ("host_port", self.host_port),
                                     ("outside_port", self.outside_port)) if v is not None}
        return {"mode": self.mode, "title": self.title, "client_output": self.client_output,
                "client_ok": self.client_ok, "containers": list(self.containers), **ports}


class BridgeDemo(Demo):
    mode, title = "bridge", "container a → container b on one bridge (ARP, MAC learning, TCP)"
    containers = ["a", "b"]
    uplinks = False
    bpf = "arp or tcp port 80"

    def setup(self):
        a, b = self.n("a"), self.n("b")
        self.create(a)
        self.create(b)
        self.b_ip = self.ip_of(b)
        self.server(self.in_container(b), "0.0.0.0", 80, b)

    def traffic(self):
        self.client(self.in_container(self.n("a")), self.b_ip, 80, self.n("a"))


class PublishDemo(Demo):
    mode, title = "publish", "outside → host:8088 → DNAT → bridge → veth → web:80, and the reply translated back"
    containers = ["web"]
    port = 8088
    bpf = "tcp and (port {port} or port 80)"

    def setup(self):
        web = self.n("web")
        self.create(web, "-p", f"{self.port}:80")
        self.server(self.in_container(web), "0.0.0.0", 80, web)

    def traffic(self):
        from netkit import sandbox as sb

        self.client(self.in_netns(sb.OUTSIDE), sb.UPLINK_ADDR, self.port, "outside")


class OutboundDemo(Demo):
    mode, title = "outbound", "container → outside server, MASQUERADE to the uplink address and back"
    containers = ["app"]
    outside_port = 8080
    bpf = "tcp port {outside_port}"

    def setup(self):
        from netkit import sandbox as sb

        self.create(self.n("app"))
        self.server(self.in_netns(sb.OUTSIDE), "0.0.0.0", self.outside_port, "outside")

    def traffic(self):
        from netkit import sandbox as sb

        self.client(self.in_container(self.n("app")), sb.OUTSIDE_ADDR, self.outside_port, self.n("app"))


class HostDemo(Demo):
    mode, title = "host", "a host-mode server reached from outside: no veth, no bridge, no NAT"
    containers = ["h"]
    host_port = 8000
    bpf = "tcp port {host_port}"

    def setup(self):
        self.create(self.n("h"), "--net", "host")
        self.server(self.in_container(self.n("h")), "0.0.0.0", self.host_port, self.n("h"))

    def traffic(self):
        from netkit import sandbox as sb

        self.client(self.in_netns(sb.OUTSIDE), sb.UPLINK_ADDR, self.host_port, "outside")


class ContainerDemo(Demo):
    mode, title = "container", "two containers sharing one netns (--net container:app) talk over lo"
    containers = ["app", "sidecar"]
    uplinks = False
    bpf = "tcp port 9000"

    def setup(self):
        app, sidecar = self.n("app"), self.n("sidecar")
        self.create(app)
        self.create(sidecar, "--net", f"container:{app}")
        self.server(self.in_container(app), "127.0.0.1", 9000, app)

    def traffic(self):
        self.client(self.in_container(self.n("sidecar")), "127.0.0.1", 9000, self.n("sidecar"))


class NoneDemo(Demo):
    mode, title = "none", "a --net none container has only lo: a connect fails and nothing leaves it"
    containers = ["n"]
    bpf = "ip or arp"  # everything netkit's IPv4 world sends: the point is that nothing is seen

    def setup(self):
        self.create(self.n("n"), "--net", "none")
        self.say(f"$ netkit exec {self.n('n')} -- ip -br link")
        out = subprocess.run(self.in_container(self.n("n")) + ["ip", "-br", "link"], capture_output=True, text=True)
        for line in out.stdout.strip().splitlines():
            self.say(f"  {line}")

    def traffic(self):
        from netkit import sandbox as sb

        self.client(self.in_container(self.n("n")), sb.OUTSIDE_ADDR, 80, self.n("n"))


DEMOS = {d.mode: d for d in (BridgeDemo, PublishDemo, OutboundDemo, HostDemo, ContainerDemo, NoneDemo)}


def check_mode(mode: str) -> None:
    """Refuse an unknown demo name (a UserError: exit 2, one line)."""
    if mode not in DEMOS:
        raise UserError(f"unknown demo '{mode}': use one of {', '.join(MODES)}")


def ensure_sandbox() -> None:
    """Demos change network state: run them only inside a sandbox, re-executing into one if needed."""
    from netkit import sandbox as sb

    if sb.in_sandbox():
        return
    if os.geteuid() != 0:
        raise EnvError("the demos build namespaces and bridges in a sandbox, which needs root: try sudo")
    argv = NETKIT + ["sandbox", "--"] + NETKIT + sys.argv[1:]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def run(mode: str, outputs=None, say=None, before_traffic=None, after_traffic=None) -> dict:
    """Build, trace, report, clean up. Returns the report (with a "demo" section)."""
    from netkit.trace import path, session
    from netkit.trace.world import World

    check_mode(mode)
    outputs = outputs or session.Outputs()
    if say is None:
        def say(text):
            print(text, file=sys.stderr if outputs.json else sys.stdout, flush=True)
    demo = DEMOS[mode](say)
    say(f"# netkit trace demo {mode}: {demo.title}")
    world = World()
    try:
        demo.choose()
        demo.setup()
        topo = path.resolve(world, demo.containers, port=demo.port)
        if not demo.uplinks:
            topo.points = [p for p in topo.points if p.role not in ("uplink", "outside")]
        from netkit.trace.capture import Capture

        cap = Capture(topo.points, demo.bpf)
        cap.open()
        before = session.snapshot(topo)
        say(f"# tracing on {len(topo.points)} interfaces: {', '.join(p.label for p in topo.points)}")
        if before_traffic:
            before_traffic(demo, topo)
        cap.start()
        t0 = time.monotonic()
        try:
            demo.traffic()
            # The client is done, but the last FIN/ACK may still be on its way: wait until every
            # connection in the traced netns is closed, i.e. every hop of it has been captured.
            settle_tcp({p.path for p in topo.points})
        finally:
            result = cap.finish(grace=demo.grace)
            cap.close()
        after = session.snapshot(topo)
        say(f"# traffic done in {time.monotonic() - t0:.2f} s")
        if after_traffic:
            after_traffic(demo, topo)
        report = session.conclude(session.Traced(result, topo, before, after), world, outputs)
        report["demo"] = demo.summary()
        return report
    finally:
        demo.teardown()
        world.close()
