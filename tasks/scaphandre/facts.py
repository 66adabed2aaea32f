"""What the Scaphandre step reads on a hypervisor (besides pyinfra's own Docker facts)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from pyinfra.api import FactBase


class ListeningTcpSockets(FactBase[list[str]]):
    """`ss -Hltnp` lines: every listening TCP socket with the process holding it (root sees all)."""

    default = list

    def command(self) -> str:
        return "ss -Hltnp 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line.strip()]


class ContainerProcessIds(FactBase[set[int]]):
    """Host PIDs of a running container's processes (`docker top`); empty when it does not run."""

    default = set

    def command(self, container: str) -> str:
        return f"docker top {shlex.quote(container)} -eo pid 2>/dev/null || true"

    def process(self, output: list[str]) -> set[int]:
        return {int(line.strip()) for line in output if line.strip().isdigit()}


class RegistryLoginState(FactBase[dict[str, Any]]):
    """Whether root's Docker client holds a login for `registry`, and the credentials digest
    the deploy's marker keeps for it.

    Prints only `logged_in=yes|no` and the marker's digest: never Docker's config file,
    whose `auth` entry is the password in base64.
    """

    def command(self, registry: str, marker: str) -> str:
        quoted_marker = shlex.quote(marker)
        return (
            'config="${DOCKER_CONFIG:-$HOME/.docker}/config.json"; '
            f'if grep -qF {shlex.quote(json.dumps(registry))} "$config" 2>/dev/null; '
            "then echo logged_in=yes; else echo logged_in=no; fi; "
            f'[ -r {quoted_marker} ] && echo "digest=$(head -n 1 {quoted_marker})"; true'
        )

    def process(self, output: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {"logged_in": False, "digest": None}
        for line in output:
            key, _, value = line.strip().partition("=")
            if key == "logged_in":
                found["logged_in"] = value == "yes"
            elif key == "digest":
                found["digest"] = value or None
        return found
