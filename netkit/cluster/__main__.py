"""`python -m netkit.cluster`: the overlay use cases from a shell, until `netkit network create
--driver overlay` and friends call them (docs/multihost.md, "Phase 1"). Errors: one line, exit 2
for bad input, 1 for the environment (store down, kernel refused), as the netkit CLI does."""
from __future__ import annotations

import argparse
import json
import sys

from netkit.errors import NetkitError

USAGE = """python -m netkit.cluster COMMAND
  network create NAME [--subnet CIDR] [--gateway IP]   an overlay network in the cluster store
  network ls                                           overlay networks (scope global)
  network rm NAME
  container create NAME --net NET [--ip IP]            a container on this host, on an overlay network
  container rm NAME
  agent start | stop | status                          this host's agent
  status                                               the store as this host sees it (JSON)
  check                                                this host's kernel against the store (exit 1 if they differ)"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m netkit.cluster", usage=USAGE)
    p.add_argument("kind", choices=["network", "container", "agent", "status", "check"])
    p.add_argument("verb", nargs="?")
    p.add_argument("name", nargs="?")
    p.add_argument("--subnet")
    p.add_argument("--gateway")
    p.add_argument("--net")
    p.add_argument("--ip")
    return p


def run(argv: list[str]) -> None:
    from netkit.cluster import agentctl, overlay

    args = _parser().parse_args(argv)
    member = overlay.membership()
    key = (args.kind, args.verb)
    need_name = {("network", "create"), ("network", "rm"), ("container", "create"), ("container", "rm")}
    if key in need_name and not args.name:
        raise SystemExit(f"python -m netkit.cluster {args.kind} {args.verb}: NAME is missing\n{USAGE}")
    if key == ("network", "create"):
        net = overlay.create_network(member, args.name, args.subnet, args.gateway)
        print(f"{net.name} vni {net.vni} {net.subnet} gateway {net.gateway}")
    elif key == ("network", "ls"):
        from netkit.cluster.store import ClusterStore

        store = ClusterStore(member.url)
        print(f"{'NAME':16} {'DRIVER':8} {'SCOPE':7} {'VNI':>8} SUBNET")
        for net in sorted(store.networks(), key=lambda n: n.name):
            print(f"{net.name:16} {net.driver:8} {net.scope:7} {net.vni:>8} {net.subnet}")
    elif key == ("network", "rm"):
        print(overlay.remove_network(member, args.name).name)
    elif key == ("container", "create"):
        if not args.net:
            raise SystemExit("python -m netkit.cluster container create NAME --net NETWORK: --net is missing")
        ep = overlay.create_container(member, args.name, args.net, args.ip)
        print(f"{ep.container} {ep.ip} {ep.mac} on {ep.host}")
    elif key == ("container", "rm"):
        overlay.remove_container(member, args.name)
        print(args.name)
    elif key == ("agent", "start"):
        print(overlay.ensure_agent(member))
    elif key == ("agent", "stop"):
        print("stopped" if agentctl.stop(overlay.run_dir()) else "not running")
    elif key == ("agent", "status"):
        pid = agentctl.running_pid(overlay.run_dir())
        print(f"running (pid {pid})" if pid else "not running")
        if pid is None:
            sys.exit(3)
    elif key == ("status", None):
        print(json.dumps(overlay.status(member), indent=2, sort_keys=True))
    elif key == ("check", None):
        problems = overlay.check(member)
        for line in problems:
            print(line)
        print(f"{member.host}: {'kernel and store agree' if not problems else f'{len(problems)} problem(s)'}")
        if problems:
            sys.exit(1)
    else:
        raise SystemExit(f"unknown command: {' '.join(a for a in key if a)}\n{USAGE}")


def main() -> None:
    try:
        run(sys.argv[1:])
    except NetkitError as err:
        print(f"netkit: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
