"""Each firewall backend applied directly (no engine), in a sandbox with the real kernel: write,
read back, delta, reset, NETKIT-USER kept, foreign rules byte-identical, concurrent writers lose
nothing; and real traffic (DNAT, localhost publishing, MASQUERADE, isolation, 127.x and direct
routing closed) through a small topology built by hand (netns + veth + bridge)."""
import os
import re
import subprocess
import sys

import pytest

from publish_helpers import ask
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name
from required import need

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fwsamples import ct, everything, net  # noqa: E402

from netkit import rules  # noqa: E402
from netkit.kernel import fw  # noqa: E402

pytestmark = pytest.mark.root
KERNEL_BACKENDS = ("iptables-legacy", "iptables-nft", "nftables")
UP, OUT = "198.18.0.1", "198.18.0.2"

# Rules of other programs, per backend family, written with the users' own tools.
FOREIGN = {
    "iptables-legacy": ["iptables-legacy -w -t filter -N MINE",
                        "iptables-legacy -w -t filter -A MINE -p tcp --dport 22 -j ACCEPT",
                        "iptables-legacy -w -t filter -A FORWARD -i eth9 -j MINE",
                        "iptables-legacy -w -t nat -A POSTROUTING -s 10.8.0.0/16 -j MASQUERADE",
                        "iptables-legacy -w -t raw -A PREROUTING -s 10.7.0.1/32 -j NOTRACK"],
    "iptables-nft": ["iptables-nft -w -t filter -N MINE",
                     "iptables-nft -w -t filter -A MINE -p tcp --dport 22 -j ACCEPT",
                     "iptables-nft -w -t filter -A FORWARD -i eth9 -j MINE",
                     "iptables-nft -w -t nat -A POSTROUTING -s 10.8.0.0/16 -j MASQUERADE",
                     "iptables-nft -w -t raw -A PREROUTING -s 10.7.0.1/32 -j NOTRACK"],
    "nftables": ["iptables-nft -w -t nat -A POSTROUTING -s 10.8.0.0/16 -j MASQUERADE",
                 "nft add table inet mine",
                 "nft 'add chain inet mine screen { type filter hook forward priority 10; policy accept; }'",
                 "nft add rule inet mine screen iifname eth9 tcp dport 22 accept"],
}
USER_RULE = {
    "iptables-legacy": "iptables-legacy -w -A NETKIT-USER -s 10.66.0.0/16 -j DROP",
    "iptables-nft": "iptables-nft -w -A NETKIT-USER -s 10.66.0.0/16 -j DROP",
    "nftables": "nft add rule ip netkit NETKIT-USER ip saddr 10.66.0.0/16 drop",
}


def everyone_else(sandbox, name) -> str:
    """What the other programs' rules look like in the backend's world (counters dropped)."""
    if name == "iptables-legacy":
        out = sandbox.sh("iptables-legacy-save").stdout
    elif name == "iptables-nft":
        out = sandbox.sh("iptables-nft-save").stdout
    else:
        out = sandbox.sh("nft list ruleset").stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#"))


def sync(backend, want: rules.RuleSet, extra=()) -> list[rules.Op]:
    with backend.locked():
        ops = rules.diff(rules.netkit_part(backend.snapshot()), want) + list(extra)
        backend.apply(ops)
    return ops


def in_sync(backend, want) -> bool:
    return rules.diff(rules.netkit_part(backend.snapshot()), want) == []


@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_write_read_back_delta_reset(sandbox, name):
    need("iptables-legacy", "iptables-nft", "nft")
    backend = fw.get(name)
    assert backend.available().ok, backend.available().reason
    for cmd in FOREIGN[name]:
        sandbox.sh(cmd)
    before = everyone_else(sandbox, name)
    nets, cts = everything()
    want = rules.plan(nets, cts)
    sync(backend, want, [rules.Op(rules.FILTER, "P", "FORWARD", "DROP")])
    assert in_sync(backend, want)
    assert backend.policy(backend.snapshot(), rules.FILTER, "FORWARD") == "DROP"
    native = "\n".join(backend.native())
    assert ("172.20.0.2 . 80" in native) if name == "nftables" else \
        ("-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in native)
    assert backend.leftovers()

    # a delta: api goes (its link rules sit in the middle of the ordered forward chain), web publishes more
    web = cts[0]
    web.ports.append(type(web.ports[0])("web", "udp", "0.0.0.0", 5353, 53))
    want2 = rules.plan(nets, [c for c in cts if c.name != "api"])
    ops = sync(backend, want2)
    assert ops and in_sync(backend, want2)

    # the user's own chain is kept across syncs and resets
    sandbox.sh(USER_RULE[name])
    assert sync(backend, want2) == []
    assert in_sync(backend, want2)
    report = backend.reset(forward_policy="ACCEPT")
    assert report.kept_user_rules == 1 and report.removed_chains >= 6
    assert "10.66.0.0/16" in everyone_else(sandbox, name)
    assert rules.netkit_part(backend.snapshot()).get(rules.NAT, {}) in ({}, None)
    # once emptied by the user, the next reset takes it too, and everything else is as before
    if name == "nftables":
        sandbox.sh("nft flush chain ip netkit NETKIT-USER")
    else:
        sandbox.sh(f"{name} -w -F NETKIT-USER")
    backend.reset(forward_policy="ACCEPT")
    assert everyone_else(sandbox, name) == before
    assert backend.leftovers() == []


def _before_per_port_hairpin(name: str) -> None:
    """Make the backend hold what netkit wrote before hairpin kept the client's address: the
    blanket `--ctstate DNAT` MASQUERADE per network, no per-port hairpin rule (nftables: no
    `hairpin` set and no lookup rule over it)."""
    backend = fw.get(name)
    old = rules.plan(*everything(), bridge_nf=False)
    old.rules[(rules.NAT, rules.CHAIN_POST)] = [s for s in old.rules[(rules.NAT, rules.CHAIN_POST)]
                                                if "/32 -d" not in s]
    sync(backend, old)
    if name == "nftables":
        listing = subprocess.run(["nft", "-a", "list", "chain", "ip", "netkit", "NETKIT-POSTROUTING"],
                                 capture_output=True, text=True, check=True).stdout
        handle = re.search(r"@hairpin masquerade # handle (\d+)", listing).group(1)
        subprocess.run(["nft", f"delete rule ip netkit NETKIT-POSTROUTING handle {handle}; "
                               "delete set ip netkit hairpin"], check=True)


@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_rules_of_the_blanket_hairpin_masquerade_are_brought_to_the_per_port_shape(sandbox, name):
    """One sync turns the rules netkit wrote before (blanket hairpin MASQUERADE) into Docker's
    per-port hairpin rules, and back when br_netfilter is gone (the fallback)."""
    need("iptables-legacy", "iptables-nft", "nft")
    backend = fw.get(name)
    want = rules.plan(*everything())
    _before_per_port_hairpin(name)
    ops = sync(backend, want)
    assert in_sync(backend, want)
    post = [o.spec for o in ops if o.chain == rules.CHAIN_POST]
    assert "-s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE" in post
    assert not [s for s in rules.netkit_part(backend.snapshot())[rules.NAT][rules.CHAIN_POST] if "ctstate DNAT" in s]
    fallback = rules.plan(*everything(), bridge_nf=False)
    assert [o.spec for o in sync(backend, fallback)] == [
        "-s 172.20.0.0/24 -o br-app -m conntrack --ctstate DNAT -j MASQUERADE",
        "-s 172.21.0.0/24 -o br-back -m conntrack --ctstate DNAT -j MASQUERADE",
        "-s 172.23.0.0/24 -o br-nomasq -m conntrack --ctstate DNAT -j MASQUERADE"]
    assert in_sync(backend, fallback)


@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_concurrent_writers_lose_nothing(sandbox, name):
    need("iptables-nft", "iptables-legacy", "nft")
    backend = fw.get(name)
    nets = [net("app", "br-app", "172.20.0.0/24")]
    sync(backend, rules.plan(nets, []))
    script = ("import sys\nfrom netkit import rules\nfrom netkit.kernel import fw\n"
              f"b = fw.get({name!r})\n"
              "w = int(sys.argv[1])\n"
              "for p in range(25):\n"
              "    spec = f'-p tcp -m tcp --dport {10000 + w * 100 + p} -j DNAT --to-destination 172.20.0.{w + 2}:80'\n"
              "    with b.locked():\n"
              "        b.apply([rules.Op('nat', 'A', 'NETKIT', spec)], thorough=False)\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)]) for i in range(4)]
    tool = "iptables-legacy" if name == "iptables-legacy" else "iptables-nft"
    foreign = subprocess.Popen(["bash", "-c", f"for i in $(seq 1 40); do {tool} -w -t nat -A POSTROUTING "
                                "-s 10.1.$i.0/24 -j MASQUERADE || exit 1; done"])
    assert foreign.wait(120) == 0
    assert all(p.wait(180) == 0 for p in procs)
    dnat = backend.snapshot()["nat"]["NETKIT"]
    assert len(dnat) == 100 and len(set(dnat)) == 100
    save = sandbox.sh(f"{tool}-save -t nat").stdout
    assert sum(1 for line in save.splitlines() if line.startswith("-A POSTROUTING -s 10.1.")) == 40


def _topology(sandbox):
    """Two bridges, a container on each (by hand: ip netns, veth, bridge), as netkit would make them."""
    for br, gw in (("br-t", "172.30.0.1"), ("br-u", "172.31.0.1")):
        sandbox.sh(f"ip link add {br} type bridge && ip addr add {gw}/24 dev {br} && ip link set {br} up")
    for ns, br, ip, gw in (("c1", "br-t", "172.30.0.2", "172.30.0.1"), ("c2", "br-u", "172.31.0.2", "172.31.0.1")):
        sandbox.sh(f"ip netns add {ns} && ip link add v{ns} type veth peer name eth0 netns {ns} && "
                   f"ip link set v{ns} master {br} up && ip -n {ns} addr add {ip}/24 dev eth0 && "
                   f"ip -n {ns} link set eth0 up && ip -n {ns} link set lo up && ip -n {ns} route add default via {gw}")
        sandbox.sh(f"echo 1 > /sys/class/net/v{ns}/brport/hairpin_mode")
    for br in ("br-t", "br-u"):
        sandbox.sh(f"sysctl -qw net.ipv4.conf.{br}.route_localnet=1")
    sandbox.sh("sysctl -qw net.ipv4.ip_forward=1")
    nets = [net("t", "br-t", "172.30.0.0/24"), net("u", "br-u", "172.31.0.0/24")]
    cts = [ct("c1", "172.30.0.2", "t", ports=[("tcp", "0.0.0.0", 8088, 80), ("udp", "0.0.0.0", 5353, 53),
                                               ("tcp", "127.0.0.1", 8089, 80)]),
           ct("c2", "172.31.0.2", "u")]
    return nets, cts


@pytest.mark.parametrize("name", KERNEL_BACKENDS)
def test_traffic_dnat_masquerade_isolation(sandbox, servers, name):
    backend = fw.get(name)
    nets, cts = _topology(sandbox)
    sync(backend, rules.plan(nets, cts), [rules.Op(rules.FILTER, "P", "FORWARD", "DROP")])
    servers("c1", "tcp", 80)
    servers("c1", "udp", 53)
    servers("c2", "tcp", 80)
    servers("outside", "tcp", 7000)
    # published: from outside (client address kept), from the host, and on 127.0.0.1 from the host
    assert ask("outside", "tcp", UP, 8088) == f"c1 {OUT}"
    assert ask("outside", "udp", UP, 5353) == f"c1 {OUT}"
    assert ask(None, "tcp", UP, 8088) is not None
    assert ask(None, "tcp", "127.0.0.1", 8089) is not None
    # hairpin: c1 reaches its own published port through the host's address
    assert ask("c1", "tcp", UP, 8088) is not None
    # MASQUERADE on the way out: outside sees the uplink address
    assert ask("c1", "tcp", OUT, 7000) == f"outside {UP}"
    # isolation between the two networks, both ways
    assert ask("c1", "tcp", "172.31.0.2", 80, timeout=0.7) is None
    assert ask("c2", "tcp", "172.30.0.2", 80, timeout=0.7) is None
    # the port bound to 127.0.0.1 is not published to the outside host, and c1 is not routable directly
    sandbox.ns("outside", f"ip route add 172.30.0.0/24 via {UP}")
    assert ask("outside", "tcp", "172.30.0.2", 80, timeout=0.7) is None
    assert ask("outside", "tcp", UP, 8089, timeout=0.7) is None
    # unpublish as a delta: the port closes, the other stays
    netmap = {n.name: n for n in nets}
    c1 = cts[0]
    less = type(c1)(**{**c1.__dict__, "ports": [p for p in c1.ports if p.host_port != 8088]})
    backend.apply(rules.delta(rules.container_rules(c1, netmap), rules.container_rules(less, netmap)), thorough=False)
    assert ask("outside", "tcp", UP, 8088, timeout=0.7) is None
    assert ask("outside", "udp", UP, 5353) == f"c1 {OUT}"
    # with netkit's rules and forward policy gone (reset), c1 reaches c2: the rules did the isolating
    backend.reset(forward_policy="ACCEPT")
    assert ask("c1", "tcp", "172.31.0.2", 80) == "c2 172.30.0.2"


def test_iptables_nft_rules_show_in_plain_iptables(sandbox):
    """On a host whose `iptables` is the nft one, netkit's chains show in plain `iptables`."""
    need("iptables")
    if fw.iptables_kind() != "nf_tables":
        pytest.skip("this host's iptables is not the nft one")
    assert fw.choose("auto").name == "iptables-nft"
    nets, cts = everything()
    sync(fw.get("iptables-nft"), rules.plan(nets, cts))
    out = sandbox.sh("iptables -t nat -S").stdout
    assert "-A NETKIT -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80" in out
    assert "-A FORWARD -j NETKIT-FORWARD" in sandbox.sh("iptables -S FORWARD").stdout


def test_conntrack_entries_of_a_mapping_are_deleted_by_filter(sandbox):
    need("conntrack")
    from netkit.kernel import conntrack

    def entry(src, sport, dport, reply_src):
        sandbox.sh(f"conntrack -I -p udp -s {src} -d {UP} --sport {sport} --dport {dport} --reply-src {reply_src} "
                   f"--reply-dst {src} --reply-port-src 80 --reply-port-dst {sport} --timeout 100")

    entry(OUT, 5000, 8088, "172.20.0.2")
    entry("198.18.0.3", 5001, 8088, "172.20.0.2")
    entry(OUT, 5002, 8088, "172.20.0.3")  # same host port, another container: stays
    entry(OUT, 5003, 8089, "172.20.0.2")  # another host port: stays
    conntrack.delete_mapping("udp", 8088, "172.20.0.2", 80)
    left = sandbox.sh("conntrack -L -p udp").stdout
    assert "sport=5002" in left and "sport=5003" in left
    assert "sport=5000" not in left and "sport=5001" not in left
    # The netlink socket stays open for the next clean-up (closing one right after an nf_tables
    # deletion waits for a grace period): the same socket, answers not mixed up with the last ones.
    held = conntrack._shared_socket()
    entry(OUT, 5004, 8088, "172.20.0.2")
    conntrack.delete_mapping("udp", 8088, "172.20.0.2", 80)
    assert conntrack._shared_socket() is held
    left = sandbox.sh("conntrack -L -p udp").stdout
    assert "sport=5004" not in left and "sport=5002" in left and "sport=5003" in left


def test_iptables_nft_deletes_the_rules_it_added_by_handle(sandbox, monkeypatch):
    """A DNAT rule this process added through iptables-nft is deleted by its nf_tables handle (no
    iptables-nft-restore, no chain read); the rule is gone for iptables-nft-save. A rule deleted
    and re-added by someone else has a new handle: the delete goes by text. A generation that is
    not the kernel's (events missed) is refused by the kernel, changing nothing."""
    need("iptables-nft", "iptables-nft-save")
    from netkit.kernel.fw import nfthandles

    backend = fw.get("iptables-nft")
    nets, cts = everything()
    sync(backend, rules.plan(nets, cts))
    restores = []
    real = type(backend)._restore
    monkeypatch.setattr(type(backend), "_restore", lambda self, ops: restores.append(ops) or real(self, ops))
    spec = "-p tcp -m tcp --dport 9099 -j DNAT --to-destination 172.20.0.2:80"
    add, drop = rules.Op("nat", "A", rules.CHAIN_DNAT, spec), rules.Op("nat", "D", rules.CHAIN_DNAT, spec)

    def listed() -> bool:
        return f"-A NETKIT {spec}" in sandbox.sh("iptables-nft-save -t nat").stdout

    backend.apply([add], thorough=False)
    assert listed() and len(restores) == 1
    sandbox.sh("iptables-nft -w -A NETKIT-USER -s 10.66.0.0/16 -j DROP")  # someone else commits meanwhile
    backend.apply([drop], thorough=False)
    assert not listed() and len(restores) == 1, "deleted by handle, without iptables-nft-restore"
    assert in_sync(backend, rules.plan(nets, cts))

    backend.apply([add], thorough=False)
    sandbox.sh(f"iptables-nft -w -t nat -D NETKIT {spec} && iptables-nft -w -t nat -A NETKIT {spec}")
    backend.apply([drop], thorough=False)
    assert not listed() and len(restores) == 3, "a handle someone else replaced is not used"

    backend.apply([add], thorough=False)
    tracker = nfthandles._tracker(create=False)
    tracker.drain()
    tracker.generation -= 1  # as if a commit had been missed
    handle = tracker.by_rule[("nat", rules.CHAIN_DNAT, spec)][0]
    assert not tracker.delete([("nat", rules.CHAIN_DNAT, handle)]) and listed()
    backend.apply([drop], thorough=False)
    assert not listed()
