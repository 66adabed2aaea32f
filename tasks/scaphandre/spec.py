"""The Scaphandre exporter container, as plain data and functions of host facts.

The container runs on the host network: Scaphandre itself listens on
scaphandre_listen_address:scaphandre_port (its own -a/-p), so Docker publishes no
port, starts no docker-proxy and writes no NAT rule on the hypervisor.

Nothing here touches pyinfra: the Scaphandre step reads the facts (`docker
inspect`, `ss`) and turns these answers into operations.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks import compat
from tasks.settings import Settings


@dataclass(frozen=True)
class ScaphandreSpec:
    """Everything that defines the Scaphandre container; a change to any field recreates it."""

    name: str
    image: str
    port: int
    listen_address: str
    qemu: bool = True
    containers: bool = True
    privileged: bool = True
    restart_policy: str = "unless-stopped"
    extra_args: list[str] = field(default_factory=list)
    # Part of the fingerprint: containers of earlier versions (a published port) are recreated once.
    network: str = "host"

    DOCKER_SOCKET = "/var/run/docker.sock"

    @property
    def command(self) -> list[str]:
        args = ["prometheus", "-a", self.listen_address, "-p", str(self.port)]
        if self.qemu:
            args.append("--qemu")
        if self.containers:
            args.append("--containers")
        return args

    @property
    def volumes(self) -> list[str]:
        # /proc gives per-process (and so per-VM) power; the powercap tree gives the counters.
        volumes = ["/proc:/proc", "/sys/class/powercap:/sys/class/powercap"]
        if self.containers:
            volumes.append(f"{self.DOCKER_SOCKET}:{self.DOCKER_SOCKET}")
        return volumes

    @property
    def security_args(self) -> list[str]:
        """Without --privileged: the narrower set Scaphandre needs under AppArmor/SELinux."""
        if self.privileged:
            return []
        return [
            "--cap-add=SYS_PTRACE",
            "--security-opt=apparmor=unconfined",
            "--security-opt=label=disable",
        ]

    SPEC_LABEL = "org.opennebula-scaphandre.spec"

    @property
    def fingerprint(self) -> str:
        """A digest of the whole spec, stored as a label so any change (even in extra args) is seen."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def labels(self) -> list[str]:
        return [f"{self.SPEC_LABEL}={self.fingerprint}"]

    @property
    def metrics_probe_address(self) -> str:
        """Where the host itself can reach /metrics. A wildcard listen address means loopback
        works: Scaphandre binds :: for both IPv6 and IPv4 (the kernel's default)."""
        return "127.0.0.1" if self.listen_address in ("0.0.0.0", "::", "") else self.listen_address

    @property
    def metrics_url(self) -> str:
        """/metrics as the host itself fetches it (an IPv6 address in brackets)."""
        return f"http://{host_port(self.metrics_probe_address, self.port)}/metrics"


def scaphandre_spec(settings: Settings) -> ScaphandreSpec:
    """The container spec of a host, from its checked settings."""
    return ScaphandreSpec(
        name=settings.scaphandre_container_name,
        image=settings.scaphandre_image,
        port=settings.scaphandre_port,
        listen_address=settings.scaphandre_listen_address,
        qemu=settings.scaphandre_qemu,
        containers=settings.scaphandre_containers,
        privileged=settings.scaphandre_privileged,
        restart_policy=settings.scaphandre_restart_policy,
        extra_args=list(settings.scaphandre_extra_docker_args),
    )


def host_port(host: str, port: int) -> str:
    """host:port, an IPv6 address in brackets (as URLs and Prometheus targets write it)."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def exporter_address(settings: Settings, inventory_name: str) -> str:
    """host:port where Prometheus scrapes this hypervisor's exporter (IPv6 in brackets)."""
    return host_port(settings.scaphandre_scrape_host or inventory_name, settings.scaphandre_port)


def _bind_conflicts(wanted: str, bound: str) -> bool:
    """Whether a socket listening on `bound` (as ss prints it) stops a bind to `wanted`.

    ss prints a dual-stack IPv6 wildcard as `*` (older versions `::`) and an IPv6-only
    one as `[::]`. Scaphandre's `::` is dual-stack (the kernel's default), so it
    conflicts with every listener on the port; `0.0.0.0` with every IPv4 one.
    """
    if bound in ("*", "", "::") or wanted == "::":
        return True
    bound_address = bound.strip("[]")
    if (":" in bound_address) != (":" in wanted):
        return False
    return wanted == "0.0.0.0" or bound_address in ("0.0.0.0", "::") or bound_address == wanted


def port_listeners(
    ss_lines: list[str],
    port: int,
    listen_address: str = "0.0.0.0",
    own_pids: frozenset[int] | set[int] = frozenset(),
) -> list[str]:
    """Who would stop Scaphandre binding `listen_address`:`port`, from `ss -Hltnp` output.

    One "process (pid N) on ADDR" per conflicting socket; empty when the port is
    free. Sockets on another specific address, or of the other IP family, do not
    conflict; nor does a socket held only by `own_pids` (the Scaphandre container's
    own processes: on the host network its listener is the host's). A listener
    whose process ss cannot name is still reported, by its address.
    """
    wanted = listen_address.strip("[]") or "0.0.0.0"
    listeners = []
    for line in ss_lines:
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        address = fields[3]
        bound, _, bound_port = address.rpartition(":")
        if bound_port != str(port) or not _bind_conflicts(wanted, bound.split("%", 1)[0]):
            continue
        processes = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        if processes and {int(pid) for _, pid in processes} <= set(own_pids):
            continue
        who = ", ".join(f"{name} (pid {pid})" for name, pid in processes) or "an unnamed process"
        listeners.append(f"{who} on {address}")
    return sorted(set(listeners))


def publishes_port(inspect: Mapping[str, Any] | None, port: int) -> bool:
    """True when this (running) container publishes host port `port` through Docker (as the
    deploy's earlier versions did), so the port is freed when it is recreated."""
    if not inspect or (inspect.get("State") or {}).get("Status") != "running":
        return False
    bindings = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    return any(
        str(b.get("HostPort")) == str(port) for entries in bindings.values() for b in entries or []
    )


def port_taken_message(port: int, listeners: list[str], container: str) -> str:
    """What to tell the operator when Scaphandre's port is held by something else."""
    return (
        f"TCP port {port} is already taken on this host by {'; '.join(listeners)}: "
        f"stop that service or set scaphandre_port to a free port. "
        f"The container {container} was left as it was"
    )


def container_drift(inspect: Mapping[str, Any] | None, spec: ScaphandreSpec) -> list[str]:
    """What differs between a running container (`docker inspect` output) and the spec.

    Empty when the container matches, so it is left alone; otherwise one short
    phrase per difference, used to say why it is recreated.
    """
    if not inspect:
        return []
    config = inspect.get("Config") or {}
    host_config = inspect.get("HostConfig") or {}
    drift = []
    if config.get("Image") != spec.image:
        drift.append(f"image {config.get('Image')} -> {spec.image}")
    if list(config.get("Cmd") or []) != spec.command:
        drift.append("command line")
    if sorted(host_config.get("Binds") or []) != sorted(spec.volumes):
        drift.append("mounts")
    network = host_config.get("NetworkMode") or "default"
    if network != spec.network:
        drift.append(f"network {network} -> {spec.network}")
    if any(host_config.get("PortBindings") or {}):
        drift.append("published port")
    if bool(host_config.get("Privileged")) != spec.privileged:
        drift.append("privileged mode")
    if (host_config.get("RestartPolicy") or {}).get("Name") != spec.restart_policy:
        drift.append("restart policy")
    wanted_caps = {"SYS_PTRACE"} if not spec.privileged else set()
    have_caps = {cap.upper().removeprefix("CAP_") for cap in host_config.get("CapAdd") or []}
    if have_caps != wanted_caps:
        drift.append("capabilities")
    if not drift and (config.get("Labels") or {}).get(spec.SPEC_LABEL) != spec.fingerprint:
        drift.append("other settings (extra docker args)")
    return drift


def runs_as_specified(inspect: Sequence[Mapping[str, Any]] | None, spec: ScaphandreSpec) -> bool:
    """Whether `docker container inspect` of the container (a list, empty when there is none)
    shows it running exactly as `spec` says: then it is left alone."""
    current = inspect[0] if inspect else None
    running = (current or {}).get("State", {}) or {}
    return (
        bool(current) and not container_drift(current, spec) and running.get("Status") == "running"
    )


def image_registry(image: str) -> str | None:
    """The registry host (and port) an image reference names, or None for Docker Hub images."""
    reference = compat.parse_image_reference(image)
    registry_host: str | None = reference.registry_host
    if registry_host is None:
        return None
    return registry_host + (f":{reference.registry_port}" if reference.registry_port else "")


def containers_using(
    image: str,
    image_inspect: Sequence[Mapping[str, Any]] | None,
    containers: Sequence[Mapping[str, Any]] | None,
    own_container: str,
) -> list[str]:
    """Names of the containers other than `own_container` that use `image` (by name or ID), from
    `docker inspect` of the image and of every container."""
    image_ids = {entry.get("Id") for entry in image_inspect or [] if entry.get("Id")}
    users = []
    for container in containers or []:
        name = (container.get("Name") or "").lstrip("/")
        if name == own_container:
            continue
        if (container.get("Config") or {}).get("Image") == image or container.get(
            "Image"
        ) in image_ids:
            users.append(name)
    return sorted(users)


def listening_addresses(
    ss_lines: list[str], port: int, pids: set[int] | frozenset[int]
) -> list[str]:
    """The addresses (as `ip_address` strings; `::` for ss's dual-stack `*`) on which processes
    `pids` listen on TCP `port`, from `ss -Hltnp` output."""
    found = []
    for line in ss_lines:
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        bound, _, bound_port = fields[3].rpartition(":")
        holders = {int(pid) for pid in re.findall(r",pid=(\d+)", line)}
        if bound_port == str(port) and holders and holders <= set(pids):
            address = bound.split("%", 1)[0].strip("[]")
            found.append("::" if address == "*" else address)
    return sorted(set(found))
