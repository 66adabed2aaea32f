"""How a distribution gets a Docker engine, as a plain function of its facts.

Nothing here touches pyinfra: the Docker engine step reads the facts and turns
the plan into operations; the unit tests call it with the facts each supported
distribution reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tasks.host_failure import UnsupportedHostError
from tasks.install_record.record import PackageManager

if TYPE_CHECKING:
    from pyinfra.facts.server import LinuxDistributionDict


@dataclass(frozen=True)
class DockerInstallPlan:
    """How to install a Docker engine on one distribution."""

    package_manager: PackageManager
    packages: list[str]
    repository: str | None = None  # Docker's own repository, when it is used
    gpg_key_url: str | None = None
    repository_files: tuple[str, ...] = ()  # the files that add Docker's repository to the host


ENGINE_PACKAGES = ("docker-ce", "docker.io", "moby-engine")
APT_KEYRING = "/etc/apt/keyrings/docker.asc"
APT_SOURCE_FILE = "/etc/apt/sources.list.d/docker.list"  # apt.repo(filename="docker")
DNF_REPO_FILE = "/etc/yum.repos.d/docker-ce.repo"  # dnf.repo(src="docker-ce")
# Docker's install guide per repository directory, named so an operator can find it.
INSTALL_GUIDES = {"rhel": "RHEL", "centos": "CentOS", "debian": "Debian", "ubuntu": "Ubuntu"}
DEBIAN_FAMILY = {"debian", "ubuntu"}
RHEL_FAMILY = {"rhel", "redhat", "almalinux", "rocky", "centos", "ol"}


def _distro_id(distro: LinuxDistributionDict) -> str:
    meta = distro.get("release_meta") or {}
    return (meta.get("ID") or distro.get("name") or "").strip().strip('"').lower()


def _distro_family(distro: LinuxDistributionDict) -> str | None:
    meta = distro.get("release_meta") or {}
    ids = {_distro_id(distro), *(meta.get("ID_LIKE") or "").strip('"').lower().split()}
    if ids & DEBIAN_FAMILY:
        return "debian"
    if ids & RHEL_FAMILY or "fedora" in ids:
        return "rhel"
    return None


def _repository_directory(family: str, distro_id: str) -> str:
    """The directory of Docker's repository a distribution's guide names: /ubuntu and /debian;
    /centos for CentOS (Stream); /rhel for RHEL and its rebuilds (AlmaLinux, Rocky, Oracle
    Linux), whose $releasever is the major version Docker's /rhel tree is laid out by (8, 9)."""
    if family == "debian":
        return "ubuntu" if distro_id == "ubuntu" else "debian"
    return "centos" if distro_id == "centos" else "rhel"


def docker_install_plan(
    distro: LinuxDistributionDict, source: str, docker_ce_repo_url: str | None
) -> DockerInstallPlan:
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
        raise UnsupportedHostError(
            f"docker_install_source must be 'distro' or 'docker-ce', not {source!r}"
        )
    if family == "debian" and source == "distro":
        return DockerInstallPlan("apt", ["docker.io"])
    distro_dir = _repository_directory(family, _distro_id(distro))
    if not docker_ce_repo_url:
        raise UnsupportedHostError(missing_repository_message(pretty, family, distro_dir))
    base = docker_ce_repo_url.rstrip("/")
    packages = ["docker-ce", "docker-ce-cli", "containerd.io"]
    if family == "debian":
        codename = (distro.get("release_meta") or {}).get("VERSION_CODENAME", "")
        if not codename:
            raise UnsupportedHostError(
                f"{pretty}: /etc/os-release has no VERSION_CODENAME for Docker's repository"
            )
        return DockerInstallPlan(
            "apt",
            packages,
            repository=f"deb [signed-by={APT_KEYRING}] {base}/{distro_dir} {codename} stable",
            gpg_key_url=f"{base}/{distro_dir}/gpg",
            repository_files=(APT_SOURCE_FILE, APT_KEYRING),
        )
    return DockerInstallPlan(
        "dnf",
        packages,
        repository=f"{base}/{distro_dir}/$releasever/$basearch/stable",
        gpg_key_url=f"{base}/{distro_dir}/gpg",
        repository_files=(DNF_REPO_FILE,),
    )


def missing_repository_message(pretty: str, family: str, distro_dir: str) -> str:
    """One line for a host that needs Docker's repository when docker_ce_repo_url is unset:
    which setting, what it holds and where Docker documents it (no address is assumed:
    sites often use a mirror)."""
    why = (
        "the RHEL family ships no Docker engine, so it comes from"
        if family == "rhel"
        else "docker_install_source is 'docker-ce', so the engine comes from"
    )
    return (
        f"{pretty}: {why} Docker's own package repository, and docker_ce_repo_url is not set: set it to that "
        f"repository's base URL (or your mirror's), the part of the repository address before /{distro_dir}/ "
        f"in Docker's guide 'Install Docker Engine on {INSTALL_GUIDES[distro_dir]}', section 'Set up the repository'"
    )
