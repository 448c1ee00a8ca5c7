"""Overlay figures (issue 15). Runs itself in `netkit sandbox --hosts 2` (two hosts, an etcd store).

1. Create-to-reachable: for 20 containers b0..b19 created one by one on h1 with
   `python -m netkit container create bN --net ov --ip IP` (the engine path, a whole CLI process;
   `--cluster-cli` measures phase 1's `python -m netkit.cluster container create`), the time
   from the start of that command until a prober in container `probe` on h2, which starts sending
   one ICMP echo to IP every 2 ms when the command returns, gets an answer: median and p90, and
   the bare CLI time beside it.
   The engine path runs with a local bridge network on each host too (FORWARD policy DROP).
2. Memory: resident size (VmRSS) of what netkit keeps running per host (the host agent and,
   on the engine path, the overlay network's DNS server), and of
   the etcd server the sandbox runs for all hosts.
Bounded (timeouts on every wait) and self-cleaning (the sandbox goes with it).

    .venv/bin/python scripts/bench_overlay.py [--cluster-cli | --daemon]

`--daemon` starts netkitd on h1 first, so each `netkit container create` is forked from a warm
process (imports done); the CPU figure then counts only the thin client. Also printed: when h2's
agent had the new container's FDB entry (a netlink listener on h2), from the start of the create.
"""
import json
import os
import resource
import select
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
N = 20
REACH_TIMEOUT = 10.0
CLUSTER = [sys.executable, "-m", "netkit.cluster"]
ENGINE = os.environ.get("BENCH_PATH", "engine") == "engine"
DAEMON = os.environ.get("BENCH_DAEMON") == "1"  # --daemon: the creates are forwarded to a warm netkitd
NETKIT = [sys.executable, "-m", "netkit"]

# Runs in container `probe` on h2: per stdin line "IP", ICMP echo every 2 ms until a reply;
# prints "IP MONOTONIC" (CLOCK_MONOTONIC is one clock for every namespace of the machine).
PROBER = r"""
import os, socket, struct, sys, time, select
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
print('ready', flush=True)
for line in sys.stdin:
    ip = line.strip(); seq = 0; deadline = time.monotonic() + float(sys.argv[1]); got = None
    while got is None and time.monotonic() < deadline:
        seq = (seq + 1) & 0xffff
        hdr = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + b'netkit-bench'
        pkt = struct.pack('!BBHHH', 8, 0, csum(hdr), ident, seq) + b'netkit-bench'
        sock.sendto(pkt, (ip, 0))
        end = time.monotonic() + 0.002
        while time.monotonic() < end:
            r, _, _ = select.select([sock], [], [], max(0, end - time.monotonic()))
            if not r: break
            data, addr = sock.recvfrom(2048)
            ihl = (data[0] & 0xf) * 4
            t, _, _, rid, _ = struct.unpack('!BBHHH', data[ihl:ihl + 8])
            if t == 0 and rid == ident and addr[0] == ip:
                got = time.monotonic(); break
    print(ip, got if got is not None else 'timeout', flush=True)
"""

# Runs on h2: prints "MAC MONOTONIC" when h2's agent adds a bridge FDB entry (AF_BRIDGE neighbour,
# what `bridge fdb replace MAC dev vxlanVNI dst IP` makes): when h2 learnt where a container is.
FDB_WATCH = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0x4))  # RTMGRP_NEIGH
print('ready', flush=True)
while True:
    data = s.recv(65536)
    now = time.monotonic()
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from('=IH', data, off)
        if length < 16:
            break
        if kind == 28 and data[off + 16] == 7:  # RTM_NEWNEIGH, AF_BRIDGE
            a = off + 16 + 12
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from('=HH', data, a)
                if alen < 4:
                    break
                if atype == 2 and alen == 10:  # NDA_LLADDR
                    print(':'.join('%02x' % b for b in data[a + 4:a + 10]), now, flush=True)
                a += (alen + 3) & ~3
        off += (length + 3) & ~3
"""


def mac_of(ip: str) -> str:
    return "02:42:" + ":".join(f"{int(x):02x}" for x in ip.split("."))


def rss_kb(pid) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def on(host, argv, **kw):
    return subprocess.run([sys.executable, "-m", "netkit", "sandbox", "on", host, "--"] + argv,
                          capture_output=True, text=True, timeout=60, check=True, **kw)


def inside() -> None:
    from netkit import multihost

    if ENGINE:
        for k, host in enumerate(("h1", "h2")):
            on(host, NETKIT + ["network", "create", "loc", "--subnet", f"172.30.{k}.0/24"])
            on(host, NETKIT + ["container", "create", "l1", "--net", "loc"])
        subprocess.run(NETKIT + ["network", "create", "--driver", "overlay", "ov", "--subnet", "10.50.0.0/24"],
                       check=True, capture_output=True, timeout=60)
        on("h2", NETKIT + ["container", "create", "probe", "--net", "ov", "--ip", "10.50.0.250"])
    else:
        subprocess.run(CLUSTER + ["network", "create", "ov", "--subnet", "10.50.0.0/24"], check=True,
                       capture_output=True, timeout=60)
        on("h2", CLUSTER + ["container", "create", "probe", "--net", "ov", "--ip", "10.50.0.250"])
    create = NETKIT if ENGINE else CLUSTER
    print(f"path: {'engine (netkit container create)' if ENGINE else 'phase 1 (python -m netkit.cluster)'}"
          + (", with netkitd on h1 (warm)" if DAEMON else ""))
    if DAEMON:
        subprocess.run(NETKIT + ["daemon", "start"], check=True, capture_output=True, timeout=60)
    prober = subprocess.Popen([sys.executable, "-m", "netkit", "sandbox", "on", "h2", "--", "ip", "netns", "exec",
                               "probe", sys.executable, "-c", PROBER, str(REACH_TIMEOUT)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert prober.stdout.readline().strip() == "ready"
    fdbw = subprocess.Popen([sys.executable, "-m", "netkit", "sandbox", "on", "h2", "--", sys.executable, "-c", FDB_WATCH],
                            stdout=subprocess.PIPE, text=True)
    assert fdbw.stdout.readline().strip() == "ready"
    programmed: dict[str, float] = {}  # MAC -> when h2 had its FDB entry

    def read_fdb() -> None:
        while select.select([fdbw.stdout], [], [], 0)[0]:
            parts = fdbw.stdout.readline().split()
            if len(parts) == 2:
                programmed.setdefault(parts[0], float(parts[1]))

    reach, cli, h2_fdb, cpu = [], [], [], []
    try:
        for i in range(N):
            ip = f"10.50.0.{10 + i}"
            used0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            subprocess.run(create + ["container", "create", f"b{i}", "--net", "ov", "--ip", ip], check=True,
                           capture_output=True, timeout=60)
            cli.append(time.monotonic() - t0)
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            # CPU time (user + system) of the command and what it waited for: less at the mercy of
            # the other processes on a shared machine than the wall-clock figures.
            cpu.append(used.ru_utime + used.ru_stime - used0.ru_utime - used0.ru_stime)
            # Probing starts when the command returns, as a user's next command would. (Probing
            # before the container exists costs the prober's ARP retransmit, 1 s: docs/multihost.md.)
            prober.stdin.write(ip + "\n")
            prober.stdin.flush()
            r, _, _ = select.select([prober.stdout], [], [], REACH_TIMEOUT + 5)
            line = prober.stdout.readline().split() if r else ["?", "timeout"]
            if line[1] == "timeout":
                print(f"b{i} {ip}: not reachable from h2 within {REACH_TIMEOUT:g} s")
                continue
            reach.append(float(line[1]) - t0)
            read_fdb()
            if mac_of(ip) in programmed:
                h2_fdb.append(programmed[mac_of(ip)] - t0)
    finally:
        prober.stdin.close()
        prober.wait(timeout=15)
        fdbw.kill()
        fdbw.wait(timeout=15)

    def ms(values, q):
        return statistics.quantiles(values, n=10)[8] * 1000 if q == 90 else statistics.median(values) * 1000

    print(f"create on h1 -> reachable from h2 ({len(reach)}/{N} containers): "
          f"median {ms(reach, 50):.0f} ms, p90 {ms(reach, 90):.0f} ms")
    print(f"  the create command alone (whole CLI process): median {ms(cli, 50):.0f} ms, p90 {ms(cli, 90):.0f} ms")
    print(f"  CPU time of the create command (user + system): median {ms(cpu, 50):.0f} ms, p90 {ms(cpu, 90):.0f} ms")
    if len(h2_fdb) >= 2:
        print(f"  h2's agent had programmed the FDB entry (etcd watch -> kernel), from the start of the create: "
              f"median {ms(h2_fdb, 50):.0f} ms, p90 {ms(h2_fdb, 90):.0f} ms")
    reg = multihost.registry()
    for host in ("h1", "h2"):
        agent = on(host, ["cat", "/run/netkit/cluster/agent.pid"]).stdout.strip()
        print(f"  {host}: host agent (pid {agent}) VmRSS {rss_kb(int(agent)) / 1024:.1f} MiB")
        if ENGINE:
            dns = on(host, ["cat", "/run/netkit/dns/ov.pid"]).stdout.strip()
            print(f"  {host}: DNS server of ov (pid {dns}) VmRSS {rss_kb(int(dns)) / 1024:.1f} MiB")
    print(f"  store: etcd (pid {reg['store']['pid']}, one for all hosts) VmRSS {rss_kb(reg['store']['pid']) / 1024:.1f} MiB")


if __name__ == "__main__":
    if "--cluster-cli" in sys.argv:
        os.environ["BENCH_PATH"] = "cluster"
    if "--daemon" in sys.argv:
        os.environ["BENCH_DAEMON"] = "1"
    if os.environ.get("NETKIT_HOST") == "h1":
        inside()
    else:
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--hosts", "2", "--",
                                  sys.executable, os.path.abspath(__file__)], cwd=ROOT))
