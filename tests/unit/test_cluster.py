"""The cluster store's pure parts (issue 15): its view of etcd's keys, what a host's VXLAN
device should hold, the etcd URL and the config keys. No etcd, no root."""
import json

import pytest

from netkit import config
from netkit.cluster import etcd, plane
from netkit.cluster.store import Endpoint, Network, View
from netkit.errors import UserError


def _ep(name, host, ip, hip):
    return json.dumps({"network": "ov", "container": name, "host": host, "host_ip": hip, "ip": ip,
                       "mac": "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split(".")), "aliases": []})


def test_view_and_desired_entries_follow_events():
    view = View()
    assert view.apply("PUT", "/netkit/networks/ov", json.dumps(Network("ov", 4096, "10.0.0.0/24", "10.0.0.1", 1450).__dict__)) == "ov"
    view.apply("PUT", "/netkit/endpoints/ov/a", _ep("a", "h1", "10.0.0.2", "198.18.1.11"))
    view.apply("PUT", "/netkit/endpoints/ov/b", _ep("b", "h2", "10.0.0.3", "198.18.1.12"))
    view.apply("PUT", "/netkit/endpoints/ov/c", _ep("c", "h3", "10.0.0.4", "198.18.1.13"))
    assert view.apply("PUT", "/netkit/hosts/h1", '{"advertise": "198.18.1.11"}') == "*"
    view.apply("PUT", "/netkit/hosts/h2", '{"advertise": "198.18.1.12"}')
    assert view.apply("PUT", "/netkit/ipam/ov/10.0.0.2", "a") is None  # not the data plane's business
    want = plane.desired(view, "ov", "h1")
    # h1's own container is local (the bridge knows it); h3 has no live agent: left out.
    assert want.fdb == {("02:42:0a:00:00:03", "198.18.1.12")}
    assert want.neigh == {("10.0.0.3", "02:42:0a:00:00:03")}
    view.apply("PUT", "/netkit/hosts/h3", '{"advertise": "198.18.1.13"}')
    assert len(plane.desired(view, "ov", "h1").fdb) == 2
    view.apply("DELETE", "/netkit/hosts/h2", "")  # h2's lease expired
    view.apply("DELETE", "/netkit/endpoints/ov/c", "")
    assert plane.desired(view, "ov", "h1").fdb == frozenset()
    assert view.endpoints[("ov", "a")] == Endpoint("ov", "a", "h1", "198.18.1.11", "10.0.0.2", "02:42:0a:00:00:02", ())


def test_urls_and_prefix_ranges():
    assert config.parse_store_url("etcd://198.18.1.1:2379") == ("198.18.1.1", 2379)
    assert config.parse_store_url("http://store:4001") == ("store", 4001)
    for bad in ("198.18.1.1:2379", "etcd://", "redis://x:1", "etcd://x:99999", "etcd://x:1/path"):
        with pytest.raises(UserError, match="expected etcd://ADDRESS:PORT"):
            config.parse_store_url(bad)
    assert etcd.prefix_end("/netkit/") == "/netkit0"
    assert etcd.absent("/a/", prefix=True)["range_end"] == "L2Ew"  # base64 of "/a0"


def test_config_cluster_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"cluster_store": "etcd://198.18.1.1:2379", "cluster_advertise": "198.18.1.11"}')
    cfg = config.load(str(path))
    assert (cfg.cluster_store, cfg.cluster_advertise) == ("etcd://198.18.1.1:2379", "198.18.1.11")
    assert config.load(str(tmp_path / "none.json")).cluster_store is None  # single-host as before
    path.write_text('{"cluster_store": "etcd://198.18.1.1:2379"}')
    with pytest.raises(UserError, match="'cluster_store' needs 'cluster_advertise' too"):
        config.load(str(path))
    path.write_text('{"cluster_store": "198.18.1.1", "cluster_advertise": "198.18.1.11"}')
    with pytest.raises(UserError, match=r"bad value for 'cluster_store': \"198.18.1.1\"; expected etcd://ADDRESS:PORT"):
        config.load(str(path))
    path.write_text('{"cluster_store": "etcd://a:1", "cluster_advertise": "h1"}')
    with pytest.raises(UserError, match="bad value for 'cluster_advertise'"):
        config.load(str(path))
