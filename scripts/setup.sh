#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) to run the deploy and its tests:
# Debian packages, the Python virtualenv with pinned dependencies, and a running
# Docker engine with the simulated cloud's images. Safe to run again: each step
# skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(python3-venv prometheus debootstrap docker.io openssh-client gcc libc6-dev curl)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "--> Installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/pyinfra ] || ! .venv/bin/pip freeze 2>/dev/null | grep -qi '^pyinfra==3.10.0$'; then
    echo "--> Creating .venv with the pinned Python dependencies"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
fi

bash tests/testbed/install-deps.sh
