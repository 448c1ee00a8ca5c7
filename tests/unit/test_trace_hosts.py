"""trace/hosts.py: a container of another host of a multi-host sandbox is found through the
sandbox's registry and that host's state (read-only); a host that is down is one clear line."""
import json
import os

import pytest

from netkit import multihost
from netkit.errors import EnvError
from netkit.model import Container
from netkit.state import Store
from netkit.trace import hosts


@pytest.fixture
def sandbox_of_two(tmp_path, monkeypatch):
    registry = tmp_path / "cluster.json"
    h2_state = tmp_path / "h2" / "state"
    store = Store(str(h2_state))
    store.put_container(Container(name="db", id="d" * 64, mode="bridge", netns="/run/netns/db"))
    store.close()
    doc = {"hosts": {"h1": {"pid": os.getpid(), "address": "198.18.1.11", "state_dir": str(tmp_path / "h1")},
                     "h2": {"pid": os.getpid(), "address": "198.18.1.12", "state_dir": str(h2_state)}}}
    registry.write_text(json.dumps(doc))
    monkeypatch.setattr(multihost, "REGISTRY", str(registry))
    monkeypatch.setenv("NETKIT_HOST", "h1")
    return registry, doc


def test_a_container_of_another_host_is_found_with_the_paths_to_its_namespaces(sandbox_of_two):
    assert [h.name for h in hosts.others()] == ["h2"] and hosts.local_address() == "198.18.1.11"
    host, c, nets = hosts.locate("db")
    assert (host.name, c.name, nets) == ("h2", "db", {})
    assert host.net_path == f"/proc/{os.getpid()}/ns/net"
    assert host.path_of(c.netns) == f"/proc/{os.getpid()}/root/run/netns/db"
    assert hosts.locate("nosuch") is None


def test_a_host_that_is_down_is_one_line(sandbox_of_two):
    registry, doc = sandbox_of_two
    doc["hosts"]["h2"]["pid"] = 2 ** 22 + 7  # above pid_max's default: no such process
    registry.write_text(json.dumps(doc))
    with pytest.raises(EnvError) as err:
        hosts.locate("db")
    assert str(err.value) == (f"container 'db' runs on host h2, which is down (its process {2 ** 22 + 7} is gone): "
                              "nothing of it can be traced")


def test_outside_a_multi_host_sandbox_there_are_no_other_hosts(monkeypatch):
    monkeypatch.delenv("NETKIT_HOST", raising=False)
    assert hosts.others() == [] and hosts.locate("db") is None
