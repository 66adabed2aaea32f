"""What the deploy reads on a node about OpenNebula."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class OpenNebulaMonitorIds(FactBase[list[str]]):
    """Names of OpenNebula's monitor databases on a node (status_kvm_<ID>.db), for the ID fallback."""

    default = list

    def command(self, directory: str = "/var/tmp/one/im") -> str:
        return f"ls -1 {shlex.quote(directory)} 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]
