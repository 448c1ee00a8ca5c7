"""Unit tests for netkit.rules (no root): plans for common setups, compared with what Docker 20.10
makes for the same setup, diffs, deltas, iptables-save parsing and rendering."""
import re
import sys

from netkit import rules
from netkit.model import Container, Endpoint, Network, PortMapping


def net(name="bridge", bridge="docker0", subnet="172.17.0.0/16", **kw):
    return Network(name=name, id=name, bridge=bridge, subnet=subnet, gateway=subnet.replace("0/16", "1"), **kw)


def ct(name, ip, network="bridge", ports=(), **kw):
    ep = Endpoint(name, network, "eth0", f"veth{name}", ip, 16, "", "02:42")
    return Container(name=name, id=name, mode="bridge", netns=f"/run/netns/{name}", endpoints=[ep],
                     ports=[PortMapping(name, *p) for p in ports], **kw)


# `docker run -p 8080:80` on the default bridge, Docker 20.10 (iptables-save, counters dropped).
DOCKER = """
*nat
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""


def _flat(rs: rules.RuleSet) -> list[str]:
    out = [f"-A {c} {s}" for t, c, s in rs.hooks] + [f"-A {c} {s}" for (t, c), specs in rs.rules.items() for s in specs]
    return out


# Docker's chain names -> netkit's (jump targets inside rules are renamed the same way).
RENAME = {"DOCKER-USER": "NETKIT-USER", "DOCKER-ISOLATION-STAGE-1": "NETKIT-ISOLATION-1",
          "DOCKER-ISOLATION-STAGE-2": "NETKIT-ISOLATION-2", "DOCKER": "NETKIT"}
# Where netkit deliberately differs from Docker 20.10 for the same setup, and why.
DIFFERENCES = {
    "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j NETKIT": "netkit publishes on 127.x too (no userland proxy)",
    "-i docker0 -j RETURN": "no early return: a container may reach a published port through the host",
    "! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80": "hairpin without a proxy",
    "-o docker0 -j NETKIT": "one --ctstate DNAT accept per network instead of a per-port filter chain",
    "-d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT": "same: no per-port accept",
    "-j RETURN": "netkit's chains fall through to the caller without an explicit RETURN",
}


def _renamed(spec: str) -> str:
    return " ".join(RENAME.get(word, word) for word in spec.split())


def test_default_bridge_publish_matches_docker():
    rs = rules.plan([net()], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80)])])
    mine = "\n".join(_flat(rs))
    specs = {line.split(" ", 2)[2] for line in _flat(rs)}
    docker = [_renamed(spec) for table in rules.parse_save(DOCKER).values()
              for chain, chain_specs in table.items() if chain != ":policy" for spec in chain_specs]
    assert len(docker) == 18
    for spec in docker:
        # Every rule Docker makes here is either netkit's too, or a listed difference: never both.
        assert (spec in specs) != (spec in DIFFERENCES), spec
    assert "-A NETKIT-ISOLATION-1 -i docker0 ! -o docker0 -j NETKIT-ISOLATION-2" in mine
    assert "-A NETKIT-FORWARD -j NETKIT-USER" in mine
    assert mine.index("-j NETKIT-USER") < mine.index("-j NETKIT-ISOLATION-1") < mine.index("RELATED,ESTABLISHED")
    assert "-A NETKIT -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80" in mine
    # Docker: per-port filter ACCEPT; netkit: one per network.
    assert "-A NETKIT-FORWARD -o docker0 -m conntrack --ctstate DNAT -j ACCEPT" in mine
    # Hairpin as Docker's: only the container calling its own port is masqueraded (a sibling keeps
    # its address); the masquerade of every DNATed flow into the bridge is only the fallback
    # without br_netfilter.
    assert "-A NETKIT-POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE" in mine
    assert "--ctstate DNAT -j MASQUERADE" not in mine
    # What Docker only does with the proxy off / in 28.x, netkit always does.
    assert "-A NETKIT-POSTROUTING -s 127.0.0.0/8 -o docker0 -j MASQUERADE" in mine
    assert "-A NETKIT-RAW -d 172.17.0.2/32 ! -i docker0 -j DROP" in mine


def test_one_dnat_per_mapping_and_one_hairpin_per_container_port():
    one = rules.plan([net()], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80)])]).all()
    two = rules.plan([net()], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80),
                                                                ("udp", "0.0.0.0", 8080, 80)])]).all()
    extra = [r for r in two if r not in one]
    assert extra == [rules.Rule("nat", "NETKIT", "-p udp -m udp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"),
                     rules.Rule("nat", "NETKIT-POSTROUTING",
                                "-s 172.17.0.2/32 -d 172.17.0.2/32 -p udp -m udp --dport 80 -j MASQUERADE")]
    # a second host port to the same container port: a DNAT more, the hairpin rule is shared
    three = rules.plan([net()], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80),
                                                                  ("tcp", "0.0.0.0", 8081, 80)])]).all()
    assert [r for r in three if r not in one] == [
        rules.Rule("nat", "NETKIT", "-p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.2:80")]


def test_without_br_netfilter_hairpin_masquerades_every_dnated_flow():
    """No br_netfilter: a server's reply to a sibling would be bridged past conntrack, so every
    DNATed flow into the bridge is masqueraded (the server then sees the gateway)."""
    c = ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80)])
    post = rules.plan([net(), net("int", "br-int", "172.30.0.0/16", internal=True)], [c],
                      bridge_nf=False).rules[("nat", "NETKIT-POSTROUTING")]
    assert "-s 172.17.0.0/16 -o docker0 -m conntrack --ctstate DNAT -j MASQUERADE" in post
    assert "-s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE" in post
    assert not [p for p in post if "br-int" in p]


def test_loopback_publish_adds_raw_drop():
    c = ct("web", "172.17.0.2", ports=[("tcp", "127.0.0.1", 8088, 80), ("tcp", "198.18.0.1", 8089, 80)])
    got = rules.mapping_rules(c, {"bridge": net()})
    assert [r.text() for r in got] == [
        "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.17.0.2:80",
        "-A NETKIT-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8088 -j DROP",
        "-A NETKIT-POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE",
        "-A NETKIT -d 198.18.0.1/32 -p tcp -m tcp --dport 8089 -j DNAT --to-destination 172.17.0.2:80"]


def test_internal_no_icc_and_links():
    nets = [net("int", "br-int", "172.30.0.0/16", internal=True), net("q", "br-q", "172.31.0.0/16", icc=False)]
    db = ct("db", "172.31.0.2", "q", exposed=["5432/tcp", "8000-8010/udp"])
    app = ct("app", "172.31.0.3", "q", links=["db:database"])
    rs = rules.plan(nets, [db, app, ct("i", "172.30.0.2", "int")])
    flat = _flat(rs)
    assert "-A NETKIT-ISOLATION-1 ! -s 172.30.0.0/16 -o br-int -j DROP" in flat
    assert "-A NETKIT-ISOLATION-1 ! -d 172.30.0.0/16 -i br-int -j DROP" in flat
    assert not [f for f in flat if "br-int" in f and "MASQUERADE" in f]
    assert "-A NETKIT-FORWARD -i br-q -o br-q -j DROP" in flat
    link = ["-A NETKIT-FORWARD -s 172.31.0.3/32 -d 172.31.0.2/32 -i br-q -o br-q -p tcp -m tcp --dport 5432 -j ACCEPT",
            "-A NETKIT-FORWARD -s 172.31.0.2/32 -d 172.31.0.3/32 -i br-q -o br-q -p tcp -m tcp --sport 5432 -j ACCEPT",
            "-A NETKIT-FORWARD -s 172.31.0.3/32 -d 172.31.0.2/32 -i br-q -o br-q -p udp -m udp --dport 8000:8010 -j ACCEPT"]
    # Docker: --link opens holes on the default network only; on a user network it is a name alias
    for line in link:
        assert line not in flat
    assert not rules.involves_links(app, {n.name: n for n in nets})
    dflt = [net("int", "br-int", "172.30.0.0/16", internal=True),
            net("q", "br-q", "172.31.0.0/16", icc=False, default=True)]
    flat = _flat(rules.plan(dflt, [db, app, ct("i", "172.30.0.2", "int")]))
    for line in link:
        assert flat.index(line) < flat.index("-A NETKIT-FORWARD -i br-q -o br-q -j DROP")
    assert rules.involves_links(app, {n.name: n for n in dflt})


def test_iptables_off_network_has_no_rules():
    rs = rules.plan([net(iptables=False)], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80)])])
    assert rs.rules[("nat", "NETKIT")] == [] and rs.rules[("filter", "NETKIT-FORWARD")] == [
        "-j NETKIT-USER", "-j NETKIT-ISOLATION-1"]


def test_diff_from_nothing_then_idempotent():
    rs = rules.plan([net()], [ct("web", "172.17.0.2", ports=[("tcp", "0.0.0.0", 8080, 80)])])
    ops = rules.diff({}, rs)
    assert [o.text() for o in ops if o.action == "N"] == [
        "-N NETKIT-RAW", "-N NETKIT", "-N NETKIT-POSTROUTING", "-N NETKIT-FORWARD", "-N NETKIT-USER",
        "-N NETKIT-ISOLATION-1", "-N NETKIT-ISOLATION-2", "-N NETKIT-INPUT"]
    assert rules.Op("filter", "I", "FORWARD", "-j NETKIT-FORWARD", 1) in ops
    assert rules.Op("filter", "I", "INPUT", "-j NETKIT-INPUT", 1) in ops
    current = {}
    for (t, c), specs in rs.rules.items():
        current.setdefault(t, {})[c] = list(specs)
    for t, c, s in rs.hooks:
        current[t].setdefault(c, []).append(s)
    current["filter"]["NETKIT-USER"] = ["-s 10.0.0.1/32 -j DROP"]  # the user's: never touched
    current["filter"]["FORWARD"].insert(0, "-i eth9 -j MINE")  # foreign: never touched
    assert rules.diff(current, rs) == []


def test_diff_ordered_insert_and_stale_delete():
    desired = rules.RuleSet({("filter", "NETKIT-FORWARD"): ["a", "b", "c"]}, hooks=())
    current = {"filter": {"NETKIT-FORWARD": ["a", "x", "c"]}}
    ops = [o for o in rules.diff(current, desired) if o.chain == "NETKIT-FORWARD"]
    # (the deletion records the rule's position, 2, so that its undo re-inserts it there)
    assert ops == [rules.Op("filter", "D", "NETKIT-FORWARD", "x", 2), rules.Op("filter", "I", "NETKIT-FORWARD", "b", 2)]
    assert [o.text() for o in rules.inverse(ops)] == ["-D NETKIT-FORWARD b", "-I NETKIT-FORWARD 2 x"]
    current = {"filter": {"NETKIT-FORWARD": ["c", "a"]}}  # out of order: rebuilt
    ops = [o.text() for o in rules.diff(current, desired) if o.chain == "NETKIT-FORWARD"]
    assert ops == ["-D NETKIT-FORWARD c", "-D NETKIT-FORWARD a", "-A NETKIT-FORWARD a", "-A NETKIT-FORWARD b",
                   "-A NETKIT-FORWARD c"]


def test_delta_and_render():
    n = {"bridge": net()}
    old = ct("web", "172.17.0.2", ports=[("udp", "0.0.0.0", 53, 53)])
    new = ct("web", "172.17.0.2", ports=[("tcp", "127.0.0.1", 8088, 80)])
    ops = rules.delta(rules.mapping_rules(old, n), rules.mapping_rules(new, n))
    assert rules.render(ops) == [
        "*raw", "-A NETKIT-RAW -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8088 -j DROP", "COMMIT",
        "*nat", "-D NETKIT -p udp -m udp --dport 53 -j DNAT --to-destination 172.17.0.2:53",
        "-D NETKIT-POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p udp -m udp --dport 53 -j MASQUERADE",
        "-A NETKIT -d 127.0.0.1/32 -p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.17.0.2:80",
        "-A NETKIT-POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE", "COMMIT"]


def test_parse_save_and_reset_ops():
    text = ("# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [5:300]\n:NETKIT-FORWARD - [0:0]\n"
            ":NETKIT-USER - [0:0]\n:MINE - [0:0]\n-A FORWARD -j NETKIT-FORWARD\n-A FORWARD -j MINE\n"
            "-A NETKIT-FORWARD -j NETKIT-USER\n-A MINE -j ACCEPT\nCOMMIT\n")
    snap = rules.parse_save(text)
    assert snap["filter"][":policy"] == {"INPUT": "ACCEPT", "FORWARD": "DROP"}
    part = rules.netkit_part(snap)
    assert part["filter"] == {"FORWARD": ["-j NETKIT-FORWARD"], "NETKIT-FORWARD": ["-j NETKIT-USER"],
                              "NETKIT-USER": []}
    assert [o.text() for o in rules.reset_ops(part)] == [
        "-D FORWARD -j NETKIT-FORWARD", "-F NETKIT-FORWARD", "-X NETKIT-FORWARD", "-X NETKIT-USER"]


def test_cli_imports_stay_light():
    import subprocess

    code = ("import sys; import netkit.cli.main, netkit.engine.ports, netkit.engine.reconcile, netkit.rules, netkit.kernel.firewall; "
            "print(sorted(m for m in ('iptc', 'pyroute2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ipv6_publish_is_refused_clearly():
    import pytest

    from netkit.engine.ports import parse_spec
    from netkit.errors import UserError

    with pytest.raises(UserError, match="IPv6 host addresses are not supported yet"):
        parse_spec("[::1]:8088:80")
    assert re.match(r"^\d", str(parse_spec("127.0.0.1:8088:80")))
