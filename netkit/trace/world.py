"""The one place the tracer reads the engine's data: containers, networks, endpoints and
published ports through the state Store's read API (no Context, no locks, no writes).

Kept small on purpose, so that it is the only module to adapt when the engine's state changes.
"""
from __future__ import annotations


class World:
    """A read-only view of netkit's state for the tracer."""

    def __init__(self, store=None):
        self._store = store
        self._own = store is None

    @property
    def store(self):
        if self._store is None:
            from netkit.state import Store

            self._store = Store()
        return self._store

    def containers(self):
        return self.store.containers()

    def container(self, name: str):
        return self.store.container(name)

    def networks(self):
        return self.store.networks()

    def network(self, name: str):
        return self.store.network(name)

    def network_facts(self) -> dict:
        """bridge -> {name, subnet, icc, internal, masquerade, iptables}: what drop causes map to."""
        return {n.bridge: {"name": n.name, "subnet": n.subnet, "icc": n.icc, "internal": n.internal,
                           "masquerade": n.masquerade, "iptables": n.iptables} for n in self.networks()}

    def published(self) -> list[dict]:
        return [{"container": c.name, "proto": p.proto, "host_ip": p.host_ip, "host_port": p.host_port,
                 "container_port": p.container_port} for c in self.containers() for p in c.ports]

    def exposed(self) -> dict:
        return {c.name: list(c.exposed) for c in self.containers() if c.exposed}

    def close(self) -> None:
        if self._own and self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
