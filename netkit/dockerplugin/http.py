"""Just enough HTTP/1.1 for Docker's plugin client on a unix socket: POST with a JSON body,
keep-alive, one JSON answer each. Runs in a forked child of netkitd per connection."""
from __future__ import annotations

import json
import socket

IDLE_TIMEOUT = 30.0  # dockerd keeps connections open; an idle one ends this child
MAX_BODY = 1 << 20
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


def _read_request(stream) -> tuple[str, str, bytes] | None:
    line = stream.readline(8192)
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    length = 0
    while True:
        header = stream.readline(8192)
        if header in (b"\r\n", b"\n", b""):
            break
        key, _, value = header.decode("latin-1").partition(":")
        if key.strip().lower() == "content-length":
            length = int(value.strip())
    if length > MAX_BODY:
        raise ValueError("request body too large")
    return method, path, stream.read(length) if length else b""


def _send(conn: socket.socket, status: int, answer: dict) -> None:
    from netkit.dockerplugin.handlers import CONTENT_TYPE

    data = json.dumps(answer).encode()
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    conn.sendall(head + data)


def serve_connection(conn: socket.socket, handle=None) -> None:
    """Answer the requests of one connection until the client closes it or stays idle. `handle`:
    (path, body, answer_early) -> (status, answer) or None; default netkit's driver."""
    if handle is None:
        from netkit.dockerplugin.handlers import handle

    conn.settimeout(IDLE_TIMEOUT)
    stream = conn.makefile("rb")
    try:
        while True:
            try:
                request = _read_request(stream)
            except (OSError, ValueError):
                return
            if request is None:
                return
            method, path, body = request
            if method != "POST":
                _send(conn, 405, {"Err": "POST only"})
                continue
            answered: list = []  # one answer per request, early or not

            def early(status: int, answer: dict) -> None:
                answered.append(status)
                _send(conn, status, answer)
            result = handle(path, body, early)
            if result is not None and not answered:  # else answered early, and finished since
                _send(conn, *result)
    finally:
        stream.close()
        conn.close()
