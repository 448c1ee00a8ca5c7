"""Memory and latency of netkit's embedded DNS: a server process per network (no netkitd) against
the one DNS host netkitd runs (issue 14). Runs itself inside a netkit sandbox.

For 1, 5 and 20 networks (each with one container, so each is served):
  - memory: RSS and PSS (from /proc/PID/smaps_rollup) summed over the per-network servers, then
    of the DNS host once `netkit daemon start` took the networks over (netkitd's own memory is
    not counted: it runs anyway for its commands);
  - latency: 500 sequential UDP A queries from inside container b1 to its network's gateway, for
    a local name (b1) and for a name forwarded to a fake upstream on the sandbox's outside host;
  - hand-over: `netkit daemon start` and `netkit daemon stop` wall time, while a client in b1
    sends a query every 2 ms: queries sent, answered, and the longest time without an answer.

    .venv/bin/python scripts/bench_dns_host.py [--counts 1,5,20] [--queries 500]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(ROOT))

import bench_dns  # noqa: E402  (its in-container DNS client and helpers)

RUN = "/run/netkit"

# In a container: python3 -c STREAM SERVER NAME: a query every 2 ms until stdin closes, then
# "sent answered longest_silence_ms".
STREAM = r"""
import select, socket, struct, sys, time
server, name = sys.argv[1], sys.argv[2]
def query(qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
s.setblocking(False)
sent, answered, last, longest, qid, nxt = 0, set(), time.monotonic(), 0.0, 0, 0.0
print("ready", flush=True)
while True:
    now = time.monotonic()
    if now >= nxt:
        qid = (qid + 1) & 0xFFFF
        try:
            s.send(query(qid)); sent += 1
        except OSError:
            pass
        nxt = now + 0.002
    r = select.select([s, sys.stdin], [], [], max(nxt - time.monotonic(), 0))[0]
    if sys.stdin in r:
        break
    if s in r:
        try:
            data = s.recv(4096)
        except OSError:
            continue
        rid = struct.unpack("!H", data[:2])[0]
        if rid not in answered:
            answered.add(rid)
            t = time.monotonic()
            longest, last = max(longest, t - last), t
end = time.monotonic() + 0.5  # answers to the last queries sent
while time.monotonic() < end and select.select([s], [], [], end - time.monotonic())[0]:
    try:
        answered.add(struct.unpack("!H", s.recv(4096)[:2])[0])
    except OSError:
        pass
print(sent, len(answered), f"{longest * 1000:.1f}", flush=True)
"""


def netkit(*args, timeout=120.0):
    return bench_dns.netkit(*args, timeout=timeout)


def memory(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB summed over pids, from smaps_rollup."""
    rss = pss = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss += int(rest.split()[0])
                elif key == "Pss":
                    pss += int(rest.split()[0])
    return rss / 1024, pss / 1024


def latency(ct: str, server: str, name: str, expect: str, n: int) -> str:
    p = subprocess.Popen([sys.executable, "-m", "netkit", "exec", ct, "--", "python3", "-c", bench_dns.CLIENT,
                          server, "latency", str(n), name, expect], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times = bench_dns.latencies(p)
    if times is None:
        raise SystemExit("latency client failed")
    return f"median {statistics.median(times):.3f} ms, p99 {bench_dns.pct(times, 0.99):.3f} ms"


def handover(what: str, *args: str) -> str:
    """Run `netkit ARGS` while a client in b1 queries every 2 ms; what it saw."""
    p = subprocess.Popen(["ip", "netns", "exec", "b1", "python3", "-c", STREAM, "172.29.1.1", "b1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    t0 = time.monotonic()
    netkit(*args)
    took = (time.monotonic() - t0) * 1000
    time.sleep(0.2)
    out, _ = p.communicate("x\n", timeout=30)
    sent, answered, longest = out.split()
    return (f"{what}: {took:.0f} ms; meanwhile {answered}/{sent} queries answered, "
            f"longest time without an answer {longest} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1,5,20")
    ap.add_argument("--queries", type=int, default=500)
    args = ap.parse_args()
    from netkit import sandbox

    if not sandbox.in_sandbox():
        return subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable,
                                os.path.abspath(__file__), *sys.argv[1:]],
                               env={**os.environ, "PYTHONPATH": os.path.dirname(ROOT)})
    from netkit.dns import hostctl, supervisor

    counts = sorted(int(c) for c in args.counts.split(","))
    fake = subprocess.Popen(["ip", "netns", "exec", "outside", sys.executable, bench_dns.FAKEDNS,
                             "198.18.0.2=192.0.2.1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        if bench_dns.Lines(fake.stdout.fileno()).readline(30.0) != "ready":
            raise SystemExit("the fake upstream resolver did not start")
        made = 0
        print(f"load: {open('/proc/loadavg').read().split()[:3]}")
        for n in counts:
            while made < n:
                made += 1
                netkit("network", "create", f"bn{made}", "--subnet", f"172.29.{made}.0/24")
                netkit("container", "create", f"b{made}", "--net", f"bn{made}")
            own = [pid for _, pid in supervisor.servers()]
            assert len(own) == n, own
            rss, pss = memory(own)
            print(f"{n:2d} network(s), a process each ({n} pids): RSS {rss:6.1f} MiB, PSS {pss:6.1f} MiB "
                  f"({pss / n:.1f} MiB PSS per network)")
            local_before = latency("b1", "172.29.1.1", "b1", "172.29.1.2", args.queries)
            fwd_before = latency("b1", "172.29.1.1", "ext.example", "192.0.2.1", args.queries)
            print("   " + handover("netkit daemon start (take-over)", "daemon", "start"))
            host = hostctl.running_pid(RUN)
            assert host and not supervisor.servers() and len(hostctl.table(RUN)) == n
            rss_h, pss_h = memory([host])
            print(f"{n:2d} network(s), one DNS host (pid {host}):    RSS {rss_h:6.1f} MiB, PSS {pss_h:6.1f} MiB "
                  f"(saves {pss - pss_h:.1f} MiB PSS)")
            local_after = latency("b1", "172.29.1.1", "b1", "172.29.1.2", args.queries)
            fwd_after = latency("b1", "172.29.1.1", "ext.example", "192.0.2.1", args.queries)
            print(f"   local query:     own process {local_before}; DNS host {local_after}")
            print(f"   forwarded query: own process {fwd_before}; DNS host {fwd_after}")
            print("   " + handover("netkit daemon stop (give-back)", "daemon", "stop"))
            assert len(supervisor.servers()) == n and not supervisor.hosts()
        return 0
    finally:
        bench_dns.stop(fake)
        if hostctl.running_pid(RUN):
            netkit("daemon", "stop")


if __name__ == "__main__":
    sys.exit(main())
