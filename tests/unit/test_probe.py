"""Host facts: the nsfs check behind `attach --netns`, and the fake probe's answers agree with
what the engine assumes of the real one."""
from netkit.kernel.probe import FakeProbe


def test_netns_files_are_told_from_other_files(tmp_path):
    """attach --netns checks with the kernel (NS_GET_NSTYPE) that a path is a network namespace:
    read-only calls on the test process's own namespace files, safe without a sandbox."""
    from netkit.kernel.netns import is_netns_file

    plain = tmp_path / "plain"
    plain.write_text("not a namespace")
    assert is_netns_file("/proc/self/ns/net")
    assert not is_netns_file("/proc/self/ns/uts")  # a namespace, but not a network one
    assert not is_netns_file(str(plain)) and not is_netns_file(str(tmp_path)) and not is_netns_file("/nonexistent")



def test_fake_probe_wildcard_ports_and_bridge_ports():
    probe = FakeProbe(busy={("tcp", "0.0.0.0", 80), ("udp", "127.0.0.1", 53)})
    assert probe.port_busy("tcp", "10.0.0.1", 80) and probe.port_busy("tcp", "0.0.0.0", 80)
    assert probe.port_busy("udp", "0.0.0.0", 53) and not probe.port_busy("udp", "10.0.0.1", 53)
    assert not probe.port_busy("tcp", "0.0.0.0", 81)
    probe.links = {"br0": {"kind": "bridge", "ifindex": 2}, "veth1": {"kind": "veth", "ifindex": 3, "master": 2},
                   "veth2": {"kind": "veth", "ifindex": 4, "master": None}}
    assert probe.bridge_ports("br0") == ["veth1"] and probe.bridge_ports("nope") == []
