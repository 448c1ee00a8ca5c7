"""Issue 17: a Docker user's habits work, spelled exactly as with Docker: IDs and prefixes,
inspect in Docker's shape with --format templates, ls columns and filters, prune, rm -f,
labels, `port CT PORT`, long network names and bridge options, hostnames, exec's options,
the reserved default subnet and the `ip` config key. Real kernel objects and packets."""
from __future__ import annotations

import json
import os
import sys

import pytest

from nettools import send_echo, snapshot, start_echo
from waiting import wait_for

pytestmark = pytest.mark.root


def lines(proc) -> list[str]:
    return proc.stdout.strip().splitlines()


def test_ids_and_unique_prefixes_work_wherever_a_name_does(sandbox):
    net_id = sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24").stdout.strip()
    assert len(net_id) == 64
    # A container created on the network by its ID prefix; exec, inspect, port, connect by ID.
    ct_id = sandbox.netkit("container", "create", "web", "--net", net_id[:6], "-p", "8088:80").stdout.strip()
    assert sandbox.netkit("exec", ct_id[:8], "hostname").stdout.strip() == "web"
    doc = json.loads(sandbox.netkit("container", "inspect", ct_id).stdout)[0]
    assert doc["Id"] == ct_id and doc["Name"] == "/web"
    assert sandbox.netkit("port", ct_id[:5], "80").stdout.strip() == "0.0.0.0:8088"
    other = sandbox.netkit("network", "create", "other").stdout.strip()
    assert lines(sandbox.netkit("network", "connect", other[:7], ct_id[:7])) == ["web eth1 172.18.0.2/16"]
    assert "172.18.0.2" in sandbox.netkit("exec", "web", "ip", "-br", "addr").stdout
    assert lines(sandbox.netkit("network", "disconnect", other, ct_id)) == \
        ["web eth1 172.18.0.2/16 disconnected from other"]
    # `docker rm $(docker create ...)`
    rm = sandbox.sh(f"{sys.executable} -m netkit container rm $({sys.executable} -m netkit container create x)")
    assert len(rm.stdout.strip()) == 64
    assert "x" not in os.listdir("/run/netns")
    sandbox.netkit("container", "rm", ct_id[:4])
    sandbox.netkit("network", "rm", other[:12])
    assert "web" not in os.listdir("/run/netns")
    assert [r.split()[1] for r in lines(sandbox.netkit("network", "ls"))[1:]] == ["app", "bridge", "host", "none"]


def test_an_ambiguous_prefix_is_one_line_naming_the_candidates(sandbox):
    ids = {}
    for i in range(40):  # 40 random ids: two of them share a first hex digit for sure
        ids[f"c{i}"] = sandbox.netkit("container", "create", f"c{i}", "--net", "none").stdout.strip()
    by_digit: dict[str, list[str]] = {}
    for name, cid in ids.items():
        by_digit.setdefault(cid[0], []).append(name)
    digit, names = next((d, n) for d, n in by_digit.items() if len(n) > 1)
    before = snapshot(sandbox)
    r = sandbox.netkit("container", "rm", digit, check=False)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and f"container ID prefix '{digit}' is ambiguous" in err[0]
    assert all(f"{n} ({ids[n][:12]})" in err[0] for n in names)
    assert snapshot(sandbox) == before


def test_network_inspect_in_dockers_shape_with_format(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24", "--ip-range", "172.20.0.128/25",
                   "--label", "com.example.team=net", "--label", "tier=front")
    cid = sandbox.netkit("container", "create", "web", "--net", "app").stdout.strip()
    [doc] = json.loads(sandbox.netkit("network", "inspect", "app").stdout)
    assert doc["Name"] == "app" and doc["Driver"] == "bridge" and doc["Scope"] == "local"
    assert doc["IPAM"]["Config"] == [{"Subnet": "172.20.0.0/24", "Gateway": "172.20.0.1", "IPRange": "172.20.0.128/25"}]
    assert doc["Containers"][cid]["Name"] == "web" and doc["Containers"][cid]["IPv4Address"] == "172.20.0.128/24"
    assert doc["Options"]["com.docker.network.bridge.name"] == "br-app"
    assert doc["Labels"] == {"com.example.team": "net", "tier": "front"}
    # The templates people paste.
    fmt = lambda t: sandbox.netkit("network", "inspect", "app", "--format", t).stdout.rstrip("\n")  # noqa: E731
    assert fmt("{{.Name}}") == "app"
    assert fmt("{{json .IPAM.Config}}") == '[{"Subnet":"172.20.0.0/24","Gateway":"172.20.0.1","IPRange":"172.20.0.128/25"}]'
    assert fmt("{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}") == "web=172.20.0.128/24 "
    assert fmt('{{index .Labels "tier"}}') == "front"
    # The bridge the kernel really has is the one inspect names.
    assert "br-app" in sandbox.sh("ip -br link show type bridge").stdout
    # Several at once, and the built-in ones.
    two = json.loads(sandbox.netkit("network", "inspect", "app", "host").stdout)
    assert [d["Name"] for d in two] == ["app", "host"] and two[1]["Driver"] == "host"
    # netkit's own view stays available.
    native = json.loads(sandbox.netkit("network", "inspect", "--netkit", "app").stdout)
    assert native["bridge"] == "br-app" and native["containers"]["web"]["ip"] == "172.20.0.128"
    assert "bridge: br-app" in sandbox.netkit("network", "inspect", "app", "--text").stdout


def test_container_inspect_shows_published_ports_and_networks(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80", "--expose", "81",
                   "--network-alias", "www", "--dns", "10.0.0.53", "--label", "role=web")
    [doc] = json.loads(sandbox.netkit("container", "inspect", "web").stdout)
    assert doc["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8088"}], "81/tcp": None}
    assert doc["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8088"}]}
    assert doc["HostConfig"]["NetworkMode"] == "app" and doc["HostConfig"]["Dns"] == ["10.0.0.53"]
    assert doc["Config"]["Labels"] == {"role": "web"}
    fmt = lambda t: sandbox.netkit("container", "inspect", "-f", t, "web").stdout.strip()  # noqa: E731
    ip = fmt("{{.NetworkSettings.Networks.app.IPAddress}}")
    assert ip == "172.20.0.2"
    assert fmt("{{range $p, $b := .NetworkSettings.Ports}}{{$p}} {{end}}") == "80/tcp 81/tcp"
    assert fmt("{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}") == "8088"
    # What inspect says is what the kernel has: the address is on eth0 and the port answers.
    assert f"{ip}/24" in sandbox.netkit("exec", "web", "ip", "-br", "addr", "show", "eth0").stdout
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 80)
    assert send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 8088, "hi").stdout.startswith("echo:hi")


def test_network_ls_columns_builtins_filters_quiet_and_format(sandbox):
    out = lines(sandbox.netkit("network", "ls"))
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [(r.split()[1], r.split()[2]) for r in out[1:]] == [("bridge", "bridge"), ("host", "host"), ("none", "null")]
    bridge_id = out[1].split()[0]
    # What ls lists, inspect answers for (by name or ID), before the default network is made: its
    # settings, no members, and nothing in the kernel claimed or made by asking.
    fmt = '{{.Name}} {{.Driver}} {{json .IPAM.Config}} {{index .Options "com.docker.network.bridge.name"}} {{len .Containers}}'
    assert lines(sandbox.netkit("network", "inspect", "-f", fmt, "bridge", bridge_id, "host", "none")) == [
        'bridge bridge [{"Subnet":"172.17.0.0/16","Gateway":"172.17.0.1"}] netkit0 0'] * 2 + [
        "host host [] <no value> 0", "none null [] <no value> 0"]
    assert json.loads(sandbox.netkit("network", "inspect", "--netkit", "bridge").stdout)["exists"] is False
    assert "netkit0" not in sandbox.sh("ip -br link").stdout
    hid = sandbox.netkit("container", "create", "h", "--net", "host").stdout.strip()
    [host] = json.loads(sandbox.netkit("network", "inspect", "host").stdout)
    assert list(host["Containers"]) == [hid] and host["Containers"][hid]["Name"] == "h"
    assert host["Containers"][hid]["IPv4Address"] == ""  # Docker lists host-mode containers, without address
    app = sandbox.netkit("network", "create", "app", "--label", "env=dev").stdout.strip()
    sandbox.netkit("network", "create", "db", "--label", "env=prod")
    web = sandbox.netkit("container", "create", "web").stdout.strip()  # makes the default network: same ID
    [made] = json.loads(sandbox.netkit("network", "inspect", bridge_id).stdout)
    assert made["Id"].startswith(bridge_id) and made["Containers"][web]["IPv4Address"] == "172.17.0.2/16"
    assert "netkit0" in sandbox.sh("ip -br link").stdout
    assert lines(sandbox.netkit("network", "ls", "--filter", "name=bridge", "-q")) == [bridge_id]
    assert lines(sandbox.netkit("network", "ls", "-q", "--filter", "label=env=dev")) == [app[:12]]
    assert lines(sandbox.netkit("network", "ls", "-q", "--no-trunc", "--filter", f"id={app[:5]}")) == [app]
    assert lines(sandbox.netkit("network", "ls", "--filter", "label=env", "--format", "{{.Name}}")) == ["app", "db"]
    assert lines(sandbox.netkit("network", "ls", "--filter", "driver=null", "--format", "{{.Name}}")) == ["none"]
    assert lines(sandbox.netkit("network", "ls", "-f", "driver=bridge", "-f", "label=env=prod",
                                "--format", "{{.Name}}")) == ["db"]
    table = lines(sandbox.netkit("network", "ls", "--filter", "type=custom", "--format", "table {{.Name}}\t{{.Driver}}"))
    assert [r.split() for r in table] == [["NAME", "DRIVER"], ["app", "bridge"], ["db", "bridge"]]
    row = json.loads(lines(sandbox.netkit("network", "ls", "--filter", "name=app", "--format", "json"))[0])
    assert row["Name"] == "app" and row["Labels"] == "env=dev"


def test_container_ls_ports_networks_quiet_and_filters(sandbox):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    web = sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80", "--label", "tier=front").stdout.strip()
    sandbox.netkit("container", "create", "db", "--net", "app")
    sandbox.netkit("container", "create", "solo", "--net", "none")
    out = lines(sandbox.netkit("container", "ls"))
    assert out[0].split() == ["CONTAINER", "ID", "NAMES", "MODE", "NETWORKS", "PORTS"]
    assert [r.split() for r in out if " web " in r] == [[web[:12], "web", "bridge", "app=172.20.0.2", "0.0.0.0:8088->80/tcp"]]
    assert sorted(lines(sandbox.netkit("container", "ls", "-aq", "--filter", "network=app"))) == \
        sorted(r.split()[0] for r in out if " app=" in r)
    assert sorted(lines(sandbox.netkit("container", "ls", "--filter", "network=app", "--format", "{{.Names}}"))) == ["db", "web"]
    assert lines(sandbox.netkit("container", "ls", "-q", "--filter", "label=tier=front")) == [web[:12]]
    assert lines(sandbox.netkit("container", "ls", "--filter", f"id={web[:6]}", "--format", "{{.Names}} {{.Ports}}")) == \
        ["web 0.0.0.0:8088->80/tcp"]
    assert lines(sandbox.netkit("container", "ls", "--filter", "name=ol", "--format", "{{.Names}}")) == ["solo"]


def test_network_prune_removes_only_unused_custom_networks(sandbox):
    sandbox.netkit("container", "create", "a")  # the default network, in use
    sandbox.netkit("network", "create", "used")
    sandbox.netkit("container", "create", "b", "--net", "used")
    sandbox.netkit("network", "create", "idle1")
    sandbox.netkit("network", "create", "idle2")
    assert lines(sandbox.netkit("network", "prune", "-f")) == ["Deleted Networks:", "idle1", "idle2"]
    bridges = sandbox.sh("ip -br link show type bridge").stdout
    assert "br-idle1" not in bridges and "br-used" in bridges and "netkit0" in bridges
    sandbox.netkit("container", "rm", "a")
    # Without containers the default network stays too, as Docker's bridge does.
    assert lines(sandbox.netkit("network", "prune", "--force")) == []
    assert "netkit0" in sandbox.sh("ip -br link show type bridge").stdout
    # Without --force it asks; "n" keeps everything.
    sandbox.netkit("network", "create", "idle3")
    assert "Are you sure" in sandbox.netkit("network", "prune", input="n\n").stdout
    assert "br-idle3" in sandbox.sh("ip -br link").stdout


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as fh:
        return fh.read().strip()


def test_rm_refuses_with_processes_inside_and_rm_f_ends_them(sandbox):
    sandbox.netkit("container", "create", "web")
    # `exec` replaces itself with sh, then sleep: the PID stays the one spawned.
    proc = sandbox.spawn([sys.executable, "-m", "netkit", "exec", "web", "sh", "-c", "echo ready; exec sleep 300"])
    assert proc.stdout.readline().strip() == "ready"
    wait_for(lambda: _comm(proc.pid) == "sleep", what="sh to exec sleep")
    before = snapshot(sandbox)
    r = sandbox.netkit("container", "rm", "web", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"PID {proc.pid} (sleep)" in r.stderr and "netkit container rm -f web" in r.stderr
    assert snapshot(sandbox) == before
    sandbox.netkit("container", "rm", "-f", "web")
    assert proc.wait(timeout=10) == -9  # ended by SIGKILL
    assert "web" not in os.listdir("/run/netns")


def test_port_prints_dockers_forms(sandbox):
    sandbox.netkit("container", "create", "web", "-p", "8088:80", "-p", "127.0.0.1:8053:53/udp")
    assert lines(sandbox.netkit("port", "web", "80")) == ["0.0.0.0:8088"]
    assert lines(sandbox.netkit("port", "web", "53/udp")) == ["127.0.0.1:8053"]
    assert lines(sandbox.netkit("port", "web")) == ["53/udp -> 127.0.0.1:8053", "80/tcp -> 0.0.0.0:8088"]


def test_long_network_names_get_a_bridge_from_the_id(sandbox):
    net_id = sandbox.netkit("network", "create", "myproject_default").stdout.strip()
    bridge = "br-" + net_id[:12]
    assert bridge in sandbox.sh("ip -br link show type bridge").stdout
    sandbox.netkit("container", "create", "web", "--net", "myproject_default")
    [doc] = json.loads(sandbox.netkit("network", "inspect", "myproject_default").stdout)
    assert doc["Options"]["com.docker.network.bridge.name"] == bridge
    master = sandbox.sh(f"ip -o link show master {bridge}").stdout
    assert sandbox.inspect("container", "web")["endpoints"][0]["host_interface"] in master
    # 64 characters, Docker's limit on names.
    sandbox.netkit("network", "create", "n" * 64)
    sandbox.netkit("network", "rm", "myproject_default", check=False)  # refused: web is on it
    assert bridge in sandbox.sh("ip -br link").stdout


def test_bridge_driver_options(sandbox):
    sandbox.netkit("network", "create", "-o", "com.docker.network.bridge.name=br0",
                   "-o", "com.docker.network.bridge.enable_icc=false",
                   "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
                   "-o", "com.docker.network.driver.mtu=1400", "--subnet", "172.20.0.0/24", "opts")
    info = json.loads(sandbox.sh("ip -j -d link show br0").stdout)[0]
    assert info["mtu"] == 1400 and info["linkinfo"]["info_kind"] == "bridge"
    [doc] = json.loads(sandbox.netkit("network", "inspect", "opts").stdout)
    assert doc["Options"] == {"com.docker.network.bridge.name": "br0", "com.docker.network.bridge.enable_icc": "false",
                              "com.docker.network.bridge.enable_ip_masquerade": "false",
                              "com.docker.network.driver.mtu": "1400"}
    # icc off is real: two containers on it cannot talk.
    sandbox.netkit("container", "create", "a", "--net", "opts")
    sandbox.netkit("container", "create", "b", "--net", "opts")
    start_echo(sandbox, "a", "tcp", "0.0.0.0", 7000)
    assert send_echo(sandbox, "b", "tcp", "172.20.0.2", 7000, "x", check=False).returncode != 0
    # enable_ip_masquerade=false is real: no outbound SNAT rule for the subnet (another network has one).
    sandbox.netkit("network", "create", "plain", "--subnet", "172.21.0.0/24")
    rules = sandbox.netkit("rules").stdout
    assert "-s 172.21.0.0/24 ! -o br-plain -j MASQUERADE" in rules
    assert "-s 172.20.0.0/24 ! -o br0 -j MASQUERADE" not in rules


def test_hostname_with_underscore(sandbox):
    sandbox.netkit("container", "create", "web", "-h", "docker_test")
    assert sandbox.netkit("exec", "web", "hostname").stdout.strip() == "docker_test"


def test_exec_takes_dockers_options_and_exit_codes(sandbox):
    sandbox.netkit("container", "create", "web")
    run = lambda *a, **kw: sandbox.netkit("exec", *a, check=False, **kw)  # noqa: E731
    assert run("-it", "web", "hostname").stdout.strip() == "web"
    assert run("-i", "-t", "web", "--", "hostname").stdout.strip() == "web"
    assert run("-e", "GREETING=hello", "--env", "OTHER=x", "web", "sh", "-c", "echo $GREETING$OTHER").stdout.strip() == "hellox"
    assert run("-w", "/tmp", "web", "pwd").stdout.strip() == "/tmp"
    assert run("-u", "nobody", "web", "id", "-u").stdout.strip() == str(__import__("pwd").getpwnam("nobody").pw_uid)
    assert run("-u", "1234:1234", "web", "id", "-g").stdout.strip() == "1234"
    # The command's own options are the command's (options end at the container's name).
    assert run("web", "ls", "-d", "/").stdout.strip() == "/"
    # Network commands run inside: the container's eth0, not the host's uplink.
    assert "eth0" in run("web", "ip", "-br", "link").stdout and "uplink" not in run("web", "ip", "-br", "link").stdout
    assert run("web", "sh", "-c", "exit 7").returncode == 7
    r = run("web", "no-such-command")
    assert r.returncode == 127 and "command not found: no-such-command" in r.stderr
    r = run("web", "/etc/hostname")
    assert r.returncode == 126 and "not executable" in r.stderr
    r = run("-w", "/no/such/dir", "web", "pwd")
    assert r.returncode == 126 and "working directory" in r.stderr
    r = run("-u", "no_such_user", "web", "id")
    assert r.returncode == 126 and "unable to find user no_such_user" in r.stderr


def test_default_network_keeps_172_17_when_a_user_network_comes_first(sandbox):
    sandbox.netkit("network", "create", "app")
    assert sandbox.inspect("network", "app")["subnet"] != "172.17.0.0/16"
    sandbox.netkit("container", "create", "web")
    assert sandbox.inspect("network", "bridge")["subnet"] == "172.17.0.0/16"
    assert "172.17.0.2/16" in sandbox.netkit("exec", "web", "ip", "-br", "addr").stdout


def test_config_ip_is_the_default_bind_address_of_publish(sandbox):
    with open(os.environ["NETKIT_CONFIG"], "w") as fh:
        json.dump({"ip": "127.0.0.1"}, fh)
    sandbox.netkit("container", "create", "web", "-p", "8088:80")
    assert lines(sandbox.netkit("port", "web", "80")) == ["127.0.0.1:8088"]
    start_echo(sandbox, "web", "tcp", "0.0.0.0", 80)
    # Reachable on the loopback address, not on the uplink from outside.
    assert send_echo(sandbox, None, "tcp", "127.0.0.1", 8088, "lo").stdout.startswith("echo:lo")
    assert send_echo(sandbox, "ns:outside", "tcp", sandbox.uplink, 8088, "x", check=False).returncode != 0
