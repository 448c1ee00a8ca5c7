"""Firewall backends without root: structured rule specs, the nftables translation both ways,
golden files of every backend's rendering, backend selection.

Golden files live in tests/golden/fw/; after an intended change, regenerate them with
NETKIT_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_fw_render.py and review the diff.
nft-listing-everything.json is what nft 1.0.6 listed (`nft -j list table ip netkit`) after
the nftables backend wrote fwsamples.everything() in a sandbox: the read-back parser is checked
against the kernel's real answer."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fwsamples import ct, everything, net, plan_everything  # noqa: E402

from netkit import nftrules, rules, rulespec  # noqa: E402
from netkit.kernel import fw  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden", "fw")


def golden(name: str, lines: list[str]) -> None:
    path = os.path.join(GOLDEN, name)
    text = "\n".join(lines) + "\n"
    if os.environ.get("NETKIT_REGEN_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read(), f"{name} differs from the golden file (NETKIT_REGEN_GOLDEN=1 regenerates it)"


def _all_specs(rs):
    return [s for _, _, s in rs.hooks] + [r.spec for r in rs.all()]


# ---- rulespec ---------------------------------------------------------------------------------

def test_every_planned_rule_round_trips_through_the_structured_form():
    specs = _all_specs(plan_everything())
    assert len(specs) > 50
    for text in specs:
        assert rulespec.parse(text).text() == text


def test_structured_form_holds_the_meaning():
    s = rulespec.parse("! -s 172.22.0.0/24 -o br-priv -j DROP")
    assert s.src == rulespec.Addr("172.22.0.0/24", True) and s.oif == rulespec.Iface("br-priv") and s.target == "DROP"
    s = rulespec.parse("-d 127.0.0.1/32 ! -i lo -p udp -m udp --dport 53 -j DROP")
    assert (s.dst.cidr, s.iif.neg, s.proto, s.dport) == ("127.0.0.1/32", True, "udp", "53")
    s = rulespec.parse("-p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80")
    assert (s.target, s.to) == ("DNAT", "172.20.0.2:80")
    assert rulespec.parse("-o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT").ctstate == ("RELATED", "ESTABLISHED")


@pytest.mark.parametrize("text", [
    "-p icmp -j ACCEPT",                      # a protocol netkit never writes
    "-p tcp -m udp --dport 1 -j ACCEPT",      # match module not the protocol
    "-m comment --comment x -j ACCEPT",       # unknown match
    "-s 1.2.3.4/32",                          # no target
    "! -p tcp -m tcp --dport 1 -j DROP",      # negation netkit does not use
    "-j DNAT",                                # DNAT without destination
    "-s 1.2.3.4/32 -j ACCEPT --bogus 1",
])
def test_anything_outside_the_grammar_is_refused(text):
    with pytest.raises(ValueError):
        rulespec.parse(text)


# ---- nftables translation ---------------------------------------------------------------------

@pytest.mark.parametrize("text, nft", [
    ("-s 172.20.0.0/24 ! -o br-app -j MASQUERADE", 'ip saddr 172.20.0.0/24 oifname != "br-app" masquerade'),
    ("-s 172.20.0.0/24 -o br-app -m conntrack --ctstate DNAT -j MASQUERADE",
     'ip saddr 172.20.0.0/24 oifname "br-app" ct status dnat masquerade'),
    ("-o br-app -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
     'oifname "br-app" ct state related,established accept'),
    ("-m addrtype --dst-type LOCAL -j NETKIT", "fib daddr type local jump NETKIT"),
    ("-s 172.21.0.11/32 -d 172.21.0.10/32 -i br-back -o br-back -p udp -m udp --dport 7000:7001 -j ACCEPT",
     'ip saddr 172.21.0.11 ip daddr 172.21.0.10 iifname "br-back" oifname "br-back" udp dport 7000-7001 accept'),
    ("! -d 172.22.0.0/24 -i br-priv -j DROP", 'ip daddr != 172.22.0.0/24 iifname "br-priv" drop'),
    ("-p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:8080", "tcp dport 80 dnat to 10.0.0.2:8080"),
])
def test_statement(text, nft):
    assert nftrules.statement(rulespec.parse(text)) == nft


def test_per_port_and_per_container_rules_become_set_elements():
    e = nftrules.element
    p = rulespec.parse
    assert e("NETKIT", p("-p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80")) == \
        ("dnat_any", "tcp . 8088", "172.20.0.2 . 80")
    assert e("NETKIT", p("-d 127.0.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 172.20.0.2:53")) == \
        ("dnat_addr", "127.0.0.1 . udp . 53", "172.20.0.2 . 53")
    assert e("NETKIT-RAW", p("-d 127.0.0.1/32 ! -i lo -p udp -m udp --dport 53 -j DROP")) == \
        ("raw_lo", "127.0.0.1 . udp . 53", "")
    assert e("NETKIT-RAW", p("-d 172.20.0.2/32 ! -i br-app -j DROP")) == ("raw_ep_pairs", '172.20.0.2 . "br-app"', "")
    assert e("NETKIT-POSTROUTING", p("-s 172.20.0.2/32 -d 172.20.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE")) == \
        ("hairpin", "172.20.0.2 . 172.20.0.2 . tcp . 80", "")
    # the subnet masquerades and a hairpin-like rule between two different hosts stay rules
    assert e("NETKIT-POSTROUTING", p("-s 172.20.0.0/24 ! -o br-app -j MASQUERADE")) is None
    assert e("NETKIT-POSTROUTING", p("-s 172.20.0.2/32 -d 172.20.0.3/32 -p tcp -m tcp --dport 80 -j MASQUERADE")) is None
    # other shapes stay rules
    assert e("NETKIT", p("-i br-app -p tcp -m tcp --dport 1 -j DNAT --to-destination 1.1.1.1:1")) is None
    assert e("NETKIT-POSTROUTING", p("-p tcp -m tcp --dport 8088 -j DNAT --to-destination 172.20.0.2:80")) is None


def test_real_nft_listing_reads_back_as_the_plan():
    with open(os.path.join(GOLDEN, "nft-listing-everything.json")) as fh:
        listing = json.load(fh)
    snap = nftrules.normalize(listing)
    assert rules.diff(rules.netkit_part(snap), plan_everything()) == []
    assert snap["filter"][":policy"]["FORWARD"] == "ACCEPT"


def test_readback_reports_foreign_rules_and_broken_lookups():
    with open(os.path.join(GOLDEN, "nft-listing-everything.json")) as fh:
        listing = json.load(fh)
    items = listing["nftables"]
    # someone added a rule netkit cannot express to NETKIT-POSTROUTING, and deleted a lookup of NETKIT
    foreign = {"rule": {"family": "ip", "table": "netkit", "chain": "NETKIT-POSTROUTING",
                        "expr": [{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 7}}, {"accept": None}]}}
    items = [i for i in items if not ("rule" in i and i["rule"]["chain"] == "NETKIT" and "@dnat_any" in json.dumps(i))]
    snap = nftrules.normalize({"nftables": items + [foreign]})
    ops = rules.diff(rules.netkit_part(snap), plan_everything())
    stale = [o for o in ops if o.action == "D"]
    assert len(stale) == 1 and stale[0].spec.startswith("?nft: ") and stale[0].chain == "NETKIT-POSTROUTING"
    assert rules.Op("nat", "N", "NETKIT") in ops  # the chain with a broken lookup counts as missing
    script = nftrules.ops_script(ops, {("nat", "NETKIT-POSTROUTING"): snap["nat"]["NETKIT-POSTROUTING"]})
    # the chain with the foreign rule is rewritten whole, in one script; NETKIT is rebuilt with its lookups
    assert "flush chain ip netkit NETKIT-POSTROUTING" in script
    assert "flush map ip netkit dnat_any" in script and \
        "add rule ip netkit NETKIT dnat ip to meta l4proto . th dport map @dnat_any" in script


def test_ordered_chain_insert_rewrites_the_chain_in_order():
    cur = {("filter", "NETKIT-ISOLATION-2"): ["-o br-a -j DROP", "-o br-c -j DROP"]}
    ops = [rules.Op("filter", "I", "NETKIT-ISOLATION-2", "-o br-b -j DROP", 2)]
    assert nftrules.needs_current(ops) == {("filter", "NETKIT-ISOLATION-2")}
    script = nftrules.ops_script(ops, cur)
    tail = script[script.index("flush chain ip netkit NETKIT-ISOLATION-2"):]
    assert tail[1:] == [f'add rule ip netkit NETKIT-ISOLATION-2 oifname "br-{x}" drop' for x in "abc"]


def test_publish_delta_is_one_element_and_needs_no_read():
    nets, cts = everything()
    web = cts[0]
    import dataclasses

    from netkit.model import PortMapping

    more = dataclasses.replace(web, ports=web.ports + [PortMapping("web", "tcp", "0.0.0.0", 9999, 99)])
    netmap = {n.name: n for n in nets}
    ops = rules.delta(rules.container_rules(web, netmap), rules.container_rules(more, netmap))
    assert nftrules.needs_current(ops) == set()
    # the DNAT and Docker's hairpin MASQUERADE of the new port: two elements, one transaction
    assert nftrules.ops_script(ops) == ["add table ip netkit",
                                        "add element ip netkit dnat_any { tcp . 9999 : 172.20.0.2 . 99 }",
                                        "add element ip netkit hairpin { 172.20.0.2 . 172.20.0.2 . tcp . 99 }"]
    back = rules.delta(rules.container_rules(more, netmap), rules.container_rules(web, netmap))
    assert nftrules.ops_script(back)[1:] == ["delete element ip netkit dnat_any { tcp . 9999 }",
                                             "delete element ip netkit hairpin { 172.20.0.2 . 172.20.0.2 . tcp . 99 }"]
    # a second host port to the same container port shares the hairpin element: nothing to delete
    # when one of the two goes
    twice = dataclasses.replace(more, ports=more.ports + [PortMapping("web", "tcp", "0.0.0.0", 9998, 99)])
    drop_one = rules.delta(rules.container_rules(twice, netmap), rules.container_rules(more, netmap))
    assert nftrules.ops_script(drop_one)[1:] == ["delete element ip netkit dnat_any { tcp . 9998 }"]


# ---- golden renderings, per backend -------------------------------------------------------------

BACKENDS = ("iptables-legacy", "iptables-nft", "nftables")


@pytest.mark.parametrize("name", BACKENDS)
def test_golden_whole_ruleset(name):
    golden(f"{name}.ruleset", fw.get(name).render_ruleset(plan_everything()))


@pytest.mark.parametrize("name", BACKENDS)
def test_golden_deltas(name):
    nets, cts = everything()
    first = rules.diff({}, rules.plan(nets, cts)) + [rules.Op("filter", "P", "FORWARD", "DROP")]
    present = {t: {c: list(s) for (tt, c), s in rules.plan(nets, cts).rules.items() if tt == t}
               for t in rules.TABLES}
    for t, c, s in rules.plan(nets, cts).hooks:
        present[t].setdefault(c, []).append(s)
    present["filter"]["NETKIT-USER"] = []
    without_api = rules.diff(present, rules.plan(nets, [c for c in cts if c.name != "api"]))
    backend = fw.get(name)
    golden(f"{name}.deltas", ["# first sync from nothing"] + backend.render(first)
           + ["# container api removed (its link rules sit in the ordered forward chain)"] + backend.render(without_api))


def test_goldens_of_iptables_backends_are_rules_py_text():
    # the iptables-nft backend writes exactly what the legacy one does: the same text, another kernel path
    a = fw.get("iptables-legacy").render_ruleset(plan_everything())
    assert a == fw.get("iptables-nft").render_ruleset(plan_everything())
    assert f"-A NETKIT {rules.plan(*everything()).rules[('nat', 'NETKIT')][0]}" in a


# ---- the interface and the choice ----------------------------------------------------------------

@pytest.mark.parametrize("name", fw.NAMES)
def test_every_backend_offers_the_interface(name):
    backend = fw.get(name)
    assert isinstance(backend, fw.FirewallBackend)
    assert backend.name == name


def test_choose(monkeypatch):
    monkeypatch.setattr(fw, "iptables_kind", lambda: "nf_tables")
    c = fw.choose("auto")
    assert c.name == "iptables-nft" and "nf_tables" in c.reason
    monkeypatch.setattr(fw, "iptables_kind", lambda: "legacy")
    assert fw.choose("auto").name == "iptables-legacy"
    monkeypatch.setattr(fw, "iptables_kind", lambda: None)
    assert fw.choose("auto").name == "nftables"
    assert fw.choose("nftables", source="/etc/x.json").reason == '/etc/x.json sets "firewall_backend": "nftables"'
    assert fw.choose("nftables", iptables=False).name == "none"


def test_config_key(tmp_path):
    from netkit import config
    from netkit.errors import UserError

    path = tmp_path / "c.json"
    path.write_text('{"firewall_backend": "nftables"}')
    assert config.load(str(path)).firewall_backend == "nftables"
    assert config.load(str(tmp_path / "missing.json")).firewall_backend == "auto"
    path.write_text('{"firewall_backend": "nft"}')
    with pytest.raises(UserError, match="firewall_backend"):
        config.load(str(path))


def test_small_states_translate(tmp_path):
    rs = rules.plan([net("a", "br-a", "10.9.0.0/24")], [ct("x", "10.9.0.2", "a", ports=[("udp", "0.0.0.0", 5353, 53)])])
    text = "\n".join(nftrules.render_ruleset(rs))
    assert "udp . 5353 : 10.9.0.2 . 53" in text and '10.9.0.2 . "br-a"' in text
