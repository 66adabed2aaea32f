"""What the Docker engine step reads on a hypervisor."""

from __future__ import annotations

from pyinfra.api import FactBase


class DockerEngineInstalled(FactBase):
    """Whether any Docker engine (docker-ce, docker.io or moby) is installed: is dockerd on the PATH."""

    def command(self) -> str:
        return "command -v dockerd >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output) -> bool:
        return "".join(output).strip() == "yes"
