"""netkit's state: a SQLite file, one transaction per command, a file lock between processes.

The lock is held from reading the state to writing it back, so concurrent netkit processes are
serialised and never hand out the same address or port twice.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager

from netkit.errors import EnvError
from netkit.model import Container, Network, from_dict, to_dict

DEFAULT_STATE_DIR = "/var/lib/netkit"
DEFAULT_RUN_DIR = "/run/netkit"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bridges (name TEXT PRIMARY KEY, data TEXT NOT NULL);
-- one row per endpoint address: the primary key is what makes duplicate IPs impossible
CREATE TABLE IF NOT EXISTS addresses (network TEXT NOT NULL, ip TEXT NOT NULL, container TEXT NOT NULL,
                                      PRIMARY KEY (network, ip));
CREATE INDEX IF NOT EXISTS addresses_by_container ON addresses (container);
-- the names each container answers to on each network (what the embedded DNS serves)
CREATE TABLE IF NOT EXISTS dns_names (network TEXT NOT NULL, name TEXT NOT NULL, ip TEXT NOT NULL,
                                      container TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS dns_names_by_network ON dns_names (network);
CREATE INDEX IF NOT EXISTS dns_names_by_container ON dns_names (container);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def state_dir() -> str:
    return os.environ.get("NETKIT_STATE_DIR", DEFAULT_STATE_DIR)


def run_dir() -> str:
    return os.environ.get("NETKIT_RUN_DIR", DEFAULT_RUN_DIR)


class Store:
    def __init__(self, directory: str | None = None):
        self.directory = directory or state_dir()
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            self.db = sqlite3.connect(os.path.join(self.directory, "netkit.db"), isolation_level=None, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise EnvError(f"cannot open netkit's state in {self.directory}: {err}; "
                           "run as root or set NETKIT_STATE_DIR") from None
        self._lock_fd: int | None = None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self, after_commit=None):
        """Exclusive for the whole read-plan-apply-save cycle of one command. `after_commit` runs
        once the state is committed, still under the lock, so that what it derives from the
        state (name files, DNS records) is never overtaken by a concurrent command."""
        fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            if after_commit is not None:
                after_commit()
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # networks
    def network(self, name: str) -> Network | None:
        row = self.db.execute("SELECT data FROM networks WHERE name=?", (name,)).fetchone()
        return from_dict(Network, json.loads(row[0])) if row else None

    def networks(self) -> list[Network]:
        rows = self.db.execute("SELECT data FROM networks ORDER BY name").fetchall()
        return [from_dict(Network, json.loads(r[0])) for r in rows]

    def put_network(self, net: Network) -> None:
        self.db.execute("INSERT OR REPLACE INTO networks VALUES (?, ?)", (net.name, json.dumps(to_dict(net))))

    def delete_network(self, name: str) -> None:
        self.db.execute("DELETE FROM networks WHERE name=?", (name,))

    # containers
    def container(self, name: str) -> Container | None:
        row = self.db.execute("SELECT data FROM containers WHERE name=?", (name,)).fetchone()
        return from_dict(Container, json.loads(row[0])) if row else None

    def containers(self) -> list[Container]:
        rows = self.db.execute("SELECT data FROM containers ORDER BY name").fetchall()
        return [from_dict(Container, json.loads(r[0])) for r in rows]

    def put_container(self, c: Container) -> None:
        """Write the container and make the address and name tables match its endpoints."""
        self.db.execute("INSERT OR REPLACE INTO containers VALUES (?, ?)", (c.name, json.dumps(to_dict(c))))
        self.db.execute("DELETE FROM addresses WHERE container=?", (c.name,))
        self.db.executemany(
            "INSERT INTO addresses VALUES (?, ?, ?)", [(e.network, e.ip, c.name) for e in c.endpoints]
        )
        self.db.execute("DELETE FROM dns_names WHERE container=?", (c.name,))
        rows = {(e.network, n.lower(), e.ip, c.name) for e in c.endpoints
                for n in [c.name, c.hostname or c.name, *e.aliases]}
        self.db.executemany("INSERT INTO dns_names VALUES (?, ?, ?, ?)", sorted(rows))

    def delete_container(self, name: str) -> None:
        self.db.execute("DELETE FROM containers WHERE name=?", (name,))
        self.db.execute("DELETE FROM addresses WHERE container=?", (name,))
        self.db.execute("DELETE FROM dns_names WHERE container=?", (name,))

    def dns_names(self, network: str) -> dict[str, list[str]]:
        """name -> addresses on one network."""
        table: dict[str, list[str]] = {}
        for name, ip in self.db.execute(
                "SELECT name, ip FROM dns_names WHERE network=? ORDER BY name, ip", (network,)):
            table.setdefault(name, []).append(ip)
        return table

    def has_members(self, network: str) -> bool:
        return self.db.execute("SELECT 1 FROM addresses WHERE network=? LIMIT 1", (network,)).fetchone() is not None

    def addresses(self, network: str) -> dict[str, str]:
        """ip -> container name, for one network."""
        rows = self.db.execute("SELECT ip, container FROM addresses WHERE network=?", (network,)).fetchall()
        return dict(rows)

    def members(self, network: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT container FROM addresses WHERE network=? ORDER BY container", (network,)
        ).fetchall()
        return [r[0] for r in rows]

    def sharers(self, name: str) -> list[str]:
        """Containers in container:NAME mode that share NAME's netns."""
        return [c.name for c in self.containers() if c.shares == name]

    # plain bridges made by `netkit bridge create`
    def bridge(self, name: str) -> dict | None:
        row = self.db.execute("SELECT data FROM bridges WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_bridge(self, name: str, data: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO bridges VALUES (?, ?)", (name, json.dumps(data)))

    def delete_bridge(self, name: str) -> None:
        self.db.execute("DELETE FROM bridges WHERE name=?", (name,))

    # small facts netkit must remember (e.g. what it changed on the host, to restore on reset)
    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def put_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))
