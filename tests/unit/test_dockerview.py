"""netkit's objects in Docker's inspect/ls shapes, read back through Docker-style templates."""
from netkit import dockerview
from netkit.gotemplate import render
from netkit.model import Container, Endpoint, Network, PortMapping

NET = Network(name="app", id="n" * 64, bridge="br-app", subnet="172.20.0.0/24", gateway="172.20.0.1",
              ip_range="172.20.0.128/25", icc=False, created=1.5)
WEB = Container(name="web", id="c" * 64, mode="bridge", netns="/run/netns/web", hostname="web",
                exposed=["80/tcp", "81/tcp"], links=["db:database"],
                endpoints=[Endpoint("web", "app", "eth0", "vethx", "172.20.0.2", 24, "172.20.0.1",
                                    "02:42:ac:14:00:02", aliases=["www"])],
                ports=[PortMapping("web", "tcp", "0.0.0.0", 8088, 80)])


def test_network_inspect_has_dockers_fields():
    doc = dockerview.network_inspect(NET, [WEB])
    assert render("{{json .IPAM.Config}}", doc) == \
        '[{"Subnet":"172.20.0.0/24","Gateway":"172.20.0.1","IPRange":"172.20.0.128/25"}]'
    assert render('{{index .Options "com.docker.network.bridge.enable_icc"}}', doc) == "false"
    assert render('{{index .Options "com.docker.network.bridge.name"}}', doc) == "br-app"
    assert render("{{range .Containers}}{{.Name}} {{.IPv4Address}} {{.MacAddress}}{{end}}", doc) == \
        "web 172.20.0.2/24 02:42:ac:14:00:02"
    assert doc["Scope"] == "local" and doc["Driver"] == "bridge" and doc["Id"] == NET.id


def test_container_inspect_has_ports_networks_and_host_config():
    doc = dockerview.container_inspect(WEB, {"app": NET})
    assert doc["Name"] == "/web"
    assert render("{{.NetworkSettings.Networks.app.IPAddress}}", doc) == "172.20.0.2"
    assert render("{{.NetworkSettings.Networks.app.NetworkID}}", doc) == NET.id
    assert render("{{json .NetworkSettings.Ports}}", doc) == '{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8088"}],"81/tcp":null}'
    assert render("{{json .HostConfig.PortBindings}}", doc) == '{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8088"}]}'
    assert render("{{.HostConfig.NetworkMode}}", doc) == "app"
    assert doc["HostConfig"]["Links"] == ["/db:/web/database"]
    assert render("{{range $p, $v := .Config.ExposedPorts}}{{$p}} {{end}}", doc) == "80/tcp 81/tcp "


def test_ls_rows_and_ports_column():
    row = dockerview.network_ls_row(NET)
    assert (row["ID"], row["Name"], row["Driver"], row["Scope"]) == ("n" * 12, "app", "bridge", "local")
    assert dockerview.network_ls_row(None, "none")["Driver"] == "null"
    assert dockerview.ports_column(WEB) == "0.0.0.0:8088->80/tcp, 81/tcp"


def test_other_modes():
    host = Container(name="h", id="h" * 64, mode="host", netns=None)
    side = Container(name="s", id="s" * 64, mode="container", netns="/run/netns/web", shares="web")
    assert dockerview.container_inspect(host, {})["HostConfig"]["NetworkMode"] == "host"
    assert dockerview.container_inspect(side, {})["HostConfig"]["NetworkMode"] == "container:web"
    assert dockerview.rfc3339(0) == "0001-01-01T00:00:00Z"
