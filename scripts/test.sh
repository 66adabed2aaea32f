#!/usr/bin/env bash
# Runs every test: unit tests, pyone against the OpenNebula API simulator,
# promtool and a real Prometheus on rendered configs, and the end-to-end
# scenarios of the real pyinfra CLI against the simulated cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest "$@"
