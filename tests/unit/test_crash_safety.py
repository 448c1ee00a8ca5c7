"""Issue 16 on a fake host: damaged state refused, the intent journal's roll back and roll
forward, host originals recorded before the first change, doctor's stray and drift findings."""
import os
import sqlite3

import pytest


from netkit import journal, naming, ops
from netkit.engine import containers, doctor, networks, reconcile
from netkit.engine.containers import ContainerRequest
from netkit.engine.networks import NetworkRequest
from netkit.errors import EnvError
from netkit.state import Store


def test_zero_byte_state_is_refused(tmp_path):
    Store(str(tmp_path)).close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(tmp_path / f"netkit.db{suffix}"):
            os.remove(tmp_path / f"netkit.db{suffix}")
    open(tmp_path / "netkit.db", "w").close()
    with pytest.raises(EnvError, match="is damaged .the file is empty."):
        Store(str(tmp_path))


def test_foreign_file_and_bad_rows_are_refused(tmp_path):
    (tmp_path / "netkit.db").write_bytes(b"this is no database at all" * 100)
    with pytest.raises(EnvError, match="is damaged"):
        Store(str(tmp_path))
    other = tmp_path / "b"
    s = Store(str(other))
    s.db.execute("INSERT INTO containers VALUES ('x', '{oops')")
    with pytest.raises(EnvError, match="a row of table 'containers' does not decode"):
        s.containers()
    s.close()


def test_journal_plans_undo_or_finish():
    made = [ops.NetnsAdd("c1"), ops.EndpointAdd("c1", "veth1234567", "eth0", "br-app", 1500, "02:42:00:00:00:01",
                                                "172.20.0.2", 24, "172.20.0.1"), ops.HairpinOn(("veth1234567",))]
    data = {"token": "t", "apply": [journal.encode(s) for s in made],
            "remove": [journal.encode(ops.LinkDel("vethold"))]}
    assert journal.plan(data, committed=False) == [ops.LinkDel("veth1234567"), ops.NetnsDel("c1")]
    assert journal.plan(data, committed=True) == [ops.LinkDel("vethold")]


def test_uncommitted_change_is_rolled_back_by_the_next_one(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    # As a kill after the bridge step of `network create n2` leaves it: journal, bridge, no state.
    kernel.executor.apply([ops.BridgeAdd("br-n2", 1500, "172.21.0.1/24", naming.bridge_mac("br-n2"))])
    journal.write(ctx.store.directory, "tok", "network create n2", [ops.BridgeAdd("br-n2", 1500)], [])
    lines, problems = doctor.interrupted(ctx)
    assert problems == 1 and "network create n2" in lines[0]
    networks.create(ctx, NetworkRequest("n2", subnet="172.21.0.0/24"))  # recovers first, then works
    assert journal.read(ctx.store.directory) is None and ctx.store.network("n2")


def test_committed_change_is_finished(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    containers.create(ctx, ContainerRequest("c1", net="app"))
    host = ctx.store.container("c1").endpoints[0].host_ifname
    with ctx.store.transaction():
        ctx.store.delete_container("c1")
        ctx.store.put_meta(journal.META, "tok")  # committed, killed before the deletions ran
    journal.write(ctx.store.directory, "tok", "container rm c1", [], [ops.LinkDel(host), ops.NetnsDel("c1")])
    lines, _ = doctor.interrupted(ctx, fix=True)
    assert "finished" in lines[0] and not kernel.probe.link_exists(host) and "c1" not in kernel.probe.netns


def test_host_originals_are_recorded_before_the_first_change(ctx, kernel):
    seen = {}
    real = kernel.executor.run

    def spy(op):
        if isinstance(op, ops.SysctlSet) and op.path == reconcile.IP_FORWARD:
            seen.update(journal.host_originals(ctx.store.directory))
        real(op)

    kernel.executor.run = spy
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    assert seen.get("ip_forward_was") == "0" and seen.get("forward_policy_was") == "ACCEPT"


def test_doctor_names_a_stray_netkit_bridge_only(ctx, kernel):
    kernel.executor.apply([ops.BridgeAdd("br-zz", 1500, "172.29.0.1/24", naming.bridge_mac("br-zz"))])
    kernel.executor.apply([ops.BridgeAdd("br-user", 1500, None, "02:00:00:00:00:01")])
    found = [what for what, _ in doctor.strays(ctx)]
    assert found == ["bridge br-zz (172.29.0.1/24)"]


def test_fresh_install_doctor_finds_nothing(ctx):
    lines, problems = doctor.firewall(ctx)
    assert problems == 0 and not any("missing" in line for line in lines)


def test_doctor_fix_refuses_to_empty_the_host_for_a_lost_state(ctx, kernel, tmp_path, monkeypatch):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    containers.create(ctx, ContainerRequest("c1", net="app"))
    kernel.probe.files[os.path.join(ctx.run_dir, "uts", "c1")] = "file"
    monkeypatch.setattr(kernel.probe, "list_dir", lambda path: ["c1"] if path.endswith("uts") else [])
    with ctx.store.transaction():  # as if the state file were replaced by an empty one
        for table in ("networks", "containers", "addresses", "dns_names", "ports", "meta"):
            ctx.store.db.execute(f"DELETE FROM {table}")
    with pytest.raises(EnvError, match="is empty, yet 1 container.s. netkit made exist"):
        doctor.kernel_objects(ctx, fix=True)
    assert "c1" in kernel.probe.netns


def test_journal_written_by_a_killed_process_is_read_whole(tmp_path):
    """The journal is a SQLite commit without fsync: a writer killed right after it is still read."""
    import signal

    steps = [ops.NetnsAdd("c1"), ops.UtsAdd("/run/netkit/uts/c1", "c1")]
    pid = os.fork()
    if pid == 0:  # the child: write, then die as a SIGKILL leaves it (no close, no cleanup)
        journal.write(str(tmp_path), "tok", "container create c1", steps, [])
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    data = journal.read(str(tmp_path))
    assert data["token"] == "tok" and journal.plan(data, committed=False) == [ops.UtsDel("/run/netkit/uts/c1"),
                                                                               ops.NetnsDel("c1")]
    journal.clear(str(tmp_path))
    assert journal.read(str(tmp_path)) is None


def test_journal_of_an_older_netkit_and_a_damaged_one(ctx, kernel):
    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    kernel.executor.apply([ops.BridgeAdd("br-n2", 1500, "172.21.0.1/24", naming.bridge_mac("br-n2"))])
    legacy = os.path.join(ctx.store.directory, journal.LEGACY_FILE)
    with open(legacy, "w") as fh:  # intent.json as netkit wrote it before the SQLite journal
        fh.write('{"token": "old", "command": "network create n2", "started": 0, "remove": [], '
                 '"apply": [{"op": "BridgeAdd", "name": "br-n2", "mtu": 1500}]}')
    networks.create(ctx, NetworkRequest("n3", subnet="172.22.0.0/24"))  # rolls the old one back first
    assert not os.path.exists(legacy) and not kernel.probe.link_exists("br-n2")
    for suffix in ("", "-wal", "-shm"):  # replaced by something else: the open handle is not used
        os.remove(journal.path(ctx.store.directory) + suffix)
    with open(journal.path(ctx.store.directory), "wb") as fh:
        fh.write(b"not a database" * 100)
    assert "damaged" in journal.read(ctx.store.directory)
    with pytest.raises(EnvError, match="intent.db of an interrupted change is damaged"):
        networks.create(ctx, NetworkRequest("n4", subnet="172.23.0.0/24"))


def test_only_changes_with_steps_to_undo_write_the_journal(ctx, kernel, monkeypatch):
    from netkit.engine import ports

    networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    writes = []
    real = journal.write
    monkeypatch.setattr(journal, "write", lambda *a: writes.append(a[2]) or real(*a))
    containers.create(ctx, ContainerRequest("c1", net="app"))
    assert len(writes) == 1  # once, before the netns and veth are made
    ports.publish(ctx, "8080:80", "c1")  # rules only: the reconciler owns them, nothing to journal
    assert len(writes) == 1
    containers.remove(ctx, "c1")  # the deletions it runs after the commit
    assert len(writes) == 2 and journal.read(ctx.store.directory) is None
