"""The host agent: one long-running process per host that keeps the host's overlay data plane in
line with the cluster store, and tells the others the host is alive.

- Presence: a lease with a TTL, kept alive every TTL/3; the key /netkit/hosts/HOST rides on it,
  so when the host dies its key (and, through plane.py, its containers in the others' kernels)
  is gone within a TTL. A lease that did expire (a long outage) is granted anew.
- Data plane: read everything under /netkit/ once, program every local VXLAN device, then watch
  from the next revision and reprogram the networks each change touches. The kernel is compared
  with the wanted entries each time (not a cache), so drift is repaired on the next change.
- Store down: the kernel is left as it is (existing containers keep forwarding), one log line
  says so, and every second a new connection is tried; once back, everything is read again
  (the re-sync) and the watch resumes.

Run by netkit.cluster.agentctl as `python -m netkit.cluster.agent --store URL --host H --advertise IP`.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from netkit.cluster import etcd, plane
from netkit.cluster.store import ROOT, ClusterStore, View

DEFAULT_TTL = 10
RETRY_SECONDS = 1.0


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class Agent:
    def __init__(self, url: str, host: str, advertise: str, ttl: int = DEFAULT_TTL):
        self.url, self.host, self.advertise, self.ttl = url, host, advertise, ttl
        self.view = View()
        self.registered = threading.Event()
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.down = False  # the watch lost the store; the next successful read is a re-sync

    # ---- presence -------------------------------------------------------------------------

    def keep_lease(self) -> None:
        store = ClusterStore(self.url)
        lease, down = 0, False
        while not self.stopping.is_set():
            try:
                if lease == 0 or store.client.lease_keepalive(lease) == 0:
                    if lease:
                        log(f"lease {lease:x} expired: registering {self.host} again")
                    lease = store.client.lease_grant(self.ttl)
                    store.register_host(self.host, self.advertise, lease)
                    log(f"registered {self.host} ({self.advertise}) with lease {lease:x}, TTL {self.ttl}s")
                    self.registered.set()
                if down:
                    log("store reachable again: lease kept alive")
                    down = False
                self.stopping.wait(self.ttl / 3)
            except etcd.StoreUnavailable as err:
                if not down:
                    log(f"lease: {err}")
                    down = True
                store.close()
                self.stopping.wait(RETRY_SECONDS)

    # ---- data plane -----------------------------------------------------------------------

    def reconcile(self, networks) -> None:
        from netkit import state
        from netkit.cluster import programming
        from netkit.kernel import vxlan

        local = vxlan.local_vnis()
        for name in sorted(networks):
            net = self.view.networks.get(name)
            if net is None or net.vni not in local:
                continue  # this host has no container on it: nothing to program
            want = plane.desired(self.view, name, self.host)
            try:
                # Through the per-device revision lock: a command programming from a newer read
                # meanwhile is not undone (cluster/programming.py).
                done = programming.program_at(state.run_dir(), net.vni, self.view.revision, want.fdb, want.neigh)
            except Exception as err:  # noqa: BLE001 - one network's failure must not stop the others
                log(f"network {name}: {err}")
                continue
            if done is None:
                continue  # the device already holds a newer view; this agent's next events catch up
            added, removed = done
            if added or removed:
                log(f"network {name} (VNI {net.vni}): {added} entries added, {removed} removed")
        self.rewrite_names(networks)

    def rewrite_names(self, networks) -> None:
        """Names across hosts: the records file of each overlay network this host serves DNS
        for (the engine made it with the first local container) gets every live container."""
        from netkit import state
        from netkit.cluster import dnsnames

        folder = os.path.join(state.run_dir(), "dns")
        for name in sorted(networks):
            if name not in self.view.networks:
                continue
            try:
                dnsnames.rewrite(os.path.join(folder, f"{name}.json"),
                                 dnsnames.records(self.view, name, self.host))
            except OSError as err:
                log(f"network {name}: DNS records: {err}")

    def follow(self) -> None:
        """Read all, program all, then apply changes as they come; return when the store is lost."""
        store = ClusterStore(self.url)
        try:
            self.view = store.snapshot()
            self.reconcile(self.view.networks)
            if self.down:
                log("store reachable again: re-synced")
                self.down = False
            log(f"synced at revision {self.view.revision}: {len(self.view.networks)} networks, "
                f"{len(self.view.endpoints)} endpoints, hosts {sorted(self.view.hosts)}")
            self.synced.set()
            for events, revision in store.client.watch_prefix(ROOT, self.view.revision + 1):
                touched = set()
                for ev in events:
                    what = self.view.apply(ev.kind, ev.key, ev.value)
                    if what == "*":
                        touched |= set(self.view.networks)
                    elif what:
                        touched.add(what)
                # The view is complete up to the last event applied (a batch without events is a
                # progress notice: everything up to its header revision was sent).
                seen = max((ev.mod_revision for ev in events), default=revision)
                self.view.revision = max(self.view.revision, seen)
                if touched:
                    self.reconcile(touched)
                if self.stopping.is_set():
                    return
        finally:
            store.close()

    def run(self) -> None:
        threading.Thread(target=self.keep_lease, name="lease", daemon=True).start()
        while not self.stopping.is_set():
            try:
                self.follow()
                continue
            except etcd.StoreUnavailable as err:
                if not self.down:
                    log(f"watch: {err}; the data plane stays as it is; retrying every {RETRY_SECONDS:g}s")
                    self.down = True
            except etcd.WatchCompacted as err:
                log(f"watch: {err}; reading everything again")
                continue
            self.stopping.wait(RETRY_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netkit.cluster.agent")
    parser.add_argument("--store", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--advertise", required=True)
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    agent = Agent(args.store, args.host, args.advertise, args.ttl)
    if args.ready_fd is not None:
        fd = args.ready_fd

        def announce() -> None:
            # Ready once the host is registered and its kernel programmed from a first read.
            agent.registered.wait()
            agent.synced.wait()
            os.write(fd, b"R")
            os.close(fd)

        threading.Thread(target=announce, name="ready", daemon=True).start()
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
