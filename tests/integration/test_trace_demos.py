"""Each trace demo, run for real in its own sandbox, and its report checked hop by hop; plus a
second tool (tcpdump) capturing alongside must see what the tracer wrote to its pcaps."""
import json
import os
import signal
import subprocess

import pytest
from required import need
from waiting import first_line

pytestmark = pytest.mark.root


def run_demo(mode, **kwargs):
    from netkit.trace import demos, session

    outputs = kwargs.pop("outputs", None) or session.Outputs()
    return demos.run(mode, outputs, say=lambda text: None, **kwargs)


def hops(packet):
    return [h["point"] for h in packet["hops"]]


def all_changes(flow):
    return [c for p in flow["packets"] for h in p["hops"] for c in h["changes"]]


def test_bridge_demo_arp_mac_learning_and_tcp(sandbox):
    rep = run_demo("bridge")
    assert rep["demo"]["client_ok"], rep["demo"]
    assert rep["capture"]["lost"] == 0 and not rep["drops"]
    arp, tcp = rep["flows"]
    request = arp["packets"][0]
    assert request["info"] == "ARP who-has 172.17.0.3 tell 172.17.0.2"
    points = hops(request)
    assert points[0] == "a:eth0" and "b:eth0" in points
    veth_a, veth_b = request["hops"][1]["interface"], request["hops"][points.index("b:eth0") - 1]["interface"]
    assert request["hops"][1]["name"] == "host:veth[a]" and request["hops"][1]["detail"] == veth_a
    assert "bridge netkit0 learns src MAC 02:42:ac:11:00:02 on veth[a]" in request["hops"][1]["changes"]
    assert "bridge netkit0 flooded it (broadcast) to veth[b]" in all_changes(arp)
    # a's own broadcast, flooded back to it by hairpin mode, is shown as what it is
    echoes = [h for h in request["hops"] if h["echo"]]
    assert [h["point"] for h in echoes] == [f"host:{veth_a}", "a:eth0"]
    assert "hairpin" in echoes[0]["changes"][0] and "ignores" in echoes[1]["changes"][0]
    assert arp["packets"][1]["info"] == "ARP 172.17.0.3 is-at 02:42:ac:11:00:03"
    assert tcp["title"].startswith("TCP 172.17.0.2:") and tcp["title"].endswith("→ 172.17.0.3:80")
    assert tcp["path"] == "a:eth0 → host:veth[a] → veth[b] → b:eth0"
    assert tcp["reply_path"] == "b:eth0 → host:veth[b] → veth[a] → a:eth0"
    syn = tcp["packets"][0]
    assert syn["info"].startswith("TCP [S]") and hops(syn) == ["a:eth0", f"host:{veth_a}", f"host:{veth_b}", "b:eth0"]
    assert syn["hops"][2]["changes"] == [
        "bridge netkit0 forwarded it to veth[b]: dst MAC 02:42:ac:11:00:03 learnt there"]
    assert not tcp["nat"]
    times = [h["t_us"] for p in tcp["packets"] for h in p["hops"]]
    assert times == sorted(times)  # kernel timestamps: hop order is time order


def test_host_demo_has_no_veth_no_bridge_no_nat(sandbox, tmp_path):
    # Through the CLI, as a user runs it: JSON on stdout, the narrative on stderr, an SVG file.
    svg = tmp_path / "host.svg"
    out = sandbox.netkit("trace", "demo", "host", "--json", "--svg", svg)
    assert "$ netkit container create h --net host" in out.stderr
    rep = json.loads(out.stdout)
    assert str(svg) in rep["files"] and "<svg" in svg.read_text()
    assert rep["demo"]["client_ok"] and "you are 198.18.0.2" in rep["demo"]["client_output"]
    (flow,) = rep["flows"]
    assert flow["path"] == "outside:eth0 → host:uplink"
    assert flow["reply_path"] == "host:uplink → outside:eth0"
    assert not flow["nat"] and not rep["drops"]
    assert {h["role"] for p in flow["packets"] for h in p["hops"]} == {"outside", "uplink"}


def test_container_demo_talks_over_lo_only(sandbox):
    rep = run_demo("container")
    assert rep["demo"]["client_ok"], rep["demo"]
    (flow,) = rep["flows"]
    assert flow["path"] == "app:lo" and flow["title"].endswith("→ 127.0.0.1:9000")
    assert {h["point"] for p in flow["packets"] for h in p["hops"]} == {"app:lo"}
    seen = {p["point"]: p["frames"] for p in rep["points"]}
    assert seen["app:eth0"] == 0 and seen["app:lo"] == len(flow["packets"])
    assert not rep["drops"]


def test_none_demo_connect_fails_and_nothing_leaves(sandbox):
    rep = run_demo("none")
    assert not rep["demo"]["client_ok"]
    assert "Network is unreachable" in rep["demo"]["client_output"]
    assert rep["flows"] == [] and rep["drops"] == []
    assert {p["point"] for p in rep["points"]} >= {"n:lo", "host:uplink", "outside:eth0"}
    assert all(p["frames"] == 0 for p in rep["points"])


def test_outbound_demo(sandbox):
    rep = run_demo("outbound")
    (flow,) = rep["flows"]
    assert rep["demo"]["client_ok"] and "you are 198.18.0.1" in rep["demo"]["client_output"], rep["demo"]
    assert flow["path"] == "app:eth0 → host:veth[app] → netkit0 →[MASQUERADE]→ uplink → outside:eth0"
    assert flow["nat"][0] == "SNAT (MASQUERADE) 172.17.0.2 → 198.18.0.1"
    assert "[un-SNAT]" in flow["reply_path"] and not rep["drops"]
    assert any("SRC_NAT" in e["status"] for e in flow["conntrack"])


def test_publish_demo_dnat_and_reply(sandbox):
    rep = run_demo("publish")
    assert rep["demo"]["client_ok"], rep["demo"]
    assert "you are 198.18.0.2" in rep["demo"]["client_output"]  # DNAT keeps the client's address
    (flow,) = rep["flows"]
    assert flow["path"] == "outside:eth0 → host:uplink →[DNAT]→ netkit0 → veth[web] → web:eth0"
    assert flow["nat"][0] == "DNAT 198.18.0.1:8088 → 172.17.0.2:80"
    assert "[un-DNAT]" in flow["reply_path"] and flow["reply_path"].endswith("uplink → outside:eth0")
    assert any(line.startswith("reverse DNAT 172.17.0.2:80 → 198.18.0.1:8088") for line in flow["nat"])
    assert any("DST_NAT" in e["status"] for e in flow["conntrack"])
    assert not rep["drops"] and rep["capture"]["lost"] == 0


def _tcpdump_alongside(mode, where, tmp_path):
    """Run demo `mode` with tcpdump on `where` [(netns or None, iface)] from setup to the end."""
    from netkit.trace import pcap, session

    dumps = []

    def start(demo, topo):
        for ns, iface in where:
            out = str(tmp_path / f"tcpdump-{ns or 'host'}-{iface}.pcap")
            # --immediate-mode: else libpcap holds packets in a ring block for up to 1 s and SIGINT loses them.
            need("tcpdump")
            argv = ["tcpdump", "-p", "-n", "-U", "--immediate-mode", "-i", iface, "-w", out, demo.bpf]
            if ns:
                argv = ["ip", "netns", "exec", ns] + argv
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            assert "listening on" in first_line(proc.stderr, what=f"tcpdump on {ns or 'host'}:{iface} to listen")
            dumps.append((proc, out, pcap.file_name(ns or "host", iface)))

    def stop(demo, topo):  # before the demo removes the interfaces tcpdump listens on
        for proc, _, _ in dumps:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)

    outdir = tmp_path / "tracer"
    rep = run_demo(mode, outputs=session.Outputs(pcap_dir=str(outdir)), before_traffic=start, after_traffic=stop)
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap

    def addresses(path):
        return [(p[IP].src, p[IP].dst) if IP in p else p.summary() for p in rdpcap(path)]

    for proc, theirs, ours in dumps:
        err = proc.stderr.read()
        assert proc.returncode == 0, err
        mine = addresses(str(outdir / ours))
        assert mine, f"the tracer saw nothing on {ours}"
        assert addresses(theirs) == mine, (ours, err, os.path.getsize(theirs))
    return rep


def test_tcpdump_sees_what_the_tracer_saw_publish(sandbox, tmp_path):
    rep = _tcpdump_alongside("publish", [(None, "uplink"), ("web", "eth0")], tmp_path)
    assert rep["demo"]["client_ok"]


def test_tcpdump_sees_what_the_tracer_saw_bridge(sandbox, tmp_path):
    rep = _tcpdump_alongside("bridge", [(None, "netkit0"), ("b", "eth0")], tmp_path)
    assert rep["demo"]["client_ok"]
    assert os.path.exists(tmp_path / "tracer" / "merged.pcapng")


def test_unknown_demo_is_a_usage_error(sandbox):
    out = sandbox.netkit("trace", "demo", "bogus", check=False)
    assert out.returncode == 2 and "unknown demo 'bogus'" in out.stderr


def test_netkit_demo_runs_the_publish_demo(sandbox):
    out = sandbox.netkit("demo")
    assert "→[DNAT]→" in out.stdout and "DNAT 198.18.0.1:8088 → 172.17.0.2:80" in out.stdout
    assert "Drops: none" in out.stdout
    assert [line.split()[0] for line in sandbox.sh("ip netns list").stdout.splitlines()] == ["outside"]  # cleaned up


@pytest.mark.parametrize("mode", ["bridge", "publish", "outbound", "host", "container", "none"])
def test_demo_pictures_render_to_png_with_no_text_outside_its_box(sandbox, tmp_path, mode):
    from netkit.trace import svg

    need("rsvg-convert")
    rep = run_demo(mode)
    for brief in (False, True):
        lay = svg.layout(rep, brief)
        assert lay.overflows() == [], (mode, brief, lay.overflows()[:3])
        assert lay.texts and lay.width > 0 and lay.height > 0
        path = tmp_path / f"{mode}{'-brief' if brief else ''}.svg"
        path.write_text(svg.to_svg(rep, brief))
        png = tmp_path / f"{mode}.png"
        out = subprocess.run(["rsvg-convert", str(path), "-o", str(png)], capture_output=True, text=True)
        assert out.returncode == 0 and not out.stderr, out.stderr
        head = png.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(head[16:20], "big") == int(lay.width + 0.5)  # the whole layout was drawn


def test_demos_leave_the_users_own_containers_and_ports_alone(sandbox, tmp_path):
    # The user made `web` publishing 8088 (the publish demo's name and port) and runs a server on
    # the outside host's 8080 (the outbound demo's): the demos pick free ones and say so.
    web_id = sandbox.netkit("container", "create", "web", "-p", "8088:80").stdout.strip()
    from publish_helpers import Server

    theirs = Server("outside", "tcp", 8080, tag="users-server")
    try:
        lines = []
        from netkit.trace import demos, session

        rep = demos.run("publish", session.Outputs(), say=lines.append)
        assert rep["demo"]["client_ok"], rep["demo"]
        assert rep["demo"]["containers"] == ["demo-web"] and rep["demo"]["port"] == 8089
        assert "# 'web' is taken in this sandbox: this demo uses 'demo-web' (and removes only what it made)" in lines
        assert "$ netkit container create demo-web -p 8089:80" in lines
        (flow,) = rep["flows"]
        assert flow["path"] == "outside:eth0 → host:uplink →[DNAT]→ netkit0 → veth[demo-web] → demo-web:eth0"
        assert flow["nat"][0] == "DNAT 198.18.0.1:8089 → 172.17.0.3:80"
        outbound = demos.OutboundDemo(say=lines.append)
        outbound.choose()  # the user's server holds 8080 on the outside host
        assert outbound.outside_port == 8081 and outbound.bpf == "tcp port 8081"
    finally:
        theirs.stop()
    # the user's container is untouched: same ID, same published port; the demo's are gone
    assert sandbox.netkit("container", "ls", "-q", "--no-trunc").stdout.split() == [web_id]
    assert sandbox.netkit("port", "web", "80").stdout.strip() == "0.0.0.0:8088"
