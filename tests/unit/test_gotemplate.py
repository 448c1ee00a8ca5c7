"""Docker's --format templates: the forms people paste give Go's output; the rest is refused."""
import pytest

from netkit.errors import UserError
from netkit.gotemplate import render, table_header

NET = {"Name": "app", "Id": "abc123", "Internal": False,
       "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.20.0.0/24", "Gateway": "172.20.0.1"}]},
       "Containers": {"x1": {"Name": "web", "IPv4Address": "172.20.0.2/24"},
                      "x2": {"Name": "db", "IPv4Address": "172.20.0.3/24"}},
       "Options": {"com.docker.network.bridge.name": "br-app"}, "Labels": {}}
CT = {"Name": "/web", "NetworkSettings": {"Networks": {"app": {"IPAddress": "172.20.0.2"}},
                                         "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8088"}]}}}


@pytest.mark.parametrize("template,data,expected", [
    ("{{.Name}}", NET, "app"),
    ("{{.NetworkSettings.Networks.app.IPAddress}}", CT, "172.20.0.2"),
    ("{{json .IPAM.Config}}", NET, '[{"Subnet":"172.20.0.0/24","Gateway":"172.20.0.1"}]'),
    ("{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}", NET, "web 172.20.0.2/24\ndb 172.20.0.3/24\n"),
    ('{{index .Options "com.docker.network.bridge.name"}}', NET, "br-app"),
    ("{{range $p, $b := .NetworkSettings.Ports}}{{$p}} -> {{(index $b 0).HostPort}}{{end}}", CT, "80/tcp -> 8088"),
    ('{{if .Internal}}internal{{else if eq .Name "app"}}named{{else}}other{{end}}', NET, "named"),
    ('{{if .Internal}}internal{{else if eq .Name "x"}}named{{else}}other{{end}}', NET, "other"),
    ("{{.Missing}}", NET, "<no value>"),
    ("{{.Name | upper}}", NET, "APP"),
    ("{{- .Name -}} x", NET, "appx"),
    ("a {{- .Name}}", NET, "aapp"),
    ('{{printf "%s:%s" .Name .Id}}', NET, "app:abc123"),
    ("{{len .Containers}}", NET, "2"),
    ("{{.Options}}", NET, "map[com.docker.network.bridge.name:br-app]"),
    ("{{.Labels}}", NET, "map[]"),
    ("{{.Internal}}", NET, "false"),
    ("{{$n := .Name}}{{range .IPAM.Config}}{{$n}}/{{.Subnet}}{{end}}", NET, "app/172.20.0.0/24"),
    ("{{range $i, $c := .IPAM.Config}}{{$i}}={{$c.Gateway}}{{end}}", NET, "0=172.20.0.1"),
    ("{{with .IPAM}}{{.Driver}}{{end}}", NET, "default"),
    ("{{range .Nope}}x{{else}}empty{{end}}", NET, "empty"),
    ('{{join (split "a,b" ",") "+"}}', NET, "a+b"),
    ("{{/* a comment */}}ok", NET, "ok"),
])
def test_templates_render_as_docker_does(template, data, expected):
    assert render(template, data) == expected


@pytest.mark.parametrize("template,message", [
    ("{{.Name", "unclosed action"),
    ('{{template "x"}}', "not supported"),
    ("{{foo .Name}}", 'function "foo" not defined'),
    ("{{end}}", "without if/range/with"),
    ("{{if .Internal}}", "missing {{end}}"),
    ("{{.Name.Sub}}", "can't evaluate field Sub"),
    ("{{.Name}} }}", "unclosed action"),
    ("{{range .Name}}x{{end}}", "can't iterate"),
])
def test_unsupported_or_wrong_templates_are_one_line_errors(template, message):
    with pytest.raises(UserError) as err:
        render(template, NET)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_table_header_uses_dockers_column_names():
    row, header = table_header("table {{.ID}}\\t{{.Name}}\\t{{.CreatedAt}}", {"ID": "NETWORK ID"})
    assert row == "{{.ID}}\t{{.Name}}\t{{.CreatedAt}}"
    assert header == "NETWORK ID\tNAME\tCREATED AT"
