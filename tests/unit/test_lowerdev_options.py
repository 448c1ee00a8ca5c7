"""macvlan/ipvlan options and steps (netkit.lowerdev), without root."""
import pytest

from netkit import lowerdev
from netkit.errors import UserError


def test_defaults_and_render():
    opts = lowerdev.parse_options("macvlan", ["parent=eth0"])
    assert opts == lowerdev.LowerOptions("macvlan", "eth0", "bridge")
    step = lowerdev.plan_endpoint(opts, "c1", "eth0", 1500, "10.1.0.5", 24, "10.1.0.1", "02:42:0a:01:00:05")
    assert step.render() == [
        "ip link add link eth0 name eth0 netns c1 mtu 1500 address 02:42:0a:01:00:05 type macvlan mode bridge",
        "ip -n c1 addr add 10.1.0.5/24 dev eth0", "ip -n c1 link set eth0 up",
        "ip -n c1 route add default via 10.1.0.1"]
    assert step.undo().render() == ["ip -n c1 link del eth0"]
    ipv = lowerdev.plan_endpoint(lowerdev.parse_options("ipvlan", ["parent=eth0", "ipvlan_mode=l2"]),
                                 "c2", "eth0", 1500, "10.1.0.6", 24, None, "02:42:0a:01:00:06")
    assert ipv.mac is None and ipv.render()[0] == "ip link add link eth0 name eth0 netns c2 mtu 1500 type ipvlan mode l2"


@pytest.mark.parametrize("driver,opts,message", [
    ("macvlan", [], "driver macvlan needs the host interface to hang off: -o parent=IF (e.g. -o parent=eth0)"),
    ("macvlan", ["parent"], "bad option '-o parent': use KEY=VALUE, e.g. -o parent=eth0"),
    ("macvlan", ["parent=eth0", "color=red"], "unknown option 'color' for driver macvlan: use parent and macvlan_mode"),
    ("macvlan", ["parent=eth0", "macvlan_mode=vepa"], "macvlan_mode 'vepa' is not supported; netkit supports bridge"),
    ("ipvlan", ["parent=eth0", "ipvlan_mode=l3"], "ipvlan_mode 'l3' is not supported; netkit supports l2"),
    ("vlan", ["parent=eth0"], "unknown driver 'vlan': use one of ipvlan, macvlan"),
])
def test_bad_options_are_one_line(driver, opts, message):
    with pytest.raises(UserError) as err:
        lowerdev.parse_options(driver, opts)
    assert str(err.value) == message
