#!/usr/bin/env python3
"""Benchmark of the packet tracer (prints figures; asserts nothing).

1. Loss: a container sends a bounded UDP stream (1k, 5k, 10k, 20k, 50k packets/s for 3 s, then
   it stops by itself) to the sandbox's `outside` host through the host (forwarded, no NAT). The
   tracer captures on 5 interfaces at once (a:eth0, the host veth, netkit0, uplink, outside:eth0)
   with a BPF filter; every packet should be seen once on each. Printed: packets sent and the rate
   the generator really achieved, packets received by the outside server, frames captured per
   interface, the kernel's drop counter for our sockets, and the tracer's loss. Runs at the top
   rate without a filter, and with recvmsg instead of the TPACKET_V3 ring, for comparison.
2. Start-up: time from starting `netkit trace capture` until it reports the capture live.
3. Report: time to dissect and correlate the frames of the 1k pps run.

Runs only inside a netkit sandbox: re-executes itself in one when started outside.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
NETKIT = [sys.executable, "-m", "netkit"]
RATES = (1000, 5000, 10000, 20000, 50000)
SECONDS = 3.0
PORT = 9999

SENDER = r"""
import ctypes, socket, sys, time
# sendmmsg(2): up to 64 datagrams per system call, so that one Python process can offer 50k
# packets/s on 2 cores while the kernel forwards each of them over 5 hops in the same context.
rate, secs, port = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("198.18.0.2", port))
BATCH = 64
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
libc = ctypes.CDLL(None, use_errno=True)
payloads = [ctypes.create_string_buffer(i.to_bytes(4, "big") + b"x" * 64, 68) for i in range(BATCH)]
iovs = (iovec * BATCH)(*[iovec(ctypes.addressof(p), 68) for p in payloads])
msgs = (mmsghdr * BATCH)()
for i in range(BATCH):
    msgs[i].hdr.iov = ctypes.pointer(iovs[i])
    msgs[i].hdr.iovlen = 1
n = 0
total = int(rate * secs)
t0 = time.monotonic()
end = t0 + secs  # bounded: the stream stops by itself
while n < total:
    now = time.monotonic()
    if now >= end + 1.0:
        break  # could not keep up: stop anyway, the achieved rate says so
    due = min(int((now - t0) * rate) + 1, total)
    while n < due:
        k = libc.sendmmsg(s.fileno(), msgs, min(BATCH, due - n), 0)
        if k <= 0:
            break
        n += k
    time.sleep(0.0002)
print(n, time.monotonic() - t0, flush=True)
"""

RECEIVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
n = 0
s.settimeout(10)
try:
    s.recv(2048)
    n = 1
    s.settimeout(1.0)
    while True:
        s.recv(2048)
        n += 1
except OSError:
    pass
print(n, flush=True)
"""


def sh(cmd: str) -> str:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout


def netkit(*args: str) -> str:
    return subprocess.run(NETKIT + list(args), capture_output=True, text=True, check=True).stdout


def setup():
    from netkit.trace import path
    from netkit.trace.world import World

    netkit("container", "create", "a")
    # Forwarding in the sandbox's own host netns (never the machine's): the stream crosses 5 hops.
    with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
        fh.write("1")
    with World() as world:
        topo = path.resolve(world, ["a"])
    topo.points = [p for p in topo.points if p.role != "lo"]
    # Warm the neighbour caches so that no packet waits on ARP (a network drop, not a tracer one).
    subprocess.run(NETKIT + ["exec", "a", "--", sys.executable, "-S", "-c", SENDER, "10", "0.05", str(PORT + 1)],
                   capture_output=True)
    time.sleep(0.2)
    return topo


def one_run(topo, rate: int, bpf: str, ring: bool = True):
    from netkit.trace.capture import Capture

    recv = subprocess.Popen(["ip", "netns", "exec", "outside", sys.executable, "-S", "-c", RECEIVER, str(PORT)],
                            stdout=subprocess.PIPE, text=True)
    assert recv.stdout.readline().strip() == "ready"
    cap = Capture(topo.points, bpf, use_ring=ring)
    cap.start()
    sender = subprocess.run(NETKIT + ["exec", "a", "--", sys.executable, "-S", "-c", SENDER, str(rate), str(SECONDS),
                                      str(PORT)], capture_output=True, text=True, timeout=60)
    sent_text, elapsed = sender.stdout.split()
    sent, achieved = int(sent_text), int(sent_text) / float(elapsed)
    result = cap.finish(grace=0.3)
    cap.close()
    received = int(recv.communicate(timeout=30)[0].strip())
    frames = [0] * len(topo.points)
    for r in result.records:
        if len(r.data) > 42 and r.data[23] == 17 and int.from_bytes(r.data[36:38], "big") == PORT:
            frames[r.point] += 1
    return sent, achieved, received, frames, result


def bench_loss():
    topo = setup()
    print(f"capture points: {', '.join(p.label for p in topo.points)}")
    print(f"{'rate':>7} {'achieved':>8} {'filter':>6} {'reader':>7} {'sent':>6} {'recvd':>6}  "
          f"{'captured per interface':<36} {'kdrops':>6} {'lost':>6}")
    kept = None
    runs = [(r, f"udp port {PORT}", True) for r in RATES] + [(RATES[-1], "", True), (RATES[-1], f"udp port {PORT}", False)]
    for rate, bpf, ring in runs:
        sent, achieved, received, frames, result = one_run(topo, rate, bpf, ring)
        lost = sum(max(0, received - f) for f in frames)
        print(f"{rate:>7} {achieved:>8.0f} {'yes' if bpf else 'no':>6} {'ring' if ring else 'recvmsg':>7} {sent:>6} "
              f"{received:>6}  {' '.join(f'{f:>6}' for f in frames):<36} {sum(result.lost):>6} {lost:>6}")
        if rate == RATES[0] and bpf:
            kept = (result, topo)
        time.sleep(1.0)  # let the softirq backlog drain between runs
    return kept


def bench_startup(n: int = 5):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        proc = subprocess.Popen(NETKIT + ["trace", "capture", "a", "--proto", "udp", "--duration", "0.2"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        times.append(time.monotonic() - t0)
        assert "capturing on" in line, line
        proc.wait(timeout=30)
    ls = []
    for _ in range(n):
        t0 = time.monotonic()
        netkit("network", "ls")
        ls.append(time.monotonic() - t0)
    print(f"start-up of `netkit trace capture` until capture is live: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms (n={n}); `netkit network ls` for comparison: "
          f"median {statistics.median(ls) * 1000:.0f} ms")


def bench_report(kept):
    from netkit.kernel import tracefacts
    from netkit.trace import assemble, path
    from netkit.trace.world import World

    result, topo = kept
    t0 = time.monotonic()
    with World() as world:
        path.enrich(topo, world)
    rep = assemble.build_report(result, topo, tracefacts.conntrack())
    dt = time.monotonic() - t0
    n = len(result.records)
    print(f"report of the 1k pps run: {n} frames -> {sum(len(f['packets']) for f in rep['flows'])} packets in "
          f"{len(rep['flows'])} flow(s), {len(rep['drops'])} drops, in {dt:.2f} s ({dt / max(n, 1) * 1e6:.0f} µs/frame)")


def main():
    from netkit import sandbox as sb

    if not sb.in_sandbox():
        os.execv(sys.executable, NETKIT + ["sandbox", "--", sys.executable, os.path.abspath(__file__)])
    os.chdir(ROOT)
    print(f"netkit trace benchmark: {os.cpu_count()} cores, kernel {os.uname().release}")
    kept = bench_loss()
    bench_startup()
    if kept:
        bench_report(kept)
    netkit("container", "rm", "a")


if __name__ == "__main__":
    main()
