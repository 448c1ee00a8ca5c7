"""A PACKET_MMAP receive ring (TPACKET_V3) on a raw AF_PACKET socket: the kernel writes frames
into blocks of memory shared with us, so a burst waits in the ring instead of in skb queues
charged against the socket's receive buffer, and reading costs no system call per packet.

Layout (linux/if_packet.h): the ring is `blocks` blocks of `block_size` bytes; a block holds a
tpacket_block_desc header, then packets, each a tpacket3_hdr followed (at TPACKET_ALIGN(48)) by
a sockaddr_ll and, at tp_mac, the frame. A block belongs to us while its block_status has
TP_STATUS_USER; writing TP_STATUS_KERNEL gives it back. A block is handed over when full or
after `retire_ms` milliseconds.
"""
from __future__ import annotations

import mmap
import socket
import struct
import sys

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
PACKET_OUTGOING = 4

# A block is handed over when full or after RETIRE_MS, so at low rates each block carries only
# RETIRE_MS worth of frames: many small blocks and a longer timeout keep a stalled reader
# (2 cores shared with the traffic itself) from running out of blocks. 32 MiB per interface
# holds ~160k small frames: a whole 3 s burst at 50k packets/s even if the reader fell behind.
BLOCK_SIZE = 256 << 10
BLOCKS = 128
FRAME_SIZE = 2048  # only a sanity unit for TPACKET_V3 (frames are packed back to back)
RETIRE_MS = 40

_REQ3 = struct.Struct("IIIIIII")  # block_size, block_nr, frame_size, frame_nr, retire_blk_tov, priv, features
_BLOCK = struct.Struct("<IIIII")  # version, offset_to_priv, block_status, num_pkts, offset_to_first_pkt
_PKT = struct.Struct("<IIIIIIHH")  # next_offset, sec, nsec, snaplen, len, status, mac, net
_SLL_PKTTYPE = 48 + 10  # sockaddr_ll after the 48-byte header; sll_pkttype at offset 10 in it
_SLL_HATYPE = 48 + 8
ARPHRD_LOOPBACK = 772


class Ring:
    """The RX ring of one socket. Set it up before bind(); read with drain()."""

    def __init__(self, sock: socket.socket, block_size: int = BLOCK_SIZE, blocks: int = BLOCKS):
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = _REQ3.pack(block_size, blocks, FRAME_SIZE, block_size * blocks // FRAME_SIZE, RETIRE_MS, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.size, self.block_size, self.blocks = block_size * blocks, block_size, blocks
        self.map = mmap.mmap(sock.fileno(), self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        self.next = 0  # the next block to look at: the kernel fills them in order

    def take(self, keep) -> int:
        """Copy every block the kernel has handed over, whole, to keep(bytes), and give it back:
        one memcpy per block instead of Python work per frame (parse() later). Returns frames."""
        n = 0
        mm, view = self.map, self.view
        while True:
            base = self.next * self.block_size
            _, _, status, num, _first = _BLOCK.unpack_from(mm, base)
            if not status & TP_STATUS_USER:
                return n
            used = _BLK_LEN.unpack_from(mm, base + 20)[0]
            keep(bytes(view[base:base + used]))
            n += num
            struct.pack_into("<I", mm, base + 8, TP_STATUS_KERNEL)
            self.next = (self.next + 1) % self.blocks

    def drain(self, point: int, append, record) -> int:
        """Frames of every handed-over block to append(record(ts, point, outgoing, data)) now."""
        blocks: list[bytes] = []
        self.take(blocks.append)
        return sum(parse(b, point, append, record) for b in blocks)

    def close(self) -> None:
        self.view.release()
        self.map.close()


_BLK_LEN = struct.Struct("<I")


def parse(block: bytes, point: int, append, record) -> int:
    """The frames of one block (as copied by Ring.take) to append(record(ts, point, outgoing, data))."""
    _, _, _, num, first = _BLOCK.unpack_from(block, 0)
    unpack_pkt = _PKT.unpack_from
    off, n = first, 0
    for _ in range(num):
        nxt, sec, nsec, snaplen, _len, _st, mac, _net = unpack_pkt(block, off)
        pkttype = block[off + _SLL_PKTTYPE]
        hatype = int.from_bytes(block[off + _SLL_HATYPE:off + _SLL_HATYPE + 2], sys.byteorder)
        # lo shows each packet twice (sent and received); keep one, as libpcap does.
        if not (pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK):
            append(record(sec * 1_000_000_000 + nsec, point, pkttype == PACKET_OUTGOING,
                          block[off + mac:off + mac + snaplen]))
            n += 1
        off += nxt
    return n
