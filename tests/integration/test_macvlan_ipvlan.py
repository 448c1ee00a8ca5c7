"""Issue 15: macvlan (bridge mode) and ipvlan (L2) sub-interfaces for containers, single-host:
the planner's steps applied by the kernel adapter, with real packets to the `outside` host."""
from __future__ import annotations

import subprocess

import pytest

from netkit import lowerdev
from netkit.errors import EnvError, UserError
from required import need

pytestmark = pytest.mark.root


def _container(name: str) -> None:
    from netkit.kernel import netns

    fd, sock = netns.create(name)
    import os

    os.close(fd)
    sock.close()


def _attach(driver: str, name: str, ip: str, parent: str = "uplink", mac: str | None = None) -> None:
    from netkit.kernel import lowerdev as kernel

    opts = lowerdev.parse_options(driver, [f"parent={parent}"])
    kernel.add(lowerdev.plan_endpoint(opts, name, "eth0", 1500, ip, 24, None, mac))


def test_macvlan_containers_reach_each_other_and_the_wire(sandbox):
    need("ip", "ping")
    for name, ip, mac in (("m1", "198.18.0.51", "02:42:c6:12:00:33"), ("m2", "198.18.0.52", "02:42:c6:12:00:34")):
        _container(name)
        _attach("macvlan", name, ip, mac=mac)
    link = sandbox.ns("m1", "ip -d -o link show eth0").stdout
    assert "macvlan mode bridge" in link and "02:42:c6:12:00:33" in link
    # Bridge mode: the kernel switches between siblings; the parent's wire reaches `outside`.
    sandbox.ns("m1", "ping -c1 -W2 198.18.0.52")
    sandbox.ns("m2", "ping -c1 -W2 198.18.0.2")
    # outside saw m2's own MAC, not the uplink's: a device of its own on the wire
    neigh = sandbox.ns("outside", "ip neigh show 198.18.0.52").stdout
    assert "02:42:c6:12:00:34" in neigh
    # Nothing was named on the host: eth0 exists only inside.
    assert "eth0" not in sandbox.sh("ip -o link show").stdout


def test_ipvlan_l2_or_a_clear_error_when_the_kernel_lacks_it(sandbox):
    need("ip", "ping")
    probe = subprocess.run(["ip", "link", "add", "link", "uplink", "name", "ivprobe", "type", "ipvlan", "mode", "l2"],
                           capture_output=True, text=True)
    _container("i1")
    if probe.returncode != 0:
        assert "Unknown device type" in probe.stderr
        with pytest.raises(EnvError, match=r"^this kernel has no ipvlan driver \(CONFIG_IPVLAN\); use another driver"):
            _attach("ipvlan", "i1", "198.18.0.61")
        assert "eth0" not in sandbox.ns("i1", "ip -o link show").stdout  # nothing half-made
        return
    sandbox.sh("ip link del ivprobe")
    _attach("ipvlan", "i1", "198.18.0.61")
    assert "ipvlan  mode l2" in sandbox.ns("i1", "ip -d -o link show eth0").stdout
    sandbox.ns("i1", "ping -c1 -W2 198.18.0.2")


def test_missing_parent_is_one_clear_line(sandbox):
    _container("x1")
    with pytest.raises(UserError, match=r"^parent interface 'nosuch0' does not exist on this host$"):
        _attach("macvlan", "x1", "198.18.0.71", parent="nosuch0")


def test_macvlan_through_the_engine(sandbox):
    """`netkit network create --driver macvlan -o parent=uplink`, containers on it, rm: real kernel."""
    need("ip", "ping")
    import sys

    kit = f"{sys.executable} -m netkit"
    sandbox.sh(f"{kit} network create --driver macvlan mv -o parent=uplink --subnet 198.18.0.0/24 "
               f"--gateway 198.18.0.2 --ip-range 198.18.0.64/26")
    sandbox.sh(f"{kit} container create m1 --net mv")
    sandbox.sh(f"{kit} container create m2 --net mv")
    assert "macvlan mode bridge" in sandbox.ns("m1", "ip -d -o link show eth0").stdout
    sandbox.ns("m1", "ping -c1 -W2 198.18.0.65")  # m2, its sibling
    sandbox.ns("m2", "ping -c1 -W2 198.18.0.2")  # the wire's `outside` host
    assert "macvlan" in sandbox.sh(f"{kit} network ls").stdout
    bad = subprocess.run(f"{kit} network create --driver macvlan mv2 -o parent=nosuch0", shell=True,
                         capture_output=True, text=True)
    assert (bad.returncode, bad.stderr.strip()) == \
        (2, "netkit: parent interface 'nosuch0' does not exist on this host (-o parent=IF)")
    sandbox.sh(f"{kit} container rm m1 m2")
    sandbox.sh(f"{kit} network rm mv")
    assert "m1" not in sandbox.sh("ip netns list").stdout
