"""Naming and config validation without root; the CLI's start-up imports."""
import json
import subprocess
import sys

import pytest

from netkit import config, naming
from netkit.errors import UserError


def test_veth_names_fit_and_are_stable():
    name = naming.veth_name("a" * 64, "b" * 64)
    assert name.startswith("veth") and len(name) == 11 and name == naming.veth_name("a" * 64, "b" * 64)
    assert name != naming.veth_name("a" * 64, "c" * 64)


def test_bridge_names_never_truncate_a_long_name():
    # Docker accepts long network names (Compose's myproject_default): their bridge is Docker's own
    # br-<12 hex of the id>, never a truncated name that could collide with another network's.
    net_id = "0123456789abcdef" * 4
    assert naming.bridge_name_for("app", net_id) == "br-app"
    assert naming.bridge_name_for("a" * 12, net_id) == "br-" + "a" * 12
    assert naming.bridge_name_for("a" * 13, net_id) == "br-0123456789ab"
    assert naming.bridge_name_for("myproject_default", net_id) == "br-0123456789ab"
    assert naming.bridge_name_for("a" * 12 + "b", "f" * 64) != naming.bridge_name_for("a" * 12 + "c", net_id)


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x:1", "a" * 16, "..", "eth0\n", "br\n"])
def test_bad_interface_names(bad):
    with pytest.raises(UserError):
        naming.validate_ifname(bad)


def test_object_names_follow_docker():
    assert naming.validate_object_name("container", "web_1.a-b") == "web_1.a-b"
    for bad in ("-web", "web!", "a" * 65, "tn\n", "web\n", "web\r"):
        with pytest.raises(UserError):
            naming.validate_object_name("container", bad)


def test_mac_from_ip_is_dockers_scheme():
    assert naming.mac_for_ip("172.17.0.2") == "02:42:ac:11:00:02"
    assert naming.validate_mac("02:42:AC:11:00:02") == "02:42:ac:11:00:02"
    with pytest.raises(UserError, match="six hex pairs"):
        naming.validate_mac("02:42:ac:11:00:02\n")


def test_config_defaults_and_validation(tmp_path):
    path = tmp_path / "config.json"
    assert config.load(str(path)).bridge == "netkit0"
    path.write_text(json.dumps({"bip": "10.1.0.1/24", "mtu": 1400, "icc": False,
                                "default_address_pools": [{"base": "10.50.0.0/16", "size": 24}]}))
    cfg = config.load(str(path))
    assert (cfg.bip, cfg.mtu, cfg.icc, cfg.source) == ("10.1.0.1/24", 1400, False, str(path))
    for raw, message in [({"mtu": 10}, "'mtu'"), ({"icc": "yes"}, "'icc'"), ({"dns": ["x"]}, "'dns'"),
                         ({"default_address_pools": [{"base": "10.0.0.0/8"}]}, "default_address_pools"),
                         ({"bridge": "way-too-long-bridge"}, "'bridge'"), ({"nope": 1}, "unknown key 'nope'"),
                         ({"dns": [5]}, "'dns'"), ({"dns": ["8.8.8.8\nnameserver 6.6.6.6"]}, "'dns'"),
                         ({"dns_search": ["example.com\nnameserver 6.6.6.6"]}, "'dns_search'"),
                         ({"dns_search": ["a b"]}, "'dns_search'"), ({"bridge": "br0\n"}, "'bridge'")]:
        path.write_text(json.dumps(raw))
        with pytest.raises(UserError, match=message) as err:
            config.load(str(path))
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value).replace("\\n", "")
    for raw_bytes, message in [(b'{"mtu": 1400, "bridge": "\xff"}', "not UTF-8"),
                               (b"[" * 100000 + b"]" * 100000, "nested too deeply")]:
        path.write_bytes(raw_bytes)
        with pytest.raises(UserError, match=message):
            config.load(str(path))


@pytest.mark.parametrize("argv", [["network", "ls"], ["--help"], ["container", "ls"]])
def test_light_commands_do_not_import_heavy_modules(argv, tmp_path):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['netkit'] + {argv!r}\n"
        "try:\n    runpy.run_module('netkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pyroute2', 'iptc', 'scapy', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"NETKIT_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
