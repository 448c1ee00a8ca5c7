"""The firewall through the engine, with each kernel backend (the `backend` fixture): reset leaves
foreign rules byte-identical, concurrent writers lose nothing, doctor finds and fixes drift and
warns about other backends' forward-drop policies, rules read-back, iptables off / backend none,
a failure after the commit undoes everything."""
import json
import subprocess
import sys

import pytest

from fwbackend import backend, dnat_count, forward_policy, show, use_backend  # noqa: F401 - backend: a fixture
from publish_helpers import ask
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name
from required import need

pytestmark = pytest.mark.root
UP, OUT = "198.18.0.1", "198.18.0.2"

# Other programs' rules in each backend's world, written with the users' own tools.
_XT = [
    "-t filter -N MINE",
    "-t filter -A MINE -p tcp --dport 22 -j ACCEPT",
    "-t filter -A FORWARD -i eth9 -j MINE",
    "-t filter -A INPUT -s 10.9.0.0/16 -j DROP",
    "-t nat -A POSTROUTING -s 10.8.0.0/16 -j MASQUERADE",
    "-t nat -A PREROUTING -p udp --dport 999 -j REDIRECT --to-ports 998",
    "-t raw -A PREROUTING -s 10.7.0.1/32 -j NOTRACK",
    "-t mangle -A OUTPUT -j MARK --set-mark 7",
]
FOREIGN = {
    "iptables-legacy": [f"iptables-legacy -w {r}" for r in _XT],
    "iptables-nft": [f"iptables-nft -w {r}" for r in _XT],
    "nftables": [f"iptables-nft -w {r}" for r in _XT] + [
        "nft add table inet mine",
        "nft 'add chain inet mine screen { type filter hook forward priority 10; policy accept; }'",
        "nft add rule inet mine screen iifname eth9 tcp dport 22 accept"],
}
CHAINS_REMOVED = {"iptables-legacy": 8, "iptables-nft": 8, "nftables": 14}  # nftables: + its 6 base chains
# Drift: one of netkit's DNAT entries deleted, a stale one added, with the backend's own tool.
DRIFT = {
    "iptables-legacy": ["iptables-legacy -w -t nat -D NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
                        "iptables-legacy -w -t nat -A NETKIT -p tcp --dport 9999 -j DNAT --to-destination 172.20.0.9:80"],
    "iptables-nft": ["iptables-nft -w -t nat -D NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80",
                     "iptables-nft -w -t nat -A NETKIT -p tcp --dport 9999 -j DNAT --to-destination 172.20.0.9:80"],
    "nftables": ["nft delete element ip netkit dnat_any '{ tcp . 8088 }'",
                 "nft add element ip netkit dnat_any '{ tcp . 9999 : 172.20.0.9 . 80 }'"],
}


def test_reset_leaves_foreign_rules_byte_identical(sandbox, backend):
    need("iptables-legacy", "iptables-nft", "nft")
    for cmd in FOREIGN[backend]:
        sandbox.sh(cmd)
    before = show(sandbox, backend)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24", "--no-icc")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80", "-p", "127.0.0.1:53:53/udp")
    sandbox.netkit("container", "create", "web2", "--net", "app", "--link", "web")
    assert show(sandbox, backend) != before
    out = sandbox.netkit("reset").stdout
    assert f"removed {CHAINS_REMOVED[backend]} netkit chain(s)" in out
    assert show(sandbox, backend) == before


def test_concurrent_publishers_and_iptables_lose_nothing(sandbox, backend):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    for i in range(4):
        sandbox.netkit("container", "create", f"c{i}", "--net", "app")
    script = ("import subprocess,sys\n"
              "for p in range(12):\n"
              "    subprocess.run([sys.executable,'-m','netkit','publish',f'{10000+int(sys.argv[1])*100+p}:80',"
              "f'c{sys.argv[1]}'],check=True,stdout=subprocess.DEVNULL)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(4)]
    tool = "iptables-legacy" if backend == "iptables-legacy" else "iptables-nft"  # nftables: its world's tool
    foreign = subprocess.Popen(["bash", "-c", f"for i in $(seq 1 60); do {tool} -w -t nat -A POSTROUTING "
                                "-s 10.1.$i.0/24 -j MASQUERADE || exit 1; done"])
    assert foreign.wait(120) == 0
    assert all(p.wait(180) == 0 for p in procs)
    assert dnat_count(sandbox, backend) == 48
    save = sandbox.sh(f"{tool}-save -t nat").stdout
    assert sum(1 for line in save.splitlines() if line.startswith("-A POSTROUTING -s 10.1.")) == 60
    assert sandbox.netkit("doctor").returncode == 0


def test_doctor_reports_and_fixes_drift(sandbox, backend):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    assert sandbox.netkit("doctor").returncode == 0
    for cmd in DRIFT[backend]:
        sandbox.sh(cmd)
    p = sandbox.netkit("doctor", check=False)
    assert p.returncode == 1
    assert "missing rule (nat): -A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in p.stdout
    assert "stale rule (nat): -A NETKIT -p tcp -m tcp --dport 9999" in p.stdout
    sandbox.netkit("doctor", "--fix")
    assert sandbox.netkit("doctor").returncode == 0
    # a foreign forward hook with policy drop (in any table) drops netkit's traffic whatever its rules say
    need("nft")
    sandbox.sh("nft add table ip guard && nft 'add chain ip guard screen { type filter hook forward priority 0; policy drop; }'")
    p = sandbox.netkit("doctor", check=False)
    assert "'ip guard screen' has policy drop" in p.stdout and p.returncode == 1


def test_doctor_warns_about_another_backends_forward_drop(sandbox):
    """netkit writes nftables; the legacy and iptables-nft FORWARD chains say DROP: both drop
    netkit's forwarded traffic, and doctor names each with the way out."""
    need("iptables-legacy", "iptables-nft", "nft")
    use_backend("nftables")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    assert sandbox.netkit("doctor").returncode == 0
    sandbox.sh("iptables-legacy -w -P FORWARD DROP")
    sandbox.sh("iptables-nft -w -P FORWARD DROP")
    p = sandbox.netkit("doctor", check=False)
    assert p.returncode == 1
    assert "the iptables-legacy FORWARD policy is DROP, but netkit's rules are in nftables" in p.stdout
    assert "the iptables-nft FORWARD policy is DROP, but netkit's rules are in nftables" in p.stdout
    assert "'ip filter FORWARD'" not in p.stdout  # iptables-nft's chain: reported once, as that backend's


NATIVE = {"iptables-legacy": "-A PREROUTING -m addrtype --dst-type LOCAL -j NETKIT",
          "iptables-nft": "-A PREROUTING -m addrtype --dst-type LOCAL -j NETKIT",
          "nftables": "fib daddr type local jump NETKIT"}


def test_rules_json_reads_back_the_kernel(sandbox, backend):
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    data = json.loads(sandbox.netkit("rules", "--json").stdout)
    assert data["backend"] == backend
    assert data["tables"]["nat"]["NETKIT"][-1] == "-p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80"
    assert data["tables"]["filter"]["FORWARD"] == ["-j NETKIT-FORWARD"]
    text = sandbox.netkit("rules").stdout
    assert text.startswith(f"# netkit's rules in the {backend} backend") and NATIVE[backend] in text
    if backend == "nftables":
        assert "table ip netkit {" in text and "tcp . 8088 : 172.20.0.2 . 80" in text
    else:
        assert "*nat" in text and "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in text


def test_iptables_false_writes_nothing(sandbox):
    import os

    with open(os.environ["NETKIT_CONFIG"], "w") as f:
        json.dump({"iptables": False}, f)
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    p = sandbox.netkit("publish", "8088:80", "web", check=False)
    assert p.returncode == 2 and "\"iptables\": false" in p.stderr
    assert open("/proc/net/ip_tables_names").read() == ""
    assert "NETKIT" not in sandbox.sh("iptables-nft-save").stdout
    assert "netkit" not in sandbox.sh("nft list ruleset").stdout


def test_backend_none_writes_nothing(sandbox):
    use_backend("none")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    p = sandbox.netkit("publish", "8088:80", "web", check=False)
    assert p.returncode == 2 and "firewall backend is none" in p.stderr and "\"firewall_backend\": \"none\"" in p.stderr
    assert open("/proc/net/ip_tables_names").read() == ""
    assert "NETKIT" not in sandbox.sh("iptables-nft-save").stdout
    assert "netkit" not in sandbox.sh("nft list ruleset").stdout
    assert "backend none" in sandbox.netkit("doctor").stdout


FAIL_AFTER_COMMIT = """
import sys
from netkit.errors import KernelError
from netkit.kernel import firewall

def fail(*args):
    raise KernelError("injected failure after the rules were committed")

firewall.set_hairpin = fail  # runs in the full sync after the commit of rules and FORWARD policy
sys.argv = ["netkit"] + sys.argv[1:]
from netkit.cli.main import run
run()
"""


def test_full_sync_failure_after_commit_restores_forward_policy(sandbox, backend):
    # Make the tables netkit uses exist (a fresh netns has none; an undo leaves them, empty).
    for table, chain in (("raw", "PREROUTING"), ("nat", "PREROUTING"), ("filter", "FORWARD")):
        if backend == "iptables-legacy":
            sandbox.sh(f"iptables-legacy -w -t {table} -S")
        elif backend == "iptables-nft":
            sandbox.sh(f"iptables-nft -w -t {table} -P {chain} ACCEPT")
    before = show(sandbox, backend)
    assert forward_policy(sandbox, backend) == "ACCEPT"
    p = subprocess.run([sys.executable, "-c", FAIL_AFTER_COMMIT, "network", "create", "app", "--subnet",
                        "172.20.0.0/24"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "injected failure" in p.stderr, p.stderr
    assert show(sandbox, backend) == before  # rules gone, FORWARD policy ACCEPT again
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "0"
    assert "app" not in sandbox.netkit("network", "ls").stdout
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")  # and a retry works
    assert forward_policy(sandbox, backend) == "DROP"


def test_entry_count_follows_the_callers_netns(sandbox):
    from netkit.kernel import firewall, nsutil

    use_backend("iptables-legacy")  # entry_count is the legacy backend's fast-path check
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    here = firewall.entry_count("nat")  # the socket made here is cached
    sandbox.sh("ip netns add nk-probe")
    try:
        with nsutil.entered_netns("/run/netns/nk-probe"):
            try:
                there = firewall.entry_count("nat")
            except Exception:  # noqa: BLE001 - no nat table there yet: also not the sandbox's count
                there = None
        assert there != here
        assert firewall.entry_count("nat") == here
    finally:
        sandbox.sh("ip netns del nk-probe", check=False)


def test_auto_on_an_nft_host_shows_rules_in_plain_iptables(sandbox):
    """The issue's case: the host's `iptables` is the nft one; with firewall_backend auto (the
    default), plain `iptables -t nat -S` lists the DNAT of a published port."""
    need("iptables")
    if "nf_tables" not in sandbox.sh("iptables -V").stdout:
        pytest.skip("this host's iptables is not iptables-nft")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "-p", "8088:80", "--net", "app")
    nat = sandbox.sh("iptables -t nat -S").stdout
    assert "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in nat
    assert "-A PREROUTING -m addrtype --dst-type LOCAL -j NETKIT" in nat
    assert "auto: the host's `iptables` is iptables-nft" in sandbox.netkit("config", "show").stdout
    assert "NETKIT" not in sandbox.sh("iptables-legacy-save").stdout


def _netkit_everywhere(sandbox) -> dict[str, bool]:
    """Which backends hold netkit's rules now, read with each backend's own tool."""
    return {"iptables-legacy": "NETKIT" in sandbox.sh("iptables-legacy-save").stdout,
            "iptables-nft": "NETKIT" in sandbox.sh("iptables-nft-save").stdout,
            "nftables": sandbox.sh("nft list table ip netkit", check=False).returncode == 0}


def test_switching_backends_moves_the_rules(sandbox, servers):
    """legacy -> nftables (doctor --fix) -> iptables-nft (reset + the next command): after each
    switch netkit's rules are in the new backend only, the old FORWARD policy is back, and real
    traffic flows (published port from outside, MASQUERADE out)."""
    need("iptables-legacy", "iptables-nft", "nft")
    use_backend("iptables-legacy")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app", "-p", "8088:80")
    servers("web", "tcp", 80)
    servers("outside", "tcp", 7000)

    def traffic_flows():
        assert ask("outside", "tcp", UP, 8088) == f"web {OUT}"
        assert ask("web", "tcp", OUT, 7000) == f"outside {UP}"

    traffic_flows()
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": True, "iptables-nft": False, "nftables": False}

    use_backend("nftables")
    p = sandbox.netkit("doctor", check=False)
    assert p.returncode == 1 and "netkit rules left in the iptables-legacy backend, not the active one (nftables)" in p.stdout
    sandbox.netkit("doctor", "--fix")
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": False, "iptables-nft": False, "nftables": True}
    assert forward_policy(sandbox, "iptables-legacy") == "ACCEPT"  # netkit's DROP went with its rules
    assert forward_policy(sandbox, "nftables") == "DROP"
    traffic_flows()
    assert sandbox.netkit("doctor").returncode == 0

    use_backend("iptables-nft")
    out = sandbox.netkit("reset").stdout
    assert f"removed {CHAINS_REMOVED['nftables']} netkit chain(s) and their hooks from nftables" in out
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": False, "iptables-nft": False, "nftables": False}
    sandbox.netkit("publish", "8089:80", "web")  # the next command re-syncs everything
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": False, "iptables-nft": True, "nftables": False}
    assert forward_policy(sandbox, "iptables-nft") == "DROP"
    traffic_flows()
    assert ask("outside", "tcp", UP, 8089) == f"web {OUT}"
    assert sandbox.netkit("doctor").returncode == 0

    use_backend("none")  # no rules at all: the next change takes netkit's rules out, policy back
    sandbox.netkit("container", "create", "web2", "--net", "app")
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": False, "iptables-nft": False, "nftables": False}
    assert forward_policy(sandbox, "iptables-nft") == "ACCEPT"

    use_backend("iptables-nft")  # back from none: the rules and netkit's FORWARD DROP come back
    sandbox.netkit("doctor", "--fix")
    assert _netkit_everywhere(sandbox) == {"iptables-legacy": False, "iptables-nft": True, "nftables": False}
    assert forward_policy(sandbox, "iptables-nft") == "DROP"  # was left ACCEPT: the host routed for anyone
    traffic_flows()
    assert sandbox.netkit("doctor").returncode == 0
