#!/usr/bin/env bash
# Set Slipway up on a Debian bookworm machine: system packages, a running
# Docker engine, a virtualenv with Slipway in it, and local base images when no
# container registry answers. Safe to run again; a repeat run takes seconds.
#
#   ./install.sh          run Slipway from this checkout
#   ./install.sh --dev    also the test dependencies (pytest, ruff, docker-compose,
#                         Playwright and Debian's chromium for the browser tests,
#                         wrk for the router benchmark)
#
# Runs as root, or as a user with sudo for the system steps.
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

dev=0
for arg in "$@"; do
    case "$arg" in
        --dev) dev=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option: $arg" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$(dirname "$(readlink -f "$0")")"
export DEBIAN_FRONTEND=noninteractive

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo --preserve-env=DEBIAN_FRONTEND)
else
    die "run as root, or install sudo"
fi

# --- Debian packages -------------------------------------------------------

# libnginx-mod-http-lua: the router's balancer switches app addresses without reloads.
packages=(docker.io nginx libnginx-mod-http-lua redis-server postgresql debootstrap git
          pebble curl ca-certificates python3-venv)
if [ "$dev" -eq 1 ]; then
    # chromium: the dashboard's browser tests drive Debian's build with Playwright.
    # wrk: the load generator of bench/router.py.
    packages+=(docker-compose chromium wrk)
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    say "Debian packages already installed"
else
    say "Installing Debian packages: ${missing[*]}"
    # Package scripts would start nginx on :80, postgresql on :5432 and so on;
    # Slipway runs its own. A policy-rc.d that exits 101 stops them starting
    # (unless the machine already has one, which then decides).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# Written by Slipway install.sh during apt-get install.\nexit 101\n' \
            | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        own_policy=1
        trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$own_policy" -eq 1 ]; then
        "${sudo[@]}" rm -f "$policy"
        trap - EXIT
    fi
    # Under systemd the units would still start at the next boot: nginx would
    # hold port 80 that Slipway's router needs. Only units installed just now
    # are disabled, so an administrator's later choice stands.
    if [ -d /run/systemd/system ]; then
        for pkg in nginx postgresql; do
            case " ${missing[*]} " in
                *" $pkg "*) "${sudo[@]}" systemctl disable --now "$pkg" >/dev/null 2>&1 || true ;;
            esac
        done
        case " ${missing[*]} " in
            *" docker.io "*) "${sudo[@]}" systemctl enable docker >/dev/null 2>&1 || true ;;
        esac
    fi
fi

# A system nginx on port 80 would keep Slipway's router from binding it.
if command -v ss >/dev/null 2>&1 && ss -H -ltnp 'sport = :80' 2>/dev/null | grep -q nginx; then
    say "warning: an nginx already listens on port 80; Slipway's router needs it" \
        "(stop it, or set SLIPWAY_HTTP_PORT)"
fi

# --- Kernel setting for the router ------------------------------------------

# The router opens a connection to an app per request when the app's server closes
# each one (gunicorn's sync worker does): without reuse, thousands of sockets wait
# in TIME_WAIT and new connections to apps slow down, then fail, under load.
sysctl_file=/etc/sysctl.d/60-slipway.conf
if [ "$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null)" != 1 ]; then
    if printf 'net.ipv4.tcp_tw_reuse = 1\n' | "${sudo[@]}" tee "$sysctl_file" >/dev/null \
            && "${sudo[@]}" sysctl -q -p "$sysctl_file" >/dev/null 2>&1; then
        say "Set net.ipv4.tcp_tw_reuse = 1 ($sysctl_file)"
    else
        say "warning: could not set net.ipv4.tcp_tw_reuse = 1; apps that close every" \
            "connection will be slower behind the router"
    fi
fi

# --- Docker engine ---------------------------------------------------------

if "${sudo[@]}" docker info >/dev/null 2>&1; then
    say "Docker engine is running"
else
    if [ -d /run/systemd/system ]; then
        say "Starting the Docker engine (systemctl start docker)"
        "${sudo[@]}" systemctl start docker || true
    else
        say "Starting dockerd in the background (log: /var/log/slipway-dockerd.log)"
        # setsid: the daemon outlives this script and ignores its terminal.
        "${sudo[@]}" sh -c 'setsid dockerd >>/var/log/slipway-dockerd.log 2>&1 < /dev/null &'
    fi
    deadline=$((SECONDS + 60))
    until "${sudo[@]}" docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 /var/log/slipway-dockerd.log >&2 2>/dev/null || true
            die "the Docker engine did not answer within 60s (see /var/log/slipway-dockerd.log)"
        fi
        sleep 0.5
    done
    say "Docker engine is up"
fi

# --- Python virtualenv -----------------------------------------------------

venv=.venv
python=/usr/bin/python3
have=""
want_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "$venv/bin/python" ] \
        && have="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
        && [ "$have" = "$want_version" ]; then
    say "Virtualenv $venv exists (Python $have)"
else
    say "Creating virtualenv $venv (Python $want_version${have:+, replacing one for Python $have})"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

# pip runs only when what it would install changed: the stamp records the
# project metadata and the extras of the last successful install.
extras=""
if [ "$dev" -eq 1 ]; then
    extras="[dev]"
fi
stamp="$venv/.slipway-install"
want_stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
        && "$venv/bin/python" -c 'import slipway' >/dev/null 2>&1; then
    say "Slipway is installed in $venv (pyproject.toml unchanged)"
else
    say "Installing Slipway into $venv: pip install -e .$extras"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".$extras"
    printf '%s\n' "$want_stamp" > "$stamp"
fi

# --- Base images -----------------------------------------------------------

if "${sudo[@]}" "$venv/bin/python" -c '
import sys, docker
from slipway.builder.bootstrap import registry_reachable
sys.exit(0 if registry_reachable(docker.from_env(), timeout=5) else 1)'; then
    say "A container registry answers; base images will be pulled from it"
else
    say "No container registry answers: building local base images (existing ones are kept)"
    if "$venv/bin/slipway" images bootstrap --help >/dev/null 2>&1; then
        "${sudo[@]}" "$venv/bin/slipway" images bootstrap
        # Capsule images of the default (newest) versions: --kind replaces the defaults,
        # so they are a second call. Other versions are built when a capsule asks for one.
        "${sudo[@]}" "$venv/bin/slipway" images bootstrap --kind postgres18 --kind redis8
    else
        # The same defaults, for a checkout whose CLI is not importable.
        "${sudo[@]}" "$venv/bin/python" -m slipway.builder.bootstrap
    fi
fi

say "Slipway is installed. Run: $venv/bin/slipway --help"
