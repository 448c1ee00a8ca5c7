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

import os
import _socket as socket  # the C module: socket.py builds enums worth ~5 ms of start-up
import sys

try:  # the C half of json: `import json` pulls in re and friends, ~5-10 ms of the client's start
    from _json import encode_basestring_ascii as _c_string
    from _json import make_encoder as _c_make_encoder
    from _json import make_scanner as _c_make_scanner
except ImportError:  # another Python than CPython: the plain module
    _c_make_encoder = None

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
    """Which netkit this is: the interpreter, and the count, sizes and mtimes of the source
    files. A daemon started before an upgrade (or an edit in a source tree) has another
    fingerprint than the client. Stat-ing ~130 files costs well under a millisecond; no hash
    module is imported for it (the client's start-up counts)."""
    count = total_size = mtime_sum = mtime_max = 0
    pending = [pkg_dir or package_dir()]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    st = entry.stat()
                    count += 1
                    total_size += st.st_size
                    mtime_sum += st.st_mtime_ns
                    mtime_max = max(mtime_max, st.st_mtime_ns)
                elif entry.name != "__pycache__" and entry.is_dir():
                    pending.append(entry.path)
    return f"{sys.version.split()[0]}-{count}-{total_size}-{mtime_max:x}-{mtime_sum % (1 << 32):08x}@{sys.prefix}"


def dumps(message: dict) -> bytes:
    if _c_make_encoder is None:
        import json

        return json.dumps(message, separators=(",", ":")).encode()

    def refuse(obj):
        raise TypeError(f"{type(obj).__name__} is not JSON")

    encoder = _c_make_encoder(None, refuse, _c_string, None, ":", ",", False, False, True)
    return "".join(encoder(message, 0)).encode()


class _Scanning:
    """The settings json.JSONDecoder hands its C scanner: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def loads(data: bytes):
    if _c_make_encoder is None:
        import json

        return json.loads(data)
    text = data.decode()
    try:
        value, end = _c_make_scanner(_Scanning())(text, 0)
    except StopIteration:
        raise ValueError("no JSON value") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data after the JSON value at {end}")
    return value


def encode(message: dict) -> bytes:
    data = dumps(message)
    return len(data).to_bytes(4, "big") + data


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    """One message; the fds travel with its first bytes (sendmsg on a stream socket may take
    only part of a large message: the rest follows plain)."""
    data = encode(message)
    if not fds:
        sock.sendall(data)
        return
    packed = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, packed)])
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
                    fds.extend(int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                               for i in range(0, len(payload) - len(payload) % 4, 4))
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
            length = int.from_bytes(buf[:4], "big")
            if length > MAX_MESSAGE:
                for fd in fds:
                    os.close(fd)
                raise ProtocolError(f"message of {length} bytes is too long")
            need, header_done = 4 + length, True
    try:
        return loads(buf[4:]), fds
    except ValueError as err:
        for fd in fds:
            os.close(fd)
        raise ProtocolError(f"bad JSON: {err}") from None
