#!/usr/bin/env bash
# The deploy, end to end, against a local simulated cloud (no OpenNebula needed):
# sets the machine up, starts three simulated hypervisors, a Prometheus server and
# an OpenNebula API simulator, runs `pyinfra -y inventory.py deploy.py`, and prints
# the power Prometheus then reports. `bash scripts/demo.sh down` removes the cloud.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "down" ]; then
    exec .venv/bin/python scripts/demo.py down
fi

bash scripts/setup.sh
.venv/bin/python scripts/demo.py up
.venv/bin/pyinfra -y inventory.py deploy.py
.venv/bin/python scripts/demo.py report
