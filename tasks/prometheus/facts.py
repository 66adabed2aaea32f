"""What the Prometheus step reads on a server."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


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
