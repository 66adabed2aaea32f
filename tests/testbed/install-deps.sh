#!/bin/bash
# Installs what the end-to-end test bed needs on a fresh Debian 12 machine run
# as root, and starts the Docker engine when none answers. Idempotent: safe to
# run before every CI run.
#   debootstrap  - builds the base image (nothing can be pulled from a registry)
#   docker.io    - the engine the simulated hosts run in
#   gcc, libc6-dev - compiles the static QEMU stand-in baked into hypervisors
#   openssh-client - ssh/ssh-keygen for the bed's key and SSH checks
#   curl, ca-certificates, tar - downloads by apt inside hosts, image tars
# and fetches Prometheus 3.5 from Debian's sid suite for the bed's Prometheus 3 host
# (fetch-prometheus3.sh: unpacked under .testbed/prometheus3, never installed here).
set -euo pipefail

PACKAGES=(debootstrap docker.io gcc libc6-dev openssh-client curl ca-certificates tar)
DOCKER_WAIT_S=60

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

install_packages() {
    local missing
    missing=$(missing_packages)
    if [ -z "$missing" ]; then
        echo "install-deps: packages already installed"
        return
    fi
    echo "install-deps: installing" $missing
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

docker_answers() {
    timeout 10 docker info >/dev/null 2>&1
}

start_docker() {
    if docker_answers; then
        echo "install-deps: Docker engine already answers"
        return
    fi
    # No systemd as PID 1 on these machines: start the engine by hand, detached.
    echo "install-deps: starting dockerd (log: /var/log/dockerd-testbed.log)"
    nohup dockerd >/var/log/dockerd-testbed.log 2>&1 &
    local waited=0
    until docker_answers; do
        if [ "$waited" -ge "$DOCKER_WAIT_S" ]; then
            echo "install-deps: dockerd did not answer within ${DOCKER_WAIT_S}s; last log lines:" >&2
            tail -20 /var/log/dockerd-testbed.log >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "install-deps: dockerd answers after ${waited}s"
}

raise_inotify_limits() {
    # Every simulated host runs systemd, which takes inotify instances; the kernel's
    # default of 128 per user runs out with a few beds up at once and hosts boot degraded.
    local key current
    for key in fs.inotify.max_user_instances:1024 fs.inotify.max_user_watches:524288; do
        current=$(sysctl -n "${key%%:*}" 2>/dev/null || echo 0)
        if [ "$current" -lt "${key##*:}" ]; then
            sysctl -q -w "${key%%:*}=${key##*:}" || echo "install-deps: could not raise ${key%%:*}" >&2
        fi
    done
}

install_packages
raise_inotify_limits
start_docker
bash "$(dirname "$0")/fetch-prometheus3.sh"
