"""netkit.dns: the embedded DNS server and its supervisor, on loopback addresses only
(127.0.0.1 for the server, 127.0.0.2 for a fake upstream), so no packet leaves the netns."""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from netkit.dns import hostctl, supervisor
from waiting import wait_for
from netkit.errors import EnvError

pytestmark = pytest.mark.root

SERVER_IP = "127.0.0.1"
UPSTREAM_IP = "127.0.0.2"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _fresh_netns(sandbox):
    """Each test in the harness's fresh netns (lo up): the loopback ports used are its own."""


def free_port(ip: str) -> int:
    """A port free for both UDP and TCP on ip."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((ip, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((ip, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def untouched(proc) -> bool:
    """No signal ever reached PROC: it has not exited, is not exiting, and none is pending.
    (A signal sent a moment ago may not have taken effect yet, but it is pending by then.)"""
    if proc.poll() is not None:
        return False
    with open(f"/proc/{proc.pid}/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    with open(f"/proc/{proc.pid}/stat") as fh:
        flags = int(fh.read().rsplit(")", 1)[1].split()[6])
    PF_EXITING = 0x4
    return (int(status["SigPnd"], 16) == 0 and int(status["ShdPnd"], 16) == 0
            and status["State"].split()[0] not in ("Z", "X") and not flags & PF_EXITING)


def write_records(path, records, upstreams=()):
    """Like the engine: a complete file renamed into place."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"records": records, "upstreams": list(upstreams)}, f)
    os.replace(tmp, path)


def ask(port, name, qtype="A", tcp=False, timeout=20.0):
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(q.send(SERVER_IP, port, tcp=tcp, timeout=timeout))


def addrs(reply):
    return sorted(str(rr.rdata) for rr in reply.rr)


class FakeUpstream:
    """A UDP resolver on 127.0.0.2 answering every A query with 192.0.2.99 (or never, if silent)."""

    def __init__(self, silent=False):
        self.port = free_port(UPSTREAM_IP)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((UPSTREAM_IP, self.port))
        self.silent = silent
        self.seen = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"{UPSTREAM_IP}:{self.port}"

    def _run(self):
        while not self._stop:
            if not select.select([self.sock], [], [], 0.1)[0]:
                continue
            data, peer = self.sock.recvfrom(65535)
            q = DNSRecord.parse(data)
            self.seen.append(str(q.q.qname))
            if not self.silent:
                r = q.reply(aa=0)
                r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.99"), ttl=30))
                self.sock.sendto(r.pack(), peer)

    def close(self):
        self._stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def upstream():
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture
def server(tmp_path):
    """Start the server directly (no supervisor) on 127.0.0.1:<free port>; yield (port, records path)."""
    records = tmp_path / "net.json"
    write_records(records, {"web": ["172.18.0.2"]})
    port = free_port(SERVER_IP)
    r, w = os.pipe()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "netkit.dns.server", "--listen", SERVER_IP, "--port", str(port),
         "--records", str(records), "--ready-fd", str(w)],
        pass_fds=(w,), stdin=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    os.close(w)
    try:
        ready = select.select([r], [], [], 30)[0] and os.read(r, 1) == b"R"
        assert ready, (tmp_path / "server.log").read_text()
        os.close(r)
        yield port, records
    finally:
        proc.terminate()
        proc.wait(5)
        log.close()


# -- the server --------------------------------------------------------------------------------

def test_answers_a_for_known_names(server):
    port, records = server
    write_records(records, {"web": ["172.18.0.2"], "db": ["172.18.0.3", "172.18.0.4"]})
    r = ask(port, "web")
    assert r.header.rcode == RCODE.NOERROR and addrs(r) == ["172.18.0.2"]
    assert r.rr[0].ttl == 0
    assert addrs(ask(port, "WEB.")) == ["172.18.0.2"]  # case-insensitive, trailing dot
    assert str(ask(port, "Web").rr[0].rname) == "Web."  # asked case kept (0x20-safe)
    assert addrs(ask(port, "db")) == ["172.18.0.3", "172.18.0.4"]


def test_aaaa_for_known_name_is_empty_noerror(server):
    port, _ = server
    r = ask(port, "web", "AAAA")
    assert r.header.rcode == RCODE.NOERROR and r.rr == []


def test_ptr_for_known_address(server):
    port, _ = server
    r = ask(port, "2.0.18.172.in-addr.arpa", "PTR")
    assert [str(rr.rdata) for rr in r.rr] == ["web."]


def test_records_change_is_seen_without_restart(server):
    port, records = server
    assert ask(port, "db").header.rcode == RCODE.NXDOMAIN
    write_records(records, {"web": ["172.18.0.2"], "db": ["172.18.0.3"]})
    assert addrs(ask(port, "db")) == ["172.18.0.3"]
    write_records(records, {"db": ["172.18.0.3"]})  # web's container removed
    assert ask(port, "web").header.rcode == RCODE.NXDOMAIN
    assert addrs(ask(port, "db")) == ["172.18.0.3"]


def test_unknown_name_without_upstreams_is_nxdomain(server):
    port, _ = server
    r = ask(port, "nope.example")
    assert r.header.rcode == RCODE.NXDOMAIN and r.rr == []


def test_unknown_name_is_forwarded_to_upstream(server, upstream):
    port, records = server
    write_records(records, {"web": ["172.18.0.2"]}, [upstream.addr])
    r = ask(port, "far.example")
    assert addrs(r) == ["192.0.2.99"] and r.rr[0].ttl == 30  # relayed as is
    assert upstream.seen == ["far.example."]
    assert addrs(ask(port, "web")) == ["172.18.0.2"]  # local names are not forwarded
    assert upstream.seen == ["far.example."]


def test_dead_upstream_is_skipped_for_next(server, upstream):
    port, records = server
    silent = FakeUpstream(silent=True)
    try:
        write_records(records, {}, [silent.addr, upstream.addr])
        assert addrs(ask(port, "far.example")) == ["192.0.2.99"]
        # Asked the first (silent) one, gave up on it, got the answer from the next.
        assert silent.seen == ["far.example."] and upstream.seen == ["far.example."]
    finally:
        silent.close()


def test_silent_upstream_gives_servfail_and_does_not_block_local_names(server):
    port, records = server
    silent = FakeUpstream(silent=True)
    try:
        write_records(records, {"web": ["172.18.0.2"]}, [silent.addr])
        result = {}

        def slow():
            result["r"] = ask(port, "slow.example")
            result["slow_done"] = time.monotonic()

        t = threading.Thread(target=slow)
        t.start()
        wait_for(lambda: silent.seen, what="the server to forward slow.example to the silent upstream")
        assert addrs(ask(port, "web")) == ["172.18.0.2"]
        local_done = time.monotonic()
        t.join(30)
        assert result["r"].header.rcode == RCODE.SERVFAIL
        # Order, not duration: the local answer came before the forward gave up (2 s later).
        assert local_done < result["slow_done"]
    finally:
        silent.close()


def test_tcp_queries(server, upstream):
    port, records = server
    write_records(records, {"web": ["172.18.0.2"]}, [upstream.addr])
    assert addrs(ask(port, "web", tcp=True)) == ["172.18.0.2"]
    assert addrs(ask(port, "far.example", tcp=True)) == ["192.0.2.99"]
    # several queries on one connection
    with socket.create_connection((SERVER_IP, port), timeout=5) as s:
        for name in ("web", "WEB", "web."):
            q = DNSRecord.question(name).pack()
            s.sendall(len(q).to_bytes(2, "big") + q)
            n = int.from_bytes(s.recv(2), "big")
            data = b""
            while len(data) < n:
                data += s.recv(n - len(data))
            assert addrs(DNSRecord.parse(data)) == ["172.18.0.2"]


def test_garbage_does_not_kill_the_server(server):
    port, _ = server
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01garbage", (SERVER_IP, port))
        s.sendto(b"", (SERVER_IP, port))
    assert addrs(ask(port, "web")) == ["172.18.0.2"]


# -- the supervisor ----------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    yield str(d)
    for name in os.listdir(os.path.join(d, "dns")) if os.path.isdir(os.path.join(d, "dns")) else []:
        if name.endswith(".pid") and name != "host.pid":  # never leave a server behind, whatever failed
            supervisor.stop(name[:-4], str(d))
    for pid in supervisor.hosts():
        supervisor.stop_stray_host(pid)


def start_from_cli_like_process(network, records, run_dir, port):
    """Call supervisor.start in a child process that exits afterwards, as the CLI does."""
    code = ("import sys; from netkit.dns import supervisor; "
            f"print(supervisor.start({network!r}, {SERVER_IP!r}, {str(records)!r}, {run_dir!r}, port={port}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_supervisor_server_outlives_the_cli_and_stops(tmp_path, run_dir):
    records = tmp_path / "n1.json"
    write_records(records, {"web": ["172.18.0.2"]})
    port = free_port(SERVER_IP)
    pid = start_from_cli_like_process("n1", records, run_dir, port)
    pidfile = os.path.join(run_dir, "dns", "n1.pid")
    assert Path(pidfile).read_text().strip() == str(pid)
    assert supervisor.is_running("n1", run_dir)
    assert not supervisor.is_running("other", run_dir)
    assert addrs(ask(port, "web")) == ["172.18.0.2"]  # its parent (the "CLI") is gone
    assert os.getsid(pid) != os.getsid(0)  # a session of its own, away from the CLI's terminal
    assert "listening on" in Path(run_dir, "dns", "n1.log").read_text()

    assert supervisor.ensure_running("n1", SERVER_IP, str(records), run_dir, port=port) == pid
    with pytest.raises(EnvError, match="already running"):
        supervisor.start("n1", SERVER_IP, str(records), run_dir, port=port)

    assert supervisor.stop("n1", run_dir) is True
    assert not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/cmdline").read_text() == ""
    assert not os.path.exists(pidfile)
    assert not supervisor.is_running("n1", run_dir)
    with pytest.raises(OSError):
        ask(port, "web", timeout=0.5)
    assert supervisor.stop("n1", run_dir) is False  # idempotent


def test_ensure_running_starts_when_stopped(tmp_path, run_dir):
    records = tmp_path / "n2.json"
    write_records(records, {"api": ["172.19.0.5"]})
    port = free_port(SERVER_IP)
    pid = supervisor.ensure_running("n2", SERVER_IP, str(records), run_dir, port=port)
    try:
        assert addrs(ask(port, "api")) == ["172.19.0.5"]
    finally:
        supervisor.stop("n2", run_dir)
    assert not supervisor.is_running("n2", run_dir)
    assert pid > 0


def test_stop_leaves_an_unrelated_pid_alone(run_dir):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        os.makedirs(os.path.join(run_dir, "dns"))
        pidfile = os.path.join(run_dir, "dns", "n3.pid")
        with open(pidfile, "w") as f:
            f.write(f"{sleeper.pid}\n")
        assert not supervisor.is_running("n3", run_dir)
        assert supervisor.stop("n3", run_dir) is False
        assert untouched(sleeper)  # no signal sent: neither dead nor one pending
        assert not os.path.exists(pidfile)  # the stale pidfile is dropped
    finally:
        os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait()


def test_stop_leaves_another_networks_server_alone(tmp_path, run_dir):
    records = tmp_path / "n4.json"
    write_records(records, {})
    port = free_port(SERVER_IP)
    pid = supervisor.start("n4", SERVER_IP, str(records), run_dir, port=port)
    try:
        with open(os.path.join(run_dir, "dns", "n5.pid"), "w") as f:
            f.write(f"{pid}\n")
        assert supervisor.stop("n5", run_dir) is False
        assert supervisor.is_running("n4", run_dir)
    finally:
        assert supervisor.stop("n4", run_dir) is True


def test_start_failure_is_one_line_env_error_with_log_tail(tmp_path, run_dir):
    records = tmp_path / "n6.json"
    write_records(records, {})
    # 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails, nothing is sent anywhere.
    with pytest.raises(EnvError) as exc:
        supervisor.start("n6", "192.0.2.1", str(records), run_dir, port=free_port(SERVER_IP))
    msg = str(exc.value)
    assert "\n" not in msg and "n6" in msg and "cannot listen on 192.0.2.1" in msg
    assert not os.path.exists(os.path.join(run_dir, "dns", "n6.pid"))


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/cmdline").read_text() == ""


def test_dns_host_serves_networks_in_one_process_and_is_replaced_when_netkit_changes(tmp_path, run_dir,
                                                                                         monkeypatch):
    """The supervisor's hand-over on loopback: per-network server -> host -> new host -> per-network."""
    ra, rb = tmp_path / "a.json", tmp_path / "b.json"
    write_records(ra, {"web": ["172.18.0.2"]})
    write_records(rb, {"db": ["172.19.0.2"]})
    pa, pb = free_port(SERVER_IP), free_port(SERVER_IP)
    own = supervisor.start("a", SERVER_IP, str(ra), run_dir, port=pa)
    host = supervisor.take_over(run_dir)
    wait_for(lambda: gone(own), what="the adopted server to stop")
    assert supervisor.ensure_running("b", SERVER_IP, str(rb), run_dir, port=pb) == host
    assert supervisor.servers() == [] and supervisor.hosts() == [host]
    assert addrs(ask(pa, "web")) == ["172.18.0.2"] and addrs(ask(pb, "db")) == ["172.19.0.2"]
    assert ask(pa, "db").header.rcode == RCODE.NXDOMAIN  # each network its own records
    with pytest.raises(EnvError, match="already running"):
        supervisor.start("b", SERVER_IP, str(rb), run_dir, port=pb)
    assert supervisor.take_over(run_dir) == host  # same code: kept

    monkeypatch.setattr(hostctl, "code_version", lambda: "upgraded")  # "netkit changed on disk"
    new = supervisor.take_over(run_dir)
    assert new != host and gone(host) and supervisor.hosts() == [new]
    assert addrs(ask(pa, "web")) == ["172.18.0.2"] and addrs(ask(pb, "db")) == ["172.19.0.2"]
    assert hostctl.call(run_dir, {"op": "list"})["pid"] == new  # the control socket is the new host's

    assert supervisor.stop("a", run_dir) is True and not supervisor.is_running("a", run_dir)
    with pytest.raises(OSError):
        ask(pa, "web", timeout=0.5)
    started, failed = supervisor.give_back(run_dir)
    assert [net for net, _ in started] == ["b"] and failed == [] and gone(new)
    assert supervisor.serving_pid("b", run_dir) == started[0][1] and not hostctl.wanted(run_dir)
    assert addrs(ask(pb, "db")) == ["172.19.0.2"]
