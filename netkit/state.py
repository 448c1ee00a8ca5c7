"""netkit's state: a SQLite file, one transaction per command, a file lock between processes.

The lock is held from reading the state to writing it back, so concurrent netkit processes are
serialised and never hand out the same address or port twice. This is the only module that
speaks SQL: callers get and put model objects and ask questions by name.

Two tables hold the invariants, so that even a bug in the engine cannot break them: `addresses`
(primary key: network, ip) and `ports` (primary key: proto, host_ip, host_port, plus a trigger
for the 0.0.0.0 wildcard, which overlaps every address). The schema has a version
(`PRAGMA user_version`); opening an older file migrates it in one transaction.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from typing import NamedTuple

from netkit.errors import Conflict, EnvError
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

# Version 1: published ports get a table of their own (before, they lived only in the
# containers' JSON, and duplicates were refused by the engine alone).
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS ports (proto TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
                                      container TEXT NOT NULL, container_port INTEGER NOT NULL,
                                      PRIMARY KEY (proto, host_ip, host_port))""",
    "CREATE INDEX IF NOT EXISTS ports_by_container ON ports (container)",
    "CREATE INDEX IF NOT EXISTS ports_by_port ON ports (proto, host_port)",
    # 0.0.0.0 takes the port on every address: it clashes with any address, and any address with it.
    """CREATE TRIGGER IF NOT EXISTS ports_wildcard BEFORE INSERT ON ports
       WHEN EXISTS (SELECT 1 FROM ports WHERE proto = NEW.proto AND host_port = NEW.host_port
                    AND (host_ip = '0.0.0.0' OR NEW.host_ip = '0.0.0.0'))
       BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: ports (0.0.0.0 overlaps)'); END""",
)
SCHEMA_VERSION = 1
WILDCARD = "0.0.0.0"


class DnsClient(NamedTuple):
    """A container as a network's DNS server sees it (Store.dns_clients)."""

    name: str
    netns: str | None
    dns: list[str]  # its --dns servers
    endpoints: list[tuple[str, str]]  # (network, ip) of each of its endpoints


class DuplicatePort(Conflict):
    """A published port the ports table refuses (the engine checks first and says who holds it)."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"host port {what} is already published; see `netkit port`")


def state_dir() -> str:
    return os.environ.get("NETKIT_STATE_DIR", DEFAULT_STATE_DIR)


def run_dir() -> str:
    return os.environ.get("NETKIT_RUN_DIR", DEFAULT_RUN_DIR)


RECOVER = ("restore a backup of it; or move it aside to start empty: `netkit doctor` then lists the kernel "
           "objects netkit made, and `NETKIT_REMOVE_STRAYS=1 netkit doctor --fix` removes them")


def damaged(directory: str, what: str) -> EnvError:
    """The one line for a state netkit cannot trust: it refuses to change anything."""
    return EnvError(f"netkit's state {os.path.join(directory, 'netkit.db')} is damaged ({what}); netkit changes "
                    f"nothing until it is repaired: {RECOVER}")


class Store:
    def __init__(self, directory: str | None = None, read_only: bool = False):
        """Open (and create or migrate) the state. `read_only`: a second connection to an open
        state that only reads; it neither creates nor migrates (the writer holds the lock)."""
        self.directory = directory or state_dir()
        self._lock_fd: int | None = None
        try:
            if read_only:
                self.db = sqlite3.connect(os.path.join(self.directory, "netkit.db"), isolation_level=None)
                self.db.execute("PRAGMA query_only=1")
                return
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            path = os.path.join(self.directory, "netkit.db")
            existed = os.path.exists(path)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            if existed:
                self._check_integrity(path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.OperationalError as err:  # the environment: locked, disk full, I/O error
            raise EnvError(f"cannot open netkit's state in {self.directory}: {err}; nothing was changed "
                           "(free space or fix the folder, then run the command again)") from None
        except sqlite3.DatabaseError as err:  # "file is not a database", malformed ...
            raise damaged(self.directory, str(err)) from None
        except (OSError, sqlite3.Error) as err:
            raise EnvError(f"cannot open netkit's state in {self.directory}: {err}; "
                           "run as root or set NETKIT_STATE_DIR") from None

    def _check_integrity(self, path: str) -> None:
        """An existing state file must hold netkit's tables: one truncated to zero bytes (or
        overwritten) would otherwise read as "nothing exists", and doctor --fix would then remove
        every container as a stray. Refuse instead (EnvError via damaged())."""
        if os.path.getsize(path) == 0 and not os.path.exists(path + "-wal"):
            raise damaged(self.directory, "the file is empty")
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "containers" not in tables:  # in every version of the schema
            raise damaged(self.directory, "netkit's tables are missing")
        check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise damaged(self.directory, f"sqlite integrity check: {check}")

    def _decode(self, cls, table: str, row):
        """A model object from one row; a row that does not decode is damage, said in one line."""
        try:
            return from_dict(cls, json.loads(row[0]))
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            raise damaged(self.directory, f"a row of table '{table}' does not decode: {err}") from None

    def _json(self, text: str, table: str):
        try:
            return json.loads(text)
        except (ValueError, TypeError) as err:
            raise damaged(self.directory, f"a row of table '{table}' does not decode: {err}") from None

    def committed(self) -> "Store":
        """The state before this command's writes (in WAL mode another connection sees the last
        commit): what --dry-run compares the new state with. The caller closes it."""
        return Store(self.directory, read_only=True)

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Bring an older state file to SCHEMA_VERSION, in one transaction (all or nothing)."""
        if self.schema_version() >= SCHEMA_VERSION:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.schema_version() < 1:  # another process may have migrated meanwhile
                for statement in _SCHEMA_V1:
                    self.db.execute(statement)
                for c in self.containers():
                    try:
                        self._put_ports(c)
                    except DuplicatePort as err:
                        raise EnvError(f"netkit's state in {self.directory} cannot be upgraded: it publishes {err.what} twice "
                                       f"(container '{c.name}'); remove that container with the older netkit first") from None
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

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
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._cannot_save(err) from None
            try:
                yield self
                self.db.execute("COMMIT")
            except BaseException as err:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    # e.g. a full disk: the caller (Context.change) undoes the kernel plan on it
                    raise self._cannot_save(err) from None
                raise
            if after_commit is not None:
                after_commit()
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def settled(self):
        """Shared with other readers, exclusive of any change: what a check that compares the
        state with the kernel holds, so that it never sees a change half-way (e.g. a veth whose
        deletion still runs after netkit-cni's DEL answered: netkit/answer.py)."""
        fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield self
        finally:
            os.close(fd)

    def _cannot_save(self, err: sqlite3.Error) -> EnvError:
        if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
            return damaged(self.directory, str(err))
        return EnvError(f"cannot save netkit's state in {self.directory}: {err}; nothing was changed "
                        "(free space or fix the folder, then run the command again)")

    # networks
    def network(self, name: str) -> Network | None:
        row = self.db.execute("SELECT data FROM networks WHERE name=?", (name,)).fetchone()
        return self._decode(Network, "networks", row) if row else None

    def networks(self) -> list[Network]:
        rows = self.db.execute("SELECT data FROM networks ORDER BY name").fetchall()
        return [self._decode(Network, "networks", r) for r in rows]

    def put_network(self, net: Network) -> None:
        self.db.execute("INSERT OR REPLACE INTO networks VALUES (?, ?)", (net.name, json.dumps(to_dict(net))))

    def delete_network(self, name: str) -> None:
        self.db.execute("DELETE FROM networks WHERE name=?", (name,))

    # containers
    def container(self, name: str) -> Container | None:
        row = self.db.execute("SELECT data FROM containers WHERE name=?", (name,)).fetchone()
        return self._decode(Container, "containers", row) if row else None

    def containers(self) -> list[Container]:
        rows = self.db.execute("SELECT data FROM containers ORDER BY name").fetchall()
        return [self._decode(Container, "containers", r) for r in rows]

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
        self._put_ports(c)

    def _put_ports(self, c: Container) -> None:
        self.db.execute("DELETE FROM ports WHERE container=?", (c.name,))
        for p in c.ports:
            try:
                self.db.execute("INSERT INTO ports VALUES (?, ?, ?, ?, ?)",
                                (p.proto, p.host_ip or WILDCARD, p.host_port, c.name, p.container_port))
            except sqlite3.IntegrityError:
                raise DuplicatePort(f"{p.host_ip or WILDCARD}:{p.host_port}/{p.proto}") from None

    def delete_container(self, name: str) -> None:
        self.db.execute("DELETE FROM containers WHERE name=?", (name,))
        self.db.execute("DELETE FROM addresses WHERE container=?", (name,))
        self.db.execute("DELETE FROM dns_names WHERE container=?", (name,))
        self.db.execute("DELETE FROM ports WHERE container=?", (name,))

    # published ports
    def published(self, proto: str) -> list[tuple[str, int, str]]:
        """(host_ip, host_port, container) of every published port of one protocol."""
        return self.db.execute("SELECT host_ip, host_port, container FROM ports WHERE proto=?", (proto,)).fetchall()

    def port_holder(self, proto: str, host_ip: str, host_port: int) -> str | None:
        """The container publishing proto/host_port on an address that overlaps host_ip
        (the same one, or 0.0.0.0 on either side)."""
        host_ip = host_ip or WILDCARD
        row = self.db.execute(
            "SELECT container FROM ports WHERE proto=? AND host_port=? AND (host_ip=? OR host_ip=? OR ?=?) "
            "ORDER BY container LIMIT 1", (proto, host_port, host_ip, WILDCARD, host_ip, WILDCARD)).fetchone()
        return row[0] if row else None

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

    def dns_clients(self, network: str) -> list[DnsClient]:
        """What a network's DNS records need of each container on it, by name, in one query that
        reads it out of the JSON inside SQLite: the records are rebuilt at every change, and
        decoding whole containers cost ~7 ms of a create on a network of 300 (docs/facts.md,
        "Attach cost")."""
        (doc,) = self.db.execute(
            "SELECT json_group_array(json_array(name, json_extract(data, '$.netns'), "
            "json(coalesce(json_extract(data, '$.dns'), '[]')), "
            "(SELECT json_group_array(json_array(json_extract(e.value, '$.network'), json_extract(e.value, '$.ip'))) "
            "FROM json_each(data, '$.endpoints') AS e))) "
            "FROM (SELECT name, data FROM containers WHERE name IN "
            "(SELECT container FROM addresses WHERE network=?) ORDER BY name)", (network,)).fetchone()
        return [DnsClient(name, netns, dns, [tuple(pair) for pair in eps])
                for name, netns, dns, eps in self._json(doc, "containers")]

    def sharers(self, name: str) -> list[str]:
        """Containers in container:NAME mode that share NAME's netns. Asked of SQLite's JSON
        functions: decoding every container (~0.1 ms each) made each `rm` grow with the host."""
        try:
            rows = self.db.execute("SELECT name FROM containers WHERE json_extract(data, '$.shares') = ? "
                                   "ORDER BY name", (name,)).fetchall()
        except sqlite3.Error:  # a row that is no JSON: the decoding path says so in one line
            return [c.name for c in self.containers() if c.shares == name]
        return [r[0] for r in rows]

    # plain bridges made by `netkit bridge create`
    def bridge(self, name: str) -> dict | None:
        row = self.db.execute("SELECT data FROM bridges WHERE name=?", (name,)).fetchone()
        return self._json(row[0], "bridges") if row else None

    def put_bridge(self, name: str, data: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO bridges VALUES (?, ?)", (name, json.dumps(data)))

    def delete_bridge(self, name: str) -> None:
        self.db.execute("DELETE FROM bridges WHERE name=?", (name,))

    # small facts netkit must remember (e.g. what it changed on the host, to restore on reset)
    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return self._json(row[0], "meta") if row else default

    def put_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))
