#!/usr/bin/env python3
"""Benchmark: bridge-mode `container create` (netns + veth + address + route + bridge port).

Prints median and p90 of N in-process creates, then removes, through the engine beside two raw
floors (the same kernel work with no state, journal, firewall or name files: written straight
against pyroute2, and in raw rtnetlink requests as netkit's kernel/rtlink.py sends them), the 10th
and 500th attach on one network (the cost must not grow with the bridge's size:
docs/facts.md, "IPv6 flooding"), and the whole-process time of `netkit container create`. Runs
itself inside a netkit sandbox.

    .venv/bin/python scripts/bench_attach.py [--n 100] [--big 500] [--cli 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def wait_idle(seconds: float = 3.0) -> None:
    """Netns teardown keeps the kernel busy for a while (docs/facts.md, "Teardown"); let it settle between phases."""
    time.sleep(seconds)


def _enter_new_netns(name: str) -> int:
    """This thread into a new netns pinned at /run/netns/NAME, IPv6 off there; the fd to step back to."""
    from netkit.kernel import nsutil

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    nsutil.unshare(nsutil.CLONE_NEWNET)
    nsutil.pin("/proc/thread-self/ns/net", f"/run/netns/{name}")
    for scope in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6", "w") as fh:
            fh.write("1")
    return home


def _step_back(home: int) -> int:
    """Back to `home`; an fd of the netns left."""
    from netkit.kernel import nsutil

    ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    nsutil.setns(home, nsutil.CLONE_NEWNET)
    os.close(home)
    return ns_fd


def raw_floor(n: int) -> list[float]:
    """N attaches with nothing but the kernel steps: netns (unshare + pin, IPv6 off, lo up), veth
    made with its peer inside the netns and its bridge set, host end up, address, default route."""
    import socket

    from pyroute2 import IPRoute

    os.makedirs("/run/netns", exist_ok=True)
    ipr = IPRoute()
    ipr.link("add", ifname="br-rawfloor", kind="bridge")
    bridge = ipr.link_lookup(ifname="br-rawfloor")[0]
    ipr.addr("add", index=bridge, address="10.201.0.1", prefixlen=16)
    ipr.link("set", index=bridge, state="up")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        home = _enter_new_netns(f"raw{i}")
        inner = IPRoute()  # opened inside the new netns
        inner.link("set", index=1, state="up")
        ns_fd = _step_back(home)
        host_if = f"vraw{i}"
        ipr.link("add", ifname=host_if, kind="veth", master=bridge, peer={"ifname": "eth0", "net_ns_fd": ns_fd})
        os.close(ns_fd)
        with open(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6", "w") as fh:
            fh.write("1")
        ipr.link("set", index=socket.if_nametoindex(host_if), state="up")
        idx = inner.link_lookup(ifname="eth0")[0]
        inner.link("set", index=idx, state="up")
        inner.addr("add", index=idx, address=f"10.201.{1 + i // 250}.{1 + i % 250}", prefixlen=16)
        inner.route("add", dst="0.0.0.0/0", gateway="10.201.0.1")
        inner.close()
        times.append((time.perf_counter() - t0) * 1000)
    ipr.close()
    return times


def raw_floor_rtnetlink(n: int) -> list[float]:
    """raw_floor's steps in raw rtnetlink requests (netkit/kernel/rtlink.py), no pyroute2: the
    leanest Python for that kernel work."""
    import socket

    from netkit.kernel import nsutil, rtlink

    subprocess.run("ip link add br-rtfloor type bridge && ip addr add 10.202.0.1/16 dev br-rtfloor && "
                   "ip link set br-rtfloor up", shell=True, check=True)
    bridge = socket.if_nametoindex("br-rtfloor")
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        home = _enter_new_netns(f"rt{i}")
        nsutil.set_link_up("lo")
        inner = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        inner.bind((0, 0))  # a socket made inside the new netns acts there
        ns_fd = _step_back(home)
        host_if = f"vrt{i}"
        rtlink.veth_on_bridge(host_if, "eth0", bridge, 1500, f"02:42:0a:ca:{i // 250:02x}:{i % 250 + 2:02x}",
                              peer_netns_fd=ns_fd)
        os.close(ns_fd)
        with open(f"/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6", "w") as fh:
            fh.write("1")
        rtlink.port_up(socket.if_nametoindex(host_if))
        rtlink.configure(inner, "eth0", f"10.202.{1 + i // 250}.{1 + i % 250}", 16, "10.202.0.1")
        inner.close()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    from netkit import sandbox

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--big", type=int, default=500)
    parser.add_argument("--cli", type=int, default=10)
    args = parser.parse_args()
    if not sandbox.in_sandbox():
        sys.exit(subprocess.call([sys.executable, "-m", "netkit", "sandbox", "--", sys.executable] + sys.argv))

    from netkit.engine import containers, networks
    from netkit.engine.context import Context

    raw = raw_floor(args.n)
    wait_idle()
    rt = raw_floor_rtnetlink(args.n)
    wait_idle()
    ctx = Context()
    networks.create(ctx, networks.NetworkRequest("bench", subnet="10.200.0.0/16"))
    times = []
    for i in range(args.n):
        t0 = time.perf_counter()
        containers.create(ctx, containers.ContainerRequest(f"c{i}", net="bench"))
        times.append((time.perf_counter() - t0) * 1000)
    print(f"in-process create, N={args.n}: median {statistics.median(times):.2f} ms, p90 {pct(times, 0.9):.2f} ms "
          f"(raw pyroute2 floor: median {statistics.median(raw):.2f} ms, p90 {pct(raw, 0.9):.2f} ms; "
          f"raw rtnetlink floor: median {statistics.median(rt):.2f} ms, p90 {pct(rt, 0.9):.2f} ms)")

    for i in range(args.n, args.big):
        t0 = time.perf_counter()
        containers.create(ctx, containers.ContainerRequest(f"c{i}", net="bench"))
        times.append((time.perf_counter() - t0) * 1000)
    window = lambda k: statistics.median(times[max(0, k - 5):k + 5])  # noqa: E731 - smooth single outliers
    print(f"attach #10: {window(9):.2f} ms, attach #{args.big}: {window(args.big - 1):.2f} ms "
          f"(median of 10 around each; ratio {window(args.big - 1) / window(9):.2f})")
    removed = []
    for i in range(args.n):
        t0 = time.perf_counter()
        containers.remove(ctx, f"c{i}")
        removed.append((time.perf_counter() - t0) * 1000)
    print(f"in-process rm, N={args.n} (of {args.big}): median {statistics.median(removed):.2f} ms, "
          f"p90 {pct(removed, 0.9):.2f} ms")
    ctx.close()

    wait_idle()
    cli = []
    for i in range(args.cli):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netkit", "container", "create", f"cli{i}", "--net", "bench"],
                       check=True, stdout=subprocess.DEVNULL)
        cli.append((time.perf_counter() - t0) * 1000)
    print(f"whole-process `netkit container create`: median {statistics.median(cli):.0f} ms, "
          f"p90 {pct(cli, 0.9):.0f} ms")


if __name__ == "__main__":
    main()
