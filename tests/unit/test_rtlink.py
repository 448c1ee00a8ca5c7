"""kernel/rtlink.py's batch on a socket kept open, against a fake kernel that answers as rtnetlink
does: replies then an ack per request, each in its own datagram, stale acks of an earlier batch
first. The real requests are checked against the kernel by the integration tests (test_cni.py,
test_core.py); here, what the messages carry and how answers are matched."""
from __future__ import annotations

import errno
import socket
import struct

import pytest

from netkit.kernel import nlmsg, rtlink


class FakeKernel:
    """send: parse the requests; recv: hand back the answers one datagram at a time."""

    def __init__(self, refuse: dict[int, int] | None = None, index: int = 7):
        self.refuse = refuse or {}  # message type -> errno
        self.index = index
        self.sent: list[tuple[int, int, bytes]] = []  # (type, flags, payload)
        self.queue = [self._message(rtlink.NLMSG_ERROR, 999_999_999, struct.pack("=i", 0))]  # stale

    @staticmethod
    def _message(kind: int, seq: int, body: bytes) -> bytes:
        return nlmsg.HEADER.pack(nlmsg.HEADER.size + len(body), kind, 0, seq, 0) + body

    def send(self, data: bytes) -> int:
        i = 0
        while i < len(data):
            length, kind, flags, seq, _port = nlmsg.HEADER.unpack_from(data, i)
            payload = data[i + nlmsg.HEADER.size:i + length]
            i += (length + 3) & ~3
            self.sent.append((kind, flags, payload))
            if kind in self.refuse:
                self.queue.append(self._message(rtlink.NLMSG_ERROR, seq, struct.pack("=i", -self.refuse[kind])))
                continue
            if kind == rtlink.RTM_GETLINK:
                self.queue.append(self._message(rtlink.RTM_NEWLINK, seq, rtlink.IFINFO.pack(0, 1, self.index, 0, 0)))
            self.queue.append(self._message(rtlink.NLMSG_ERROR, seq, struct.pack("=i", 0)))
        return len(data)

    def recv(self, _size: int) -> bytes:
        return self.queue.pop(0)


def attrs(payload: bytes) -> dict[int, bytes]:
    found, i = {}, 0
    while i + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, i)
        found[kind] = payload[i + 4:i + length]
        i += (length + 3) & ~3
    return found


def test_configure_sends_up_address_route_by_the_index_it_looked_up():
    kernel = FakeKernel(index=7)
    rtlink.configure(kernel, "eth0", "10.0.0.2", 24, "10.0.0.1")
    kinds = [kind for kind, _flags, _payload in kernel.sent]
    assert kinds == [rtlink.RTM_GETLINK, rtlink.RTM_NEWLINK, rtlink.RTM_NEWADDR, rtlink.RTM_NEWROUTE]
    assert attrs(kernel.sent[0][2][rtlink.IFINFO.size:])[rtlink.IFLA_IFNAME] == b"eth0\0"
    _family, _type, index, flags, change = rtlink.IFINFO.unpack_from(kernel.sent[1][2])
    assert (index, flags & rtlink.IFF_UP, change & rtlink.IFF_UP) == (7, 1, 1)
    family, plen, _flags, scope, index = rtlink.IFADDR.unpack_from(kernel.sent[2][2])
    assert (family, plen, scope, index) == (socket.AF_INET, 24, 0, 7)
    address = attrs(kernel.sent[2][2][rtlink.IFADDR.size:])
    assert address == {rtlink.IFA_LOCAL: socket.inet_aton("10.0.0.2"), rtlink.IFA_ADDRESS: socket.inet_aton("10.0.0.2")}
    route = rtlink.RTMSG.unpack_from(kernel.sent[3][2])
    assert route == (socket.AF_INET, 0, 0, 0, rtlink.RT_TABLE_MAIN, rtlink.RTPROT_STATIC, 0, rtlink.RTN_UNICAST, 0)
    assert attrs(kernel.sent[3][2][rtlink.RTMSG.size:]) == {rtlink.RTA_GATEWAY: socket.inet_aton("10.0.0.1")}
    for _kind, flags, _payload in kernel.sent[2:]:  # add, never replace: an existing one is an error
        assert flags & rtlink.NLM_F_CREATE and flags & rtlink.NLM_F_EXCL and flags & rtlink.NLM_F_ACK
    assert not kernel.queue  # every answer read: nothing left for the socket's next batch


def test_no_gateway_no_route():
    kernel = FakeKernel()
    rtlink.configure(kernel, "eth1", "10.1.0.2", 16, None)
    assert [kind for kind, _f, _p in kernel.sent][-1] == rtlink.RTM_NEWADDR


@pytest.mark.parametrize("kind, step", [(rtlink.RTM_GETLINK, "find 'eth0'"),
                                        (rtlink.RTM_NEWADDR, "add address 10.0.0.2/24 to 'eth0'"),
                                        (rtlink.RTM_NEWROUTE, "add the default route via 10.0.0.1")])
def test_a_refusal_names_its_request_with_the_kernels_errno(kind, step):
    kernel = FakeKernel(refuse={kind: errno.EEXIST})
    with pytest.raises(rtlink.LinkError) as caught:
        rtlink.configure(kernel, "eth0", "10.0.0.2", 24, "10.0.0.1")
    assert (caught.value.errno, caught.value.strerror, caught.value.step) == (errno.EEXIST, "File exists", step)
    assert not kernel.queue  # the acks after the refused one were read too
