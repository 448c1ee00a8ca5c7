"""`netkit trace capture` as a user runs it: Ctrl-C still yields pcaps and a report, --count
stops by itself, a drop is reported where it happens, and tracing changes nothing it traces."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from nettools import send_echo, snapshot, start_echo
from required import need

pytestmark = pytest.mark.root
NETKIT = [sys.executable, "-m", "netkit"]


def start_capture(*args):
    proc = subprocess.Popen(NETKIT + ["trace", "capture", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "capturing on" in line, line + proc.stderr.read()
    return proc, line


def two_containers(sandbox):
    sandbox.netkit("container", "create", "a")
    sandbox.netkit("container", "create", "b")
    start_echo(sandbox, "b", "tcp", "0.0.0.0", 80)


def firewall(sandbox) -> dict:
    need("iptables-legacy-save", "iptables-nft-save", "nft")
    dump = {}
    for cmd in ("iptables-legacy-save", "iptables-nft-save", "nft list ruleset"):
        out = sandbox.sh(cmd).stdout
        # Counters move with the test's own traffic; the rules themselves must not.
        dump[cmd] = [re.sub(r"\[\d+:\d+\]|counter packets \d+ bytes \d+", "", line)
                     for line in out.splitlines() if not line.startswith("#")]
    return dump


def flags(sandbox) -> str:
    # Promiscuous mode and the other interface flags, in every netns the trace touched.
    out = [sandbox.sh("ip -o link show | cut -d' ' -f2-3").stdout]
    for ns in sorted(os.listdir("/run/netns")):
        out.append(sandbox.ns(ns, "ip -o link show | cut -d' ' -f2-3").stdout)
    return "".join(out)


def test_sigint_writes_pcaps_and_report_and_changes_nothing(sandbox, tmp_path):
    two_containers(sandbox)
    before = (snapshot(sandbox), firewall(sandbox), flags(sandbox))
    proc, live = start_capture("a", "b", "--port", "80", "--pcap", str(tmp_path), "--json",
                               "--svg", str(tmp_path / "trace.svg"))
    assert "host:netkit0" in live and "a:eth0" in live and "b:eth0" in live
    assert flags(sandbox) == before[2]  # while capturing: no promiscuous mode, nothing else
    assert "echo:hi" in send_echo(sandbox, "a", "tcp", "172.17.0.3", 80).stdout
    time.sleep(0.1)
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
    assert (snapshot(sandbox), firewall(sandbox), flags(sandbox)) == before


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
    proc, _ = start_capture("a", "--proto", "udp", "--duration", "5", "--json")
    # One datagram, fire and forget: no reply can come back.
    sandbox.netkit("exec", "a", "--", sys.executable, "-c",
                   "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('198.18.0.2', 9))")
    time.sleep(0.1)
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
