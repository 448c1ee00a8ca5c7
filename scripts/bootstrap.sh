#!/usr/bin/env bash
# Installs what netkit needs on a fresh Debian machine (as root), once: the Debian packages of
# every program and library on netkit's one list (netkit/programs.py: iproute2, iptables,
# nftables, bridge-utils, tcpdump, conntrack, libpcap ...) and a venv in .venv with netkit and
# its Python dependencies. Safe to run again; with --report it also prints what it found where.
set -euo pipefail
cd "$(dirname "$0")/.."

report=0
[ "${1:-}" = "--report" ] && report=1

# `python3 -m netkit.programs` reads the list with the standard library only (no venv yet).
list=$(python3 -m netkit.programs)

missing_packages() {
  local libs kind name package
  libs=$(ldconfig -p 2>/dev/null || true)  # read whole: `grep -q` on a pipe trips pipefail
  while read -r kind name package; do
    case $kind in
      program) command -v "$name" >/dev/null 2>&1 || echo "$package" ;;
      file) [ -x "$name" ] || echo "$package" ;;
      library) grep -q "${name//./\\.}" <<<"$libs" || echo "$package" ;;
    esac
  done <<<"$list" | sort -u
}

need=$(missing_packages)
installed=""
if [ -n "$need" ]; then
  # shellcheck disable=SC2086 # one word per package
  echo "bootstrap: installing Debian packages:" $need >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker.io and containerd would start their daemons on this machine, with its network and
  # firewall: a policy-rc.d saying no (exit 101) keeps them stopped (netkit's tests start dockerd
  # only inside a sandbox, scripts/dockerbox.py). An existing policy is left as it is.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy
    chmod 755 $policy
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null
  installed=$need
  still=$(missing_packages)
  if [ -n "$still" ]; then
    echo "bootstrap: still missing after apt-get install:" $still >&2
    exit 1
  fi
fi

stamp=.venv/.netkit-installed
if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: preparing .venv" >&2
  python3 -m venv .venv
  # compat mode: a plain path in a .pth file. The default editable finder imports pathlib and
  # friends at every interpreter start, ~20 ms of each netkit command (docs/facts.md, "CLI start-up").
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import pyroute2, iptc, scapy, typer, rich, dnslib, yaml, pytest, hypothesis, importlinter, xdist'
  touch "$stamp"
fi
# Bytecode for netkit's own modules, as a regular install has it: with PYTHONDONTWRITEBYTECODE
# set (CI, some shells) nothing ever writes it, and every `netkit` process compiles the client
# anew (~5 ms). Only stale files are rewritten; a file edited later is compiled in memory as usual.
.venv/bin/python -m compileall -q netkit >/dev/null || true

if [ $report = 1 ]; then
  echo "bootstrap: Debian packages installed by this run: ${installed:-none}" | tr '\n' ' '
  echo
  echo "bootstrap: what netkit, its tests, demos and labs run (netkit/programs.py):"
  while read -r kind name package; do
    if [ "$kind" = program ]; then
      printf '  %-24s %-14s %s\n' "$name" "$package" "$(command -v "$name")"
    elif [ "$kind" = file ]; then
      printf '  %-24s %-14s %s\n' "$name" "$package" "$([ -x "$name" ] && echo "$name")"
    else
      printf '  %-24s %-14s %s\n' "$name" "$package" "$(ldconfig -p | grep -m1 "${name//./\\.}" | sed 's/.*=> //')"
    fi
  done <<<"$list"
  echo "  python packages: $(.venv/bin/python -m pip list --disable-pip-version-check --format=freeze 2>/dev/null \
    | grep -iE '^(pyroute2|python-iptables|scapy|typer|rich|dnslib|pytest|hypothesis|pytest-xdist)=' | tr '\n' ' ')"
fi
