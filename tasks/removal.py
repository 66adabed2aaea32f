"""Taking the deploy away from a hypervisor again."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, dnf, docker, files

from tasks.facts import DockerEngineInstalled
from tasks.hypervisor_plan import MODULES_LOAD_FILE, UnsupportedHostError, docker_install_plan
from tasks.operations import fail_host


@deploy("Remove Scaphandre")
def remove_scaphandre() -> None:
    """Guarantees the Scaphandre container and the RAPL modules-load file are gone.

    The modules stay loaded until the next boot (unloading them could disturb other
    RAPL readers). The Docker engine stays unless `remove_docker_engine` is set, as
    other containers may depend on it.
    """
    engine_installed = host.get_fact(DockerEngineInstalled)
    if engine_installed:
        docker.container(
            name="Remove the Scaphandre container",
            container=host.data.get("scaphandre_container_name") or "scaphandre",
            present=False,
            start=False,  # pyinfra 3.10 would otherwise try to start a container that is already gone
        )
    files.file(name="Remove the RAPL modules-load file", path=MODULES_LOAD_FILE, present=False)
    if engine_installed and host.data.get("remove_docker_engine"):
        _remove_docker_engine()


def _remove_docker_engine() -> None:
    try:
        plan = docker_install_plan(
            host.get_fact(LinuxDistribution),
            host.data.get("docker_install_source") or "distro",
            host.data.get("docker_ce_repo_url") or "unused-for-removal",
        )
    except UnsupportedHostError as error:
        fail_host(name="Check the OS can remove Docker", reason=str(error))
        return
    if plan.package_manager == "apt":
        apt.packages(name="Remove the Docker engine", packages=plan.packages, present=False)
    else:
        dnf.packages(name="Remove the Docker engine", packages=plan.packages, present=False)
