"""Who serves a network's DNS, and starting, checking and stopping it: the DNS host (one process
for every network, netkit.dns.host) when one runs, which it does while netkitd runs; otherwise a
server process per network (netkit.dns.server), detached from the CLI, pidfile and log in
RUN_DIR/dns/NETWORK.{pid,log}. Callers (the engine) see one interface either way. Imports only
cheap stdlib modules.

Hand-over without a gap: every listener binds its UDP and TCP sockets with SO_REUSEPORT, so the
new owner of a network's port 53 binds beside the old one and is ready before the old one is
told to stop (take_over: per-network servers -> a new host; give_back: host -> per-network
servers). A query the kernel queued on the old socket in the instant between its last read and
its close is lost (the client retries); scripts/bench_dns_host.py counts them."""

from __future__ import annotations

import contextlib
import os
import sys

from netkit import faults
from netkit import detached
from netkit.dns import hostctl
from netkit.errors import EnvError

MODULE = "netkit.dns.server"


def _paths(network: str, run_dir: str) -> tuple[str, str, str]:
    d = os.path.join(run_dir, "dns")
    return os.path.join(d, f"{network}.pid"), os.path.join(d, f"{network}.log"), os.path.join(d, f"{network}.lock")


def _hosting(run_dir: str, shared: bool = True):
    """Shared: a command decides who serves a network; exclusive: the host takes over or gives back."""
    return detached.locked(hostctl.paths(run_dir)["lock"], shared=shared)


def _is_ours(pid: int, network: str) -> bool:
    """True if PID runs `python -m netkit.dns.server ... --network NETWORK` (a PID in a stale
    pidfile may have been reused by any other process, which we must never signal)."""
    argv = detached.argv_of(pid)
    return detached.runs_module(argv, MODULE) and ("--network", network) in zip(argv, argv[1:])


def _running_pid(network: str, pidfile: str) -> int | None:
    pid = detached.read_pid(pidfile)
    return pid if pid is not None and _is_ours(pid, network) else None


def _kill(pid: int, network: str) -> bool:
    """SIGTERM (then SIGKILL) PID if, and only if, it is our server for NETWORK; wait for it."""
    return detached.kill(pid, lambda p: _is_ours(p, network))


def _spawn(network: str, listen_ip: str, port: int, records_file: str, logfile: str) -> int:
    argv = [sys.executable, "-m", MODULE, "--listen", listen_ip, "--port", str(port),
            "--records", os.path.abspath(records_file), "--network", network]
    return detached.spawn(argv, logfile, f"DNS server for network {network} on {listen_ip}:{port}",
                       lambda p: _is_ours(p, network))


def servers() -> list[tuple[str, int]]:
    """(network, pid) of every per-network DNS server running on this host (found by its argv,
    so also one whose pidfile a crash never wrote). Only servers in this network namespace: hosts
    that share a PID namespace (`netkit sandbox --hosts`) each have a server of a network `ov`."""
    return [(dict(zip(argv, argv[1:]))["--network"], pid) for pid, argv in _here(MODULE) if "--network" in argv]


def _here(module: str) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the processes of this network namespace that run `python -m module`."""
    found = []
    here = os.stat("/proc/self/ns/net")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            there = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (there.st_dev, there.st_ino) != (here.st_dev, here.st_ino):
            continue
        argv = detached.argv_of(entry)
        if detached.runs_module(argv, module):
            found.append((int(entry), argv))
    return found


def hosts() -> list[int]:
    """PIDs of every DNS host running in this network namespace (one, or none, unless a crash
    between spawn and pidfile left a second)."""
    return [pid for pid, _ in _here(hostctl.MODULE)]


def orphans(run_dir: str) -> list[tuple[str, int]]:
    """Servers no pidfile names (a kill between spawn and pidfile): they hold the network's
    port 53 beside a new server, with records nobody updates the path of."""
    return [(net, pid) for net, pid in servers() if detached.read_pid(_paths(net, run_dir)[0]) != pid]


def stop_orphans(network: str | None, run_dir: str) -> list[tuple[str, int]]:
    """Stop the orphaned servers (of one network, or all); those stopped."""
    return [(net, pid) for net, pid in orphans(run_dir) if network in (None, net) and _kill(pid, net)]


# -- a network's own server process -------------------------------------------------------------

def start_own(network: str, listen_ip: str, records_file: str, run_dir: str, port: int = 53,
              reuse: bool = True) -> int:
    """The network's own server process (spawned unless running and `reuse`); its PID."""
    pidfile, logfile, lockfile = _paths(network, run_dir)
    with detached.locked(lockfile):
        pid = _running_pid(network, pidfile)
        if pid is not None:
            if reuse:
                return pid
            raise EnvError(f"DNS server for network {network} is already running (pid {pid})")
        stop_orphans(network, run_dir)  # an orphan of a killed start would serve beside it
        pid = _spawn(network, listen_ip, port, records_file, logfile)
        faults.point("dns-pidfile")  # test-only (netkit/faults.py): a kill here makes an orphan
        detached.write_pidfile(pidfile, pid)
        return pid


def stop_own(network: str, run_dir: str) -> bool:
    """Stop the network's own server process and remove its pidfile; True if one was stopped. A
    PID that is not our server for this network is left alone (only the stale pidfile goes)."""
    pidfile, _, lockfile = _paths(network, run_dir)
    with detached.locked(lockfile):
        pid = detached.read_pid(pidfile)
        stopped = pid is not None and _kill(pid, network)
        with contextlib.suppress(FileNotFoundError):
            os.remove(pidfile)
        return bool(stop_orphans(network, run_dir)) or stopped


def retire_own(network: str, pid: int, run_dir: str) -> None:
    """Stop the network's own server PID (the DNS host serves the network now) and drop its
    pidfile if it still names PID."""
    pidfile, _, lockfile = _paths(network, run_dir)
    with detached.locked(lockfile):
        _kill(pid, network)
        if detached.read_pid(pidfile) == pid:
            with contextlib.suppress(FileNotFoundError):
                os.remove(pidfile)


# -- the engine's interface ---------------------------------------------------------------------

def _host_call(run_dir: str, request: dict) -> dict | None:
    try:
        return hostctl.call(run_dir, request)
    except hostctl.HostError as err:
        raise EnvError(f"the DNS host cannot serve network {request.get('network')}: {err}") from None
    except (OSError, ValueError) as err:
        raise EnvError(f"the DNS host ({hostctl.paths(run_dir)['sock']}) failed: {err} "
                       "(see `netkit doctor`)") from None


def _start(network: str, listen_ip: str, records_file: str, run_dir: str, port: int, reuse: bool) -> int:
    for attempt in range(2):
        with _hosting(run_dir):
            reply = _host_call(run_dir, {"op": "serve", "network": network, "listen": listen_ip, "port": port,
                                         "records": os.path.abspath(records_file), "exclusive": not reuse})
            if reply is not None:
                if os.path.exists(_paths(network, run_dir)[0]):
                    stop_own(network, run_dir)  # served by the host now: a leftover own server goes
                return int(reply["pid"])
            if not (attempt == 0 and hostctl.wanted(run_dir) and hostctl.daemon_alive(run_dir)):
                return start_own(network, listen_ip, records_file, run_dir, port, reuse)
        # The host died under a running netkitd (which restarts it too): start it again now.
        take_over(run_dir)
    raise AssertionError("unreachable")


def start(network: str, listen_ip: str, records_file: str, run_dir: str, port: int = 53) -> int:
    """Serve the network's DNS (the host, or a server process of its own) and wait until it
    listens; the PID serving it. EnvError if it is served already."""
    return _start(network, listen_ip, records_file, run_dir, port, reuse=False)


def ensure_running(network: str, listen_ip: str, records_file: str, run_dir: str, port: int = 53) -> int:
    """PID of the process serving the network's DNS, which is started first if there is none."""
    return _start(network, listen_ip, records_file, run_dir, port, reuse=True)


def serving_pid(network: str, run_dir: str) -> int | None:
    """The PID serving the network's DNS: the DNS host, or the network's own server."""
    if network in hostctl.table(run_dir):
        pid = hostctl.running_pid(run_dir)
        if pid is not None:
            return pid
    return _running_pid(network, _paths(network, run_dir)[0])


def is_running(network: str, run_dir: str) -> bool:
    """True if a live process serves the network's DNS (the host, or its own server)."""
    return serving_pid(network, run_dir) is not None


def stop(network: str, run_dir: str) -> bool:
    """Stop serving the network's DNS (the host drops it; its own server stops); True if either
    served it."""
    dropped = False
    with _hosting(run_dir):
        with contextlib.suppress(OSError, ValueError, hostctl.HostError):  # a broken host: doctor says so
            reply = hostctl.call(run_dir, {"op": "drop", "network": network})
            dropped = bool(reply and reply.get("dropped"))
    return stop_own(network, run_dir) or dropped


# -- hand-over between the two ways -------------------------------------------------------------

def take_over(run_dir: str) -> int:
    """Start the DNS host (netkitd does, when it starts) unless one of this netkit's code answers;
    it serves the networks of host.json and those whose own servers run, binding beside them
    before it stops them. A host of other code (netkit was upgraded) is replaced the same way:
    the new one binds beside it, then it stops. The PID of the host."""
    with _hosting(run_dir, shared=False):
        reply = hostctl.call(run_dir, {"op": "list"})
        if reply is None:
            return hostctl.spawn(run_dir, adopt=True)
        old = int(reply["pid"])
        if reply.get("version") == hostctl.code_version():
            return old
        new = hostctl.spawn(run_dir, adopt=True, replace=True)
        detached.kill(old, hostctl.is_host)  # it answers what it has queued, then goes
        return new


def give_back(run_dir: str) -> tuple[list[tuple[str, int]], list[str]]:
    """Each network the host serves gets its own server again (bound beside the host's sockets
    before the host goes), then the host stops and forgets its table (netkitd does this when it
    stops). ((network, pid) started, one line per network that could not be started)."""
    started, failed = [], []
    with _hosting(run_dir, shared=False):
        try:
            reply = hostctl.call(run_dir, {"op": "list"})
        except (OSError, ValueError, hostctl.HostError):
            reply = None
        networks = reply["networks"] if reply else hostctl.table(run_dir)
        for network, spec in sorted(networks.items()):
            if not os.path.exists(spec["records"]):
                continue  # the network went away meanwhile
            try:
                pid = start_own(network, spec["listen"], spec["records"], run_dir, int(spec["port"]))
                started.append((network, pid))
            except EnvError as err:
                failed.append(str(err))
        host = reply["pid"] if reply else hostctl.running_pid(run_dir)
        if host is not None:
            with contextlib.suppress(OSError, ValueError, hostctl.HostError):
                hostctl.call(run_dir, {"op": "quit", "forget": True})
            detached.kill(int(host), hostctl.is_host)  # gone already, or it does not listen any more
        for key in ("json", "pid"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(hostctl.paths(run_dir)[key])
    return started, failed


def hosted(run_dir: str) -> list[str]:
    """The networks the DNS host serves (none if no host runs)."""
    return sorted(hostctl.table(run_dir)) if hostctl.running_pid(run_dir) is not None else []


def stray_hosts(run_dir: str) -> list[int]:
    """DNS hosts the pidfile does not name (a kill between spawn and pidfile)."""
    return [pid for pid in hosts() if pid != hostctl.running_pid(run_dir)]


def stop_stray_host(pid: int) -> bool:
    return detached.kill(pid, hostctl.is_host)


def host_problem(run_dir: str) -> str | None:
    """What is wrong with the DNS host, in one line, or None: a host should run (it served
    networks and did not give them back) but none does; or one runs without netkitd (killed
    before it could give the networks back), so nothing would restart it."""
    pid = hostctl.running_pid(run_dir)
    if hostctl.wanted(run_dir) and pid is None:
        nets = sorted(hostctl.table(run_dir))
        return (f"the DNS host is not running: network(s) {', '.join(nets) or 'none'} get no DNS answers "
                f"({'netkitd restarts it' if hostctl.daemon_alive(run_dir) else 'netkitd is not running'}; "
                "fix: netkit doctor --fix)")
    if pid is not None and not hostctl.daemon_alive(run_dir):
        return (f"the DNS host (pid {pid}) runs without netkitd, which would restart it if it died "
                "(fix: `netkit daemon start`, or `netkit doctor --fix` gives each network its own server)")
    return None


def repair_host(run_dir: str) -> list[str]:
    """doctor --fix: a dead host is started again if netkitd runs; without netkitd, a dead or
    unsupervised host's networks go back to servers of their own (no netkitd: one process per
    network, as always)."""
    if host_problem(run_dir) is None:
        return []
    if hostctl.daemon_alive(run_dir):
        return [f"started the DNS host again (pid {take_over(run_dir)})"]
    started, failed = give_back(run_dir)
    return [f"netkitd is not running: network {net}'s DNS is served by its own server again (pid {pid})"
            for net, pid in started] + failed
