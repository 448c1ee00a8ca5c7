"""The state's invariants hold in SQLite itself: duplicate addresses and published ports are
impossible whatever the engine does; an old state file is migrated; a second connection sees the
state as last committed."""
import json
import sqlite3

import pytest

from netkit.errors import Conflict
from netkit.model import Container, Endpoint, PortMapping, to_dict
from netkit.state import SCHEMA_VERSION, DuplicatePort, Store


def ct(name, ip="172.20.0.2", ports=()):
    ep = Endpoint(name, "app", "eth0", f"veth{name}", ip, 24, "172.20.0.1", "02:42")
    return Container(name=name, id=name, mode="bridge", netns=f"/run/netns/{name}", endpoints=[ep],
                     ports=[PortMapping(name, *p) for p in ports])


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path))
    yield s
    s.close()


def test_duplicate_address_is_impossible(store):
    store.put_container(ct("a", "172.20.0.5"))
    with pytest.raises(sqlite3.IntegrityError):
        store.put_container(ct("b", "172.20.0.5"))
    store.put_container(ct("a", "172.20.0.6"))  # rewriting one's own endpoints is fine
    assert store.addresses("app") == {"172.20.0.6": "a"}


@pytest.mark.parametrize("first, second", [
    ("0.0.0.0", "0.0.0.0"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("10.0.0.1", "10.0.0.1")])
def test_duplicate_published_port_is_impossible(store, first, second):
    store.put_container(ct("a", "172.20.0.5", [("tcp", first, 8080, 80)]))
    with pytest.raises(DuplicatePort) as err:
        store.put_container(ct("b", "172.20.0.6", [("tcp", second, 8080, 80)]))
    assert isinstance(err.value, Conflict) and "8080/tcp is already published" in str(err.value)
    assert store.port_holder("tcp", second, 8080) == "a"


def test_ports_on_other_addresses_or_protocols_coexist(store):
    store.put_container(ct("a", "172.20.0.5", [("tcp", "127.0.0.1", 8080, 80)]))
    store.put_container(ct("b", "172.20.0.6", [("tcp", "10.0.0.1", 8080, 80), ("udp", "0.0.0.0", 8080, 80)]))
    assert store.port_holder("tcp", "127.0.0.1", 8080) == "a"
    assert store.port_holder("tcp", "10.0.0.1", 8080) == "b"
    assert store.port_holder("tcp", "10.0.0.2", 8080) is None
    assert store.port_holder("udp", "10.0.0.2", 8080) == "b"
    assert sorted(store.published("tcp")) == [("10.0.0.1", 8080, "b"), ("127.0.0.1", 8080, "a")]
    store.delete_container("b")
    assert store.published("udp") == [] and store.port_holder("tcp", "10.0.0.1", 8080) is None


def test_migration_from_the_first_schema(tmp_path):
    db = sqlite3.connect(str(tmp_path / "netkit.db"))
    db.executescript("""
        CREATE TABLE networks (name TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE containers (name TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);""")
    db.execute("INSERT INTO containers VALUES (?, ?)",
               ("web", json.dumps(to_dict(ct("web", ports=[("tcp", "0.0.0.0", 8080, 80), ("udp", "127.0.0.1", 53, 53)])))))
    db.commit()
    db.close()
    store = Store(str(tmp_path))
    assert store.schema_version() == SCHEMA_VERSION
    assert store.port_holder("tcp", "198.18.0.1", 8080) == "web" and store.published("udp") == [("127.0.0.1", 53, "web")]
    store.close()
    assert Store(str(tmp_path)).published("tcp") == [("0.0.0.0", 8080, "web")]  # migrated once


def test_migration_refuses_a_state_with_a_port_twice(tmp_path):
    from netkit.errors import EnvError

    db = sqlite3.connect(str(tmp_path / "netkit.db"))
    db.execute("CREATE TABLE containers (name TEXT PRIMARY KEY, data TEXT NOT NULL)")
    for name, ip in (("a", "172.20.0.2"), ("b", "172.20.0.3")):
        db.execute("INSERT INTO containers VALUES (?, ?)",
                   (name, json.dumps(to_dict(ct(name, ip, [("tcp", "0.0.0.0", 8080, 80)])))))
    db.commit()
    db.close()
    with pytest.raises(EnvError, match="publishes 0.0.0.0:8080/tcp twice"):
        Store(str(tmp_path))
    assert sqlite3.connect(str(tmp_path / "netkit.db")).execute("PRAGMA user_version").fetchone()[0] == 0


def test_committed_view_does_not_see_the_open_transaction(store):
    store.put_container(ct("a"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.put_container(ct("b", "172.20.0.3"))
            old = store.committed()
            assert [c.name for c in old.containers()] == ["a"]
            assert [c.name for c in store.containers()] == ["a", "b"]
            old.close()
            raise RuntimeError("roll back")
    assert [c.name for c in store.containers()] == ["a"]

