"""The nf_tables encoding of native iptables rules (netkit/kernel/fw/nftexpr.py), without root.

SENT is the NFTA_RULE_EXPRESSIONS payload `iptables-nft -A NETKIT-RAW -d 10.220.0.5/32 ! -i nk-cni0
-j DROP` (iptables v1.8.9, nf_tables) sent, read with `strace -e sendmsg -xx` in a sandbox.
DUMPED is the same rule as kernel 6.18 returned it in an NFT_MSG_GETRULE dump (no NLA_F_NESTED
flags, the counter's values being what the rule counted): the reader must take it as the same rule.
"""
import struct

import pytest

from netkit.kernel.fw import nftexpr

SPEC = "-d 10.220.0.5/32 ! -i nk-cni0 -j DROP"
SENT = bytes.fromhex(
    "24000180090001006d6574610000000014000280080002000000000608000100000000013000018008000100636d7000"
    "2400028008000100000000010800020000000001100003800c0001006e6b2d636e693000340001800c0001007061796c"
    "6f6164002400028008000100000000010800020000000001080003000000001008000400000000042c00018008000100"
    "636d700020000280080001000000000108000200000000000c000380080001000adc00052c0001800c000100636f756e"
    "746572001c0002800c00010000000000000000000c0002000000000000000000300001800e000100696d6d6564696174"
    "650000001c0002800800010000000000100002800c0002800800010000000000")
DUMPED = bytes.fromhex(
    "24000100090001006d6574610000000014000200080002000000000608000100000000013000010008000100636d7000"
    "2400020008000100000000010800020000000001100003000c0001006e6b2d636e693000340001000c0001007061796c"
    "6f6164002400020008000100000000010800020000000001080003000000001008000400000000042c00010008000100"
    "636d700020000200080001000000000108000200000000000c000300080001000adc00052c0001000c000100636f756e"
    "746572001c0002000c00010000000000000000000c0002000000000000000000300001000e000100696d6d6564696174"
    "650000001c0002000800010000000000100002000c0002000800010000000000")


def test_the_raw_drop_rule_is_the_bytes_iptables_nft_sends():
    assert nftexpr.expressions(SPEC) == SENT
    attrs = nftexpr.rule_attrs("raw", "NETKIT-RAW", SPEC)
    # table, chain, expressions, then the compat attribute iptables-nft adds (protocol 0, flags 0)
    assert attrs.startswith(b"\x08\x00\x01\x00raw\x00" + b"\x0f\x00\x02\x00NETKIT-RAW\x00\x00")
    assert attrs.endswith(b"\x14\x00\x05\x80\x08\x00\x01\x00\x00\x00\x00\x00\x08\x00\x02\x00\x00\x00\x00\x00")
    assert len(attrs) == 320  # iptables-nft's NEWRULE was 340 bytes: 16 header + 4 nfgenmsg + 320


def test_a_dumped_rule_reads_as_the_spec_whatever_its_counters():
    counted = DUMPED.replace(b"\x0c\x00\x01\x00" + bytes(8), b"\x0c\x00\x01\x00" + struct.pack("!Q", 8420), 1)
    assert counted != DUMPED
    for dumped in (DUMPED, counted):
        assert nftexpr.signature(dumped) == nftexpr.spec_signature(SPEC)
    assert all(v in DUMPED for v in nftexpr.values(SPEC))
    for other in ("-d 10.220.0.6/32 ! -i nk-cni0 -j DROP", "-d 10.220.0.5/32 -i nk-cni0 -j DROP",
                  "-d 10.220.0.5/32 ! -i nk-cni1 -j DROP", "-d 10.220.0.5/32 ! -i nk-cni0 -j ACCEPT",
                  "-s 10.220.0.5/32 ! -i nk-cni0 -j DROP", "-d 10.220.0.5/32 -j DROP"):
        assert nftexpr.signature(DUMPED) != nftexpr.spec_signature(other), other


@pytest.mark.parametrize("spec", [
    "-d 10.0.0.0/24 ! -i br0 -j DROP",  # a mask: bitwise expression, not encoded here
    "-d 10.0.0.1/32 ! -i br+ -j DROP",  # wildcard interface
    "-p tcp -m tcp --dport 80 -j DROP",
    "-d 10.0.0.1/32 -j DNAT --to-destination 10.0.0.2",
    "-j NETKIT-ISOLATION-STAGE-1",
    "-d 10.0.0.1/32 -d 10.0.0.2/32 -j DROP",
    "-d 10.0.0.1/32 ! -j DROP",
    "-d 10.0.0.1 -j DROP",
    "-i averyveryverylongname -j DROP",
    "-d 10.0.0.1/32",
])
def test_other_rules_are_left_to_iptables_nft(spec):
    assert nftexpr.expressions(spec) is None and not nftexpr.native(spec)


def test_order_and_verdicts_follow_iptables_nft():
    exprs = nftexpr.signature(nftexpr.expressions("-s 10.1.2.3/32 ! -d 10.1.2.4/32 -i a -o b -j RETURN"))
    assert [name for name, _ in exprs] == ["meta", "cmp", "meta", "cmp", "payload", "cmp", "payload", "cmp",
                                           "counter", "immediate"]
    assert nftexpr.expressions("-j ACCEPT").endswith(b"\x08\x00\x01\x00\x00\x00\x00\x01")
    assert nftexpr.expressions("-j RETURN").endswith(b"\x08\x00\x01\x00\xff\xff\xff\xfb")


def test_changes_left_to_iptables_nft_restore_open_no_socket(monkeypatch):
    """What nfthandles.change declines before any netlink: anything but appends and deletes, a
    chain not netkit's (or NETKIT-USER), a non-native append, a non-native delete with no handle
    known, more than NATIVE_MAX rules, the same delete twice."""
    from netkit import rules
    from netkit.kernel.fw import nfthandles

    def no_socket(create):
        assert not create, "a tracker (netlink sockets) was made for a change that cannot go in-process"
        return None

    monkeypatch.setattr(nfthandles, "_tracker", no_socket)
    raw = "-d 10.0.0.2/32 ! -i br0 -j DROP"
    declined = [
        [rules.Op("raw", "N", "NETKIT-RAW")],
        [rules.Op("raw", "I", "NETKIT-RAW", raw, pos=1)],
        [rules.Op("raw", "A", "PREROUTING", raw)],
        [rules.Op("filter", "A", rules.CHAIN_USER, raw)],
        [rules.Op("raw", "A", "NETKIT-RAW", raw), rules.Op("nat", "A", "NETKIT", "-j DNAT --to-destination 1.2.3.4")],
        [rules.Op("nat", "D", "NETKIT", "-p tcp -m tcp --dport 80 -j DNAT --to-destination 1.2.3.4:80")],
        [rules.Op("raw", "A", "NETKIT-RAW", f"-d 10.0.{i // 250}.{i % 250}/32 -j DROP") for i in range(129)],
        [rules.Op("raw", "D", "NETKIT-RAW", raw)] * 2,
    ]
    for ops in declined:
        assert nfthandles.change(ops) is False, ops[0].text()
