"""The set-element batches netkit sends for the anti-spoofing sets (kernel/nftelements.py): keys
in the kernel's register layout, one message per set, the flags nft itself uses. The kernel's
reading of them is checked with real frames in tests/integration/test_security.py."""
import socket
import struct

from netkit.kernel import nftelements as ne
from netkit.kernel import nlmsg


def test_keys_take_whole_registers():
    assert ne.ifname_key("veth1") == b"veth1" + b"\0" * 11
    assert ne.ether_key("02:42:0a:c8:00:02") == bytes([2, 0x42, 0x0A, 0xC8, 0, 2, 0, 0])
    assert ne.ipv4_key("10.200.0.2") == bytes([10, 200, 0, 2])


def _walk(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        out.append((kind, data[i + 4:i + length]))
        i += (length + 3) & ~3
    return out


def test_one_message_per_set_between_begin_and_end():
    key = ne.ifname_key("v0") + ne.ether_key("02:00:00:00:00:01")
    data = ne.batch("bridge", "netkit", [("guarded", ne.ifname_key("v0")), ("mac_ok", key)], seq=7)
    msgs = list(nlmsg.messages(data))
    assert [(kind, seq) for kind, seq, _, _ in msgs] == [(0x10, 7), (0xA0C, 8), (0xA0C, 9), (0x11, 10)]
    flags = [struct.unpack_from("=H", data, off + 6)[0] for off in _offsets(data)]
    assert flags[1] == flags[2] == 0x1 | 0x4 | 0x400  # REQUEST | ACK | CREATE, as `nft add element`
    family, _, res = struct.unpack_from("=BBH", msgs[2][3])
    assert family == 7 and socket.ntohs(res) == 0
    attrs = _walk(msgs[2][3][4:])
    assert attrs[0] == (1, b"netkit\0") and attrs[1] == (2, b"mac_ok\0")
    kind, elements = attrs[2]
    assert kind == 3 | 0x8000
    [(elem_kind, elem)] = _walk(elements)
    [(key_kind, key_attr)] = _walk(elem)
    assert elem_kind == key_kind == 1 | 0x8000 and _walk(key_attr) == [(1, key)]
    deleting = ne.batch("bridge", "netkit", [("guarded", ne.ifname_key("v0"))], delete=True)
    assert [kind for kind, _, _, _ in nlmsg.messages(deleting)] == [0x10, 0xA0E, 0x11]


def _offsets(data: bytes) -> list[int]:
    out, i = [], 0
    while i + 16 <= len(data):
        out.append(i)
        i += (struct.unpack_from("=I", data, i)[0] + 3) & ~3
    return out
