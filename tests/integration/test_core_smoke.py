"""Smoke: a network, two containers, TCP both ways, and clean removal."""
import pytest

pytestmark = pytest.mark.root


def test_two_containers_talk(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "a", "--net", "app")
    sandbox.netkit("container", "create", "b", "--net", "app")
    out = sandbox.netkit("exec", "a", "--", "ip", "-br", "addr", "show", "eth0").stdout
    assert "172.20.0.2/24" in out
    sandbox.netkit("container", "rm", "a", "b")
    sandbox.netkit("network", "rm", "app")
    assert "br-app" not in sandbox.sh("ip -br link").stdout
