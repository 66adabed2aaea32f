"""What the Docker engine step reads on a hypervisor."""

from __future__ import annotations

from pyinfra.api import FactBase

from tasks.docker_engine.vm_traffic import COLLECT_COMMAND, VmTrafficState, parse_vm_traffic_state


class DockerEngineInstalled(FactBase[bool]):
    """Whether any Docker engine (docker-ce, docker.io or moby) is installed: is dockerd on the PATH."""

    def command(self) -> str:
        return "command -v dockerd >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return "".join(output).strip() == "yes"


class VmTrafficFirewall(FactBase[VmTrafficState]):
    """The firewall state that decides whether bridged VM traffic gets through: FORWARD and
    DOCKER-USER of iptables and ip6tables, the bridge-nf-call sysctls and the bridges."""

    @staticmethod
    def default() -> VmTrafficState:
        return VmTrafficState()

    def command(self) -> str:
        return COLLECT_COMMAND

    def process(self, output: list[str]) -> VmTrafficState:
        return parse_vm_traffic_state(list(output))
