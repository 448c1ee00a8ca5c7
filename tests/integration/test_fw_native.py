"""iptables-nft backend: the per-container raw DROP rule written and deleted by netkit itself in one
nf_tables transaction (kernel/fw/nftexpr.py + nfthandles.py), read with iptables-nft's and nft's
own tools: identical to the rule `iptables-nft -A` writes, deletable by `iptables -D` text, a rule
iptables-nft wrote deleted in-process by a fresh `netkit rm`, and the protection dropping real
packets. Who committed each nf_tables transaction is read from the kernel's NEWGEN events (the
committing program's name), not from netkit."""
import re
import socket
import struct

import pytest

from fwbackend import use_backend
from publish_helpers import ask
from publish_helpers import servers  # noqa: F401,F811 - a fixture: pytest finds it by name
from required import need

pytestmark = pytest.mark.root
UP = "198.18.0.1"
NETLINK_NETFILTER, NFNLGRP_NFTABLES, NFT_MSG_NEWGEN, NFTA_GEN_PROC_NAME = 12, 7, 15, 3


class Committers:
    """The names of the programs that commit nf_tables transactions while it listens."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setsockopt(270, 1, NFNLGRP_NFTABLES)  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP

    def read(self) -> list[str]:
        names = []
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return names
            i = 0
            while i + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, i)
                if kind == (10 << 8) | NFT_MSG_NEWGEN:
                    j = i + 20
                    while j + 4 <= i + length:
                        alen, atype = struct.unpack_from("=HH", data, j)
                        if atype & 0x3FFF == NFTA_GEN_PROC_NAME:
                            names.append(data[j + 4:j + alen].split(b"\0")[0].decode())
                        j += (alen + 3) & ~3
                i += (length + 3) & ~3


def debug_blocks(sandbox) -> dict[int, str]:
    """`nft --debug=netlink list chain ip raw NETKIT-RAW`: each rule's expressions by its handle."""
    out = sandbox.sh("nft --debug=netlink list chain ip raw NETKIT-RAW").stdout
    blocks = {}
    for block in out.split("\n\n"):
        head, _, body = block.strip().partition("\n")
        match = re.match(r"ip raw NETKIT-RAW (\d+)", head)
        if match:
            blocks[int(match.group(1))] = re.sub(r"counter pkts \d+ bytes \d+", "counter", body)
    return blocks


def raw_rules(sandbox) -> list[str]:
    return [line for line in sandbox.sh("iptables-nft -t raw -S NETKIT-RAW").stdout.splitlines()
            if line.startswith("-A ")]


def test_the_raw_drop_rule_is_written_in_process_as_iptables_nft_writes_it(sandbox, servers):
    need("iptables-nft", "iptables-nft-save", "nft")
    use_backend("iptables-nft")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    watch = Committers()
    web_rule = "-A NETKIT-RAW -d 172.20.0.2/32 ! -i br-app -j DROP"
    sandbox.netkit("container", "create", "web", "--net", "app")
    names = watch.read()
    assert names  # netkit committed (the bridge anti-spoofing table and the raw rule)
    assert not [n for n in names if n.startswith("iptables")], "in-process, no iptables-nft-restore"
    assert raw_rules(sandbox) == [web_rule]
    assert web_rule in sandbox.sh("iptables-nft-save -t raw").stdout

    # the protection drops real packets: a routed neighbour cannot reach web's unpublished port
    servers("web", "tcp", 81)
    sandbox.ns("outside", f"ip route add 172.20.0.0/24 via {UP}")
    assert ask(None, "tcp", "172.20.0.2", 81) is not None  # the host itself may
    assert ask("outside", "tcp", "172.20.0.2", 81, timeout=0.7) is None

    # the same rule written by iptables-nft: byte for byte the same expressions
    (ours,) = debug_blocks(sandbox).items()
    sandbox.sh(f"iptables-nft -w -t raw {web_rule}")
    theirs = {h: b for h, b in debug_blocks(sandbox).items() if h != ours[0]}
    assert list(theirs.values()) == [ours[1]]
    assert "[ cmp neq reg 1 0x612d7262 0x00007070 ]" in ours[1] and "[ immediate reg 0 drop ]" in ours[1]
    # `iptables -D` by text deletes the first of the two: the one netkit wrote
    sandbox.sh(f"iptables-nft -w -t raw {web_rule.replace('-A', '-D', 1)}")
    assert list(debug_blocks(sandbox)) == list(theirs)
    assert raw_rules(sandbox) == [web_rule]

    # the rule iptables-nft wrote is deleted by a fresh `netkit rm`, in-process (found by reading
    # the chain), and a second container's rule comes and goes the same way
    watch.read()
    sandbox.netkit("container", "create", "db", "--net", "app")
    assert raw_rules(sandbox) == [web_rule, "-A NETKIT-RAW -d 172.20.0.3/32 ! -i br-app -j DROP"]
    sandbox.netkit("container", "rm", "-f", "web")
    sandbox.netkit("container", "rm", "-f", "db")
    assert raw_rules(sandbox) == []
    assert not [n for n in watch.read() if n.startswith("iptables")], "no iptables-nft-restore for the deletes"
    assert "NETKIT-RAW" in sandbox.sh("nft list chain ip raw NETKIT-RAW").stdout  # the chain itself stays


def test_identical_duplicates_and_other_rules_still_go_by_text(sandbox):
    """Two identical copies of a container's rule: which one `iptables -D` removes is iptables'
    choice, so netkit leaves the delete to iptables-nft-restore (one copy goes)."""
    need("iptables-nft", "nft")
    use_backend("iptables-nft")
    sandbox.netkit("network", "create", "app", "--subnet", "172.20.0.0/24")
    sandbox.netkit("container", "create", "web", "--net", "app")
    rule = "-A NETKIT-RAW -d 172.20.0.2/32 ! -i br-app -j DROP"
    sandbox.sh(f"iptables-nft -w -t raw {rule}")
    watch = Committers()
    sandbox.netkit("container", "rm", "-f", "web")
    assert raw_rules(sandbox) == [rule]
    assert [n for n in watch.read() if n.startswith("iptables")], "the delete went through iptables-nft-restore"


def test_every_native_form_matches_iptables_nft_and_a_failed_batch_changes_nothing(sandbox, monkeypatch):
    """Each form nftexpr encodes, written by the backend in-process and by `iptables-nft -A`: the
    same expressions in `nft --debug=netlink`, the same line twice in iptables-nft-save. A batch
    whose second rule names a chain that does not exist commits nothing (then iptables-nft-restore
    fails too: one clear error, nothing changed)."""
    need("iptables-nft", "iptables-nft-save", "nft")
    from netkit import rules
    from netkit.errors import KernelError
    from netkit.kernel import fw

    backend = fw.get("iptables-nft")
    restores = []
    monkeypatch.setattr(type(backend), "_restore", lambda self, ops: restores.append(ops) or 0)
    specs = ["-d 10.220.0.5/32 ! -i nk-cni0 -j DROP", "-s 10.1.2.3/32 -o eth0 -j ACCEPT",
             "! -s 10.1.2.3/32 -d 10.1.2.4/32 -i a -o averylongname15 -j RETURN", "-d 127.0.0.1/32 ! -i lo -j DROP"]
    sandbox.sh("iptables-nft -w -t raw -N NETKIT-RAW")
    for spec in specs:
        backend.apply([rules.Op("raw", "A", "NETKIT-RAW", spec)], thorough=True)
        sandbox.sh(f"iptables-nft -w -t raw -A NETKIT-RAW {spec}")
    assert restores == []
    blocks = list(debug_blocks(sandbox).values())
    assert len(blocks) == 2 * len(specs) and blocks[0::2] == blocks[1::2]
    assert raw_rules(sandbox) == [f"-A NETKIT-RAW {s}" for s in specs for _ in (1, 2)]

    before = sandbox.sh("nft list ruleset").stdout
    monkeypatch.undo()
    with pytest.raises(KernelError, match="nothing was changed"):
        backend.apply([rules.Op("raw", "A", "NETKIT-RAW", "-d 10.9.9.9/32 -j DROP"),
                       rules.Op("raw", "A", "NETKIT-NOSUCH", "-d 10.9.9.8/32 -j DROP")], thorough=False)
    assert sandbox.sh("nft list ruleset").stdout == before
