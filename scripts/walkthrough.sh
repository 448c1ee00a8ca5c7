#!/usr/bin/env bash
# Runs inside `netkit sandbox`: a network, two containers, and real traffic between them.
set -euo pipefail
# It changes network state: only ever inside a sandbox.
[ "${NETKIT_SANDBOX:-}" = 1 ] || exec .venv/bin/python -m netkit sandbox -- bash "$0"
nk() { echo "\$ netkit $*"; .venv/bin/python -m netkit "$@"; }
nk network create app --subnet 172.20.0.0/24
nk container create web --net app
nk container create client --net app
nk network ls
nk container ls
nk bridge show
echo "\$ netkit exec web -- python3 -m http.server 80 &"
.venv/bin/python -m netkit exec web -- python3 -m http.server 80 --bind 0.0.0.0 >/dev/null 2>&1 &
server=$!
# Bounded wait for the server to listen (python's start-up takes seconds on a loaded machine).
deadline=$((SECONDS + 20))
until ip netns exec web ss -ltn 2>/dev/null | grep -q ":80 "; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "walkthrough: web's server is not listening on port 80 after 20 s" >&2; exit 1; }
  sleep 0.1
done
nk exec client -- python3 -c "import urllib.request as u; r = u.urlopen('http://172.20.0.2/', timeout=5); print('client got HTTP', r.status, 'from web (172.20.0.2)')"
nk bridge macs br-app
kill "$server"
nk container rm web client
nk network rm app
