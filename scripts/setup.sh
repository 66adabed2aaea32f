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

# Reinstalled whenever requirements.txt changes: the venv records the digest it was built from.
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/pyinfra ] || [ "$(cat .venv/requirements.sha256 2>/dev/null)" != "$wanted" ]; then
    echo "--> Installing the pinned Python dependencies into .venv"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
    echo "$wanted" > .venv/requirements.sha256
fi

bash tests/testbed/install-deps.sh
