"""The DNS host: one process that serves the embedded DNS of every network while netkitd runs,
instead of a server process per network. One selector loop holds each network's UDP and TCP
listeners (netkit.dns.server.Server: the same answering and forwarding code, the same records
file per network, re-read when it changes), plus a control socket on which commands register and
drop networks (protocol: netkit.dns.hostctl). netkitd starts it and restarts it if it dies; it is
a process of its own because netkitd forks a child per request, and a process that forks must not
run threads (the servers forward from threads).

The networks it serves are kept in RUN_DIR/dns/host.json, so a host started after a crash serves
them all again before it says it is ready. With --adopt it also takes over every network whose
own server process runs: it binds beside it (SO_REUSEPORT), then stops it.

    python -m netkit.dns.host --run-dir DIR [--adopt] [--ready-fd N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import sys
import threading

from netkit.dns import hostctl, supervisor
from netkit.dns.server import Server, log, run, stop_signals

CONTROL_TIMEOUT = 2.0  # a command sends its one line right after connecting


class Host:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.paths = hostctl.paths(run_dir)
        self.sel = selectors.DefaultSelector()
        self.servers: dict[str, Server] = {}
        self.specs: dict[str, dict] = {}
        self.stopping = False
        self.forget = False
        self.control: socket.socket | None = None
        self.control_ino = 0
        self.version = hostctl.code_version()  # of the code this process imported

    # -- networks -----------------------------------------------------------------------------

    def serve(self, network: str, spec: dict) -> bool:
        """Serve the network as `spec` says (listen, port, records); False if it did already."""
        spec = {"listen": str(spec["listen"]), "port": int(spec["port"]), "records": str(spec["records"])}
        if self.specs.get(network) == spec:
            return False
        server = Server(spec["listen"], spec["port"], spec["records"])  # OSError: the caller says it
        server.records.current()
        if network in self.servers:  # moved (another gateway): the new sockets first
            self.drop(network)
        server.register(self.sel)
        self.servers[network], self.specs[network] = server, spec
        log(f"serving network {network} on {spec['listen']}:{spec['port']} (udp, tcp) "
            f"on {server.device or 'any device'}")
        return True

    def drop(self, network: str) -> bool:
        server = self.servers.pop(network, None)
        self.specs.pop(network, None)
        if server is None:
            return False
        server.unregister(self.sel)
        server.drain(timeout=0.5)
        server.close()
        log(f"no longer serving network {network}")
        return True

    def save(self) -> None:
        path = self.paths["json"]
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.specs, f, sort_keys=True)
        os.replace(tmp, path)

    def restore(self) -> None:
        """Serve again what host.json lists (a host restarted after a crash)."""
        for network, spec in hostctl.table(self.run_dir).items():
            if not os.path.exists(spec.get("records", "")):
                continue  # removed while no host ran
            try:
                self.serve(network, spec)
            except (OSError, KeyError, ValueError) as err:
                log(f"cannot serve network {network} again: {err}")

    def adopt(self) -> list[tuple[str, int]]:
        """Serve every network whose own server runs, bound beside it; (network, pid) of those
        servers, to retire() once this host answers."""
        taken = []
        for network, pid in supervisor.servers():
            opts = dict(zip(*[iter(_argv_after_module(pid))] * 2))
            try:
                spec = {"listen": opts["--listen"], "port": int(opts.get("--port", 53)), "records": opts["--records"]}
            except (KeyError, ValueError):
                continue
            try:
                self.serve(network, spec)
            except OSError as err:
                # A server of an older netkit binds without SO_REUSEPORT: stop it first (a gap
                # of one process exit and one bind).
                log(f"network {network}: cannot bind beside its server (pid {pid}): {err}; stopping it first")
                supervisor.stop_own(network, self.run_dir)
                try:
                    self.serve(network, spec)
                except OSError as err2:
                    log(f"cannot take over network {network}: {err2}")
                    continue
            taken.append((network, pid))
        return taken

    def retire(self, taken: list[tuple[str, int]]) -> None:
        """Stop the servers adopt() bound beside (each answers what it has queued first)."""
        for network, pid in taken:
            supervisor.retire_own(network, pid, self.run_dir)
            log(f"took over network {network} from its own server (pid {pid})")

    # -- control ------------------------------------------------------------------------------

    def bind_control(self, replace: bool = False) -> None:
        """Listen on host.sock; with replace, take the path from the host answering there (it
        keeps serving its sockets until it is told to stop, after this one is ready)."""
        path = self.paths["sock"]
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if os.path.exists(path):
            if not replace and hostctl.call(self.run_dir, {"op": "list"}, timeout=CONTROL_TIMEOUT) is not None:
                raise OSError(f"another DNS host answers on {path}")
            os.unlink(path)  # left by a host that died, or the one this host replaces
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # 0600 from the start: root only
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(64)
        self.control, self.control_ino = sock, os.stat(path).st_ino
        self.sel.register(sock, selectors.EVENT_READ, self.on_control)

    def on_control(self) -> None:
        try:
            conn, _ = self.control.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(CONTROL_TIMEOUT)
            try:
                data = b""
                while not data.endswith(b"\n") and len(data) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                reply = self.handle(json.loads(data))
            except (OSError, ValueError) as err:
                reply = {"error": f"bad request: {err}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def handle(self, req: dict) -> dict:
        op, network = req.get("op"), req.get("network")
        if op == "serve":
            if req.get("exclusive") and network in self.specs:
                return {"error": f"DNS server for network {network} is already running (DNS host, pid {os.getpid()})"}
            try:
                if self.serve(network, req):
                    self.save()
            except (KeyError, ValueError, TypeError) as err:
                return {"error": f"bad request: {err!r}"}
            except OSError as err:
                return {"error": f"cannot listen on {req.get('listen')}:{req.get('port')}: {err}"}
            return {"ok": True, "pid": os.getpid()}
        if op == "drop":
            dropped = self.drop(network)
            if dropped:
                self.save()
            return {"ok": True, "dropped": dropped}
        if op == "list":
            return {"ok": True, "pid": os.getpid(), "version": self.version, "networks": self.specs}
        if op == "quit":
            self.stopping, self.forget = True, bool(req.get("forget"))
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    # -- lifecycle ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.control is not None:
            self.sel.unregister(self.control)
            self.control.close()
            with contextlib.suppress(OSError):
                if os.stat(self.paths["sock"]).st_ino == self.control_ino:  # not a successor's
                    os.unlink(self.paths["sock"])
        for server in self.servers.values():
            server.unregister(self.sel)
        for server in self.servers.values():
            server.drain(timeout=1.0)
            server.close()
        if self.forget:
            with contextlib.suppress(OSError):
                os.unlink(self.paths["json"])


def _argv_after_module(pid: int) -> list[str]:
    from netkit import detached

    argv = detached.argv_of(pid)
    i = argv.index("-m") if "-m" in argv else len(argv)
    return [a for a in argv[i + 2:] if a]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netkit.dns.host", description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", required=True, help="netkit's run directory (the files are in its dns/)")
    p.add_argument("--adopt", action="store_true", help="take over networks whose own servers run")
    p.add_argument("--replace", action="store_true", help="take over from the host answering now (an upgrade)")
    p.add_argument("--ready-fd", type=int, help="write one byte to this fd once serving, then close it")
    args = p.parse_args(argv)

    host = Host(args.run_dir)
    stop_signal = stop_signals(host.sel)
    try:
        host.bind_control(args.replace)
    except OSError as err:
        log(f"cannot serve the control socket: {err}")
        return 1
    host.restore()
    adopted = host.adopt() if args.adopt else []
    host.save()
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"R")
        os.close(args.ready_fd)
    log(f"DNS host serving {len(host.servers)} network(s): {', '.join(sorted(host.servers)) or 'none yet'}")
    if adopted:
        # The old servers stop while this loop already answers what the kernel queues here.
        threading.Thread(target=host.retire, args=(adopted,), daemon=True).start()
    run(host.sel, lambda: not (host.stopping or stop_signal))
    host.shutdown()
    log("stopped" + (" (networks given back)" if host.forget else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
