"""The Docker engine: installed only where none is present, enabled and running."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, dnf, files, systemd

from tasks.facts import DockerEngineInstalled
from tasks.hypervisor_plan import UnsupportedHostError, docker_install_plan
from tasks.operations import docker_engine_active, fail_host

APT_KEYRING = "/etc/apt/keyrings/docker.asc"


def _install(plan) -> None:
    if plan.package_manager == "apt":
        if plan.repository:
            files.directory(name="Create the apt keyring directory", path="/etc/apt/keyrings", mode="755")
            files.download(name="Download Docker's repository key", src=plan.gpg_key_url, dest=APT_KEYRING)
            apt.repo(name="Add Docker's apt repository", src=plan.repository, filename="docker")
        apt.packages(
            name="Install the Docker engine",
            packages=plan.packages,
            update=True,
            cache_time=3600,
            no_recommends=plan.repository is None,
        )
    else:
        dnf.repo(
            name="Add Docker's dnf repository",
            src="docker-ce",
            baseurl=plan.repository,
            description="Docker CE",
            gpgkey=plan.gpg_key_url,
        )
        dnf.packages(name="Install the Docker engine", packages=plan.packages)


@deploy("Docker engine")
def ensure_docker_engine() -> None:
    """Guarantees a Docker engine is installed (any of docker-ce, docker.io, moby; none is
    replaced), enabled at boot and running; an installed engine that is stopped is started,
    and one that cannot start fails the host with its journal's last lines."""
    if not host.get_fact(DockerEngineInstalled):
        try:
            plan = docker_install_plan(
                host.get_fact(LinuxDistribution),
                host.data.get("docker_install_source") or "distro",
                host.data.get("docker_ce_repo_url"),
            )
        except UnsupportedHostError as error:
            fail_host(name="Check the OS can get a Docker engine", reason=str(error))
            return
        _install(plan)

    # A failed start is reported by the next operation, with the engine's own journal and the fix,
    # rather than by systemctl's "see journalctl -xe".
    start = systemd.service(
        name="Enable and start Docker", service="docker.service", running=True, enabled=True, _ignore_errors=True
    )
    # Only after a start or enable was attempted: an engine found running needs no second look.
    docker_engine_active(
        name="Check the Docker engine runs",
        unit="docker.service",
        _if=lambda: start.did_change() or start.did_error(),
    )
