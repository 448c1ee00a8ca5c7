"""Issue 3: every user mistake is one clear line, exit 2 (1 for environment), and changes nothing."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nettools import snapshot

pytestmark = pytest.mark.root


@pytest.fixture
def world(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "--ip", "172.20.0.10")
    sandbox.netkit("container", "create", "side", "--net", "container:web")
    return sandbox


CASES = [
    (["network", "create", "x", "--subnet", "172.21.0.0/33"], "invalid subnet '172.21.0.0/33'"),
    (["network", "create", "x", "--subnet", "banana"], "invalid subnet 'banana'"),
    (["network", "create", "x", "--subnet", "172.21.0.1/24"], "host bits are set; did you mean 172.21.0.0/24"),
    (["network", "create", "x", "--subnet", "172.21.0.0/24", "--gateway", "172.22.0.1"],
     "gateway 172.22.0.1 is not a usable address of subnet 172.21.0.0/24"),
    (["network", "create", "x", "--subnet", "172.21.0.0/24", "--ip-range", "172.21.1.0/25"],
     "ip-range 172.21.1.0/25 is not inside subnet 172.21.0.0/24"),
    (["network", "create", "x", "--subnet", "172.20.0.128/25"], "overlaps 172.20.0.0/24 of network 'app'"),
    (["network", "create", "app"], "network 'app' already exists"),
    # A long network name is fine now (Docker's rules; its bridge is br-<id>); a long bridge is not.
    (["network", "create", "x", "-o", "com.docker.network.bridge.name=averyverylongname"], "Linux allows at most 15"),
    (["network", "create", "x", "-o", "com.docker.network.bridge.enable_icc=maybe"], "use true or false"),
    (["network", "create", "x", "-o", "com.docker.network.bridge.host_binding_ipv4=1.2.3.4"],
     "unknown bridge driver option"),
    (["network", "create", "x", "--mtu", "1400", "-o", "com.docker.network.driver.mtu=1450"], "disagree"),
    (["network", "create", "x", "--label", "=v"], "invalid --label '=v'"),
    (["network", "ls", "--filter", "colour=red"], "invalid --filter key 'colour'"),
    (["network", "ls", "--format", "{{.Name"], "invalid --format template"),
    (["network", "inspect", "app", "-f", "{{template \"x\"}}"], "invalid --format template"),
    (["container", "inspect", "web", "--format", "{{.Name}"], "invalid --format template"),
    (["container", "ls", "--filter", "status=running"], "invalid --filter key 'status'"),
    (["network", "rm", "host"], "host is a pre-defined network and cannot be removed"),
    (["container", "create", "x", "-h", "_bad"], "invalid hostname '_bad'"),
    (["network", "create", "bad/name"], "invalid network name 'bad/name'"),
    (["network", "create", "x", "--bridge", "br-way-too-long-name"], "Linux allows at most 15"),
    (["network", "create", "x", "--driver", "vlan"], "unknown network driver 'vlan'"),
    (["network", "create", "x", "--driver", "overlay"], "--driver overlay needs a cluster store"),
    (["network", "create", "x", "--driver", "macvlan", "-o", "parent=nosuch0"], "parent interface 'nosuch0' does not exist"),
    (["network", "create", "x", "-o", "parent=uplink"], "driver bridge takes no -o options"),
    (["network", "rm", "app"], "network 'app' still has containers: web"),
    (["network", "create", "host"], "network name 'host' is reserved"),
    (["container", "create", "x", "--net", "app", "--mac", "02:42:ac:14:00:0a"],
     "MAC address 02:42:ac:14:00:0a is already used by container 'web'"),
    (["bridge", "create", "bx", "--cidr", "172.20.0.200/25"], "overlaps 172.20.0.0/24 of network 'app'"),
    (["network", "rm", "nope"], "network 'nope' not found"),
    (["network", "connect", "nope", "web"], "network 'nope' not found"),
    (["network", "connect", "app", "nope"], "container 'nope' not found"),
    (["network", "connect", "app", "web"], "already connected to network 'app'"),
    (["network", "disconnect", "app", "side"], "not connected to network 'app'"),
    (["container", "create", "web"], "container 'web' already exists"),
    (["container", "create", "x", "--net", "app", "--ip", "10.0.0.5"], "IP 10.0.0.5 is outside the network's subnet 172.20.0.0/24"),
    (["container", "create", "x", "--net", "app", "--ip", "172.20.0.1"], "is the network's gateway"),
    (["container", "create", "x", "--net", "app", "--ip", "172.20.0.10"], "already in use by container 'web'"),
    (["container", "create", "x", "--net", "app", "--ip", "172.20.0.255"], "network or broadcast address"),
    (["container", "create", "x", "--net", "app", "--ip", "300.1.1.1"], "invalid IP address '300.1.1.1'"),
    (["container", "create", "x", "--net", "nope"], "network 'nope' not found"),
    (["container", "create", "x", "--net", "container:x"], "cannot share its own network namespace"),
    (["container", "create", "x", "--net", "container:ghost"], "container 'ghost' not found"),
    (["container", "create", "x", "--net", "none", "--ip", "172.20.0.5"], "--ip and --mac need a bridge network"),
    (["container", "create", "x", "--mac", "01:00:5e:00:00:01"], "is a multicast address"),
    (["container", "create", "x", "--mac", "zz"], "invalid MAC address 'zz'"),
    (["container", "create", "bad name"], "invalid container name 'bad name'"),
    (["container", "create", "x", "--hostname", "bad_host!"], "hostname"),
    (["container", "rm", "ghost"], "container 'ghost' not found"),
    (["container", "rm", "web"], "shares its network namespace with side"),
    (["exec", "ghost", "--", "true"], "container 'ghost' not found"),
    (["attach", "--pid", "999999", "--network", "app"], "no process with PID 999999"),
    (["attach", "--pid", "SELF", "--network", "app"], "is in the host's network namespace"),
    (["bridge", "create", "br-this-is-too-long"], "Linux allows at most 15"),
    (["bridge", "create", "uplink"], "interface 'uplink' already exists"),
    (["bridge", "rm", "nope"], "bridge 'nope' not found"),
    (["bridge", "macs", "nope"], "bridge 'nope' not found"),
]


def test_bad_input_is_one_line_exit_2_and_changes_nothing(world):
    """One world for all cases (building it per case would cost minutes); each case is checked alone."""
    before = snapshot(world)
    failures = []
    for args, message in CASES:
        args = [str(os.getpid()) if a == "SELF" else a for a in args]
        r = world.netkit(*args, check=False)
        lines = r.stderr.strip().splitlines()
        if r.returncode != 2 or len(lines) != 1 or not lines[0].startswith("netkit: ") or message not in lines[0]:
            failures.append(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()!r}")
    assert not failures, "\n".join(failures)
    assert snapshot(world) == before


def test_subnet_exhausted(sandbox):
    sandbox.netkit("network", "create", "tiny", "--subnet", "172.20.0.0/30")
    sandbox.netkit("container", "create", "one", "--net", "tiny")
    before = snapshot(sandbox)
    r = sandbox.netkit("container", "create", "two", "--net", "tiny", check=False)
    assert r.returncode == 2 and "no free address left in 172.20.0.0/30" in r.stderr
    assert snapshot(sandbox) == before


def test_bad_config_file_is_reported_with_its_path(sandbox):
    path = os.environ["NETKIT_CONFIG"]
    for content, message in [('{"mtu": "big"}', "bad value for 'mtu'"), ('{"colour": 1}', "unknown key 'colour'"),
                             ("{nope", "not valid JSON"), ('{"bip": "10.0.0.0/33"}', "bad value for 'bip'")]:
        with open(path, "w") as fh:
            fh.write(content)
        r = sandbox.netkit("container", "create", "web", check=False)
        assert r.returncode == 2 and r.stderr.strip().startswith(f"netkit: {path}: ") and message in r.stderr
    assert sandbox.netkit("container", "ls", "--json").stdout.strip() == "[]"


# The real CLI as an unprivileged user, wherever the checkout lives: a checkout (and its .venv)
# under a folder only root may enter cannot be read by uid 65534, so the launcher imports every
# netkit module while still root (the modules the CLI loads late are then in memory already;
# Typer and Click come with netkit.cli), then drops to nobody/nogroup for good and calls the
# same entry point as `python -m netkit`. The root check is then the only
# thing between the command and a permission error further on.
NOT_ROOT_LAUNCHER = """
import os, pkgutil, sys, importlib
import netkit
for mod in pkgutil.walk_packages(netkit.__path__, "netkit."):
    if mod.name != "netkit.__main__":
        importlib.import_module(mod.name)
from netkit.cli.main import run
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
assert os.getresuid() == (65534, 65534, 65534) and os.getgroups() == []
sys.argv = ["netkit"] + sys.argv[1:]
run()
"""


def test_not_root_is_exit_1(sandbox):
    before = snapshot(sandbox)
    os.chmod(sandbox.state_dir, 0o755)  # let nobody read the state, so only the root check can refuse
    os.chmod(os.path.join(sandbox.state_dir, "netkit.db"), 0o644)
    r = subprocess.run([sys.executable, "-c", NOT_ROOT_LAUNCHER, "container", "create", "web"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == \
        "netkit: netkit must run as root to change network state (try: sudo netkit ...)", r.stderr
    assert snapshot(sandbox) == before


def test_failure_half_way_leaves_nothing(sandbox):
    """The bridge vanishes behind netkit's back: the netns and UTS steps succeed, the veth step
    fails, and the undo removes what was made; the state is rolled back."""
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.sh("ip link del br-app")
    before = snapshot(sandbox)
    r = sandbox.netkit("container", "create", "x", "--net", "app", check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "br-app" in r.stderr and "nothing was changed" in r.stderr
    assert snapshot(sandbox) == before
    assert not os.path.exists("/etc/netns/x") and not os.path.exists("/run/netkit/uts/x")
