"""Latency of netkit's embedded DNS server. Runs itself inside a netkit sandbox (a private netns world).

1. Loopback: 100 records, 1000 sequential UDP A queries from one client to the server on 127.0.0.1
   (a free port); prints median and p99 in ms.
2. Through a real netkit network (issue 6): network benchnet 172.28.0.0/24, container c1; one client
   process inside c1 (`netkit exec c1 -- python3 -c ...`) sends 1000 sequential UDP A queries for c1 to
   the network's DNS server 172.28.0.1:53 and checks each answer is c1's address.
3b. Forwarded (issue 17): 1000 sequential queries for a name no container has, forwarded to a fake
   upstream on the sandbox's outside host (tests/integration/fakedns.py): from c1 (the host's
   resolvers) and from a container made with `--dns 198.18.0.53` (its own server).
3. Create-to-resolvable: for c2..c11, wall time from the start of `netkit container create cN` until a
   long-lived client in c1 (names on stdin, one query per 1 ms) gets an A answer; also the bare CLI time.
Bounded (timeouts everywhere) and self-cleaning.

    .venv/bin/python scripts/bench_dns.py
"""

import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from dnslib import DNSRecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKEDNS = os.path.join(ROOT, "tests", "integration", "fakedns.py")
sys.path.insert(0, ROOT)
N_RECORDS, N_QUERIES = 100, 1000

NET, SUBNET, GATEWAY = "benchnet", "172.28.0.0/24", "172.28.0.1"
CLIENT_CT = "c1"
N_NEW = 10  # c2 .. c11
CLI_TIMEOUT = 60.0  # one netkit command
RESOLVE_TIMEOUT = 30.0  # one name, create included
LATENCY_TIMEOUT = 120.0  # the whole 1000-query run, exec start-up included

# Runs inside the container with whatever python3 it finds: stdlib only, raw DNS bytes.
#   python3 -c CLIENT latency N NAME EXPECT -> one line "LAT ms ms ...", or "ERR ..." and exit 1
#   python3 -c CLIENT wait                  -> per stdin line "NAME": "POLL NAME" at once, then
#        "OK NAME T_MONOTONIC IP NQUERIES" once an A answer arrives, or "TIMEOUT NAME NQUERIES"
CLIENT = r"""
import select, socket, struct, sys, time
SERVER = (sys.argv[1], 53)
mode = sys.argv[2]

def query(name, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)

def skip_name(b, pos):
    while True:
        n = b[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n

def parse(resp):
    qid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", resp[:12])
    pos = 12
    for _ in range(qd):
        pos = skip_name(resp, pos) + 4
    ips = []
    for _ in range(an):
        pos = skip_name(resp, pos)
        typ, _cls, _ttl, rdlen = struct.unpack("!HHIH", resp[pos:pos + 10])
        pos += 10
        if typ == 1 and rdlen == 4:
            ips.append(socket.inet_ntoa(resp[pos:pos + 4]))
        pos += rdlen
    return qid, flags & 0xF, ips

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(SERVER)
if mode == "latency":
    n, name, expect = int(sys.argv[3]), sys.argv[4], sys.argv[5]
    s.settimeout(2.0)
    lat = []
    for i in range(n):
        qid = (i + 1) & 0xFFFF
        q = query(name, qid)
        t0 = time.perf_counter()
        s.send(q)
        while True:
            try:
                rid, rcode, ips = parse(s.recv(4096))
            except socket.timeout:
                print(f"ERR query {i}: no answer in 2 s", flush=True)
                sys.exit(1)
            if rid == qid:
                break
        lat.append((time.perf_counter() - t0) * 1000)
        if rcode != 0 or ips != [expect]:
            print(f"ERR query {i}: rcode {rcode}, answer {ips}, expected [{expect}]", flush=True)
            sys.exit(1)
    print("LAT " + " ".join(f"{x:.4f}" for x in lat), flush=True)
else:
    timeout = float(sys.argv[3])
    s.setblocking(False)
    qid = 0
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        mine = set()
        print(f"POLL {name}", flush=True)
        deadline = time.monotonic() + timeout
        sent, done = 0, False
        while not done and time.monotonic() < deadline:
            qid = (qid + 1) & 0xFFFF
            mine.add(qid)
            try:
                s.send(query(name, qid))
                sent += 1
            except OSError:
                pass
            next_send = time.monotonic() + 0.001
            while not done:
                left = next_send - time.monotonic()
                if left <= 0 or not select.select([s], [], [], left)[0]:
                    break
                try:
                    rid, rcode, ips = parse(s.recv(4096))
                except (OSError, ValueError, IndexError, struct.error):
                    continue
                if rid in mine and rcode == 0 and ips:
                    print(f"OK {name} {time.monotonic():.6f} {ips[0]} {sent}", flush=True)
                    done = True
        if not done:
            print(f"TIMEOUT {name} {sent}", flush=True)
"""


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * len(values))) - 1))]


class Lines:
    """Line reader over a pipe with a deadline per line (no blocking forever on a stuck child)."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, b""

    def readline(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def netkit(*args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "netkit", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": ROOT})
    if check and r.returncode != 0:
        raise RuntimeError(f"netkit {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def container_ip(name: str) -> str:
    info = json.loads(netkit("container", "inspect", name, "--json").stdout)
    for ep in info.get("endpoints", []):
        if ep.get("network") == NET and ep.get("ip"):
            return ep["ip"]
    raise RuntimeError(f"{name} has no address on {NET} in `container inspect --json`")


def exec_client(*args: str, stdin=subprocess.DEVNULL, ct: str = CLIENT_CT) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "netkit", "exec", ct, "--", "python3", "-c", CLIENT, GATEWAY, *args],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def latencies(p: subprocess.Popen) -> list[float] | None:
    """The latencies a `latency` client printed, sorted; None (after saying why) if it failed."""
    try:
        out, err = (b.decode(errors="replace") for b in p.communicate(timeout=LATENCY_TIMEOUT))
    except subprocess.TimeoutExpired:
        print(f"latency run did not finish in {LATENCY_TIMEOUT:.0f} s", file=sys.stderr)
        return None
    line = next((x for x in out.splitlines() if x.startswith(("LAT ", "ERR "))), "")
    if p.returncode != 0 or not line.startswith("LAT "):
        print(f"client failed (exit {p.returncode}): {line or err.strip()}", file=sys.stderr)
        return None
    return sorted(float(x) for x in line.split()[1:])


def network_bench() -> int:
    created: list[str] = []
    net_made = False
    procs: list[subprocess.Popen] = []
    try:
        netkit("network", "create", NET, "--subnet", SUBNET)
        net_made = True
        netkit("container", "create", CLIENT_CT, "--net", NET)
        created.append(CLIENT_CT)
        c1_ip = container_ip(CLIENT_CT)

        # -- 3. latency from inside c1, one client process ------------------------------------
        p = exec_client("latency", str(N_QUERIES), CLIENT_CT, c1_ip)
        procs.append(p)
        try:
            out, err = (b.decode(errors="replace") for b in p.communicate(timeout=LATENCY_TIMEOUT))
        except subprocess.TimeoutExpired:
            print(f"in-container latency run did not finish in {LATENCY_TIMEOUT:.0f} s", file=sys.stderr)
            return 1
        line = next((x for x in out.splitlines() if x.startswith(("LAT ", "ERR "))), "")
        if p.returncode != 0 or not line.startswith("LAT "):
            print(f"in-container client failed (exit {p.returncode}): {line or err.strip()}", file=sys.stderr)
            return 1
        times = sorted(float(x) for x in line.split()[1:])
        if len(times) != N_QUERIES:
            print(f"in-container client printed {len(times)} latencies, expected {N_QUERIES}", file=sys.stderr)
            return 1
        print(f"through {NET} (c1 -> {GATEWAY}:53, veth + bridge), {N_QUERIES} sequential UDP A queries for "
              f"{CLIENT_CT}, all answered {c1_ip}: median {statistics.median(times):.3f} ms, "
              f"p99 {pct(times, 0.99):.3f} ms, max {times[-1]:.3f} ms")

        # -- 3b. forwarded queries: the host's upstream, and a container's own --dns ----------
        own_dns = "198.18.0.53"
        subprocess.run(["ip", "netns", "exec", "outside", "ip", "addr", "add", f"{own_dns}/24", "dev", "eth0"],
                       check=True, timeout=CLI_TIMEOUT)
        fake = subprocess.Popen(["ip", "netns", "exec", "outside", sys.executable, FAKEDNS, "198.18.0.2=192.0.2.1",
                                 f"{own_dns}=192.0.2.53"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(fake)
        if Lines(fake.stdout.fileno()).readline(30.0) != "ready":
            print("the fake upstream resolvers did not start", file=sys.stderr)
            return 1
        netkit("container", "create", "fwd", "--net", NET, "--dns", own_dns)
        created.append("fwd")
        for ct, expect, what in ((CLIENT_CT, "192.0.2.1", "the host's resolver"), ("fwd", "192.0.2.53", "its --dns")):
            p = exec_client("latency", str(N_QUERIES), "ext.example", expect, ct=ct)
            procs.append(p)
            times = latencies(p)
            if times is None:
                return 1
            print(f"forwarded from {ct} to {what} ({N_QUERIES} sequential queries, all answered {expect}): "
                  f"median {statistics.median(times):.3f} ms, p99 {pct(times, 0.99):.3f} ms")

        # -- 4. container create -> resolvable, seen by a long-lived poller in c1 -------------
        w = exec_client("wait", str(RESOLVE_TIMEOUT), stdin=subprocess.PIPE)
        procs.append(w)
        lines = Lines(w.stdout.fileno())
        resolve, cli, polls = [], [], []
        for i in range(2, 2 + N_NEW):
            name = f"c{i}"
            w.stdin.write(f"{name}\n".encode())
            w.stdin.flush()
            # The first POLL also waits out the exec + interpreter start-up, so allow for it.
            ack = lines.readline(30.0 if i == 2 else 5.0)
            if ack != f"POLL {name}":
                print(f"poller in c1 did not start polling {name}: {ack!r}", file=sys.stderr)
                return 1
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "netkit", "container", "create", name, "--net", NET],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=CLI_TIMEOUT, env={**os.environ, "PYTHONPATH": ROOT})
            t_cli = time.monotonic()
            if r.returncode != 0:
                print(f"container create {name}: exit {r.returncode}: {r.stderr.decode().strip()}", file=sys.stderr)
                return 1
            created.append(name)
            got = lines.readline(RESOLVE_TIMEOUT + 5.0)
            fields = (got or "").split()
            if len(fields) != 5 or fields[:2] != ["OK", name]:
                print(f"{name} did not resolve from c1: {got!r}", file=sys.stderr)
                return 1
            ip = container_ip(name)
            if fields[3] != ip:
                print(f"{name} resolved to {fields[3]}, but its address is {ip}", file=sys.stderr)
                return 1
            resolve.append((float(fields[2]) - t0) * 1000)
            cli.append((t_cli - t0) * 1000)
            polls.append(int(fields[4]))
        early = sum(1 for a, b in zip(resolve, cli) if a <= b)
        print(f"create -> resolvable from c1 ({N_NEW} containers c2..c{1 + N_NEW}, 1 ms polling): "
              f"median {statistics.median(resolve):.1f} ms, max {max(resolve):.1f} ms "
              f"({early}/{N_NEW} resolvable before the CLI exited; median {statistics.median(polls):.0f} "
              f"queries sent while polling)")
        print(f"bare `netkit container create` (CLI start to exit), same {N_NEW}: "
              f"median {statistics.median(cli):.1f} ms, max {max(cli):.1f} ms")
        return 0
    finally:
        for p in procs:
            if p.stdin:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            stop(p)
        ok = True
        if created:
            ok = netkit("container", "rm", *reversed(created), check=False).returncode == 0
        if net_made:
            ok = netkit("network", "rm", NET, check=False).returncode == 0 and ok
        if not ok:
            print("cleanup: container rm / network rm failed", file=sys.stderr)


def main() -> int:
    from netkit import sandbox

    if not sandbox.in_sandbox():
        return subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                os.path.abspath(__file__), *sys.argv[1:]],
                               env={**os.environ, "PYTHONPATH": ROOT})
    rc = loopback_bench()
    return rc or network_bench()


def loopback_bench() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        records = os.path.join(tmp, "bench.json")
        with open(records, "w") as f:
            names = {f"c{i}": [f"172.30.{i // 250}.{i % 250 + 2}"] for i in range(N_RECORDS)}
            json.dump({"records": names, "upstreams": []}, f)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r, w = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "netkit.dns.server", "--listen", "127.0.0.1", "--port", str(port),
             "--records", records, "--ready-fd", str(w)],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        os.close(w)
        try:
            if not (select.select([r], [], [], 10)[0] and os.read(r, 1) == b"R"):
                print("server did not start", file=sys.stderr)
                return 1
            queries = [DNSRecord.question(f"c{i % N_RECORDS}").pack() for i in range(N_QUERIES)]
            times = []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.settimeout(2)
                c.connect(("127.0.0.1", port))
                for q in queries:
                    t0 = time.perf_counter()
                    c.send(q)
                    c.recv(4096)
                    times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            print(f"{N_QUERIES} sequential UDP queries, {N_RECORDS} records: "
                  f"median {statistics.median(times):.3f} ms, p99 {times[int(len(times) * 0.99) - 1]:.3f} ms, "
                  f"max {times[-1]:.3f} ms")
        finally:
            os.close(r)
            proc.terminate()
            proc.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
