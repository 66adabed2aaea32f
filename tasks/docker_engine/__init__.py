"""The Docker engine: installed only where none is present, enabled and running.

plan.py chooses packages and repository per distribution; facts.py and
operations.py read and check the host.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, dnf, files, systemd

from tasks.docker_engine.facts import DockerEngineInstalled
from tasks.docker_engine.operations import docker_engine_active
from tasks.docker_engine.plan import DockerInstallPlan, docker_install_plan
from tasks.host_failure import UnsupportedHostError, fail_host
from tasks.settings import Settings

APT_KEYRING = "/etc/apt/keyrings/docker.asc"


def _install(plan: DockerInstallPlan) -> None:
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


def _plan(settings: Settings, docker_ce_repo_url: str | None, check_name: str) -> DockerInstallPlan | None:
    try:
        return docker_install_plan(host.get_fact(LinuxDistribution), settings.docker_install_source, docker_ce_repo_url)
    except UnsupportedHostError as error:
        fail_host(name=check_name, reason=str(error))
        return None


@deploy("Docker engine")
def ensure_docker_engine(settings: Settings) -> None:
    """Guarantees a Docker engine is installed (any of docker-ce, docker.io, moby; none is
    replaced), enabled at boot and running; an installed engine that is stopped is started,
    and one that cannot start fails the host with its journal's last lines."""
    if not host.get_fact(DockerEngineInstalled):
        plan = _plan(settings, settings.docker_ce_repo_url, "Check the OS can get a Docker engine")
        if plan is None:
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


@deploy("Remove the Docker engine")
def remove_docker_engine(settings: Settings) -> None:
    """Guarantees the engine's packages are gone (only asked for with remove_docker_engine:
    other containers may depend on the engine)."""
    if not host.get_fact(DockerEngineInstalled):
        return
    plan = _plan(settings, settings.docker_ce_repo_url or "unused-for-removal", "Check the OS can remove Docker")
    if plan is None:
        return
    if plan.package_manager == "apt":
        apt.packages(name="Remove the Docker engine", packages=plan.packages, present=False)
    else:
        dnf.packages(name="Remove the Docker engine", packages=plan.packages, present=False)
