"""`netkit trace capture` as a user runs it: Ctrl-C still yields pcaps and a report, --count
stops by itself, a drop is reported where it happens, and tracing changes nothing it traces."""
import json
import os
import signal
import subprocess
import sys

import pytest

import netstate
from nettools import ip_counter, send_echo, snapshot, start_echo, tcp_settled
from required import need
from waiting import first_line, wait_for

pytestmark = pytest.mark.root
NETKIT = [sys.executable, "-m", "netkit"]


def start_capture(*args):
    proc = subprocess.Popen(NETKIT + ["trace", "capture", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = first_line(proc.stderr, what="trace capture to say it is capturing")
    assert "capturing on" in line, line + proc.stderr.read()
    return proc, line


def two_containers(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.netkit("container", "create", "b")
    start_echo(sandbox, "b", "tcp", "0.0.0.0", 80)


def firewall(sandbox) -> dict:
    """Both xtables backends and nftables, as configuration (no counters, no empty built-in tables)."""
    need("iptables-legacy-save", "iptables-nft-save", "nft")
    return {"legacy": netstate.iptables_config(sandbox.sh("iptables-legacy-save").stdout),
            "xt-nft": netstate.iptables_config(sandbox.sh("iptables-nft-save").stdout),
            "nft": netstate.nft_config(sandbox.sh("nft -j list ruleset").stdout)}


def test_sigint_writes_pcaps_and_report_and_changes_nothing(sandbox, tmp_path):
    two_containers(sandbox)
    before = (snapshot(sandbox), firewall(sandbox))
    proc, live = start_capture("a", "b", "--port", "80", "--pcap", str(tmp_path), "--json",
                               "--svg", str(tmp_path / "trace.svg"))
    assert "host:netkit0" in live and "a:eth0" in live and "b:eth0" in live
    # While capturing: no promiscuous mode (the promiscuity counts), no other link changed.
    assert netstate.all_links() == {ns: cfg["links"] for ns, cfg in before[0]["net"].items()}
    assert "echo:hi" in send_echo(sandbox, "a", "tcp", "172.17.0.3", 80).stdout
    wait_for(lambda: tcp_settled("a", "b"), what="the echo connection's last packets (FIN/ACK)")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    rep = json.loads(out)
    assert rep["capture"]["stopped_by"] == "interrupt"
    assert rep["capture"]["filter"] == "((port 80) or icmp[0] == 3 or icmp[0] == 11)"
    (flow,) = rep["flows"]
    assert flow["path"] == "a:eth0 → host:veth[a] → veth[b] → b:eth0"
    files = set(os.listdir(tmp_path))
    assert {"a-eth0.pcap", "b-eth0.pcap", "host-netkit0.pcap", "merged.pcap", "merged.pcapng", "trace.svg"} <= files
    assert os.path.getsize(tmp_path / "merged.pcap") > 24
    assert (snapshot(sandbox), firewall(sandbox)) == before


def test_count_stops_by_itself_and_text_report_is_plain(sandbox):
    two_containers(sandbox)
    proc, _ = start_capture("b", "--proto", "tcp", "--count", "3")
    send_echo(sandbox, "a", "tcp", "172.17.0.3", 80)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped by count" in out and "\x1b[" not in out
    assert out.count("\n  #") == 3  # three distinct packets, each shown once with all its hops
    assert "TCP [S]" in out and "Paths:" in out


def test_drop_in_the_host_is_reported(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.sh("sysctl -qw net.ipv4.ip_forward=0")
    # --duration: a bound; the capture is interrupted as soon as the host has dropped the datagram.
    proc, _ = start_capture("a", "--proto", "udp", "--duration", "60", "--json")
    dropped = ip_counter("InAddrErrors")
    # One datagram, fire and forget: no reply can come back.
    sandbox.netkit("exec", "a", "--", sys.executable, "-c",
                   "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('198.18.0.2', 9))")
    # The host counts the datagram it cannot forward after every capture point has seen it.
    wait_for(lambda: ip_counter("InAddrErrors") > dropped, what="the host to drop the datagram (ip_forward=0)")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    rep = json.loads(out)
    assert rep["drops"], rep
    drop = rep["drops"][0]
    assert drop["where"] == "host:netkit0"
    assert drop["reason"] == "ip_forward" and drop["setting"] == "ip_forward off"
    assert drop["text"].startswith("dropped in host after netkit0: IPv4 forwarding is off in host")
    assert rep["flows"][0]["packets"][0]["delivered"] is False


def test_bad_options_are_one_line_errors(sandbox):
    for args, text in [(["--duration", "1", "--count", "1"], "not both"), (["nope"], "container 'nope' not found"),
                       (["--proto", "sctp"], "unknown protocol"), (["--filter", "tcp port x"], "bad capture filter")]:
        out = sandbox.netkit("trace", "capture", *args, check=False)
        assert out.returncode == 2 and text in out.stderr, (args, out.stderr)
