#!/usr/bin/env python3
"""The floor of Docker's remote network driver protocol on this machine, for scripts/bench_docker.py:
a driver that does only what the protocol cannot do without. Join makes a veth pair on a bridge
(kernel/rtlink.py: one request for the pair, one for the port up: ~0.5 ms) and answers with its
peer; every other call answers at once. No state, no IPAM, no rules, no names: nothing a user
could run a container on safely. What `docker network connect` costs with it is what the plugin
protocol (five HTTP round trips, dockerd's own work for a remote driver) costs by itself, next to
Docker's in-process bridge driver and netkit's driver, measured in the same run.

    floor_driver.py SOCKET BRIDGE    (serves until killed; one process per connection, as netkitd)
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netkit.dockerplugin import http  # noqa: E402
from netkit.kernel import rtlink  # noqa: E402


def handler(bridge: str, gateway_file: str):
    def handle(path: str, body: bytes, _answer_early=None) -> tuple[int, dict]:
        data = json.loads(body) if body.strip() else {}
        if path == "/Plugin.Activate":
            return 200, {"Implements": ["NetworkDriver"]}
        if path == "/NetworkDriver.GetCapabilities":
            return 200, {"Scope": "local", "ConnectivityScope": "local"}
        if path == "/NetworkDriver.CreateNetwork":
            gateway = data["IPv4Data"][0]["Gateway"]
            subprocess.run(f"ip link add {bridge} type bridge && ip addr add {gateway} dev {bridge} && "
                           f"ip link set {bridge} up", shell=True, check=True)
            with open(gateway_file, "w") as fh:  # for Join, in another connection's process
                fh.write(gateway.split("/")[0])
        elif path == "/NetworkDriver.DeleteNetwork":
            subprocess.run(["ip", "link", "del", bridge], check=False)
        elif path == "/NetworkDriver.CreateEndpoint":
            return 200, {"Interface": {}}
        elif path == "/NetworkDriver.EndpointOperInfo":
            return 200, {"Value": {}}
        elif path == "/NetworkDriver.Join":
            host, peer = "fh" + data["EndpointID"][:13], "fp" + data["EndpointID"][:13]
            mac = ":".join(["02"] + [data["EndpointID"][i:i + 2] for i in range(0, 10, 2)])
            rtlink.veth_on_bridge(host, peer, socket.if_nametoindex(bridge), 1500, mac)
            rtlink.port_up(socket.if_nametoindex(host))
            # The gateway, as netkit answers it: Docker then moves the default route to this network
            # (and calls ProgramExternalConnectivity), as it does for a bridge-driver network.
            with open(gateway_file) as fh:
                gateway = fh.read()
            return 200, {"InterfaceName": {"SrcName": peer, "DstPrefix": "eth"}, "Gateway": gateway,
                         "DisableGatewayService": True}
        elif path == "/NetworkDriver.Leave":
            subprocess.run(["ip", "link", "del", "fh" + data["EndpointID"][:13]], check=False)
        return 200, {}
    return handle


def main() -> int:
    path, bridge = sys.argv[1], sys.argv[2]
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reaped by the kernel
    handle = handler(bridge, path + ".gateway")
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # else `ip`'s exit status is lost
            listener.close()
            http.serve_connection(conn, handle)
            os._exit(0)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
