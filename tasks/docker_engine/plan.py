"""How a distribution gets a Docker engine, as a plain function of its facts.

Nothing here touches pyinfra: the Docker engine step reads the facts and turns
the plan into operations; the unit tests call it with the facts each supported
distribution reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.host_failure import UnsupportedHostError


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
