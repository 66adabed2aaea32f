"""Facts this deploy needs that pyinfra does not ship.

Each reads what it needs in one command, so a rerun costs one round trip per fact.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class CpuVendor(FactBase):
    """The CPU vendor string from /proc/cpuinfo, e.g. ``GenuineIntel`` or ``AuthenticAMD``."""

    def command(self) -> str:
        return "grep -m1 '^vendor_id' /proc/cpuinfo || true"

    def process(self, output) -> str:
        line = "".join(output)
        return line.split(":", 1)[1].strip() if ":" in line else ""


class RaplExposed(FactBase):
    """Whether RAPL is exposed under /sys/class/powercap (what Scaphandre reads), loaded modules or not."""

    def command(self) -> str:
        return "test -e /sys/class/powercap/intel-rapl:0 && echo yes || echo no"

    def process(self, output) -> bool:
        return "".join(output).strip() == "yes"


class DockerEngineInstalled(FactBase):
    """Whether any Docker engine (docker-ce, docker.io or moby) is installed: is dockerd on the PATH."""

    def command(self) -> str:
        return "command -v dockerd >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output) -> bool:
        return "".join(output).strip() == "yes"


class ListeningTcpSockets(FactBase):
    """`ss -Hltnp` lines: every listening TCP socket with the process holding it (root sees all)."""

    default = list

    def command(self) -> str:
        return "ss -Hltnp 2>/dev/null || true"

    def process(self, output) -> list[str]:
        return [line for line in output if line.strip()]


class OpenNebulaMonitorIds(FactBase):
    """Names of OpenNebula's monitor databases on a node (status_kvm_<ID>.db), for the ID fallback."""

    default = list

    def command(self, directory: str = "/var/tmp/one/im") -> str:
        return f"ls -1 {shlex.quote(directory)} 2>/dev/null || true"

    def process(self, output) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class PrometheusServer(FactBase):
    """Where this host's Prometheus lives: first existing config among the candidates, its
    service unit, the prometheus/promtool binaries and the server version, in one round trip.

    Returns a dict with keys config, service, binary, promtool, version (each '' when not found).
    """

    def command(self, candidates: list[tuple[str, str]], binaries: list[str], promtools: list[str]) -> str:
        def first_existing(var: str, paths: list[str], test: str) -> str:
            tests = " || ".join(f"{{ [ {test} {shlex.quote(p)} ] && {var}={shlex.quote(p)}; }}" for p in paths)
            return f"{var}=''; {tests} || true"

        lines = [
            "config=''; service=''",
            *(
                f"[ -z \"$config\" ] && [ -e {shlex.quote(cfg)} ] && config={shlex.quote(cfg)} "
                f"&& service={shlex.quote(svc)}"
                for cfg, svc in candidates
            ),
            first_existing("binary", binaries, "-x"),
            first_existing("promtool", promtools, "-x"),
            'version=$([ -n "$binary" ] && "$binary" --version 2>&1 | head -n1)',
            'echo "config=$config"; echo "service=$service"; echo "binary=$binary"',
            'echo "promtool=$promtool"; echo "version=$version"',
        ]
        return "; ".join(lines)

    def process(self, output) -> dict[str, str]:
        found = {"config": "", "service": "", "binary": "", "promtool": "", "version": ""}
        for line in output:
            key, _, value = line.partition("=")
            if key in found:
                found[key] = value.strip()
        return found
