"""`netkit up` / `netkit down` with real kernel objects: idempotent up (full snapshot), down leaves
the kernel as before, unknown service keys are ignored, bad input changes nothing (exit 2),
and traffic flows as the file says."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from fwbackend import every_rule
from required import need

pytestmark = pytest.mark.root

FILE = """\
name: shop
services:
  web:
    image: nginx:alpine            # not a network key: ignored with one notice
    volumes: ["./html:/usr/share/nginx/html"]
    restart: always
    ports: ["8080:80"]
    networks:
      front: {ipv4_address: 172.30.0.10, aliases: [www]}
      back:
  db:
    image: postgres
    hostname: database
    networks: [back]
  side:
    network_mode: "service:web"
  probe:
    links: ["db:sql"]
    dns_search: [example.com]
networks:
  front:
    ipam: {config: [{subnet: 172.30.0.0/24}]}
  back:
    internal: true
"""


def kernel(sandbox) -> dict:
    """Configuration of every netns (links with ifindex/iflink, master, MTU, MAC; addresses;
    routes), rules, sysctls, /etc/netns files. Not transient flags (carrier, DAD, counters)."""
    def links(prefix: str) -> list:
        out = json.loads(sandbox.sh(f"{prefix}ip -j -d link show").stdout or "[]")
        return sorted((l["ifname"], l["ifindex"], l.get("link_index"), l.get("master"), l["mtu"], l.get("address"),
                       l.get("linkinfo", {}).get("info_kind")) for l in out)

    def addrs(prefix: str) -> list:
        out = json.loads(sandbox.sh(f"{prefix}ip -j -4 addr show").stdout or "[]")
        return sorted((a["ifname"], i["local"], i["prefixlen"]) for a in out for i in a.get("addr_info", []))

    spaces = {"": ""}
    for ns in sorted(os.listdir("/run/netns")):
        spaces[ns] = f"ip netns exec {ns} "
    snap = {}
    for ns, prefix in spaces.items():
        snap[ns] = {"links": links(prefix), "addrs": addrs(prefix),
                    "routes": sandbox.sh(f"{prefix}ip -4 route show table all | sort").stdout}
    snap["iptables"] = every_rule(sandbox)
    snap["sysctl"] = sandbox.sh("sysctl -n net.ipv4.ip_forward").stdout
    etc = {}
    for base, _dirs, names in os.walk("/etc/netns"):
        for n in names:
            with open(os.path.join(base, n)) as fh:
                etc[os.path.join(base, n)] = fh.read()
    snap["etc"] = etc
    return snap


def state(sandbox) -> dict:
    db = sqlite3.connect(os.path.join(sandbox.state_dir, "netkit.db"))
    out = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall())
           for t in ("networks", "containers", "addresses", "dns_names", "meta")}
    db.close()
    return out


@pytest.fixture
def shop(sandbox, tmp_path):
    need("ip", "iptables-legacy-save", "nft", "sysctl")
    path = tmp_path / "compose.yaml"
    path.write_text(FILE)
    # Something the file did not make, which up and down must leave alone.
    sandbox.netkit("network", "create", "other", "--subnet", "172.29.0.0/24")
    sandbox.netkit("container", "create", "mine", "--net", "other")
    return sandbox, str(path)


def test_up_twice_is_a_no_op_and_down_restores_the_kernel(shop):
    sandbox, path = shop
    before = kernel(sandbox)
    first = sandbox.netkit("up", "-f", path)
    assert first.stderr.strip() == \
        "netkit up: ignoring keys that do not concern the network: image, restart, volumes"
    assert "create container shop-web-1" in first.stdout
    made = kernel(sandbox), state(sandbox)
    second = sandbox.netkit("up", "-f", path)
    assert "nothing to change" in second.stdout, second.stdout
    assert (kernel(sandbox), state(sandbox)) == made
    # what the file says is what exists, with names as compose makes them
    web = sandbox.inspect("container", "shop-web-1")
    assert [(e["network"], e["ip"]) for e in web["endpoints"]][0] == ("shop_front", "172.30.0.10")
    assert sandbox.inspect("network", "shop_back")["internal"] is True
    assert sandbox.netkit("exec", "shop-db-1", "--", "hostname").stdout.strip() == "database"
    # names: service name and alias on the network, link alias in /etc/hosts
    assert sandbox.netkit("exec", "shop-db-1", "--", "getent", "hosts", "web").stdout.startswith("172.")
    assert "sql" in sandbox.netkit("exec", "shop-probe-1", "--", "cat", "/etc/hosts").stdout
    assert sandbox.netkit("port", "shop-web-1").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    # down: exactly what up made goes; the unrelated network and container stay
    down = sandbox.netkit("down", "-f", path)
    assert "remove network shop_front" in down.stdout
    assert kernel(sandbox) == before
    assert sandbox.inspect("container", "mine")["endpoints"][0]["network"] == "other"
    assert "nothing to remove" in sandbox.netkit("down", "-f", path).stdout


def test_a_changed_file_changes_only_what_changed(shop):
    sandbox, path = shop
    sandbox.netkit("up", "-f", path)
    web_before = sandbox.inspect("container", "shop-web-1")["id"]
    db_before = sandbox.inspect("container", "shop-db-1")["id"]
    with open(path, "w") as fh:
        fh.write(FILE.replace("hostname: database", "hostname: db2"))
    out = sandbox.netkit("up", "-f", path).stdout
    assert "recreate container shop-db-1" in out and "shop-web-1" not in out
    assert sandbox.inspect("container", "shop-web-1")["id"] == web_before
    assert sandbox.inspect("container", "shop-db-1")["id"] != db_before
    assert sandbox.netkit("exec", "shop-db-1", "--", "hostname").stdout.strip() == "db2"
    assert "nothing to change" in sandbox.netkit("up", "-f", path).stdout


BAD = [
    ("services:\n  web:\n    networks:\n      front: {ipv4_adress: 172.30.0.9}\nnetworks: {front: {}}\n",
     ":4: services.web.networks.front.ipv4_adress: unknown key; did you mean 'ipv4_address'?"),
    # valid YAML and compose, wrong for the kernel: found half-way, everything made is undone
    ("services:\n  a: {networks: {n: {ipv4_address: 172.31.0.5}}}\n  b: {networks: {n: {ipv4_address: 172.31.0.5}}}\n"
     "networks: {n: {ipam: {config: [{subnet: 172.31.0.0/24}]}}}\n",
     ":3: services.b: IP 172.31.0.5 is already in use by container 'p-a-1'"),
    ("services:\n  a: {ports: ['8081:80']}\n  b: {ports: ['8081:80']}\n", ":3: services.b:"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_input_is_one_line_exit_2_and_nothing_made(shop, tmp_path, text, message):
    sandbox, _ = shop
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    before = kernel(sandbox), state(sandbox)
    r = sandbox.netkit("up", "-f", str(bad), "-p", "p", check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert (kernel(sandbox), state(sandbox)) == before


def test_traffic_follows_the_file(shop):
    need("curl")
    sandbox, path = shop
    sandbox.netkit("up", "-f", path)
    sandbox.spawn(["python3", "-m", "netkit", "exec", "shop-web-1", "--", "python3", "-m", "http.server", "80"])
    sandbox.sh("for i in $(seq 50); do curl -s -o /dev/null http://198.18.0.1:8080/ && exit 0; sleep 0.1; done; exit 1")
    # the outside host reaches the published port; db (internal network only) cannot get out
    sandbox.ns("outside", "curl -s -o /dev/null -w '%{http_code}' http://198.18.0.1:8080/")
    r = sandbox.sh("python3 -m netkit exec shop-db-1 -- curl -s -m 2 http://198.18.0.2:9/", check=False)
    assert r.returncode != 0


def test_topology_shows_what_the_kernel_has(shop, tmp_path):
    need("rsvg-convert")
    sandbox, path = shop
    sandbox.netkit("up", "-f", path)
    out = sandbox.netkit("topology", "--svg", str(tmp_path / "t.svg")).stdout
    # the pair as the kernel has it: the host end's iflink is eth0's ifindex and back
    web = sandbox.inspect("container", "shop-web-1")["endpoints"][0]["host_interface"]
    host_idx = sandbox.sh(f"cat /sys/class/net/{web}/ifindex").stdout.strip()
    host_iflink = sandbox.sh(f"cat /sys/class/net/{web}/iflink").stdout.strip()
    assert (f"port {web} (ifindex {host_idx}, iflink {host_iflink}) <=veth=> eth0 (ifindex {host_iflink}, "
            f"iflink {host_idx}) in netns shop-web-1 172.30.0.10/24") in out, out
    assert "DNAT tcp 0.0.0.0:8080 → 172.30.0.10:80 (container shop-web-1)" in out
    sandbox.sh(f"rsvg-convert {tmp_path / 't.svg'} -o {tmp_path / 't.png'}")
    assert (tmp_path / "t.png").stat().st_size > 10000


def test_bridges_are_named_as_network_create_names_them(sandbox, tmp_path):
    # Compose's `myproject_backend_network` does not fit `br-NAME`: like `docker network create`,
    # its bridge is br-<12 hex of the network ID>; a driver_opts name is kept as written.
    path = tmp_path / "compose.yaml"
    path.write_text("name: myproject\nservices:\n  a: {networks: [backend_network, named]}\n"
                    "networks:\n  backend_network: {}\n  named: {driver_opts: {com.docker.network.bridge.name: br-mine}}\n")
    assert "create network myproject_backend_network (bridge br-<id>; new)" in sandbox.netkit("up", "-f", path).stdout
    fmt = '{{.Id}} {{index .Options "com.docker.network.bridge.name"}}'
    net_id, bridge = sandbox.netkit("network", "inspect", "-f", fmt, "myproject_backend_network").stdout.split()
    assert bridge == "br-" + net_id[:12]
    assert sandbox.netkit("network", "inspect", "-f", fmt, "myproject_named").stdout.split()[1] == "br-mine"
    links = sandbox.sh("ip -br link show type bridge").stdout
    assert bridge in links and "br-mine" in links
    assert "nothing to change" in sandbox.netkit("up", "-f", path).stdout
    sandbox.netkit("down", "-f", path)
    links = sandbox.sh("ip -br link show type bridge").stdout
    assert bridge not in links and "br-mine" not in links
