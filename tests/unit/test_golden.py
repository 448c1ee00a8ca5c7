"""Golden files of netkit's whole rule set, in iptables-save form, over combinations of options.

Each scenario runs real use cases through the engine against the fake host (tests/unit/
fakekernel.py): the rules are what the reconciler actually applied, fast and full paths included,
and they must also equal the desired rule set computed from the final state. A change to the rules
shows up as a diff of tests/golden/*.rules in review. After an intended change, regenerate:

    NETKIT_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_golden.py
"""
import os

import pytest

from fakekernel import FakeFirewall, FakeKernel

from netkit import rules
from netkit.engine import containers, networks, ports, reconcile
from netkit.engine.containers import ContainerRequest as C
from netkit.engine.networks import NetworkRequest as N

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden")


def default_bridge_publish(ctx):
    """The default network with 0.0.0.0, 127.0.0.1 and host-address binds, tcp and udp."""
    containers.create(ctx, C("web", publish=["8080:80", "127.0.0.1:8088:80", "198.18.0.1:5353:53/udp"]))
    containers.create(ctx, C("api"))
    ports.publish(ctx, "127.0.0.2:9000:9000", "api")


def icc_off_with_links(ctx):
    """--no-icc network: only --link pairs may talk, on the linked container's exposed ports."""
    networks.create(ctx, N("q", subnet="172.31.0.0/24", icc=False))
    containers.create(ctx, C("db", net="q", expose=["5432/tcp", "8000-8010/udp"]))
    containers.create(ctx, C("app", net="q", links=["db:database"], publish=["8080:80"]))
    containers.create(ctx, C("lonely", net="q"))


def internal_and_masquerade_off(ctx):
    """An internal network (no way out, isolated both ways) next to one without MASQUERADE."""
    networks.create(ctx, N("int", subnet="172.30.0.0/24", internal=True))
    networks.create(ctx, N("plain", subnet="172.29.0.0/24", masquerade=False))
    containers.create(ctx, C("secret", net="int"))
    containers.create(ctx, C("web", net="plain", publish=["8080:80"]))


def two_networks(ctx):
    """A container on two networks: published ports go to its first network's address."""
    networks.create(ctx, N("front", subnet="172.20.0.0/24"))
    networks.create(ctx, N("back", subnet="172.21.0.0/24"))
    containers.create(ctx, C("web", net="front", publish=["80"]))
    containers.connect(ctx, "back", "web")
    containers.create(ctx, C("db", net="back", publish=["127.0.0.1:5432:5432"]))


def icc_off_by_config(ctx):
    """The default network with "icc": false and "ip_masq": false from the config file."""
    containers.create(ctx, C("a", publish=["8080:80"]))
    containers.create(ctx, C("b", links=["a"]))


def removed_again(ctx):
    """Everything made and removed again: only netkit's empty chains and hooks stay."""
    networks.create(ctx, N("app", subnet="172.20.0.0/24"))
    containers.create(ctx, C("web", net="app", publish=["8080:80", "127.0.0.1:8088:80"]))
    ports.unpublish(ctx, "8080:80", "web")
    containers.remove(ctx, "web")
    networks.remove(ctx, "app")


def iptables_false(ctx):
    """"iptables": false: netkit writes no rules at all."""
    networks.create(ctx, N("app", subnet="172.20.0.0/24", internal=True))
    containers.create(ctx, C("web", net="app"))


SCENARIOS = {
    "default-bridge-publish": (default_bridge_publish, {}),
    "icc-off-links": (icc_off_with_links, {}),
    "internal-masquerade-off": (internal_and_masquerade_off, {}),
    "two-networks": (two_networks, {}),
    "icc-off-by-config": (icc_off_by_config, {"icc": False, "ip_masq": False}),
    "removed-again": (removed_again, {}),
    "iptables-false": (iptables_false, {"iptables": False}),
}


def _desired_text(ctx, policies: dict) -> str:
    """The desired rule set, applied to an empty firewall with the same policies (the policy is a
    host setting, not part of the rule set)."""
    fw = FakeFirewall()
    fw.policies = {t: dict(p) for t, p in policies.items()}
    if ctx.config.iptables and (ctx.store.networks() or ctx.store.meta(reconcile.META)):
        fw.apply(rules.diff({}, reconcile.desired(ctx)))
    return fw.save()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rule_set_matches_golden_file(name, tmp_path):
    scenario, config = SCENARIOS[name]
    kernel = FakeKernel()
    ctx = kernel.context(str(tmp_path), **config)
    scenario(ctx)
    got = kernel.firewall.save()
    assert got == _desired_text(ctx, kernel.firewall.policies), "the applied rules differ from the state's desired rules"
    text = f"# {name}: {scenario.__doc__}\n" + got
    path = os.path.join(GOLDEN, f"{name}.rules")
    if os.environ.get("NETKIT_REGEN_GOLDEN") == "1":
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read(), f"rules changed: diff against {path} (regenerate with NETKIT_REGEN_GOLDEN=1)"
    ctx.store.close()
