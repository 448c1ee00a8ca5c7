"""Compose files: what is read, what is ignored with one notice, and located one-line errors;
the up/down plan as a pure diff of file, record and state."""
from __future__ import annotations

import textwrap

import pytest

from netkit import compose, topology_plan
from netkit.compose import ComposeError

GOOD = textwrap.dedent("""\
    name: shop
    services:
      web:
        image: nginx:alpine
        command: ["nginx", "-g", "daemon off;"]
        volumes: [./html:/usr/share/nginx/html]
        environment: {A: b}
        ports:
          - "8080:80"
          - target: 443
            published: 8443
            host_ip: 127.0.0.1
            protocol: tcp
        expose: ["9000"]
        networks:
          front:
            ipv4_address: 172.30.0.10
            aliases: [www]
          back:
      db:
        image: postgres
        hostname: database
        dns: 198.18.0.2
        dns_search: [example.com]
        extra_hosts: ["gw:10.0.0.1", "other=10.0.0.2"]
        networks: [back]
      side:
        network_mode: "service:web"
      probe:
        links: ["db:sql"]
    networks:
      front:
        driver: bridge
        ipam:
          config:
            - subnet: 172.30.0.0/24
              gateway: 172.30.0.1
              ip_range: 172.30.0.128/25
      back:
        internal: true
        driver_opts:
          com.docker.network.driver.mtu: 1400
""")


def test_a_full_file_reads_as_compose_would_name_it():
    p = compose.parse(GOOD, "compose.yaml")
    assert p.name == "shop"
    assert {k: n.name for k, n in p.networks.items()} == \
        {"front": "shop_front", "back": "shop_back", "default": "shop_default"}
    assert compose.planned_bridge(p.networks["front"]) == "br-shop_front"
    assert p.networks["front"].ip_range == "172.30.0.128/25"
    assert p.networks["back"].internal and p.networks["back"].mtu == 1400
    web = p.services["web"]
    assert web.container == "shop-web-1"
    assert web.ports == ("8080:80", "127.0.0.1:8443:443/tcp")
    assert web.networks[0] == compose.Attachment("front", "172.30.0.10", ("www",))
    assert p.services["db"].extra_hosts == ("gw:10.0.0.1", "other:10.0.0.2")
    assert p.services["side"].mode == "service" and p.services["side"].shares == "web"
    assert p.services["probe"].networks == (compose.Attachment("default"),)
    assert p.service_order().index("web") < p.service_order().index("side")
    assert p.service_order().index("db") < p.service_order().index("probe")
    assert p.notice() == ("netkit up: ignoring keys that do not concern the network: "
                          "command, environment, image, volumes")


def test_long_names_get_their_bridge_from_the_id_as_network_create_does():
    p = compose.parse("services: {a: {networks: [backend_network, named]}}\nnetworks: {backend_network: {},"
                      " named: {driver_opts: {com.docker.network.bridge.name: br-mine}}}\n", "/x/myproject/compose.yaml")
    net = p.networks["backend_network"]
    assert net.name == "myproject_backend_network"
    # no name of its own: the engine names it as `network create` does, br-<12 hex of the new id>
    assert net.bridge == "" and compose.planned_bridge(net) == "br-<id>"
    assert p.networks["named"].bridge == compose.planned_bridge(p.networks["named"]) == "br-mine"


BAD = [
    ("services:\n  web:\n    networks:\n      front:\n        ipv4_adress: 1.2.3.4\nnetworks: {front: {}}\n",
     "compose.yaml:5: services.web.networks.front.ipv4_adress: unknown key; did you mean 'ipv4_address'?"),
    ("services:\n  web:\n    netwroks: [a]\n", "compose.yaml:3: services.web.netwroks: unknown key; did you mean 'networks'?"),
    ("services:\n  web: {}\nnetworks:\n  a:\n    driver: overlay\n",
     "compose.yaml:5: networks.a.driver: driver 'overlay' is not supported"),
    ("services:\n  web: {}\nnetworks:\n  a:\n    subnet: 10.0.0.0/24\n",
     "compose.yaml:5: networks.a.subnet: unknown key"),
    ("services:\n  web: {}\nnetworks:\n  a:\n    ipam:\n      config:\n        - subnet: 10.0.0.0/33\n",
     "compose.yaml:7: networks.a.ipam.config[0].subnet: invalid subnet"),
    ("services:\n  web:\n    ports:\n      - 80:80:80:80\n", "compose.yaml:4: services.web.ports[0]:"),
    ("services:\n  web:\n    networks: [nope]\n", "compose.yaml:2: services.web.networks.nope: network 'nope' is not defined"),
    ("services:\n  web:\n    network_mode: service:ghost\n", "compose.yaml:2: services.web.network_mode: no service 'ghost'"),
    ("services:\n  web:\n    network_mode: bridged\n", "compose.yaml:3: services.web.network_mode: 'bridged' is not a mode"),
    ("services:\n  a: {links: [b]}\n  b: {links: [a]}\n", "dependency cycle"),
    ("services:\n  web:\n    hostname: bad_host!\n", "compose.yaml:3: services.web.hostname:"),
    ("services:\n  web:\n    dns: [banana]\n", "compose.yaml:3: services.web.dns[0]:"),
    ("services:\n  web: {}\n  web: {}\n", "compose.yaml:3: web: duplicate key (first on line 2)"),
    ("services:\n  web: [\n", "compose.yaml:3: not valid YAML"),
    ("servces: {}\n", "compose.yaml:1: (top level).servces: unknown key; did you mean 'services'?"),
    ("services:\n  web:\n    networks:\n      a: {ipv6_address: '::1'}\nnetworks: {a: {}}\n",
     "compose.yaml:4: services.web.networks.a.ipv6_address: not supported"),
    ("services:\n  web:\n    network_mode: host\n    hostname: x\n",
     "compose.yaml:4: services.web.hostname: network_mode host shares another's network"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_input_names_file_line_and_key(text, message):
    with pytest.raises(ComposeError) as err:
        compose.parse(text, "compose.yaml", "p")
    assert str(err.value).startswith(message) or message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def _now(proj):
    return ({n.name for n in proj.networks.values()}, {s.container for s in proj.services.values()})


def _made(proj) -> topology_plan.Record:
    rec = topology_plan.Record(proj.name)
    for n in proj.networks.values():
        rec.networks[n.name] = topology_plan.network_record(n)
    for s in proj.services.values():
        rec.containers[s.container] = topology_plan.container_record(proj, s)
    return rec


def test_plan_first_up_creates_all_second_up_nothing():
    p = compose.parse(GOOD, "compose.yaml")
    first = topology_plan.plan_up(p, topology_plan.Record(p.name), set(), set())
    assert [n.name for n in first.create_networks] == ["shop_front", "shop_back", "shop_default"]
    assert len(first.create_containers) == 4 and not first.remove_containers
    again = topology_plan.plan_up(p, _made(p), *_now(p))
    assert again.empty() and len(again.unchanged) == 7


def test_plan_a_changed_file_changes_only_what_changed():
    p = compose.parse(GOOD, "compose.yaml")
    rec = _made(p)
    changed = compose.parse(GOOD.replace("hostname: database", "hostname: db2"), "compose.yaml")
    plan = topology_plan.plan_up(changed, rec, *_now(p))
    # db changed; probe links to db, so it is re-created too; web and side stay
    assert plan.remove_containers == ["shop-probe-1", "shop-db-1"]
    assert [s.container for s in plan.create_containers] == ["shop-db-1", "shop-probe-1"]
    assert not plan.remove_networks and not plan.create_networks
    # a changed network takes its containers (and their dependents) along
    net_changed = compose.parse(GOOD.replace("mtu: 1400", "mtu: 1450"), "compose.yaml")
    plan = topology_plan.plan_up(net_changed, rec, *_now(p))
    assert plan.remove_networks == ["shop_back"]
    assert set(plan.remove_containers) == {"shop-web-1", "shop-db-1", "shop-side-1", "shop-probe-1"}
    assert plan.remove_containers.index("shop-side-1") < plan.remove_containers.index("shop-web-1")
    # a service dropped from the file is removed, nothing else
    fewer = compose.parse(GOOD.replace("  probe:\n    links: [\"db:sql\"]\n", ""), "compose.yaml")
    plan = topology_plan.plan_up(fewer, rec, *_now(p))
    assert plan.remove_containers == ["shop-probe-1"] and plan.create_containers == []
    assert plan.remove_networks == ["shop_default"]


def test_plan_refuses_names_it_did_not_make():
    p = compose.parse(GOOD, "compose.yaml")
    with pytest.raises(Exception, match="container 'shop-db-1' exists and was not made by project 'shop'"):
        topology_plan.plan_up(p, topology_plan.Record(p.name), set(), {"shop-db-1"})


def test_plan_down_removes_dependents_first_and_only_its_own():
    p = compose.parse(GOOD, "compose.yaml")
    nets, cts = _now(p)
    plan = topology_plan.plan_down(_made(p), nets | {"other"}, cts | {"mine"})
    assert "mine" not in plan.remove_containers and "other" not in plan.remove_networks
    order = plan.remove_containers
    assert order.index("shop-side-1") < order.index("shop-web-1")
    assert order.index("shop-probe-1") < order.index("shop-db-1")


def test_extra_hosts_host_gateway_in_both_forms():
    """Issue 17: Compose's `extra_hosts: ["gw:host-gateway"]`, and the mapping form."""
    text = ("services:\n  a:\n    extra_hosts: [\"gw:host-gateway\", \"x=host-gateway\"]\n"
            "  b:\n    extra_hosts:\n      gw: host-gateway\n")
    p = compose.parse(text, "compose.yaml")
    assert p.services["a"].extra_hosts == ("gw:host-gateway", "x:host-gateway")
    assert p.services["b"].extra_hosts == ("gw:host-gateway",)
