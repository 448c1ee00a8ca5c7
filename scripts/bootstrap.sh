#!/usr/bin/env bash
# Installs what netkit needs on a fresh Debian machine (as root), once:
# Debian packages (iproute2, iptables, libpcap for Scapy's BPF, tcpdump/conntrack for checks)
# and a venv in .venv with netkit and its Python dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in ip:iproute2 iptables-legacy-save:iptables tcpdump:tcpdump conntrack:conntrack unshare:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
libs=$(ldconfig -p 2>/dev/null || true)  # read whole: `grep -q` on a pipe trips pipefail
grep -q 'libpcap\.so' <<<"$libs" || need+=(libpcap0.8)
grep -q 'libxtables\.so' <<<"$libs" || need+=(libxtables12)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

stamp=.venv/.netkit-installed
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: preparing .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import pyroute2, iptc, scapy, typer, dnslib, pytest, hypothesis' 
  touch "$stamp"
fi
