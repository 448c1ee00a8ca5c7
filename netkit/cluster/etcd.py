"""A small etcd v3 client over the JSON gateway every etcd server serves on its client port
(POST /v3/kv/range, /v3/kv/txn, /v3/watch, /v3/lease/...), written with the standard library.

Why not a gRPC client library: docs/multihost.md, "The etcd client". Keys and values travel
base64-encoded and 64-bit integers as strings, as the gateway's protobuf JSON mapping wants; this
module hides both and speaks str/int. Every network failure becomes StoreUnavailable, one line.
"""
from __future__ import annotations

import base64
import json
import socket
from dataclasses import dataclass

from netkit.config import parse_store_url
from netkit.errors import EnvError

DEFAULT_TIMEOUT = 2.0  # a store that does not answer within this is treated as down


class StoreUnavailable(EnvError):
    """The cluster store cannot be reached or refused the request (exit 1)."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class Event:
    kind: str  # "PUT" or "DELETE"
    key: str
    value: str  # empty for DELETE
    mod_revision: int


class _HttpError(ConnectionError):
    """The server's answer is not the HTTP/1.1 the gateway speaks (or it closed the connection)."""


class _Http:
    """HTTP/1.1 on one TCP connection, as much as the gateway needs: a POST with a JSON body, and
    an answer with Content-Length, chunked (the watch and keep-alive streams) or up to the close.
    http.client would do, but it imports email.parser and ssl (~14 ms at every overlay
    command's start, docs/multihost.md); every failure here is an OSError, as a socket's."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def request(self, path: str, body: bytes) -> tuple[int, dict]:
        """Send the POST; the answer's status and headers (names in lower case)."""
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.sock.sendall(head + body)
        status_line = self.rfile.readline(65537)
        if not status_line:
            raise _HttpError("the store closed the connection")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise _HttpError(f"not an HTTP answer: {status_line[:60]!r}")
        headers = {}
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise _HttpError("the store closed the connection in the headers")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def _exact(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise _HttpError("the store closed the connection in an answer")
        return data

    def chunks(self, headers: dict):
        """The answer's body piece by piece, as it arrives."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    raise _HttpError("the store closed the connection in a chunked answer")
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _HttpError(f"bad chunk size {size_line[:20]!r}") from None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                yield self._exact(size)
                self._exact(2)  # the CRLF after each chunk
        elif "content-length" in headers:
            yield self._exact(int(headers["content-length"]))
        else:
            yield self.rfile.read()

    def body(self, headers: dict) -> bytes:
        return b"".join(self.chunks(headers))

    def lines(self, headers: dict):
        """The answer's body line by line (the gateway streams one JSON message a line)."""
        pending = b""
        for chunk in self.chunks(headers):
            pending += chunk
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line + b"\n"
        if pending:
            yield pending


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str | None) -> str:
    return base64.b64decode(text or "").decode()


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range cover every key starting with `prefix` (etcd's rule:
    the prefix with its last byte plus one)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return raw.decode()


def _kv(raw: dict) -> KeyValue:
    return KeyValue(_unb64(raw.get("key")), _unb64(raw.get("value")), int(raw.get("create_revision", 0)),
                    int(raw.get("mod_revision", 0)), int(raw.get("lease", 0)))


class Etcd:
    """One connection to one etcd server. Not thread-safe: give each thread its own."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT):
        self.url = url
        self.host, self.port = parse_store_url(url)
        self.timeout = timeout
        self._conn: _Http | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _unavailable(self, err: Exception) -> StoreUnavailable:
        why = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return StoreUnavailable(f"cluster store {self.url} is unreachable ({why}); overlay networks cannot "
                                f"change until it is back (single-host networks are not affected)")

    def _post(self, path: str, body: dict) -> dict:
        """One request on the kept-alive connection; a stale connection is retried once."""
        data = json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = _Http(self.host, self.port, self.timeout)
                status, headers = self._conn.request(path, data)
                payload = self._conn.body(headers)
                if headers.get("connection", "").lower() == "close":
                    self.close()
            except OSError as err:
                self.close()
                # A refused or timed-out connect is final; a kept-alive socket the server closed
                # meanwhile (it restarted) deserves one fresh try.
                if attempt == 2 or isinstance(err, (ConnectionRefusedError, socket.timeout)):
                    raise self._unavailable(err) from None
                continue
            return self._decode(path, status, payload)
        raise AssertionError("unreachable")

    def _decode(self, path: str, status: int, payload: bytes) -> dict:
        try:
            doc = json.loads(payload or b"{}")
        except ValueError:
            doc = {"error": payload[:200].decode(errors="replace")}
        if status != 200 or "error" in doc:
            message = doc.get("message") or doc.get("error") or f"HTTP {status}"
            raise StoreUnavailable(f"cluster store {self.url} refused {path}: {message}")
        return doc

    # ---- key-value ------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        kvs = self._post("/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under prefix, and the store revision the answer is valid at."""
        doc = self._post("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return [_kv(kv) for kv in doc.get("kvs", [])], int(doc["header"]["revision"])

    def put(self, key: str, value: str, lease: int = 0) -> int:
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self._post("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> int:
        """Number of keys deleted (0 or 1)."""
        return int(self._post("/v3/kv/deleterange", {"key": _b64(key)}).get("deleted", 0))

    def delete_prefix(self, prefix: str) -> int:
        body = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        return int(self._post("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, compare: list[dict], success: list[dict]) -> bool:
        """Run `success` (built with put_op/delete_op) atomically if every `compare` (built with
        absent/unchanged) holds; False, with nothing written, when one does not."""
        return bool(self._post("/v3/kv/txn", {"compare": compare, "success": success}).get("succeeded", False))

    # ---- leases ---------------------------------------------------------------------------

    def lease_grant(self, ttl: int) -> int:
        return int(self._post("/v3/lease/grant", {"TTL": str(ttl)})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Refresh the lease; its new TTL, 0 if it has expired (the keys on it are gone)."""
        # The gateway maps the keep-alive stream to one request and one streamed answer: read
        # the first message, then drop the connection (a kept one would still be streaming).
        doc = self._stream_first("/v3/lease/keepalive", {"ID": str(lease)})
        return int(doc.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        try:
            self._post("/v3/lease/revoke", {"ID": str(lease)})
        except StoreUnavailable as err:
            if "not found" not in str(err):
                raise

    def _stream_first(self, path: str, body: dict) -> dict:
        conn = None
        try:
            conn = _Http(self.host, self.port, self.timeout)
            status, headers = conn.request(path, json.dumps(body).encode())
            if status != 200:
                return self._decode(path, status, conn.body(headers))
            return self._decode(path, 200, next(conn.lines(headers), b""))
        except OSError as err:
            raise self._unavailable(err) from None
        finally:
            if conn is not None:
                conn.close()

    # ---- watching -------------------------------------------------------------------------

    def watch_prefix(self, prefix: str, start_revision: int, idle_timeout: float | None = None):
        """Yield lists of Events for keys under prefix, from start_revision on, as they happen.

        Ends with StoreUnavailable when the connection drops (or nothing arrives for
        idle_timeout seconds), and with WatchCompacted when start_revision is too old: the
        caller then reads everything again. Each list holds the events of one revision batch.
        """
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision), "progress_notify": True}}
        conn = None
        try:
            try:
                conn = _Http(self.host, self.port, self.timeout)
                status, headers = conn.request("/v3/watch", json.dumps(body).encode())
                if status != 200:
                    self._decode("/v3/watch", status, conn.body(headers))
                conn.sock.settimeout(idle_timeout)
                stream = conn.lines(headers)
            except OSError as err:
                raise self._unavailable(err) from None
            while True:
                try:
                    line = next(stream, b"")
                except OSError as err:
                    raise self._unavailable(err) from None
                if not line:
                    raise self._unavailable(ConnectionResetError("watch stream closed"))
                if not line.strip():
                    continue
                result = json.loads(line).get("result", {})
                if result.get("compact_revision") and result.get("canceled"):
                    raise WatchCompacted(int(result["compact_revision"]))
                events = [Event(ev.get("type", "PUT"), _unb64(ev["kv"].get("key")), _unb64(ev["kv"].get("value")),
                                int(ev["kv"].get("mod_revision", 0))) for ev in result.get("events", [])]
                yield events, int(result.get("header", {}).get("revision", 0))
        finally:
            if conn is not None:
                conn.close()

    def status(self) -> dict:
        return self._post("/v3/maintenance/status", {})


def absent(key: str, prefix: bool = False) -> dict:
    """Compare: the key (with prefix: every key under it) does not exist (create revision 0)."""
    cmp = {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    if prefix:
        cmp["range_end"] = _b64(prefix_end(key))
    return cmp


def unchanged(key: str, mod_revision: int) -> dict:
    """Compare: nobody wrote the key since mod_revision (0: it still does not exist)."""
    return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def put_op(key: str, value: str, lease: int = 0) -> dict:
    op = {"key": _b64(key), "value": _b64(value)}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def delete_op(key: str, prefix: bool = False) -> dict:
    op = {"key": _b64(key)}
    if prefix:
        op["range_end"] = _b64(prefix_end(key))
    return {"request_delete_range": op}


class WatchCompacted(Exception):
    """The watch asked for history etcd has already compacted away: read the whole state again."""

    def __init__(self, revision: int):
        super().__init__(f"revision compacted at {revision}")
        self.revision = revision
