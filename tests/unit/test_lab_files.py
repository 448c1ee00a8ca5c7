"""Lab files load, every program their commands run is on netkit/programs.py's list, and the
commands that show netkit's rules come from the runner's one place ($IPTABLES, $IPTABLES_SAVE)."""
from __future__ import annotations

import os

import pytest

from netkit import programs
from netkit.labs import model, runner

from test_programs import programs_in_shell  # the same scan as for scripts and Python sources

LABS = model.all_labs()


def _commands(lab: model.Lab):
    yield "setup", "\n".join(lab.setup)
    for step in lab.steps:
        yield f"step {step.number} do", "\n".join(step.do)
        yield f"step {step.number} check", step.check


def test_the_course_is_covered():
    slugs = {lab.slug for lab in LABS}
    assert len(LABS) >= 14
    assert [lab.number for lab in LABS] == list(range(1, len(LABS) + 1))
    for needed in ("netkit0-veth", "bridge-arp", "network-modes", "none-by-hand", "publish-ports", "nat-table",
                   "outbound-nat", "bridge-nf-call", "icc-link", "user-networks", "names-dns", "custom-bridge0",
                   "tcpdump-dnat", "trouble-ip-forward", "trouble-br-netfilter", "trouble-masquerade",
                   "trouble-mtu", "trouble-dns", "overlay"):
        assert needed in slugs, needed
    assert model.PLANNED == []  # the overlay lab landed with multi-host support (issue 15)
    assert next(lab for lab in LABS if lab.slug == "overlay").hosts == 2


@pytest.mark.parametrize("lab", LABS, ids=[l.slug for l in LABS])
def test_lab_commands_run_only_listed_programs(lab):
    for where, text in _commands(lab):
        for prog in programs_in_shell(text) - {"netkit", "python3"}:
            assert prog in programs.PROGRAMS, f"lab {lab.number} {where} runs '{prog}', not on netkit/programs.py"


@pytest.mark.parametrize("lab", LABS, ids=[l.slug for l in LABS])
def test_rule_listings_go_through_the_runner(lab):
    """The listing commands follow the firewall backend through runner.firewall_commands, not
    through every lab."""
    for where, text in _commands(lab):
        for word in ("iptables-legacy", "iptables-save", "iptables -", "iptables-nft"):
            assert word not in text, f"lab {lab.number} {where}: use $IPTABLES / $IPTABLES_SAVE, not {word}"
    with open(lab.readme) as fh:
        commands = [l.strip() for l in fh if l.startswith("    ")]  # the README's command blocks
    assert not [c for c in commands if c.startswith("iptables")], f"lab {lab.number} README: use $IPTABLES"


def test_runner_names_both_listing_commands():
    for commands in runner.FIREWALL_COMMANDS.values():
        assert set(commands) == {"IPTABLES", "IPTABLES_SAVE"}
        for prog in commands.values():
            assert prog in programs.PROGRAMS


@pytest.mark.parametrize("host", ["nf_tables", "legacy"])
def test_listing_commands_follow_the_backend(tmp_path, monkeypatch, host):
    """auto: plain `iptables`, whatever it is; a backend that is not the host's `iptables`: its own
    tool; nftables (no iptables view): plain."""
    from netkit.kernel import fw

    monkeypatch.setattr(fw, "iptables_kind", lambda: host)
    cfg = tmp_path / "config.json"
    plain = {"IPTABLES": "iptables", "IPTABLES_SAVE": "iptables-save"}
    assert runner.firewall_commands(str(cfg)) == plain  # no file: auto
    other = "iptables-legacy" if host == "nf_tables" else "iptables-nft"
    same = "iptables-nft" if host == "nf_tables" else "iptables-legacy"
    cfg.write_text(f'{{"firewall_backend": "{other}"}}')
    assert runner.firewall_commands(str(cfg)) == {"IPTABLES": other, "IPTABLES_SAVE": f"{other}-save"}
    cfg.write_text(f'{{"firewall_backend": "{same}"}}')
    assert runner.firewall_commands(str(cfg)) == plain
    cfg.write_text('{"firewall_backend": "nftables"}')
    assert runner.firewall_commands(str(cfg)) == plain


def test_a_broken_lab_file_is_one_located_line(tmp_path):
    lab = tmp_path / "99-broken"
    lab.mkdir()
    (lab / "lab.yaml").write_text("title: x\nsteps:\n  - title: a\n    text: b\n    do: c\n    chek: d\n")
    with pytest.raises(Exception) as err:
        model.load(str(lab))
    assert "lab.yaml:6: steps[0].chek: unknown key" in str(err.value)


def test_grading_outside_a_lab_sandbox_is_refused(monkeypatch):
    from netkit.errors import EnvError

    monkeypatch.delenv("NETKIT_SANDBOX", raising=False)
    with pytest.raises(EnvError, match="netkit lab start 3"):
        runner.require_sandbox(model.find("3"), "check")


def test_lab_show_names_the_listing_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "netkit", "lab", "show", "06"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    expected = runner.commands_for()["IPTABLES"]
    assert f"$IPTABLES is `{expected}`" in out.stdout
