#!/usr/bin/env bash
# Runs every test: unit tests, pyone against the OpenNebula API simulator,
# promtool and a real Prometheus on rendered configs, and the end-to-end
# scenarios of the real pyinfra CLI against the simulated cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Three workers, each taking whole test files: a module's scenarios share its bed and run in
# order, and the beds (each on its own names and ports) mostly wait on their hosts, so three
# side by side fit two cores.
exec .venv/bin/pytest -n 3 --dist loadfile "$@"
