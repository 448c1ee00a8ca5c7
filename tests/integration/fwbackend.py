"""The firewall backend a test runs against, and reading its rules with that backend's own tools.

`backend` is a fixture parametrized over the three kernel backends: it writes
`{"firewall_backend": NAME}` into the sandbox's config file (NETKIT_CONFIG), so every netkit
command of the test writes its rules there. The readers below use the backend's own show command
(iptables-legacy-save, iptables-nft-save, nft), never netkit's read-back, so a test checks what
the kernel holds independently of the code under test.
"""
from __future__ import annotations

import json
import os
import re

import pytest

KERNEL_BACKENDS = ("iptables-legacy", "iptables-nft", "nftables")
SHOW = {"iptables-legacy": "iptables-legacy-save", "iptables-nft": "iptables-nft-save",
        "nftables": "nft list ruleset"}
# The tool a user adds a rule to NETKIT-USER with, and how that rule then reads in SHOW.
USER_DROP = {
    "iptables-legacy": ("iptables-legacy -w -A NETKIT-USER -s {ip}/32 -j DROP", "-A NETKIT-USER -s {ip}/32 -j DROP"),
    "iptables-nft": ("iptables-nft -w -A NETKIT-USER -s {ip}/32 -j DROP", "-A NETKIT-USER -s {ip}/32 -j DROP"),
    "nftables": ("nft add rule ip netkit NETKIT-USER ip saddr {ip} drop", "ip saddr {ip} drop"),
}


def use_backend(name: str) -> None:
    """Make the sandbox's netkit commands use backend `name` (other config keys kept)."""
    path = os.environ["NETKIT_CONFIG"]
    cfg = {}
    if os.path.exists(path):
        with open(path) as fh:
            cfg = json.load(fh)
    cfg["firewall_backend"] = name
    with open(path, "w") as fh:
        json.dump(cfg, fh)


@pytest.fixture(params=KERNEL_BACKENDS)
def backend(request, sandbox) -> str:
    use_backend(request.param)
    return request.param


def show(sandbox, name: str, table: str | None = None) -> str:
    """The backend's own listing (every table of that world, or one iptables table), without the
    parts that change by themselves: comments, packet counters, rule handles."""
    cmd = SHOW[name]
    if table and name != "nftables":
        cmd += f" -t {table}"
    out = sandbox.sh(cmd).stdout
    lines = []
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"\[\d+:\d+\]", "", line)
        line = re.sub(r"counter packets \d+ bytes \d+ ?", "", line)
        lines.append(line)
    return "\n".join(lines)


def forward_policy(sandbox, name: str) -> str:
    """The FORWARD policy netkit governs in this backend: the built-in FORWARD chain's for the
    iptables backends, the policy of netkit's forward base chain for nftables (ACCEPT when netkit's
    table is not there: then nothing of netkit's drops)."""
    if name != "nftables":
        match = re.search(r"^:FORWARD (\w+)", sandbox.sh(f"{SHOW[name]} -t filter").stdout, re.M)
        return match.group(1) if match else "ACCEPT"
    out = sandbox.sh("nft list chain ip netkit filter-FORWARD", check=False)
    if out.returncode != 0:
        return "ACCEPT"
    return re.search(r"policy (\w+);", out.stdout).group(1).upper()


def dnat_count(sandbox, name: str) -> int:
    """How many published-port DNAT entries the backend holds (rules, or nftables map elements)."""
    if name != "nftables":
        return sum(1 for line in show(sandbox, name, "nat").splitlines() if "-j DNAT --to-destination" in line)
    total = 0
    for map_name in ("dnat_any", "dnat_addr"):
        listing = json.loads(sandbox.sh(f"nft -j list map ip netkit {map_name}").stdout)
        total += sum(len(i["map"].get("elem", [])) for i in listing["nftables"] if "map" in i)
    return total


def every_rule(sandbox) -> str:
    """Every firewall rule of every backend (legacy x_tables and all of nf_tables), without
    counters: what "nothing changed" compares, whichever backend netkit writes."""
    import netstate

    # legacy as configuration: an empty built-in-only table appears when anyone merely reads it
    legacy = netstate.iptables_config(sandbox.sh("iptables-legacy-save 2>/dev/null", check=False).stdout)
    nft = sandbox.sh("nft list ruleset 2>/dev/null", check=False).stdout
    return order_free(legacy + "\n" + re.sub(r"counter packets \d+ bytes \d+ ?", "", nft))


def order_free(text: str) -> str:
    """The rules of netkit's order-free chains (rules.UNORDERED) sorted, in iptables-save text
    (`-A CHAIN ...` lines) and in `nft list` text (`chain CHAIN { ... }` blocks): their order is
    history (an undo appends what it puts back), not meaning. Chain names are unique across tables."""
    from netkit import rules

    free = {chain for _, chain in rules.UNORDERED}
    out: list[str] = []
    run: list[str] = []  # the current stretch of order-free rule lines
    block = None  # the nft chain block we are in, if it is order-free
    for line in text.splitlines():
        stripped = line.strip()
        chain_of_line = stripped.split()[1] if stripped.startswith("-A ") else None
        in_free = (chain_of_line in free) or (block is not None and stripped not in ("}", "")
                                              and not stripped.startswith(("type ", "policy ")))
        if run and (not in_free or (chain_of_line and run[0].strip().split()[1:2] != [chain_of_line])):
            out.extend(sorted(run))
            run = []
        if stripped.startswith("chain "):
            block = stripped.split()[1] if stripped.split()[1] in free else None
        elif stripped == "}":
            block = None
        if in_free and not stripped.startswith("chain "):
            run.append(line)
        else:
            out.append(line)
    out.extend(sorted(run))
    return "\n".join(out)
