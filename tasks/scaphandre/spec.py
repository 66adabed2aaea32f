"""The Scaphandre exporter container, as plain data and functions of host facts.

Nothing here touches pyinfra: the Scaphandre step reads the facts (`docker
inspect`, `ss`) and turns these answers into operations.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from pyinfra.operations.util.docker import parse_image_reference

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

    CONTAINER_PORT = 8080
    DOCKER_SOCKET = "/var/run/docker.sock"

    @property
    def command(self) -> list[str]:
        args = ["prometheus", "-a", "0.0.0.0", "-p", str(self.CONTAINER_PORT)]
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
    def port_binding(self) -> str:
        return f"{self.listen_address}:{self.port}:{self.CONTAINER_PORT}"

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
        """Where the host itself can reach /metrics (a wildcard listen address means loopback works)."""
        return "127.0.0.1" if self.listen_address in ("0.0.0.0", "::", "") else self.listen_address


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


def exporter_address(settings: Settings, inventory_name: str) -> str:
    """host:port where Prometheus scrapes this hypervisor's exporter (IPv6 in brackets)."""
    host = (settings.scaphandre_scrape_host or inventory_name).strip("[]")
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.scaphandre_port}"


WILDCARD_ADDRESSES = {"", "0.0.0.0", "*", "::"}


def port_listeners(ss_lines: list[str], port: int, listen_address: str = "0.0.0.0") -> list[str]:
    """Who would stop Scaphandre binding `listen_address`:`port`, from `ss -Hltnp` output.

    One "process (pid N) on ADDR" per conflicting socket; empty when the port is
    free. Sockets on another specific address do not conflict. A listener whose
    process ss cannot name is still reported, by its address.
    """
    wanted = listen_address.strip("[]")
    listeners = []
    for line in ss_lines:
        fields = line.split()
        if len(fields) < 4 or fields[0] != "LISTEN":
            continue
        address = fields[3]
        bound, _, bound_port = address.rpartition(":")
        bound = bound.strip("[]").split("%", 1)[0]
        if bound_port != str(port):
            continue
        if wanted not in WILDCARD_ADDRESSES and bound not in WILDCARD_ADDRESSES and bound != wanted:
            continue
        processes = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        who = ", ".join(f"{name} (pid {pid})" for name, pid in processes) or "an unnamed process"
        listeners.append(f"{who} on {address}")
    return sorted(set(listeners))


def publishes_port(inspect: dict | None, port: int) -> bool:
    """True when this (running) container itself holds host port `port`."""
    if not inspect or (inspect.get("State") or {}).get("Status") != "running":
        return False
    bindings = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    return any(str(b.get("HostPort")) == str(port) for entries in bindings.values() for b in entries or [])


def port_taken_message(port: int, listeners: list[str], container: str) -> str:
    """What to tell the operator when Scaphandre's port is held by something else."""
    return (
        f"TCP port {port} is already taken on this host by {'; '.join(listeners)}: "
        f"stop that service or set scaphandre_port to a free port. "
        f"The container {container} was left as it was"
    )


def container_drift(inspect: dict | None, spec: ScaphandreSpec) -> list[str]:
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
    bindings = (host_config.get("PortBindings") or {}).get(f"{spec.CONTAINER_PORT}/tcp") or []
    published = {(b.get("HostIp") or "", str(b.get("HostPort") or "")) for b in bindings}
    wanted_ip = "" if spec.listen_address in ("0.0.0.0", "") else spec.listen_address
    if published != {(wanted_ip, str(spec.port))} and published != {(spec.listen_address, str(spec.port))}:
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


def image_registry(image: str) -> str | None:
    """The registry host (and port) an image reference names, or None for Docker Hub images."""
    reference = parse_image_reference(image)
    if reference.registry_host is None:
        return None
    return reference.registry_host + (f":{reference.registry_port}" if reference.registry_port else "")
