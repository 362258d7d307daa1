#!/usr/bin/env bash
# Install everything vxplane's tests, demo and bench need on Debian 12, idempotently.
#
#   scripts/install-deps.sh              apt packages (root) + .venv
#   scripts/install-deps.sh --venv-only  only .venv (no root needed)
#   scripts/install-deps.sh --apt-only   only the apt packages
#
# Fast when already done: apt runs only if a package is missing (dpkg-query), and pip runs only
# when pyproject.toml (or the Python) changed since the last install (stamp file in .venv).
#
# The Debian openvswitch-switch, postgresql and ovn-central/ovn-host packages would start system
# daemons (a system ovsdb-server/ovs-vswitchd, the "15/main" cluster on port 5432, ovn-northd,
# the OVN NB/SB databases, ovn-controller). vxplane starts its own per emulated host and per
# test (bench/ovn.py its own OVN daemons), so the install runs with a temporary policy-rc.d that
# forbids service starts, and the units we newly installed are disabled so a reboot does not
# start them.
#
# Environment:
#   VXPLANE_APT_EXTRA="pkg ..."   more apt packages to ensure (e.g. "docker.io chromium")
#   PYTHON=python3                interpreter used to create .venv
#   VXPLANE_FORCE_PIP=1           re-run pip even if the stamp matches
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.vxplane-deps-stamp"

APT_PACKAGES=(
  openvswitch-switch openvswitch-common  # ovsdb-server, ovs-vswitchd, ovs-vsctl, ovs-ofctl
  postgresql                             # initdb, pg_ctl for tests/db (our own instance)
  iproute2 ethtool iperf3 busybox-static procps iputils-ping kmod psmisc ca-certificates
  util-linux                             # nsenter, unshare (essential; listed to be explicit)
  make                                   # not on a minimal Debian 12; the Makefile needs it
  git
  docker-compose                         # validates docker-compose.yml in tests (no engine needed)
  chromium                               # headless browser for tests/web (dashboard, Playwright)
  docker.io                              # dockerd per emulated host (tests/runtime, lab --docker)
  ovn-central ovn-host                   # OVN 23.03, measured against by bench/ovn.py
)
# shellcheck disable=SC2206
APT_PACKAGES+=(${VXPLANE_APT_EXTRA:-})
# Services that the packages above ship and that we never want running.
SYSTEM_UNITS=(openvswitch-switch ovsdb-server ovs-vswitchd postgresql docker docker.socket containerd
  ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb ovn-host ovn-controller)

DO_APT=1
DO_VENV=1
for arg in "$@"; do
  case "$arg" in
    --venv-only) DO_APT=0 ;;
    --apt-only) DO_VENV=0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "install-deps: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[install-deps $(date +%H:%M:%S)] $*"; }

missing_packages() {
  local pkg status
  for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || echo "$pkg"
  done
}

in_list() {
  local needle="$1" item
  shift
  for item in "$@"; do [[ "$item" == "$needle" ]] && return 0; done
  return 1
}

have_systemd() { [[ -d /run/systemd/system ]]; }

# Print the names of the Debian system daemons that are running (not ours: ours use their
# own run directories and pid files).
running_system_services() {
  local pidfile
  for pidfile in /run/openvswitch/ovsdb-server.pid /run/openvswitch/ovs-vswitchd.pid \
    /run/ovn/ovn-northd.pid /run/ovn/ovnnb_db.pid /run/ovn/ovnsb_db.pid /run/ovn/ovn-controller.pid; do
    if [[ -r "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      basename "$pidfile" .pid
    fi
  done
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" { print "postgresql-" $1 "-" $2 " (port " $3 ")" }'
  fi
}

stop_system_services() {
  log "stopping Debian system services (vxplane runs its own daemons)"
  if have_systemd; then
    systemctl stop "${SYSTEM_UNITS[@]}" 2>/dev/null || true
  fi
  if [[ -x /usr/share/ovn/scripts/ovn-ctl ]]; then
    /usr/share/ovn/scripts/ovn-ctl stop_controller >/dev/null 2>&1 || true
    /usr/share/ovn/scripts/ovn-ctl stop_northd >/dev/null 2>&1 || true
  fi
  if [[ -x /usr/share/openvswitch/scripts/ovs-ctl ]]; then
    /usr/share/openvswitch/scripts/ovs-ctl stop >/dev/null 2>&1 || true
  fi
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" { print $1, $2 }' |
      while read -r ver cluster; do pg_ctlcluster "$ver" "$cluster" stop || true; done
  fi
}

install_apt() {
  local missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    log "apt: all ${#APT_PACKAGES[@]} packages present"
  else
    if [[ "$(id -u)" != 0 ]]; then
      echo "install-deps: missing apt packages (${missing[*]}); run as root" >&2
      exit 1
    fi
    log "apt: installing ${missing[*]}"
    local guard=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      # Keep maintainer scripts from starting ovsdb-server/ovs-vswitchd/postgres.
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      guard=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if ((guard)); then
      rm -f /usr/sbin/policy-rc.d
      trap - EXIT
    fi
    # The maintainer scripts enabled the units; disable the ones we just installed so a
    # reboot does not start them either.
    if have_systemd; then
      local units=()
      if in_list openvswitch-switch "${missing[@]}"; then
        units+=(openvswitch-switch ovsdb-server ovs-vswitchd)
      fi
      if in_list postgresql "${missing[@]}"; then units+=(postgresql); fi
      if in_list docker.io "${missing[@]}"; then units+=(docker docker.socket containerd); fi
      if in_list ovn-central "${missing[@]}"; then
        units+=(ovn-central ovn-northd ovn-ovsdb-server-nb ovn-ovsdb-server-sb)
      fi
      if in_list ovn-host "${missing[@]}"; then units+=(ovn-host ovn-controller); fi
      if ((${#units[@]})); then systemctl disable "${units[@]}" >/dev/null 2>&1 || true; fi
    fi
  fi

  local running
  running="$(running_system_services)"
  if [[ -n "$running" ]]; then
    if in_list openvswitch-switch "${missing[@]}" || in_list postgresql "${missing[@]}" ||
      in_list ovn-central "${missing[@]}" || in_list ovn-host "${missing[@]}" ||
      [[ "${CI:-}" == "true" ]]; then
      stop_system_services
    else
      log "note: Debian system services are running (left alone outside CI):"
      printf '    %s\n' "${running//$'\n'/$'\n'    }"
    fi
  fi
}

venv_python_ok() {
  [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null
}

install_venv() {
  if ! venv_python_ok; then
    if [[ -e "$VENV" ]]; then
      log "venv: $VENV is broken or too old; recreating"
      rm -rf "$VENV"
    fi
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
      # Debian's own python3 ships venv/ensurepip separately.
      if [[ "$(id -u)" == 0 && "$(command -v "$PYTHON")" == /usr/bin/* ]]; then
        log "venv: installing python3-venv for $PYTHON"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv ||
          { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends python3-venv; }
      else
        echo "install-deps: $PYTHON cannot create a venv (install python3-venv)" >&2
        exit 1
      fi
    fi
    log "venv: creating with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PYTHON" -m venv "$VENV"
  fi
  local want have=""
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
  [[ -r "$STAMP" ]] && have="$(cat "$STAMP")"
  if [[ "$want" == "$have" && -z "${VXPLANE_FORCE_PIP:-}" ]] && [[ -x "$VENV/bin/vxplane" ]]; then
    log "venv: up to date"
    return
  fi
  log "venv: pip install -e .[dev]"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" >"$STAMP"
  log "venv: done"
}

if ((DO_APT)); then install_apt; fi
if ((DO_VENV)); then install_venv; fi
