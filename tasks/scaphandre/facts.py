"""What the Scaphandre step reads on a hypervisor (besides pyinfra's own Docker facts)."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class ListeningTcpSockets(FactBase):
    """`ss -Hltnp` lines: every listening TCP socket with the process holding it (root sees all)."""

    default = list

    def command(self) -> str:
        return "ss -Hltnp 2>/dev/null || true"

    def process(self, output) -> list[str]:
        return [line for line in output if line.strip()]


class ContainerProcessIds(FactBase):
    """Host PIDs of a running container's processes (`docker top`); empty when it does not run."""

    default = set

    def command(self, container: str) -> str:
        return f"docker top {shlex.quote(container)} -eo pid 2>/dev/null || true"

    def process(self, output) -> set[int]:
        return {int(line.strip()) for line in output if line.strip().isdigit()}
