"""Issue 14: `netkit-cni` invoked exactly as container runtimes do (CNI_* variables, config on
stdin, result on stdout), on namespaces made by `ip netns add`, with real traffic; and beside the
reference plugins (containernetworking-plugins) whose conventions it follows."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nettools import send_echo, start_echo
from required import need

pytestmark = pytest.mark.root

PLUGIN = os.path.join(os.path.dirname(sys.executable), "netkit-cni")
REFERENCE_DIR = "/usr/lib/cni"
CONF = {"cniVersion": "1.0.0", "name": "cninet", "type": "netkit-cni", "bridge": "cni-nk0", "subnet": "10.22.0.0/24"}


def cni(command: str, conf: dict | str | None, netns: str = "", container: str = "c1", ifname: str = "eth0",
        plugin: str = PLUGIN, extra_env: dict | None = None) -> tuple[int, dict | None]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                "CNI_PATH": REFERENCE_DIR, **(extra_env or {})})
    text = conf if isinstance(conf, str) else json.dumps(conf) if conf is not None else ""
    proc = subprocess.run([plugin], input=text, capture_output=True, text=True, env=env, timeout=60)
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None


def netns(sandbox, name: str) -> str:
    sandbox.sh(f"ip netns add {name}")
    return f"/run/netns/{name}"


def test_add_check_del_with_traffic(sandbox):
    ns1, ns2 = netns(sandbox, "ctr1"), netns(sandbox, "ctr2")
    code, r1 = cni("ADD", CONF, ns1, "c1")
    assert code == 0, r1
    assert r1["cniVersion"] == "1.0.0"
    bridge, veth, eth = r1["interfaces"]
    assert bridge["name"] == "cni-nk0" and eth == {"name": "eth0", "mac": "02:42:0a:16:00:02", "sandbox": ns1}
    assert r1["ips"] == [{"address": "10.22.0.2/24", "gateway": "10.22.0.1", "interface": 2}]
    assert r1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}]
    # What the result says is what the kernel has.
    link = json.loads(sandbox.sh(f"ip -j link show {veth['name']}").stdout)[0]
    assert link["master"] == "cni-nk0" and link["address"] == veth["mac"]
    assert "10.22.0.2/24" in sandbox.ns("ctr1", "ip -br addr show eth0").stdout
    code, r2 = cni("ADD", CONF, ns2, "c2")
    assert code == 0 and r2["ips"][0]["address"] == "10.22.0.3/24"
    # Container to container over the bridge, and out through MASQUERADE to the outside host.
    start_echo(sandbox, None, "tcp", "0.0.0.0", 7000, netns="ctr2")
    assert send_echo(sandbox, "ns:ctr1", "tcp", "10.22.0.3", 7000, "x").stdout.strip() == "echo:x from:10.22.0.2"
    start_echo(sandbox, None, "tcp", "0.0.0.0", 7001, netns="outside")
    out = send_echo(sandbox, "ns:ctr1", "tcp", sandbox.outside, 7001, "out").stdout.strip()
    assert out == f"echo:out from:{sandbox.uplink}"

    assert cni("CHECK", {**CONF, "prevResult": r1}, ns1, "c1") == (0, None)
    # ADD again for the same attachment gives the same result (runtimes retry).
    assert cni("ADD", CONF, ns1, "c1") == (0, r1)

    assert cni("DEL", CONF, ns1, "c1") == (0, None)
    assert sandbox.sh(f"ip link show {veth['name']}", check=False).returncode != 0
    assert "eth0" not in sandbox.ns("ctr1", "ip -br link").stdout
    assert cni("DEL", CONF, ns1, "c1") == (0, None)  # idempotent
    code, err = cni("CHECK", {**CONF, "prevResult": r1}, ns1, "c1")
    assert code != 0 and err["code"] == 3


def test_del_after_the_runtime_deleted_its_netns(sandbox):
    ns1 = netns(sandbox, "gone")
    code, result = cni("ADD", CONF, ns1, "c1")
    assert code == 0
    sandbox.sh("ip netns del gone")
    assert cni("DEL", CONF, ns1, "c1") == (0, None)
    assert cni("DEL", CONF, "", "c1") == (0, None)  # CNI_NETNS may be empty on DEL
    assert sandbox.sh(f"ip link show {result['interfaces'][1]['name']}", check=False).returncode != 0
    assert json.loads(sandbox.netkit("container", "ls", "--json").stdout) == []


def test_errors_are_the_specs_json(sandbox):
    ns1 = netns(sandbox, "ctr1")
    assert cni("ADD", {**CONF, "cniVersion": "9.9.9"}, ns1)[1]["code"] == 1
    assert cni("ADD", "{not json", ns1)[1]["code"] == 6
    code, err = cni("ADD", CONF, "")  # no CNI_NETNS
    assert code != 0 and err["code"] == 4 and "CNI_NETNS" in err["msg"]
    assert cni("ADD", CONF, "/run/netns/nope")[1]["code"] == 4
    code, err = cni("ADD", {**CONF, "subnet": "10.22.0.0/99"}, ns1)
    assert code == 2 and err["code"] == 7 and "invalid subnet" in err["msg"]
    assert cni("FROB", CONF, ns1)[1]["code"] == 4
    # An existing network with another subnet is refused, not silently reused.
    assert cni("ADD", CONF, ns1, "c1")[0] == 0
    code, err = cni("ADD", {**CONF, "subnet": "10.99.0.0/24"}, ns1, "c2")
    assert code == 2 and err["code"] == 7 and "10.22.0.0/24" in err["msg"]
    for err in (cni("ADD", {**CONF, "cniVersion": "9.9.9"}, ns1)[1],):
        assert set(err) <= {"cniVersion", "code", "msg", "details"}


def test_refused_in_the_netns_leaves_nothing_behind(sandbox):
    """The runtime's netns already has what netkit would add: a default route (refused once the
    veth exists and its end is addressed and up), then an `eth0` (refused at the veth). Each
    ADD fails in one line with the kernel's reason and what was refused; no veth, no address, no
    container is left, and once the netns is clear the same address is given."""
    ns1 = netns(sandbox, "ctr1")
    for cmd in ("link add d0 type veth peer name d1", "addr add 192.0.2.2/24 dev d0", "link set d0 up",
                "route add default via 192.0.2.1"):
        sandbox.ns("ctr1", f"ip {cmd}")
    code, err = cni("ADD", CONF, ns1, "c1")
    assert code == 1 and len(err["msg"].splitlines()) == 1, err
    assert "cannot add the default route via 10.22.0.1 in netns" in err["msg"] and "File exists" in err["msg"]
    assert "nothing was changed" in err["msg"]

    def nothing_left() -> None:
        assert sandbox.sh("ip -br link show master cni-nk0").stdout.strip() == ""
        assert "02:42:0a:16:00:02" not in sandbox.ns("ctr1", "ip -br link").stdout  # netkit's end
        assert "10.22.0." not in sandbox.ns("ctr1", "ip -br addr").stdout
        assert json.loads(sandbox.netkit("container", "ls", "--json").stdout) == []
    nothing_left()
    sandbox.ns("ctr1", "ip route del default")
    sandbox.ns("ctr1", "ip link add eth0 type veth peer name e1")
    code, err = cni("ADD", CONF, ns1, "c1")
    assert code == 1 and "cannot make veth" in err["msg"] and "(peer 'eth0' in netns" in err["msg"], err
    assert "File exists" in err["msg"]
    nothing_left()
    sandbox.ns("ctr1", "ip link del eth0")
    code, result = cni("ADD", CONF, ns1, "c1")
    assert code == 0 and result["ips"][0]["address"] == "10.22.0.2/24", result
    sandbox.ns("ctr1", "ping -c1 -W2 10.22.0.1")


def test_version_status_gc(sandbox):
    code, out = cni("VERSION", {"cniVersion": "1.0.0"})
    assert code == 0 and "1.0.0" in out["supportedVersions"] and "1.1.0" in out["supportedVersions"]
    assert cni("STATUS", {**CONF, "cniVersion": "1.1.0"}) == (0, None)
    ns1, ns2 = netns(sandbox, "ctr1"), netns(sandbox, "ctr2")
    assert cni("ADD", CONF, ns1, "keep")[0] == 0
    assert cni("ADD", CONF, ns2, "stale")[0] == 0
    gc = {**CONF, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert cni("GC", gc) == (0, None)
    assert "eth0" in sandbox.ns("ctr1", "ip -br link").stdout
    assert "eth0" not in sandbox.ns("ctr2", "ip -br link").stdout
    assert len(json.loads(sandbox.netkit("container", "ls", "--json").stdout)) == 1


def test_prev_result_and_reference_plugins_in_a_chain(sandbox):
    """netkit-cni's result feeds the reference `tuning` plugin; a previous result is kept."""
    tuning = os.path.join(REFERENCE_DIR, "tuning")
    need(tuning)
    ns1 = netns(sandbox, "ctr1")
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo", "sandbox": ns1}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}], "dns": {"nameservers": ["9.9.9.9"]}}
    code, result = cni("ADD", {**CONF, "prevResult": prev}, ns1, "c1")
    assert code == 0
    assert result["interfaces"][0] == prev["interfaces"][0] and result["ips"][1]["interface"] == 3
    assert result["dns"]["nameservers"] == ["9.9.9.9", "10.22.0.1"]
    # The reference plugin reads our result to find the container's interface.
    conf = {"cniVersion": "1.0.0", "name": "cninet", "type": "tuning", "mtu": 1400, "prevResult": result}
    code, tuned = cni("ADD", conf, ns1, "c1", plugin=tuning)
    assert code == 0 and tuned["ips"] == result["ips"]
    assert json.loads(sandbox.ns("ctr1", "ip -j link show eth0").stdout)[0]["mtu"] == 1400
    assert cni("CHECK", {**CONF, "prevResult": tuned}, ns1, "c1") == (0, None)


def test_port_mappings_capability(sandbox):
    ns1 = netns(sandbox, "web")
    conf = {**CONF, "runtimeConfig": {"portMappings": [{"hostPort": 8088, "containerPort": 80, "protocol": "tcp"}]}}
    code, result = cni("ADD", conf, ns1, "w1")
    assert code == 0, result
    start_echo(sandbox, None, "tcp", "0.0.0.0", 80, netns="web")
    out = send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 8088, "pub").stdout.strip()
    assert out == f"echo:pub from:{sandbox.outside}"
    assert "--dport 8088" in sandbox.netkit("rules").stdout
    assert cni("DEL", conf, ns1, "w1") == (0, None)
    assert "--dport 8088" not in sandbox.netkit("rules").stdout


def test_forwarded_through_the_daemon(sandbox):
    sandbox.netkit("daemon", "start")
    served = lambda: json.loads(sandbox.netkit("daemon", "status", "--json").stdout)["served"]  # noqa: E731
    ns1 = netns(sandbox, "ctr1")
    before = served()
    code, result = cni("ADD", CONF, ns1, "c1")
    assert code == 0 and result["ips"][0]["address"] == "10.22.0.2/24"
    assert served() == before + 1
    sandbox.ns("ctr1", "ping -c1 -W2 10.22.0.1")
    code, err = cni("ADD", {**CONF, "cniVersion": "9.9.9"}, ns1)
    assert code == 1 and err["code"] == 1
    assert cni("DEL", CONF, ns1, "c1") == (0, None)
    assert served() == before + 3


def _stopped_pids() -> list[int]:
    """PIDs of this sandbox's processes stopped by SIGSTOP (state T)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state == "T":
                pids.append(int(entry))
    return pids


def test_del_through_the_daemon_answers_at_the_commit(sandbox):
    """Under netkitd, DEL answers once the state is committed; the veth's deletion (a kernel RCU
    barrier) finishes after, under the state lock. Stopped (SIGSTOP) right before that deletion,
    the DEL has already answered, and an ADD of the same attachment waits for the lock, then finds
    eth0 gone and gets the same address back."""
    sandbox.netkit("daemon", "start")
    ns1 = netns(sandbox, "ctr1")
    code, r1 = cni("ADD", CONF, ns1, "c1")
    assert code == 0, r1
    veth = r1["interfaces"][1]["name"]
    assert cni("DEL", CONF, ns1, "c1", extra_env={"NETKIT_FAULT_AT": "LinkDel", "NETKIT_FAULT_MODE": "stop"}) == (0, None)
    deadline = time.monotonic() + 20  # it answered first, then goes on to the veth's deletion
    while not (stopped := _stopped_pids()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(stopped) == 1, stopped  # the daemon's child, right before deleting the veth
    assert sandbox.sh(f"ip link show {veth}", check=False).returncode == 0  # answered before it
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": ns1, "CNI_IFNAME": "eth0",
                "CNI_PATH": REFERENCE_DIR})
    again = subprocess.Popen([PLUGIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    again.stdin.write(json.dumps(CONF))
    again.stdin.close()
    doctor = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "netkit"), "doctor"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    os.kill(stopped[0], signal.SIGCONT)
    out, err = again.stdout.read(), again.stderr.read()
    assert again.wait(timeout=60) == 0, out + err
    assert json.loads(out)["ips"] == r1["ips"]
    report = doctor.communicate(timeout=60)[0]
    # The doctor saw the state either before the DEL's deletions or after the ADD: never half-way.
    assert doctor.returncode == 0, report
    assert cni("DEL", CONF, ns1, "c1") == (0, None)
    sandbox.netkit("doctor")  # a netkit command waits for the DEL's deletions (it answered at its commit)
    assert sandbox.sh(f"ip link show {veth}", check=False).returncode != 0
    assert "eth0" not in sandbox.ns("ctr1", "ip -br link").stdout
