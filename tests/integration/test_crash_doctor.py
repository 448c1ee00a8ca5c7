"""Issue 16: damaged state, a full disk, the host's settings across a kill, and what `doctor`
must notice and repair (strays, orphans, drift behind netkit's back)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nettools import snapshot

pytestmark = pytest.mark.root

NETKIT = [sys.executable, "-m", "netkit"]


@pytest.fixture(autouse=True)
def legacy_backend(sandbox):
    """These checks read the rules back with iptables-legacy: make that netkit's backend."""
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        fh.write('{"firewall_backend": "iptables-legacy"}')


def one_line(r, code: int, *parts: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.fixture
def running(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "--ip", "172.20.0.10")
    sandbox.netkit("container", "create", "db", "--net", "app", "--ip", "172.20.0.11")
    return sandbox


def test_truncated_state_refuses_everything_and_deletes_nothing(running):
    db = os.path.join(running.state_dir, "netkit.db")
    running.netkit("doctor")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    open(db, "w").close()  # truncated to zero bytes
    netns_before = sorted(os.listdir("/run/netns"))
    for args in (["doctor", "--fix"], ["doctor"], ["container", "create", "x", "--net", "app"],
                 ["network", "rm", "app"], ["container", "ls"], ["reset"]):
        r = running.netkit(*args, check=False)
        one_line(r, 1, "is damaged", db, "restore a backup")
    assert sorted(os.listdir("/run/netns")) == netns_before and {"web", "db"} <= set(netns_before)
    assert os.path.getsize(db) == 0, "a refused command must not write the damaged file"


def test_damaged_rows_are_one_line(running):
    import sqlite3

    db = sqlite3.connect(os.path.join(running.state_dir, "netkit.db"))
    db.execute("UPDATE containers SET data='{not json' WHERE name='db'")
    db.execute("UPDATE networks SET data='[1, 2]' WHERE name='app'")
    db.commit()
    db.close()
    for args in (["container", "ls"], ["network", "ls"], ["doctor"], ["doctor", "--fix"],
                 ["container", "rm", "web"], ["network", "inspect", "app"]):
        one_line(running.netkit(*args, check=False), 1, "is damaged", "does not decode")
    assert {"web", "db"} <= set(os.listdir("/run/netns"))


def test_full_disk_publish_leaves_no_rule_live(sandbox):
    """The state lives on a tiny tmpfs, filled up; space is then freed one 4 KiB block at a time
    and `publish` tried after each: every failure (the intent journal's write or the state's
    commit, whichever runs out of space first) is one line with no DNAT rule left live and no
    port in the state, until it succeeds. Kernel and state commit together."""
    import sqlite3

    state = os.path.join(sandbox.state_dir, "tiny")
    os.makedirs(state)
    sandbox.sh(f"mount -t tmpfs -o size=600k tmpfs {state}")
    env = dict(os.environ, NETKIT_STATE_DIR=state)

    def nk(*args):
        return subprocess.run(NETKIT + list(args), capture_output=True, text=True, env=env, timeout=60)

    try:
        assert nk("network", "create", "app", "--subnet", "172.20.0.0/24").returncode == 0
        assert nk("container", "create", "web", "--net", "app").returncode == 0
        # An open connection keeps the WAL and its index in place, so that commands open the state
        # fine and fail only where they write.
        keep = sqlite3.connect(os.path.join(state, "netkit.db"))
        keep.execute("SELECT 1 FROM networks").fetchall()
        fillers = []
        try:
            while True:
                name = f"{state}/filler{len(fillers)}"
                with open(name, "wb") as fh:
                    fh.write(b"\0" * 4096)
                fillers.append(name)
        except OSError:
            pass
        failures = []
        while True:
            r = nk("publish", "8080:80", "web")
            if r.returncode == 0:
                break
            failures.append(r.stderr.strip())
            one_line(r, 1, "nothing was changed")
            assert "--dport 8080 " not in sandbox.sh("iptables-legacy-save -t nat").stdout, r.stderr
            assert ":8080" not in nk("port", "web").stdout
            assert fillers, "publish fails with free space"
            os.remove(fillers.pop())
        assert failures, "the disk never was full"
        assert "--dport 8080 " in sandbox.sh("iptables-legacy-save -t nat").stdout
        keep.close()
        for name in fillers:
            os.remove(name)
        assert nk("doctor").returncode == 0
        print(f"full disk: {len(failures)} refused publishes, e.g. {failures[-1]}")
    finally:
        sandbox.sh(f"umount -l {state}")


def test_reset_after_a_kill_during_the_first_change_restores_the_host(sandbox):
    """Killed at every step of the very first change (which turns ip_forward on and sets the
    FORWARD policy to DROP): `reset` puts both back; doctor --fix leaves nothing behind."""
    sandbox.sh("sysctl -qw net.ipv4.ip_forward=0")
    original = _without_empty_tables(snapshot(sandbox))
    for k in range(1, 30):
        env = dict(os.environ, NETKIT_FAULT_AT=str(k))
        r = subprocess.run(NETKIT + ["network", "create", "app", "--subnet", "172.20.0.0/24"], env=env,
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
        assert r.returncode == -9, r.stderr
        sandbox.netkit("reset")
        assert sandbox.sh("sysctl -n net.ipv4.ip_forward").stdout.strip() == "0", f"k={k}"
        assert ":FORWARD ACCEPT" in sandbox.sh("iptables-legacy-save -t filter").stdout, f"k={k}"
        sandbox.netkit("doctor", "--fix", check=False)
        sandbox.netkit("doctor")
        if sandbox.netkit("network", "inspect", "app", check=False).returncode == 0:
            sandbox.netkit("network", "rm", "app")
        sandbox.netkit("reset")
        assert _without_empty_tables(snapshot(sandbox)) == original, f"k={k}"
    else:
        pytest.fail("network create never completed")
    assert k > 3


def _without_empty_tables(snap: dict) -> dict:
    """Reading the rules makes empty legacy tables appear (policies ACCEPT): not a change."""
    import re

    keep = [line for line in snap["iptables"].splitlines()
            if not re.match(r"^(\*\w+|COMMIT|:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT.*)$", line)]
    return {**snap, "iptables": keep}


def test_fresh_install_doctor_is_clean(sandbox):
    r = sandbox.netkit("doctor", check=False)
    assert r.returncode == 0 and "missing" not in r.stdout, r.stdout


def test_stray_bridge_with_address_is_named_and_removed(sandbox):
    """As a kill between `network create`'s bridge and its commit leaves it (journal lost too)."""
    from netkit import naming

    sandbox.sh(f"ip link add br-zz address {naming.bridge_mac('br-zz')} type bridge && "
               "ip addr add 172.29.0.1/24 dev br-zz && ip link set br-zz up")
    sandbox.sh("ip link add br-user type bridge")  # someone else's: never touched
    r = sandbox.netkit("doctor", check=False)
    assert r.returncode == 1 and "stray bridge br-zz (172.29.0.1/24)" in r.stdout, r.stdout
    assert "br-user" not in r.stdout
    sandbox.netkit("doctor", "--fix")
    sandbox.netkit("doctor")
    sandbox.netkit("network", "create", "zz", "--subnet", "172.29.0.0/24")
    assert sandbox.sh("ip link show br-user", check=False).returncode == 0


def test_orphaned_dns_server_is_stopped(running):
    """A DNS server whose pidfile is gone (a kill between spawn and pidfile write)."""
    pidfile = "/run/netkit/dns/app.pid"
    pid = int(open(pidfile).read())
    os.remove(pidfile)
    r = running.netkit("doctor", check=False)
    assert r.returncode == 1 and f"(pid {pid}) has no pidfile" in r.stdout, r.stdout
    running.netkit("doctor", "--fix")
    running.netkit("doctor")
    assert not os.path.exists(f"/proc/{pid}") or "netkit.dns.server" not in open(f"/proc/{pid}/cmdline").read()
    os.remove(pidfile)  # once more, then the commands on that network must work by themselves
    running.netkit("container", "create", "c3", "--net", "app")
    running.netkit("container", "rm", "c3", "web", "db")
    running.netkit("network", "rm", "app")
    from netkit.dns import supervisor

    assert supervisor.servers() == []
    running.netkit("doctor")


def test_drift_behind_netkits_back_is_found_and_repaired(running):
    running.sh("iptables-legacy -P FORWARD ACCEPT")
    running.sh("ip addr flush dev br-app")
    running.sh("ip -n web addr flush dev eth0")
    r = running.netkit("doctor", check=False)
    assert r.returncode == 1
    assert "FORWARD policy is ACCEPT" in r.stdout, r.stdout
    assert "lacks its gateway address 172.20.0.1/24" in r.stdout, r.stdout
    assert "lacks its address 172.20.0.10/24" in r.stdout, r.stdout
    running.netkit("doctor", "--fix", check=False)
    assert ":FORWARD DROP" in running.sh("iptables-legacy-save -t filter").stdout
    assert "172.20.0.1/24" in running.sh("ip -4 addr show dev br-app").stdout
    assert "172.20.0.10/24" in running.sh("ip -n web -4 addr show dev eth0").stdout
    assert "default via 172.20.0.1" in running.sh("ip -n web route").stdout
    running.netkit("doctor")


def test_doctor_fix_after_a_bridge_was_deleted(running):
    running.sh("ip link del br-app")
    for args in (["doctor", "--fix"], ["doctor"]):
        r = running.netkit(*args, check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "bridge 'br-app' of network 'app' is missing" in r.stdout
