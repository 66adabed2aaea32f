#!/usr/bin/env bash
# Runs ruff and mypy, then every test: unit tests, pyone against the OpenNebula API simulator,
# promtool and a real Prometheus on rendered configs, and the end-to-end
# scenarios of the real pyinfra CLI against the simulated cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Lint, layout and strict types first (settings in pyproject.toml): they take seconds (mypy
# keeps its cache in .mypy_cache), the tests take minutes, so a finding fails the command
# before any test bed starts.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Three workers, each taking whole test files: a module's scenarios share its bed and run in
# order, and the beds (each on its own names and ports) mostly wait on their hosts, so three
# side by side fit two cores.
exec .venv/bin/pytest -n 3 --dist loadfile "$@"
