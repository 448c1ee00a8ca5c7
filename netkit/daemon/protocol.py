"""What a client and netkitd say to each other on the unix socket, and the facts both compare.

Standard library only: the `netkit` command imports this on its fast path, before it knows
whether a daemon runs. A message is a 4-byte big-endian length and a JSON object. The request
carries the client's stdin, stdout and stderr as SCM_RIGHTS file descriptors, so the command's
output goes straight to wherever the client's own would have gone (terminal, pipe, file).

    client -> daemon   {"program": "netkit"|"cni", "argv": [...], "env": {...}, "cwd": ..., ...}
                       + fds 0, 1, 2
    daemon -> client   {"refused": REASON}    nothing ran: the client runs in-process
                    or {"started": PID}       the command runs in PID (the client forwards
                                              Ctrl-C to it), then
                       {"exit": CODE}         its exit status, as a shell would report it
"""
from __future__ import annotations

import array
import json
import os
import _socket as socket  # the C module: socket.py builds enums worth ~5 ms of start-up
import struct
import sys
import zlib

SOCKET_NAME = "netkit.sock"
PIDFILE_NAME = "netkitd.pid"
MAX_MESSAGE = 4 << 20  # an environment is a few KB; anything near this is not ours
# Namespaces the client and the daemon must share for a command to mean the same thing in
# both: interfaces (net), paths such as --netns or a cwd (mnt), PIDs for --pid and Ctrl-C
# (pid), and the credentials behind them (user).
NAMESPACES = ("net", "mnt", "pid", "user")


def run_dir() -> str:
    return os.environ.get("NETKIT_RUN_DIR", "/run/netkit")


def socket_path() -> str:
    return os.path.join(run_dir(), SOCKET_NAME)


def pidfile_path() -> str:
    return os.path.join(run_dir(), PIDFILE_NAME)


def namespaces() -> dict[str, str]:
    """This process's namespaces, e.g. {"net": "net:[4026531840]", ...}, plus its root."""
    ids = {}
    for kind in NAMESPACES:
        try:
            ids[kind] = os.readlink(f"/proc/self/ns/{kind}")
        except OSError:
            ids[kind] = "?"
    try:
        ids["root"] = os.readlink("/proc/self/root")  # a chroot inside the same mount ns
    except OSError:
        ids["root"] = "?"
    return ids


def package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fingerprint(pkg_dir: str | None = None) -> str:
    """Which netkit this is: the interpreter, and every source file's size and mtime. A daemon
    started before an upgrade (or an edit in a source tree) has another fingerprint than the
    client; stat-ing ~60 files costs well under a millisecond."""
    pkg_dir = pkg_dir or package_dir()
    parts = [sys.prefix, sys.version]
    for top, dirs, files in os.walk(pkg_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                st = os.stat(os.path.join(top, name))
                parts.append(f"{os.path.relpath(os.path.join(top, name), pkg_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return f"{zlib.crc32(chr(0).join(parts).encode()):08x}-{len(parts)}"


def encode(message: dict) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">I", len(data)) + data


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    """One message; the fds travel with its first bytes (sendmsg on a stream socket may take
    only part of a large message: the rest follows plain)."""
    data = encode(message)
    if not fds:
        sock.sendall(data)
        return
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    if sent < len(data):
        sock.sendall(data[sent:])


class ProtocolError(Exception):
    pass


def recv(sock: socket.socket, want_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message and the fds that came with it; (None, []) on a clean EOF before any byte."""
    fds: list[int] = []
    buf = b""
    header_done = False
    need = 4
    while len(buf) < need:
        if want_fds and not fds:
            chunk, ancdata, _flags, _addr = sock.recvmsg(need - len(buf), socket.CMSG_SPACE(want_fds * 4))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                    fds.extend(arr)
        else:
            chunk = sock.recv(need - len(buf))  # exactly: the next message may follow at once
        if not chunk:
            for fd in fds:
                os.close(fd)
            if not buf:
                return None, []
            raise ProtocolError("connection closed in the middle of a message")
        buf += chunk
        if not header_done and len(buf) >= 4:
            length = struct.unpack(">I", buf[:4])[0]
            if length > MAX_MESSAGE:
                for fd in fds:
                    os.close(fd)
                raise ProtocolError(f"message of {length} bytes is too long")
            need, header_done = 4 + length, True
    try:
        return json.loads(buf[4:]), fds
    except ValueError as err:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"bad JSON: {err}") from None
