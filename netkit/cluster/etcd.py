"""A small etcd v3 client over the JSON gateway every etcd server serves on its client port
(POST /v3/kv/range, /v3/kv/txn, /v3/watch, /v3/lease/...), written with the standard library.

Why not a gRPC client library: docs/multihost.md, "The etcd client". Keys and values travel
base64-encoded and 64-bit integers as strings, as the gateway's protobuf JSON mapping wants; this
module hides both and speaks str/int. Every network failure becomes StoreUnavailable, one line.
"""
from __future__ import annotations

import base64
import http.client
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
        self._conn: http.client.HTTPConnection | None = None

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
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as err:
                self.close()
                # A refused or timed-out connect is final; a kept-alive socket the server closed
                # meanwhile (it restarted) deserves one fresh try.
                if attempt == 2 or isinstance(err, (ConnectionRefusedError, socket.timeout)):
                    raise self._unavailable(err) from None
                continue
            return self._decode(path, resp.status, payload)
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
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            line = resp.readline()
            if resp.status != 200:
                return self._decode(path, resp.status, line + resp.read())
            return self._decode(path, 200, line)
        except (OSError, http.client.HTTPException) as err:
            raise self._unavailable(err) from None
        finally:
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
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            try:
                conn.request("POST", "/v3/watch", body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status != 200:
                    self._decode("/v3/watch", resp.status, resp.read())
                conn.sock.settimeout(idle_timeout)
            except (OSError, http.client.HTTPException) as err:
                raise self._unavailable(err) from None
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as err:
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
