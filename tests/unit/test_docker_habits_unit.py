"""Issue 17 without a kernel: ID lookup, labels, bridge options, filters, prune, rm -f, the
reserved default subnet, config `ip`, Docker's hostnames, --format rendering and the CLI's help."""
import io
import json
import subprocess
import sys
from contextlib import redirect_stdout

import pytest


from netkit import bridgeopts, config, dockerfilter, naming, ops
from netkit.cli import render
from netkit.engine import containers, lookup, networks, ports
from netkit.engine.containers import ContainerRequest
from netkit.engine.networks import NetworkRequest
from netkit.errors import Conflict, NotFound, UserError


def test_lookup_by_name_full_id_and_unique_prefix(ctx):
    net = networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    web = containers.create(ctx, ContainerRequest("web", net=net.id[:5]))
    assert web.endpoints[0].network == "app"
    for ref in ("web", web.id, web.id[:3], web.id[:12].upper()):
        assert lookup.container(ctx, ref).name == "web"
    assert lookup.network(ctx, net.id[:10]).name == "app"
    with pytest.raises(NotFound, match="container 'zz' not found"):
        lookup.container(ctx, "zz")
    # A name wins over an ID prefix that happens to spell it, as in Docker.
    other = containers.create(ctx, ContainerRequest(web.id[:4], net="none"))
    assert lookup.container(ctx, web.id[:4]).name == other.name


def test_ambiguous_prefix_names_the_candidates(ctx):
    made = [containers.create(ctx, ContainerRequest(f"c{i}", net="none")) for i in range(40)]
    first = {}
    for c in made:
        first.setdefault(c.id[0], []).append(c)
    digit, clash = next((d, cs) for d, cs in first.items() if len(cs) > 1)
    with pytest.raises(UserError) as err:
        containers.remove(ctx, digit)
    assert "ambiguous" in str(err.value) and all(f"{c.name} ({c.id[:12]})" in str(err.value) for c in clash)
    assert len(ctx.store.containers()) == 40


def test_engine_use_cases_take_ids(ctx, kernel):
    net = networks.create(ctx, NetworkRequest("app", subnet="172.20.0.0/24"))
    web = containers.create(ctx, ContainerRequest("web", net="app"))
    ep = containers.connect(ctx, networks.create(ctx, NetworkRequest("b", subnet="172.21.0.0/24")).id[:6], web.id[:6])
    assert ep.network == "b" and ctx.store.container("web").endpoint("b")
    containers.disconnect(ctx, "b", web.id)
    ports.publish(ctx, "8088:80", web.id[:8])
    assert ports.port_lines(ctx, web.id, "80") == ["80/tcp -> 0.0.0.0:8088"]
    containers.remove(ctx, web.id[:7])
    networks.remove(ctx, net.id)
    assert ctx.store.containers() == [] and [n.name for n in ctx.store.networks()] == ["b"]


def test_labels_are_stored(ctx):
    networks.create(ctx, NetworkRequest("app", labels=naming.parse_labels(["a=1", "flag"])))
    containers.create(ctx, ContainerRequest("web", net="app", labels={"tier": "front"}))
    assert ctx.store.network("app").labels == {"a": "1", "flag": ""}
    assert ctx.store.container("web").labels == {"tier": "front"}
    with pytest.raises(UserError, match="invalid --label '=x'"):
        naming.parse_labels(["=x"])


def test_long_names_get_the_id_bridge_and_options_apply(ctx, kernel):
    net = networks.create(ctx, NetworkRequest("myproject_default"))
    assert net.bridge == "br-" + net.id[:12]
    opts = ["com.docker.network.bridge.name=br0", "com.docker.network.bridge.enable_icc=false",
            "com.docker.network.bridge.enable_ip_masquerade=0", "com.docker.network.driver.mtu=1400"]
    net = networks.create(ctx, NetworkRequest("o", options=opts))
    assert (net.bridge, net.icc, net.masquerade, net.mtu) == ("br0", False, False, 1400)
    add = [op for op in kernel.log if isinstance(op, ops.BridgeAdd)][-1]
    assert (add.name, add.mtu) == ("br0", 1400)
    with pytest.raises(UserError, match="disagree"):
        networks.create(ctx, NetworkRequest("p", mtu=1300, options=["com.docker.network.driver.mtu=1400"]))
    with pytest.raises(UserError, match="unknown bridge driver option 'x.y'"):
        bridgeopts.parse(["x.y=1"])
    with pytest.raises(UserError, match="use KEY=VALUE"):
        bridgeopts.parse(["com.docker.network.bridge.name"])


def test_default_subnet_is_kept_for_the_default_network(ctx):
    assert networks.create(ctx, NetworkRequest("app")).subnet == "172.18.0.0/16"
    assert networks.get(ctx, "bridge").subnet == "172.17.0.0/16"
    assert networks.create(ctx, NetworkRequest("next")).subnet == "172.19.0.0/16"


def test_default_subnet_is_given_away_when_the_pools_hold_nothing_else(kernel, tmp_path):
    ctx = kernel.context(str(tmp_path), default_address_pools=[{"base": "10.9.0.0/24", "size": 24}])
    assert networks.create(ctx, NetworkRequest("only")).subnet == "10.9.0.0/24"
    ctx.store.close()


def test_default_network_id_is_stable(ctx):
    assert networks.get(ctx, "bridge").id == naming.builtin_id("bridge")


def test_prune_keeps_used_and_default_networks(ctx):
    networks.create(ctx, NetworkRequest("used"))
    containers.create(ctx, ContainerRequest("web", net="used"))
    containers.create(ctx, ContainerRequest("d"))  # the default network
    containers.remove(ctx, "d")
    networks.create(ctx, NetworkRequest("idle"))
    assert [n.name for n in networks.prune(ctx)] == ["idle"]
    assert sorted(n.name for n in ctx.store.networks()) == ["bridge", "used"]
    with pytest.raises(UserError, match="host is a pre-defined network"):
        networks.remove(ctx, "host")


def test_rm_refuses_while_processes_run_and_force_ends_them(ctx, kernel):
    c = containers.create(ctx, ContainerRequest("web"))
    kernel.probe.netns_procs[c.netns] = [(4242, "sleep"), (4243, "nc")]
    with pytest.raises(Conflict, match=r"PID 4242 \(sleep\), 4243 \(nc\); stop them or use `netkit container rm -f web`"):
        containers.remove(ctx, "web")
    assert ctx.store.container("web") and not [op for op in kernel.log if isinstance(op, ops.ProcessesKill)]
    containers.remove(ctx, "web", force=True)
    [kill] = [op for op in kernel.log if isinstance(op, ops.ProcessesKill)]
    assert kill.pids == (4242, 4243) and kill.render() == ["kill -KILL 4242 4243"]
    assert ctx.store.container("web") is None


def test_docker_hostnames():
    for ok in ("docker_test", "web-1", "a.b_c.d", "x" * 64):
        assert naming.validate_container_hostname(ok) == ok
    for bad in ("_x", "x_", "a b", "x" * 65, "a.", "wéb"):
        with pytest.raises(UserError):
            naming.validate_container_hostname(bad)


def test_config_ip_is_the_default_publish_address(kernel, tmp_path):
    ctx = kernel.context(str(tmp_path), ip="127.0.0.1")
    containers.create(ctx, ContainerRequest("web", publish=["8088:80", "0.0.0.0:9000:90"]))
    assert ports.port_lines(ctx, "web") == ["80/tcp -> 127.0.0.1:8088", "90/tcp -> 0.0.0.0:9000"]
    ctx.store.close()
    path = tmp_path / "c.json"
    path.write_text('{"ip": "banana"}')
    with pytest.raises(UserError, match="bad value for 'ip'"):
        config.load(str(path))


def test_filters():
    wanted = dockerfilter.parse(["name=ap", "name=zz", "label=env=dev"], ("name", "label"))
    tests = {"name": lambda v: v in "app", "label": lambda v: dockerfilter.label_matches({"env": "dev"}, v)}
    assert dockerfilter.matches(wanted, tests)
    assert not dockerfilter.matches(dockerfilter.parse(["label=env=prod"], ("label",)), tests)
    assert dockerfilter.label_matches({"env": ""}, "env") and not dockerfilter.label_matches({}, "env")
    with pytest.raises(UserError, match="invalid --filter key 'x'"):
        dockerfilter.parse(["x=1"], ("name",))


def test_exec_env_parsing(monkeypatch):
    monkeypatch.setenv("FROM_HERE", "1")
    assert containers.parse_env(["A=b=c", "FROM_HERE", "UNSET_THING_XYZ"]) == {"A": "b=c", "FROM_HERE": "1"}
    with pytest.raises(UserError, match="invalid -e '=x'"):
        containers.parse_env(["=x"])


def _out(fn, *args) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        fn(*args)
    return buf.getvalue()


def test_format_table_json_and_template():
    rows = [{"ID": "abc", "Name": "app"}, {"ID": "defdef", "Name": "b"}]
    assert _out(render.emit_formatted, "table {{.ID}}\\t{{.Name}}", rows, {"ID": "NETWORK ID"}).splitlines() == \
        ["NETWORK ID   NAME", "abc          app", "defdef       b"]
    assert _out(render.emit_formatted, "{{.Name}}", rows) == "app\nb\n"
    assert [json.loads(line) for line in _out(render.emit_formatted, "json", rows).splitlines()] == rows
    with pytest.raises(UserError, match="invalid --format template"):
        render.emit_formatted("{{.Name", rows)


def test_text_view_is_readable():
    text = render.text_lines({"a": None, "b": True, "c": ["x", "y"], "d": {"e": 1}, "f": [{"g": 2}]})
    assert text == ["a: -", "b: true", "c: x, y", "d:", "  e: 1", "f:", "  [0]", "    g: 2"]


def _cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netkit", *argv], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "NETKIT_STATE_DIR": "/nonexistent-netkit"})


def test_version_and_completion():
    from netkit import __version__

    assert _cli("--version").stdout.strip() == f"netkit version {__version__}"
    assert "--install-completion" in _cli("--help").stdout


def test_every_option_and_argument_has_help_and_no_escaped_brackets():
    import click
    import typer.main

    from netkit.cli.main import load

    load()  # every command module registers its commands
    from netkit.cli.app import app

    missing = []

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
            return
        missing.extend(f"{' '.join(path)} {p.name}" for p in cmd.params if p.name != "help" and not p.help)
    walk(typer.main.get_command(app), [])
    assert missing == []
    for argv in (["network", "connect", "--help"], ["trace", "demo", "--help"], ["attach", "--help"]):
        out = _cli(*argv).stdout
        assert "\\[" not in out and "[required]" in out and "Positional arguments" not in out
    demo = _cli("trace", "demo", "--help").stdout
    assert all(mode in demo for mode in ("bridge", "publish", "outbound", "host", "container", "none"))


def test_every_command_that_changes_networks_containers_bridges_or_ports_takes_dry_run():
    """What the README promises, checked on the CLI's command tree."""
    import click
    import typer.main

    from netkit.cli.main import load

    load()
    from netkit.cli.app import app

    root = typer.main.get_command(app)
    changing = (("bridge", "create"), ("bridge", "rm"), ("network", "create"), ("network", "rm"),
                ("network", "prune"), ("network", "connect"), ("network", "disconnect"),
                ("container", "create"), ("container", "rm"), ("attach",), ("publish",), ("unpublish",),
                ("up",), ("down",), ("reset",))
    lacking = []
    for path in changing:
        cmd = root
        for name in path:
            assert isinstance(cmd, click.Group) and name in cmd.commands, path
            cmd = cmd.commands[name]
        if not any("--dry-run" in p.opts for p in cmd.params):
            lacking.append(" ".join(path))
    assert lacking == []
