"""Decisions about one hypervisor, as plain functions of what its facts say.

Nothing here touches pyinfra: the @deploy functions in this package read the
facts and turn these answers into operations, and the unit tests call these
functions directly with the facts a Debian, Ubuntu or AlmaLinux host reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

RAPL_ZONE = "/sys/class/powercap/intel-rapl:0"
MODULES_LOAD_FILE = "/etc/modules-load.d/scaphandre-rapl.conf"

# Split out of intel_rapl in kernel 5.x; AMD support landed in intel_rapl_msr in 5.11.
RAPL_MODULES_SPLIT = ["intel_rapl_common", "intel_rapl_msr"]
RAPL_MODULE_LEGACY = ["intel_rapl"]

INTEL_VENDORS = {"GenuineIntel"}
AMD_VENDORS = {"AuthenticAMD", "HygonGenuine"}


class UnsupportedHostError(ValueError):
    """The host cannot run the deploy; the message names the cause and the fix."""


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as '5.15.0-91-generic'."""
    match = re.match(r"\s*(\d+)\.(\d+)", release or "")
    if not match:
        raise UnsupportedHostError(f"cannot read a kernel version from uname -r output {release!r}")
    return int(match.group(1)), int(match.group(2))


def rapl_modules(cpu_vendor: str, kernel_release: str) -> list[str]:
    """The kernel modules that expose RAPL under /sys/class/powercap on this CPU and kernel."""
    kernel = kernel_version(kernel_release)
    vendor = (cpu_vendor or "").strip()
    if vendor in INTEL_VENDORS:
        return list(RAPL_MODULES_SPLIT) if kernel >= (5, 0) else list(RAPL_MODULE_LEGACY)
    if vendor in AMD_VENDORS:
        if kernel < (5, 11):
            raise UnsupportedHostError(
                f"AMD CPU with kernel {kernel_release.strip()}: RAPL on AMD needs kernel 5.11 or newer; "
                "upgrade the kernel (or set rapl_modules if your vendor kernel backports it)"
            )
        return list(RAPL_MODULES_SPLIT)
    raise UnsupportedHostError(
        f"CPU vendor {vendor or 'unknown'!r} has no RAPL support known to this deploy "
        "(Intel and AMD only); set rapl_modules to override"
    )


def rapl_missing_message(distro_name: str | None) -> str:
    """What to tell the operator when the modules loaded but RAPL is still not exposed."""
    hint = (
        "not bare metal (a VM does not expose RAPL), RAPL disabled in the firmware, or a CPU without RAPL"
    )
    if (distro_name or "").lower() == "ubuntu":
        hint += "; on Ubuntu the modules live in linux-modules-extra-$(uname -r), install it"
    return f"RAPL is not exposed under {RAPL_ZONE} after loading the modules. Likely cause: {hint}"


@dataclass(frozen=True)
class DockerInstallPlan:
    """How to install a Docker engine on one distribution."""

    package_manager: str  # "apt" or "dnf"
    packages: list[str]
    repository: str | None = None  # Docker's own repository, when it is used
    gpg_key_url: str | None = None


ENGINE_PACKAGES = ("docker-ce", "docker.io", "moby-engine")
DEBIAN_FAMILY = {"debian", "ubuntu"}
RHEL_FAMILY = {"rhel", "redhat", "almalinux", "rocky", "centos", "ol"}


def _distro_id(distro: dict) -> str:
    meta = distro.get("release_meta") or {}
    return (meta.get("ID") or distro.get("name") or "").strip().strip('"').lower()


def _distro_family(distro: dict) -> str | None:
    meta = distro.get("release_meta") or {}
    ids = {_distro_id(distro), *(meta.get("ID_LIKE") or "").strip('"').lower().split()}
    if ids & DEBIAN_FAMILY:
        return "debian"
    if ids & RHEL_FAMILY or "fedora" in ids:
        return "rhel"
    return None


def docker_install_plan(distro: dict, source: str, docker_ce_repo_url: str | None) -> DockerInstallPlan:
    """Which packages and repository give this distribution a Docker engine.

    `distro` is pyinfra's LinuxDistribution fact. `source` is "distro" (Debian's
    and Ubuntu's docker.io) or "docker-ce" (Docker's repository, the only choice
    on the RHEL family, which ships no Docker engine).
    """
    family = _distro_family(distro)
    pretty = f"{distro.get('name') or 'unknown OS'} {distro.get('major') or ''}".strip()
    if family is None:
        raise UnsupportedHostError(
            f"{pretty} is not supported: this deploy installs Docker on Debian, Ubuntu and the RHEL family "
            "(RHEL, AlmaLinux, Rocky); install a Docker engine yourself and rerun"
        )
    if source not in ("distro", "docker-ce"):
        raise UnsupportedHostError(f"docker_install_source must be 'distro' or 'docker-ce', not {source!r}")
    if family == "debian" and source == "distro":
        return DockerInstallPlan("apt", ["docker.io"])
    if not docker_ce_repo_url:
        raise UnsupportedHostError(
            f"{pretty} needs Docker's docker-ce repository: set docker_ce_repo_url to its base URL "
            "(the one Docker's install guide gives, without the distribution part)"
        )
    base = docker_ce_repo_url.rstrip("/")
    packages = ["docker-ce", "docker-ce-cli", "containerd.io"]
    if family == "debian":
        distro_dir = "ubuntu" if _distro_id(distro) == "ubuntu" else "debian"
        codename = (distro.get("release_meta") or {}).get("VERSION_CODENAME", "")
        if not codename:
            raise UnsupportedHostError(f"{pretty}: /etc/os-release has no VERSION_CODENAME for Docker's repository")
        return DockerInstallPlan(
            "apt",
            packages,
            repository=f"deb [signed-by=/etc/apt/keyrings/docker.asc] {base}/{distro_dir} {codename} stable",
            gpg_key_url=f"{base}/{distro_dir}/gpg",
        )
    return DockerInstallPlan(
        "dnf",
        packages,
        repository=f"{base}/rhel/$releasever/$basearch/stable",
        gpg_key_url=f"{base}/rhel/gpg",
    )


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


def scaphandre_spec(data: dict) -> ScaphandreSpec:
    """Build and check the container spec from host data; bad values name the data key to fix."""
    image = str(data.get("scaphandre_image") or "")
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    if not tag or tag == "latest":
        raise UnsupportedHostError(
            f"scaphandre_image {image!r} must carry a pinned tag (e.g. hubblo/scaphandre:1.0.2), never 'latest'"
        )
    try:
        port = int(data.get("scaphandre_port"))
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise UnsupportedHostError(f"scaphandre_port {data.get('scaphandre_port')!r} is not a TCP port number")
    restart = str(data.get("scaphandre_restart_policy") or "unless-stopped")
    if restart not in ("always", "unless-stopped"):
        raise UnsupportedHostError(
            f"scaphandre_restart_policy {restart!r} would not survive a reboot: use 'unless-stopped' or 'always'"
        )
    return ScaphandreSpec(
        name=str(data.get("scaphandre_container_name") or "scaphandre"),
        image=image,
        port=port,
        listen_address=str(data.get("scaphandre_listen_address") or "0.0.0.0"),
        qemu=bool(data.get("scaphandre_qemu", True)),
        containers=bool(data.get("scaphandre_containers", True)),
        privileged=bool(data.get("scaphandre_privileged", True)),
        restart_policy=restart,
        extra_args=list(data.get("scaphandre_extra_docker_args") or []),
    )


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
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return None
